"""The trainer through a real channel: real training in worker processes, a real SQLite
registry and a real Triton, on a tiny synthetic store.

One test walks the whole life of a model (train + publish v1, train + publish v2 while a
second start is refused, roll back to v1); bad input is refused before any job exists; the
RPC process never loads torch or an inference engine (only its job workers do).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from shopsense.trainer.v1 import trainer_service_pb2 as pb
from shopsense.trainer.v1 import trainer_service_pb2_grpc as pb_grpc

from services.trainer.server import create_server
from shared.data.synthetic import generate_store, write_wands
from shared.errors import InvalidArgument
from shared.models.triton_server import TritonServer
from shared.rpc.server import ServerHandle
from shared.settings.services import TrainerSettings
from shared.training.publish import loaded_versions
from tests.integration.conftest import ANY_PORT, NOWHERE

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]

MODEL = "cross_encoder"
# A few steps on a few examples: the point is the machinery, not the model's quality.
TINY = {
    "max_steps": "3",
    "batch_size": "4",
    "group_size": "4",
    "max_train_examples": "16",
    "eval_queries": "4",
    "early_stopping_patience": "0",
}
JOB_TIMEOUT_S = 240.0


@pytest.fixture(scope="module")
def store_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("store")
    write_wands(generate_store(40, 12, seed=3), folder)
    return folder


@pytest.fixture(scope="module")
def repository(tmp_path_factory: pytest.TempPathFactory, exported_model_repository: Path) -> Path:
    """A repository of this module's own (text_encoder 1): publishing here must not change
    the models the other tests' shared Triton serves."""
    repository = tmp_path_factory.mktemp("trainer-repository")
    shutil.copytree(exported_model_repository / "text_encoder", repository / "text_encoder")
    return repository


@pytest.fixture(scope="module")
def triton_server(repository: Path) -> Iterator[TritonServer]:
    """A Triton over ``repository`` (shadows the session-wide one for this module)."""
    with TritonServer(repository, log_file=repository.parent / "triton.log") as server:
        yield server


@pytest.fixture
def trainer(
    start_stack, tmp_path: Path, triton_server: TritonServer, repository: Path
) -> Iterator[tuple[pb_grpc.TrainerServiceStub, ServerHandle]]:
    # No retrieval listens (the discard port): publishing must not need it.
    with start_stack(
        ["trainer"],
        triton_url=triton_server.grpc_url,
        state=tmp_path / "state",
        settings={"triton_models": repository, "grpc_workers": 8},
    ) as stack:
        yield stack.stub("trainer", pb_grpc.TrainerServiceStub), stack.handles["trainer"]


def watch_to_the_end(stub: pb_grpc.TrainerServiceStub, job_id: str) -> list[pb.Job]:
    """Every snapshot WatchJob streams, until it ends the stream."""
    return [
        reply.job
        for reply in stub.WatchJob(pb.WatchJobRequest(job_id=job_id), timeout=JOB_TIMEOUT_S)
    ]


def start(stub: pb_grpc.TrainerServiceStub, dataset: Path, **overrides: str) -> str:
    request = pb.StartTrainingRequest(
        model=MODEL, dataset=str(dataset), hyperparameters={**TINY, **overrides}, publish=True
    )
    return stub.StartTraining(request, timeout=30).job_id


def versions(stub: pb_grpc.TrainerServiceStub) -> pb.ListModelVersionsResponse:
    return stub.ListModelVersions(pb.ListModelVersionsRequest(model=MODEL), timeout=10)


