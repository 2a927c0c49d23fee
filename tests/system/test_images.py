"""The suite from its container images (`make images`), as a cluster runs it: Triton from
``localhost/shopsense-triton-cpu``, the trainer from ``localhost/shopsense-trainer`` and
every other service from ``localhost/shopsense-services``, each its own container on the
host's network on free ports, the worktree's exported model mounted read-only, one state
folder shared as a volume. From outside (this process, a storefront's client) a small
catalog is loaded, then a Search, a Recommend and RecordEvents are checked. Every container
is removed at the end, and the test checks that none is left.

Marked ``images`` and left out of `make test` (pyproject's addopts): CI runs `make images`
and `make test-images` after `make test` (.ci/run). About 2 minutes on 2 cores once the
images exist.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from shopsense.common.v1 import common_pb2
from shopsense.feedback.v1 import feedback_service_pb2 as fpb
from shopsense.feedback.v1 import feedback_service_pb2_grpc
from shopsense.recommend.v1 import recommend_service_pb2 as rpb
from shopsense.recommend.v1 import recommend_service_pb2_grpc
from shopsense.search.v1 import search_service_pb2 as spb
from shopsense.search.v1 import search_service_pb2_grpc

from shared.data.synthetic import generate_store
from shared.models.onnx_runtime import served_engine
from shared.models.triton_server import free_port
from shared.paths import REPO_ROOT, shared_data_dir
from shared.runtime.catalog import upsert_products, wait_for_intent
from shared.runtime.suite import SERVICES, is_serving
from tests.support import wait_until

pytestmark = pytest.mark.images

VERSION = "0.1.0"
SERVICES_IMAGE = f"localhost/shopsense-services:{VERSION}"
TRAINER_IMAGE = f"localhost/shopsense-trainer:{VERSION}"
TRITON_IMAGE = f"localhost/shopsense-triton-cpu:{VERSION}"
IMAGES = (SERVICES_IMAGE, TRAINER_IMAGE, TRITON_IMAGE)
USER = "10001:10001"
# deploy/images/podman.sh's flags: runc, cgroupfs, no default ulimits but small explicit ones.
PODMAN = ("podman", "--runtime", "runc", "--cgroup-manager", "cgroupfs")
LIMITS = ("--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1000:1000")
CONTAINERS_CONF = REPO_ROOT / "var" / "podman" / "containers.conf"
MODELS = REPO_ROOT / "triton_models"
DATA = shared_data_dir()
PRODUCTS = 300
# A cold start of all seven services and Triton on 2 shared cores takes about 40 s.
START_TIMEOUT_S = 240.0


def podman(*args: str, timeout: float = 120.0, check: bool = True) -> str:
    """Run podman with this machine's flags; its standard output. Fails with its stderr."""
    if not CONTAINERS_CONF.is_file():
        CONTAINERS_CONF.parent.mkdir(parents=True, exist_ok=True)
        CONTAINERS_CONF.write_text("[containers]\ndefault_ulimits = []\n")
    done = subprocess.run(
        [*PODMAN, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "CONTAINERS_CONF": str(CONTAINERS_CONF)},
        check=False,
    )
    if check and done.returncode != 0:
        raise RuntimeError(f"podman {' '.join(args[:2])} failed ({done.returncode}): {done.stderr}")
    return done.stdout


