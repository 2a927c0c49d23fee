"""Publish exported models as Triton versions and choose which versions serve.

The steps of a release, each usable alone:

- ``install_version`` copies an export folder (:func:`shared.training.export.export_checkpoint`)
  into ``<repository>/<model>/<version>/`` atomically, with the python-backend adapter;
- ``load_versions`` tells a running Triton (``--model-control-mode=explicit``) which
  versions of a model serve, by loading the model with a ``version_policy`` naming them:
  ``[1, 2]`` serves both (an A/B test), ``[1]`` afterwards is a rollback, ``[]`` unloads;
- ``loaded_versions`` says which versions answer now; ``remove_version`` deletes one.

Triton keeps serving while versions change: no restart.

Several Tritons over one repository (Kubernetes: Triton pods sharing the model volume):
wherever a function takes ``triton_url`` it also takes several endpoints, comma-separated,
and ``dns:///name:port``, which stands for every address the name resolves to at the time
of the call (a headless Service lists each ready pod). ``load_versions`` loads on each in
turn and ``loaded_versions`` reports the versions READY on all of them. With ``tls`` (the
trainer's certificate) every call is mutual TLS, each pod's certificate checked against
the name the addresses came from.
"""

from __future__ import annotations

import json
import shutil
import socket
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import tritonclient.grpc as grpcclient
from google.protobuf import json_format, text_format
from tritonclient.grpc import model_config_pb2
from tritonclient.utils import InferenceServerException

from shared.models.kinds import MODEL_KINDS, SEQUENCE_RECOMMENDER
from shared.models.layout import (
    FP32_FILE,
    INT8_FILE,
    ITEM_TOWER_FILE,
    ITEMS_FILE,
    REPORT_FILE,
    SERVED_FILE,
    SPEC_FILE,
)
from shared.models.triton_client import open_triton
from shared.models.versions import ascii_digits
from shared.paths import triton_model_repository
from shared.rpc.tls import TlsFiles
from shared.training.repository import ADAPTER_SOURCE, COMMITTED_REPOSITORY, install_model_folder

READY = "READY"
TRANSITIONS = ("LOADING", "UNLOADING")
# Where load_versions puts each version's class names for clients without file access
# (the GPU config has no `labels` output): parameter "labels_<version>", a JSON list.
LABELS_PARAMETER = "labels_{version}"


class ModelLoadError(RuntimeError):
    """Triton refused to load the requested versions; the message is Triton's."""


class VersionExistsError(FileExistsError):
    """The version folder already exists: versions are immutable once installed."""


def version_folders(repository: Path | str, model: str) -> list[Path]:
    """The version folders of ``model`` in the repository, lowest version first."""
    model_dir = Path(repository) / model
    if not model_dir.is_dir():
        return []
    return sorted(
        (p for p in model_dir.iterdir() if p.is_dir() and ascii_digits(p.name)),
        key=lambda p: int(p.name),
    )


def next_version(repository: Path | str, model: str) -> int:
    """The number for a new version of ``model``: the highest existing one + 1, at least 1."""
    return max((int(p.name) for p in version_folders(repository, model)), default=0) + 1