def test_train_publish_train_again_and_roll_back(
    trainer: tuple[pb_grpc.TrainerServiceStub, ServerHandle], store_dir: Path, triton_server
) -> None:
    stub, _ = trainer
    started = time.monotonic()

    first = start(stub, store_dir)
    snapshots = watch_to_the_end(stub, first)
    done = snapshots[-1]
    assert done.state == pb.JOB_STATE_SUCCEEDED, done.error
    assert done.result_version == 1 and done.progress == 1.0
    assert any(s.state == pb.JOB_STATE_RUNNING and s.total_steps > 0 for s in snapshots)
    assert any(s.stage == pb.JOB_STAGE_TRAINING for s in snapshots)
    assert all(not s.HasField("finished_time") for s in snapshots[:-1])

    listed = versions(stub)
    assert listed.serving_version == 1
    (v1,) = listed.versions
    assert v1.status == pb.VERSION_STATUS_SERVING and v1.job_id == first
    assert len(v1.data_fingerprint) == 64 and v1.dev_metrics and v1.training_seconds > 0
    assert v1.hyperparameters["max_steps"] == "3" and v1.parent_version == 0
    assert (v1.export.engine, v1.export.precision) in {
        ("onnxruntime", "fp32"),
        ("onnxruntime", "int8"),
        ("openvino", "fp32"),
        ("openvino", "bf16"),
    }
    assert loaded_versions(triton_server.grpc_url, MODEL) == [1]
    assert loaded_versions(triton_server.grpc_url, "text_encoder") == [1]  # untouched

    # A second run starts from the serving version and publishes v2; meanwhile the model is busy.
    second = start(stub, store_dir, seed="5")
    with pytest.raises(grpc.RpcError) as refused:
        start(stub, store_dir)
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert f"model {MODEL}: job {second} is already running" in refused.value.details()
    done = watch_to_the_end(stub, second)[-1]
    assert done.state == pb.JOB_STATE_SUCCEEDED, done.error
    assert (done.result_version, done.parent_version) == (2, 1)
    listed = versions(stub)
    assert listed.serving_version == 2
    assert {v.version: v.status for v in listed.versions} == {
        2: pb.VERSION_STATUS_SERVING,
        1: pb.VERSION_STATUS_RETIRED,
    }
    assert loaded_versions(triton_server.grpc_url, MODEL) == [2]

    rolled = stub.RollbackVersion(pb.RollbackVersionRequest(model=MODEL), timeout=120)
    assert (rolled.version.version, rolled.rolled_back_version) == (1, 2)
    listed = versions(stub)
    assert listed.serving_version == 1
    assert {v.version: v.status for v in listed.versions} == {
        2: pb.VERSION_STATUS_ROLLED_BACK,
        1: pb.VERSION_STATUS_SERVING,
    }
    assert loaded_versions(triton_server.grpc_url, MODEL) == [1]

    jobs = stub.ListJobs(pb.ListJobsRequest(model=MODEL), timeout=10).jobs
    assert [j.job_id for j in jobs] == [second, first]
    print(f"two training runs, two publishes and a rollback: {time.monotonic() - started:.1f} s")


def _bad_dataset(tmp_path: Path, store_dir: Path) -> tuple[Path, Path]:
    empty = tmp_path / "empty"
    empty.mkdir()
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    for name in ("product.csv", "query.csv", "label.csv"):
        (corrupt / name).write_bytes((store_dir / name).read_bytes())
    (corrupt / "label.csv").write_bytes(b"\xff\xfe garbage \x00\x01 not a csv")
    return empty, corrupt


def test_bad_input_is_refused_before_a_job_exists(
    trainer: tuple[pb_grpc.TrainerServiceStub, ServerHandle], store_dir: Path, tmp_path: Path
) -> None:
    stub, _ = trainer
    empty, corrupt = _bad_dataset(tmp_path, store_dir)
    cases = [
        (dict(model="ranker", dataset=str(store_dir)), "model: unknown model kind 'ranker'"),
        (
            dict(model=MODEL, dataset=str(store_dir), hyperparameters={"batch_size": "0"}),
            "hyperparameters.batch_size: must be an integer in [1, 1024]",
        ),
        (
            dict(model=MODEL, dataset=str(store_dir), hyperparameters={"colour": "red"}),
            "hyperparameters.colour: unknown hyperparameter",
        ),
        (dict(model=MODEL, dataset=str(empty)), "dataset: "),
        (dict(model=MODEL, dataset=str(corrupt)), "dataset: "),
        (dict(model=MODEL, dataset=str(tmp_path / "missing")), "dataset: "),
        (dict(model=MODEL, dataset=""), "dataset: required"),
    ]
    for fields, message in cases:
        with pytest.raises(grpc.RpcError) as error:
            stub.StartTraining(pb.StartTrainingRequest(**fields), timeout=30)
        assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT, fields
        assert message in error.value.details(), (fields, error.value.details())
    assert "label.csv" in _details(stub, corrupt)
    assert list(stub.ListJobs(pb.ListJobsRequest(), timeout=10).jobs) == []

    with pytest.raises(grpc.RpcError) as error:
        stub.PublishVersion(pb.PublishVersionRequest(model=MODEL, version=7), timeout=10)
    assert error.value.code() == grpc.StatusCode.NOT_FOUND
    assert "version" in error.value.details()
    with pytest.raises(grpc.RpcError) as error:
        stub.RollbackVersion(pb.RollbackVersionRequest(model=MODEL), timeout=10)
    assert error.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    with pytest.raises(grpc.RpcError) as error:
        stub.GetJob(pb.GetJobRequest(job_id="nope"), timeout=10)
    assert error.value.code() == grpc.StatusCode.NOT_FOUND


def _details(stub: pb_grpc.TrainerServiceStub, dataset: Path) -> str:
    with pytest.raises(grpc.RpcError) as error:
        stub.StartTraining(pb.StartTrainingRequest(model=MODEL, dataset=str(dataset)), timeout=30)
    return error.value.details()