@dataclass
class ImageSuite:
    """The containers of one test run and where they answer."""

    prefix: str
    state: Path
    ports: dict[str, int] = field(default_factory=dict)
    containers: list[str] = field(default_factory=list)
    products: list = field(default_factory=list)

    def address(self, service: str) -> str:
        return f"127.0.0.1:{self.ports[service]}"

    def name(self, service: str) -> str:
        return f"{self.prefix}-{service}"

    def run(
        self, service: str, image: str, env: dict[str, str], options: list[str], command: list[str]
    ) -> None:
        """Start ``service``'s container, detached, on the host's network."""
        name = self.name(service)
        self.containers.append(name)
        flags = [f"--env={key}={value}" for key, value in sorted(env.items())]
        podman(
            "run",
            "--detach",
            "--name",
            name,
            "--network",
            "host",
            *LIMITS,
            *flags,
            *options,
            image,
            *command,
        )

    def run_service(self, service: str) -> None:
        """``python -m services.<name>``, as a Deployment runs it; the trainer from its image."""
        self.run(
            service,
            TRAINER_IMAGE if service == "trainer" else SERVICES_IMAGE,
            self.environment(),
            [
                f"--volume={self.state}:/var/lib/shopsense",
                f"--volume={MODELS}:/models:ro",
                # The taxonomy (wands/classes.txt) intent reads, as `make run` reads it.
                *([f"--volume={DATA}:/data:ro"] if DATA.is_dir() else []),
            ],
            ["python", "-m", f"services.{service}"],
        )

    def environment(self) -> dict[str, str]:
        """What shared/runtime/suite.py gives each service, with the containers' addresses."""
        env = {
            "SHOPSENSE_TRITON_URL": self.address("triton"),
            "OPENBLAS_NUM_THREADS": "1",
            "OMP_NUM_THREADS": "1",
            "SHOPSENSE_INTENT_REFRESH_S": "0.5",
            "SHOPSENSE_GATEWAY_REFRESH_S": "0.5",
            "SHOPSENSE_TOKEN_SECRET": "images-system-test",
            "SHOPSENSE_EXPLORE_RATE": "0",
        }
        for service in SERVICES:
            env[f"SHOPSENSE_{service.upper()}_LISTEN"] = self.address(service)
            env[f"SHOPSENSE_{service.upper()}_TARGET"] = self.address(service)
        return env

    def logs(self, service: str) -> str:
        done = podman("logs", "--tail", "40", self.name(service), check=False)
        return done[-3000:]

    def running(self, service: str) -> bool:
        state = podman("inspect", "--format", "{{.State.Running}}", self.name(service), check=False)
        return state.strip() == "true"

    def wait(self, service: str, ready, deadline: float) -> None:
        """Until ``ready()``; fails with the container's log if it exits or the time is up."""
        while not ready():
            if not self.running(service):
                raise RuntimeError(f"{service} exited:\n{self.logs(service)}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"{service} not ready in time:\n{self.logs(service)}")
            time.sleep(0.5)

    def remove(self) -> None:
        if self.containers:
            podman("rm", "--force", "--time", "5", *self.containers, timeout=180, check=False)

    def leftovers(self) -> list[str]:
        listed = podman("ps", "--all", "--filter", f"name={self.prefix}", "--format", "{{.Names}}")
        return listed.split()


def triton_ready(url: str) -> bool:
    import tritonclient.grpc as grpcclient
    from tritonclient.utils import InferenceServerException

    client = grpcclient.InferenceServerClient(url)
    try:
        return client.is_server_ready(client_timeout=2.0) and client.is_model_ready(
            "text_encoder", client_timeout=2.0
        )
    except InferenceServerException:
        return False
    finally:
        client.close()


def missing_prerequisites() -> str:
    if shutil.which("podman") is None:
        return "podman is not installed: run `make images`"
    absent = [
        image
        for image in IMAGES
        if subprocess.run(
            [*PODMAN, "image", "exists", image],
            env={**os.environ, "CONTAINERS_CONF": str(CONTAINERS_CONF)},
            check=False,
        ).returncode
        != 0
    ]
    if absent:
        return f"images missing: {', '.join(absent)}: run `make images`"
    if not (MODELS / "text_encoder" / "1" / "model.onnx").is_file():
        return f"no exported text_encoder in {MODELS}: run `make models`"
    return ""


@pytest.fixture(scope="module")
def image_suite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ImageSuite]:
    """Triton and the seven services from the images, with a 300-product catalog loaded."""
    problem = missing_prerequisites()
    if problem:
        pytest.fail(problem)
    state = tmp_path_factory.mktemp("image-suite-state")
    state.chmod(0o777)  # the containers' user 10001 writes the databases here
    suite = ImageSuite(prefix=f"shopsense-test-{uuid.uuid4().hex[:8]}", state=state)
    suite.ports = {name: free_port() for name in (*SERVICES, "triton")}
    started = time.monotonic()
    deadline = started + START_TIMEOUT_S
    try:
        suite.run(
            "triton",
            TRITON_IMAGE,
            {
                "TRITON_GRPC_PORT": str(suite.ports["triton"]),
                "TRITON_HTTP_PORT": str(free_port()),
                "TRITON_METRICS_PORT": str(free_port()),
            },
            # The python backend's shared memory: podman's default /dev/shm is 64 MiB.
            [f"--volume={MODELS}:/models:ro", "--shm-size=256m"],
            [],
        )
        suite.wait("triton", lambda: triton_ready(suite.address("triton")), deadline)
        for service in SERVICES:
            suite.run_service(service)
        for service in SERVICES:
            suite.wait(service, lambda s=service: is_serving(suite.address(s)), deadline)
        print(
            f"images: Triton and {len(SERVICES)} services SERVING in {time.monotonic() - started:.0f} s"
        )
        products = generate_store(n_products=PRODUCTS, n_queries=10, seed=7).products
        upsert_products(suite.address("retrieval"), products, progress=False)
        wait_for_intent(suite.address("intent"), suite.address("retrieval"))
        suite.products = list(products)
        yield suite
    finally:
        suite.remove()
    assert suite.leftovers() == [], "containers left behind"


def _now() -> Timestamp:
    now = Timestamp()
    now.GetCurrentTime()
    return now


def _event(kind: int, product: str, user: str, token: str = "", position: int = 0) -> fpb.Event:
    event = fpb.Event(
        event_id=str(uuid.uuid4()),
        type=kind,
        timestamp=_now(),
        user_id=user,
        product_id=product,
        attribution_token=token,
        position=position,
    )
    if kind == fpb.EVENT_TYPE_PURCHASE:
        event.amount, event.currency = 49.0, "USD"
    return event