def install_version(
    repository: Path | str,
    model: str,
    version: int,
    export_dir: Path | str,
    precision: str | None = None,
) -> Path:
    """Install ``export_dir`` as ``<repository>/<model>/<version>/`` and return that folder.

    Copies model.onnx (or ``model.<precision>.onnx`` when ``precision`` is "fp32" or
    "int8", e.g. fp32 for GPUs, to run on onnxruntime whatever engine the export chose),
    shopsense_model.json, export_report.json (a sequence_recommender also item_tower.onnx
    and items.json) and the adapter as model.py into a staging folder next to the target, then renames it: Triton never
    sees half a version. A repository other than the committed one gets the committed
    config.pbtxt and configs/ it lacks. Raises VersionExistsError if the version exists.
    """
    repository, export_dir = Path(repository), Path(export_dir)
    if version < 1:
        raise ValueError(f"version: must be at least 1, got {version}")
    if not (COMMITTED_REPOSITORY / model / "config.pbtxt").is_file():
        raise ValueError(f"model: no committed config for {model!r} in {COMMITTED_REPOSITORY}")
    onnx_files = {None: SERVED_FILE, "fp32": FP32_FILE, "int8": INT8_FILE}
    if precision not in onnx_files:
        raise ValueError(f"precision: must be None, 'fp32' or 'int8', got {precision!r}")
    sources = {
        SERVED_FILE: export_dir / onnx_files[precision],
        SPEC_FILE: export_dir / SPEC_FILE,
    }
    for name, path in sources.items():
        if not path.is_file():
            raise FileNotFoundError(f"export_dir: {path} is missing (needed as {name})")
    kind = json.loads(sources[SPEC_FILE].read_text(encoding="utf-8"))["kind"]
    if kind != model and model in MODEL_KINDS:
        raise ValueError(f"export_dir: {export_dir} holds a {kind}, not a {model}")
    if (export_dir / REPORT_FILE).is_file():
        sources[REPORT_FILE] = export_dir / REPORT_FILE
    if kind == SEQUENCE_RECOMMENDER:
        # The item tower and the product ids of the model's rows travel with it.
        for name in (ITEM_TOWER_FILE, ITEMS_FILE):
            if not (export_dir / name).is_file():
                raise FileNotFoundError(f"export_dir: {export_dir / name} is missing")
            sources[name] = export_dir / name
    sources["model.py"] = ADAPTER_SOURCE

    model_dir = install_model_folder(model, repository)
    target = model_dir / str(version)
    if target.exists():
        raise VersionExistsError(f"version: {target} already exists; versions are immutable")
    staging = Path(tempfile.mkdtemp(prefix=f".staging-{version}-", dir=model_dir))
    try:
        for name, path in sources.items():
            shutil.copy2(path, staging / name)
        if precision is not None and (staging / REPORT_FILE).is_file():
            # The graph was chosen here, not by the export: onnxruntime runs it.
            report = json.loads((staging / REPORT_FILE).read_text(encoding="utf-8"))
            report.update(engine="onnxruntime", served=precision)
            (staging / REPORT_FILE).write_text(json.dumps(report, indent=2), encoding="utf-8")
        staging.chmod(0o755)
        staging.rename(target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target


def remove_version(repository: Path | str, model: str, version: int) -> None:
    """Delete ``<repository>/<model>/<version>/``; unload it from Triton first.

    The folder is renamed away before it is deleted, so Triton never reads half of it.
    """
    target = Path(repository) / model / str(version)
    if not target.is_dir():
        raise FileNotFoundError(f"version: {target} does not exist")
    doomed = target.with_name(f".removing-{version}-{time.monotonic_ns()}")
    target.rename(doomed)
    shutil.rmtree(doomed)


def triton_endpoints(triton_url: str) -> list[str]:
    """The ``host:port`` endpoints ``triton_url`` names: comma-separated entries, each
    ``host:port`` or ``dns:///name:port`` (every address ``name`` resolves to now, sorted).
    Raises ``ValueError`` naming an entry that is malformed or resolves to nothing."""
    return list(_named_endpoints(triton_url))


def _named_endpoints(triton_url: str) -> dict[str, str]:
    """``triton_endpoints``, each with the name its certificate must carry ("" for an
    entry given as ``host:port``: its host is that name)."""
    endpoints: dict[str, str] = {}
    for entry in (e.strip() for e in triton_url.split(",")):
        if not entry:
            continue
        if not entry.startswith("dns:"):
            endpoints.setdefault(entry, "")
            continue
        name = entry.removeprefix("dns:").lstrip("/")
        host, _, port = name.rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(f"triton_url: expected dns:///name:port (got {entry!r})")
        try:
            infos = socket.getaddrinfo(host, int(port), type=socket.SOCK_STREAM)
        except OSError as exc:
            raise ValueError(f"triton_url: {entry!r} does not resolve ({exc})") from exc
        for address in sorted({info[4][0] for info in infos}):
            endpoints.setdefault(
                f"[{address}]:{port}" if ":" in address else f"{address}:{port}", host
            )
    if not endpoints:
        raise ValueError(f"triton_url: no endpoint in {triton_url!r}")
    return endpoints


def loaded_versions(
    triton_url: str, model: str, timeout_s: float = 10.0, *, tls: TlsFiles | None = None
) -> list[int]:
    """The versions of ``model`` that Triton reports READY, ascending (with several
    endpoints: READY on every one)."""
    ready: set[int] | None = None
    for endpoint, name in _named_endpoints(triton_url).items():
        client = open_triton(endpoint, tls, name)
        try:
            versions = set(_ready_versions(client, model, timeout_s))
        finally:
            client.close()
        ready = versions if ready is None else ready & versions
    return sorted(ready or ())


def _version_states(
    client: grpcclient.InferenceServerClient, model: str, timeout_s: float
) -> dict[int, str]:
    """State of each version of ``model`` Triton knows (READY, LOADING, UNLOADING, ...)."""
    index = client.get_model_repository_index(client_timeout=timeout_s)
    return {
        int(entry.version): entry.state
        for entry in index.models
        if entry.name == model and ascii_digits(entry.version)
    }


def _ready_versions(
    client: grpcclient.InferenceServerClient, model: str, timeout_s: float
) -> list[int]:
    states = _version_states(client, model, timeout_s)
    return sorted(version for version, state in states.items() if state == READY)


def _current_config(
    client: grpcclient.InferenceServerClient, model: str, repository: Path, timeout_s: float
) -> dict:
    """The model's config as Triton serves it, else as the repository's config.pbtxt says."""
    if _ready_versions(client, model, timeout_s):
        return client.get_model_config(model, as_json=True, client_timeout=timeout_s)["config"]
    path = repository / model / "config.pbtxt"
    if not path.is_file():
        raise ModelLoadError(f"model: {model!r} is not loaded and {path} does not exist")
    config = text_format.Parse(path.read_text(encoding="utf-8"), model_config_pb2.ModelConfig())
    return json_format.MessageToDict(config, preserving_proto_field_name=True)


def _with_versions(config: dict, model: str, versions: Sequence[int], repository: Path) -> dict:
    """``config`` pinned to ``versions``, with each version's class names as parameters."""
    config = dict(config)
    config["version_policy"] = {"specific": {"versions": sorted(versions)}}
    parameters = {
        key: value
        for key, value in config.get("parameters", {}).items()
        if not key.startswith(LABELS_PARAMETER.format(version=""))
    }
    for version in versions:
        spec = repository / model / str(version) / SPEC_FILE
        if spec.is_file():
            labels = json.loads(spec.read_text(encoding="utf-8")).get("labels", [])
            if labels:
                key = LABELS_PARAMETER.format(version=version)
                parameters[key] = {"string_value": json.dumps(labels)}
    config["parameters"] = parameters
    return config


def load_versions(
    triton_url: str,
    model: str,
    versions: Sequence[int],
    timeout_s: float = 120.0,
    repository: Path | str | None = None,
    *,
    tls: TlsFiles | None = None,
) -> list[int]:
    """Serve exactly ``versions`` of ``model`` and wait until each is READY.

    The model's current config (Triton's, or the repository's config.pbtxt when it is not
    loaded) is sent with ``version_policy: {specific: {versions}}``; Triton loads the new
    versions and unloads the others. An empty list unloads the model. ``repository`` is
    the model repository as this machine sees it (default: the configured one); it gives
    the config when the model is not loaded and the class names of each version.
    Raises ModelLoadError with Triton's message when a version fails to load; the
    versions served before then are served again (Triton keeps them, or they are
    reloaded). Triton (2.51) keeps listing the broken version as UNAVAILABLE, so with
    --strict-readiness its *server* readiness stays false until the model is unloaded
    or the broken version is loaded successfully; model readiness is not affected.
    Returns the READY versions.
    """
    repository = Path(repository) if repository else triton_model_repository()
    if any(int(v) < 1 for v in versions):
        raise ValueError(f"versions: must all be at least 1, got {list(versions)}")
    # One after the other: a failure stops there (the earlier ones keep the new set, which
    # holds the versions they served before too, unless the call removes one).
    ready: set[int] | None = None
    for endpoint, name in _named_endpoints(triton_url).items():
        client = open_triton(endpoint, tls, name)
        try:
            got = set(_load_on(client, model, versions, timeout_s, repository))
        finally:
            client.close()
        ready = got if ready is None else ready & got
    return sorted(ready or ())


def _load_on(
    client: grpcclient.InferenceServerClient,
    model: str,
    versions: Sequence[int],
    timeout_s: float,
    repository: Path,
) -> list[int]:
    """``load_versions`` on one Triton."""
    if not versions:
        client.unload_model(model, client_timeout=timeout_s)
        _wait(client, model, [], timeout_s)
        return []
    previous = _ready_versions(client, model, timeout_s)
    config = _current_config(client, model, repository, timeout_s)
    try:
        client.load_model(
            model,
            config=json.dumps(_with_versions(config, model, versions, repository)),
            client_timeout=timeout_s,
        )
    except InferenceServerException as error:
        message = error.message() or str(error)
        if previous and _ready_versions(client, model, timeout_s) != previous:
            client.load_model(
                model,
                config=json.dumps(_with_versions(config, model, previous, repository)),
                client_timeout=timeout_s,
            )
        raise ModelLoadError(
            f"{model} versions {sorted(versions)}: Triton failed to load: {message}"
        ) from error
    wanted = sorted(int(v) for v in versions)
    return _wait(client, model, wanted, timeout_s)


def _wait(
    client: grpcclient.InferenceServerClient, model: str, wanted: list[int], timeout_s: float
) -> list[int]:
    """Poll until exactly ``wanted`` are READY and no other version is still unloading
    (with --strict-readiness Triton reports itself not ready until then)."""
    deadline = time.monotonic() + timeout_s
    while True:
        states = _version_states(client, model, timeout_s)
        ready = sorted(version for version, state in states.items() if state == READY)
        settling = [v for v, state in states.items() if state in TRANSITIONS]
        if ready == wanted and not settling:
            return ready
        if time.monotonic() > deadline:
            raise ModelLoadError(
                f"{model}: waited {timeout_s:.0f} s for versions {wanted}; states: {states}"
            )
        time.sleep(0.1)