# The trainer's RPC process moves folders and talks to Triton and the registry; only its
# job workers train, export and evaluate, so only they may load these.
TRAINING_ONLY_MODULES = ("torch", "transformers", "peft", "onnx", "onnxruntime", "openvino")
# Runs in a fresh interpreter: the trainer from the environment's settings on port 0, the
# RPCs that do not train, then which of TRAINING_ONLY_MODULES got imported and from where.
_TRAINER_PROCESS = """
import json, sys, traceback

WATCHED = set(sys.argv[1].split(","))
importers = {}


class Watch:
    def find_spec(self, name, path=None, target=None):
        top = name.partition(".")[0]
        if top in WATCHED and top not in importers:
            importers[top] = [
                f"{frame.filename}:{frame.lineno}"
                for frame in traceback.extract_stack()[:-1]
                if "importlib" not in frame.filename
            ][-8:]
        return None


sys.meta_path.insert(0, Watch())

import grpc
from shopsense.trainer.v1 import trainer_service_pb2 as pb
from shopsense.trainer.v1 import trainer_service_pb2_grpc as pb_grpc

from services.trainer.server import create_server
from shared.settings import TrainerSettings

handle = create_server(TrainerSettings.load())
stub = pb_grpc.TrainerServiceStub(grpc.insecure_channel(handle.address))
codes = []
for call, request in (
    (stub.ListModelVersions, pb.ListModelVersionsRequest(model="cross_encoder")),
    (stub.StartTraining, pb.StartTrainingRequest(
        model="cross_encoder", dataset=sys.argv[2], hyperparameters={"batch_size": "0"})),
    (stub.StartTraining, pb.StartTrainingRequest(model="cross_encoder", dataset=sys.argv[3])),
    (stub.PublishVersion, pb.PublishVersionRequest(model="cross_encoder", version=7)),
):
    try:
        call(request, timeout=30)
        codes.append("OK")
    except grpc.RpcError as error:
        codes.append(error.code().name)
handle.stop(0)
print(json.dumps({"codes": codes, "imported": importers}))
"""


def test_the_rpc_process_never_imports_torch(tmp_path: Path, store_dir: Path) -> None:
    """Built and asked what it can answer without training, the trainer loads no model code."""
    env = {
        **os.environ,
        "SHOPSENSE_TRAINER_LISTEN": "127.0.0.1:0",
        "SHOPSENSE_STATE_DIR": str(tmp_path / "state"),
        "SHOPSENSE_REGISTRY_DB_URL": f"sqlite:///{tmp_path / 'registry.db'}",
        "SHOPSENSE_TRAINING_DIR": str(tmp_path / "training"),
        "SHOPSENSE_TRITON_MODELS": str(tmp_path / "repository"),
        "SHOPSENSE_TRITON_URL": "127.0.0.1:1",
        "SHOPSENSE_RETRIEVAL_TARGET": "127.0.0.1:1",
        "SHOPSENSE_EXPERIMENTS_FILE": "",
        # The datasets asked for lie here (else refused before the dataset is read).
        "SHOPSENSE_DATA_ROOT": os.pathsep.join([str(store_dir), str(tmp_path)]),
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
    }
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            _TRAINER_PROCESS,
            ",".join(TRAINING_ONLY_MODULES),
            str(store_dir),
            str(tmp_path / "missing"),
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    outcome = json.loads(done.stdout.strip().splitlines()[-1])
    assert outcome["codes"] == ["OK", "INVALID_ARGUMENT", "INVALID_ARGUMENT", "NOT_FOUND"]
    assert outcome["imported"] == {}, json.dumps(outcome["imported"], indent=2)


def _open_files_under(folder: Path) -> list[str]:
    """Files under ``folder`` this process holds open."""
    opened = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:  # closed meanwhile (the listing's own descriptor)
            continue
        if target.startswith(str(folder)):
            opened.append(target)
    return sorted(opened)


@pytest.mark.parametrize("failure", ["port taken", "bad experiments file"])
def test_a_trainer_that_fails_to_start_closes_what_it_opened(tmp_path: Path, failure: str) -> None:
    """A trainer that cannot bind its port, or refuses its experiments file, raises and leaves
    no database file open behind it (the caller, a launcher or a test, carries on)."""
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    bad = tmp_path / "experiments.toml"
    bad.write_text("[[experiment]]\nname = 7\n", encoding="utf-8")
    settings = TrainerSettings.load(
        {},
        state_dir=tmp_path / "state",
        listen=f"127.0.0.1:{taken.getsockname()[1]}" if failure == "port taken" else ANY_PORT,
        experiments_file=str(bad) if failure == "bad experiments file" else "",
        triton_url=NOWHERE,
        retrieval_target=NOWHERE,
    )
    expected = RuntimeError if failure == "port taken" else InvalidArgument
    with taken, pytest.raises(expected) as raised:
        create_server(settings)
    # The traceback keeps create_server's locals (the registry, the runner) alive here:
    # whatever they opened is closed only if create_server closed it.
    assert raised.value is not None
    assert _open_files_under(tmp_path) == []