def test_search_recommend_and_feedback_from_outside(image_suite: ImageSuite) -> None:
    gateway = grpc.insecure_channel(image_suite.address("gateway"))
    search = search_service_pb2_grpc.SearchServiceStub(gateway).Search(
        spb.SearchRequest(query="sofa", user=common_pb2.UserContext(user_id="images-shopper")),
        timeout=10,
    )
    assert search.results and search.attribution_token
    assert search.results[0].product_class == "Sofas", [r.product_class for r in search.results]
    assert not (search.degraded.intent or search.degraded.ranking or search.degraded.dense)

    top = search.results[0].product_id
    feedback = feedback_service_pb2_grpc.FeedbackServiceStub(
        grpc.insecure_channel(image_suite.address("feedback"))
    )
    token = search.attribution_token
    first, second = (p.product_id for p in image_suite.products[:2])
    events = [
        _event(fpb.EVENT_TYPE_IMPRESSION, top, "images-shopper", token, position=1),
        _event(fpb.EVENT_TYPE_CLICK, top, "images-shopper", token),
        *(_event(fpb.EVENT_TYPE_PURCHASE, pid, f"images-buyer-{n}") for n in range(3) for pid in (first, second)),
    ]  # fmt: skip
    recorded = feedback.RecordEvents(fpb.RecordEventsRequest(events=events), timeout=10)
    assert [r.status for r in recorded.results] == [fpb.EVENT_STATUS_ACCEPTED] * len(events)

    # The recommender follows the feedback store (the shared volume's SQLite file).
    recommend = recommend_service_pb2_grpc.RecommendServiceStub(
        grpc.insecure_channel(image_suite.address("recommend"))
    )

    def events_read() -> int:
        stats = recommend.GetRecommenderStats(rpb.GetRecommenderStatsRequest(), timeout=5)
        return stats.events_read

    wait_until(lambda: events_read() >= len(events) - 1, "recommend read the new events")
    together = recommend_service_pb2_grpc.RecommendServiceStub(gateway).Recommend(
        rpb.RecommendRequest(
            placement=rpb.PLACEMENT_FREQUENTLY_BOUGHT_TOGETHER,
            user=common_pb2.UserContext(session_id="images-session"),
            context_product_ids=[first],
        ),
        timeout=10,
    )
    assert together.items and together.items[0].product_id == second
    assert together.attribution_token


@pytest.mark.parametrize("image", IMAGES)
def test_image_runs_unprivileged_pinned_and_without_build_tools(image: str) -> None:
    problem = missing_prerequisites()
    if problem:
        pytest.fail(problem)
    assert not image.endswith(":latest")
    assert podman("image", "inspect", "--format", "{{.Config.User}}", image).strip() == USER
    probe = (
        "id -u; for tool in gcc cc c++ make ld pip pip3 protoc; do "
        "command -v $tool >/dev/null && echo found $tool; done; python3 --version"
    )
    out = podman(
        "run", "--rm", "--network", "none", *LIMITS, "--entrypoint", "sh", image, "-c", probe
    )
    lines = out.split("\n")
    assert lines[0] == "10001"
    assert not [line for line in lines if line.startswith("found")], out
    assert "Python 3.11" in out


def test_trainer_image_exports_the_first_model_on_cpu_torch(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """The trainer image seeds an empty model repository (what a cluster's shared volume
    starts as) with text_encoder version 1, read-only root filesystem, no network: torch,
    transformers, ONNX export and the engine check (onnxruntime, OpenVINO) all inside. Its
    torch is the CPU wheel; the services image has no torch and no grpc_tools."""
    problem = missing_prerequisites()
    if problem:
        pytest.fail(problem)
    repository = tmp_path_factory.mktemp("image-export")
    repository.chmod(0o777)
    data = [f"--volume={DATA}:/data:ro"] if DATA.is_dir() else []
    export = ("python", "-m", "shared.training.export", "--model", "text_encoder", "--version", "1")
    podman(
        "run", "--rm", "--read-only", "--network", "none", *LIMITS, *data,
        f"--volume={repository}:/models", TRAINER_IMAGE, *export, "--repository", "/models",
        timeout=300,
    )  # fmt: skip
    version = repository / "text_encoder" / "1"
    assert (version / "model.fp32.onnx").stat().st_size > 80_000_000
    # model.onnx is the graph the export chose (int8 where it agrees on this CPU).
    served = "model.int8.onnx" if served_engine(version)[1] == "int8" else "model.fp32.onnx"
    assert (version / "model.onnx").read_bytes() == (version / served).read_bytes()
    assert (version / "model.py").is_file() and (version / "export_report.json").is_file()
    assert (repository / "text_encoder" / "configs" / "gpu.pbtxt").is_file()
    probe = "import torch, peft; print(torch.__version__, torch.version.cuda)"
    out = podman("run", "--rm", "--network", "none", *LIMITS, TRAINER_IMAGE, "python", "-c", probe)
    assert out.split() == ["2.13.0+cpu", "None"], out
    services = podman(
        "run", "--rm", "--network", "none", *LIMITS, SERVICES_IMAGE, "python", "-c",
        "import importlib.util as u; print(u.find_spec('torch') is None, u.find_spec('grpc_tools') is None)",
    )  # fmt: skip
    assert services.split() == ["True", "True"], services
