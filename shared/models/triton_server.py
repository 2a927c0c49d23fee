"""Start and stop the real Triton Inference Server (the ``nvidia-pytriton`` wheel's binary).

``TritonServer`` is a context manager used by tests and by
``python -m shared.models.triton_server`` (``make run``). The wheel's binary needs a
prepared environment, built here:

- the python-backend stub links libpython, so the interpreter's LIBDIR and the wheel's
  ``nvidia_pytriton.libs`` go on LD_LIBRARY_PATH;
- the backends folder and the stub for this Python version must sit in ONE backend
  directory, copied once into a cache under ``state_dir()/triton-backends``;
- the venv's ``bin`` goes first on PATH (the stub finds its ``sys.prefix`` from it) and
  the repo root on PYTHONPATH (the adapters import ``shared``);
- a crashed run leaves shared-memory regions in ``/dev/shm``; regions no live process
  maps are removed on start.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
import weakref
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

from shared.models.versions import ascii_digits
from shared.paths import REPO_ROOT, state_dir, triton_model_repository
from shared.rpc.tls import TlsFiles

SHM_DIR = Path("/dev/shm")
SHM_PREFIX = "triton_python_backend_shm_region"
_OWNED_PREFIX = re.compile(rf"^{SHM_PREFIX}_shopsense(\d+)_")
# With TLS, Triton's HTTP endpoint (which has no TLS) answers health checks only (the
# kubelet's probes): every other API asks for a header whose value is a random string made
# at start and never written anywhere, so no caller can load models or infer over HTTP.
HTTP_API_CLOSED_WITH_TLS = (
    "metadata,inference,shared-memory,model-config,model-repository,statistics,trace,logging"
)


def pytriton_dist_dir() -> Path:
    """The wheel's ``pytriton/tritonserver`` folder (binary, backends, stubs)."""
    import pytriton

    return Path(pytriton.__file__).resolve().parent / "tritonserver"


def pytriton_libs_dir() -> Path:
    """The wheel's bundled shared libraries (``site-packages/nvidia_pytriton.libs``)."""
    return pytriton_dist_dir().parent.parent / "nvidia_pytriton.libs"


def prepare_backend_directory(cache: Path | None = None) -> Path:
    """A backend directory holding the python backend and this Python's stub.

    Triton looks for ``<dir>/python/triton_python_backend_stub`` next to
    ``libtriton_python.so``; the wheel keeps stubs per Python version elsewhere.
    """
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    cache = cache or state_dir() / "triton-backends" / version
    source = pytriton_dist_dir()
    stub_source = source / "python_backend_stubs" / version / "triton_python_backend_stub"
    if not stub_source.is_file():
        raise FileNotFoundError(f"no python backend stub for Python {version}: {stub_source}")
    stub = cache / "python" / "triton_python_backend_stub"
    marker = cache / ".source"
    fingerprint = f"{source} {stub_source.stat().st_mtime_ns} {stub_source.stat().st_size}"
    if stub.is_file() and marker.is_file() and marker.read_text() == fingerprint:
        return cache
    # Build next to the cache and swap in, so concurrent starts never see half a copy.
    cache.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=cache.parent))
    shutil.copytree(source / "backends", staging, dirs_exist_ok=True)
    shutil.copy2(stub_source, staging / "python" / "triton_python_backend_stub")
    (staging / ".source").write_text(fingerprint)
    shutil.rmtree(cache, ignore_errors=True)
    try:
        staging.rename(cache)
    except OSError:  # another process won the race: use its copy
        shutil.rmtree(staging, ignore_errors=True)
    return cache


def discover_models(repository: Path) -> list[str]:
    """Model folders of ``repository`` with a config.pbtxt and at least one version."""
    if not repository.is_dir():
        return []
    return sorted(
        model.name
        for model in repository.iterdir()
        if (model / "config.pbtxt").is_file()
        and any(child.is_dir() and ascii_digits(child.name) for child in model.iterdir())
    )


def free_port() -> int:
    """A TCP port that was free a moment ago (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _mapped_shm_files() -> set[str] | None:
    """Names of /dev/shm files any process maps, or None if some process is unreadable."""
    names: set[str] = set()
    complete = True
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            maps = (proc / "maps").read_text()
        except (FileNotFoundError, ProcessLookupError):
            continue
        except OSError:
            complete = False
            continue
        for line in maps.splitlines():
            at = line.find("/dev/shm/")
            if at >= 0:
                names.add(line[at + len("/dev/shm/") :].removesuffix(" (deleted)"))
    return names if complete else None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def clean_stale_shm_regions() -> list[str]:
    """Remove python-backend shared-memory regions whose owner died; return their names.

    A region is stale when no live process maps it. Where /proc cannot tell (another
    user's processes), only our own regions whose launcher pid is dead are removed.
    """
    mapped = _mapped_shm_files()
    removed = []
    for region in SHM_DIR.glob(f"{SHM_PREFIX}*"):
        if mapped is not None:
            stale = region.name not in mapped
        else:
            owned = _OWNED_PREFIX.match(region.name)
            stale = owned is not None and not _pid_alive(int(owned.group(1)))
        if stale:
            with contextlib.suppress(FileNotFoundError):
                region.unlink()
                removed.append(region.name)
    return removed


class TritonServerError(RuntimeError):
    """Triton did not start, died, or did not get its models ready."""


class TritonServer:
    """A ``tritonserver`` child process serving a model repository over gRPC.

    Ports given as 0 are picked free; ``http_port``/``metrics_port`` None turns HTTP or
    metrics off. ``models`` None loads every model folder that has a version. ``address``
    is where Triton listens (loopback by default; "0.0.0.0" in a container).
    """

    def __init__(
        self,
        model_repository: Path | str | None = None,
        models: Sequence[str] | None = None,
        grpc_port: int = 0,
        http_port: int | None = None,
        metrics_port: int | None = None,
        startup_timeout_s: float = 120.0,
        log_file: Path | str | None = None,
        extra_args: Sequence[str] = (),
        address: str = "127.0.0.1",
        tls: TlsFiles | None = None,
    ) -> None:
        self.model_repository = Path(model_repository or triton_model_repository()).resolve()
        self.models = list(models) if models is not None else None
        self._requested = (grpc_port, http_port, metrics_port)
        self.startup_timeout_s = startup_timeout_s
        self.log_file = Path(log_file) if log_file else None
        self.extra_args = list(extra_args)
        self.address = address
        self.tls = tls
        self.grpc_port = 0
        # Triton's HTTP port once started (health, and with TLS nothing else); 0: off.
        self.http_port = 0
        # Triton's Prometheus metrics (HTTP /metrics) once started; 0: off.
        self.metrics_port = 0
        self.startup_seconds: float | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._shm_prefix = ""
        self._finalizer: weakref.finalize | None = None

    # -- public ---------------------------------------------------------------------

    @property
    def grpc_url(self) -> str:
        """``127.0.0.1:PORT`` of the gRPC endpoint (after start)."""
        if not self.grpc_port:
            raise TritonServerError("server not started")
        return f"127.0.0.1:{self.grpc_port}"

    @property
    def pid(self) -> int | None:
        """Process id of tritonserver while it runs."""
        return self._process.pid if self._process else None

    def is_running(self) -> bool:
        """Whether the tritonserver process is alive."""
        return self._process is not None and self._process.poll() is None

    def start(self) -> TritonServer:
        """Start tritonserver and wait until the server and every model are ready.

        Raises TritonServerError with the tail of Triton's log if it exits or times out.
        """
        if self.is_running():
            return self
        models = self.models if self.models is not None else discover_models(self.model_repository)
        if not models:
            raise TritonServerError(f"no model with a version folder in {self.model_repository}")
        self.models = models
        if not _another_server_of_ours_running():
            clean_stale_shm_regions()
        # A port picked free can be taken before Triton binds it: retry a few times.
        attempts = 3 if 0 in self._requested else 1
        for attempt in range(attempts):
            try:
                self._launch(models)
                return self
            except _PortInUse:
                if attempt == attempts - 1:
                    raise
        return self

    def stop(self, grace_s: float = 30.0) -> None:
        """SIGTERM, wait up to ``grace_s``, then SIGKILL; leaves no process behind."""
        process, self._process = self._process, None
        if self._finalizer is not None:
            self._finalizer.detach()
            self._finalizer = None
        if process is not None:
            _terminate(process, grace_s)
        self._remove_own_shm()

    def log_tail(self, lines: int = 40) -> str:
        """The last lines of Triton's log, for error messages."""
        if not self.log_file or not self.log_file.is_file():
            return ""
        return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])

    def __enter__(self) -> TritonServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- internals ------------------------------------------------------------------

    def _command(self, models: Sequence[str], backend_dir: Path) -> list[str]:
        grpc_port, http_port, metrics_port = self._requested
        self.grpc_port = grpc_port or free_port()
        args = [
            str(pytriton_dist_dir() / "bin" / "tritonserver"),
            f"--model-repository={self.model_repository}",
            f"--backend-directory={backend_dir}",
            f"--cache-directory={pytriton_dist_dir() / 'caches'}",
            "--model-control-mode=explicit",
            *[f"--load-model={name}" for name in models],
            f"--grpc-port={self.grpc_port}",
            f"--grpc-address={self.address}",
            "--log-verbose=0",
            "--exit-on-error=true",
            "--strict-readiness=true",
            # Regions are named after this process so a later start can tell whose they are.
            f"--backend-config=python,shm-region-prefix-name={self._shm_prefix}",
            "--backend-config=python,shm-default-byte-size=4194304",
            "--backend-config=python,shm-growth-byte-size=1048576",
        ]
        if self.tls is not None:
            args += [
                "--grpc-use-ssl-mutual=true",
                f"--grpc-server-cert={self.tls.cert}",
                f"--grpc-server-key={self.tls.key}",
                f"--grpc-root-cert={self.tls.ca}",
            ]
        if http_port is None:
            args.append("--allow-http=false")
        else:
            self.http_port = http_port or free_port()
            args += [f"--http-port={self.http_port}", f"--http-address={self.address}"]
            if self.tls is not None:
                closed = f"{HTTP_API_CLOSED_WITH_TLS}:shopsense-closed={secrets.token_hex(16)}"
                args.append(f"--http-restricted-api={closed}")
        if metrics_port is None:
            args.append("--allow-metrics=false")
        else:
            self.metrics_port = metrics_port or free_port()
            args += [f"--metrics-port={self.metrics_port}", "--allow-gpu-metrics=false"]
        return args + self.extra_args

    def _environment(self) -> dict[str, str]:
        env = os.environ.copy()
        libdir = sysconfig.get_config_var("LIBDIR") or ""
        ld_paths = [libdir, str(pytriton_libs_dir()), env.get("LD_LIBRARY_PATH", "")]
        env["LD_LIBRARY_PATH"] = ":".join(p for p in ld_paths if p)
        venv_bin = str(Path(sys.prefix) / "bin")
        env["PATH"] = ":".join(p for p in (venv_bin, env.get("PATH", "")) if p)
        env["PYTHONPATH"] = ":".join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p)
        # The adapters set their own onnxruntime budget; keep BLAS from adding threads.
        env.setdefault("OMP_NUM_THREADS", "1")
        env.setdefault("OPENBLAS_NUM_THREADS", "1")
        return env

    def _launch(self, models: Sequence[str]) -> None:
        backend_dir = prepare_backend_directory()
        self._shm_prefix = f"{SHM_PREFIX}_shopsense{os.getpid()}_{secrets.token_hex(3)}_"
        if self.log_file is None:
            logs = state_dir() / "logs"
            logs.mkdir(parents=True, exist_ok=True)
            fd, name = tempfile.mkstemp(prefix="tritonserver-", suffix=".log", dir=logs)
            os.close(fd)
            self.log_file = Path(name)
        command = self._command(models, backend_dir)
        started = time.perf_counter()
        with self.log_file.open("ab") as log:
            # Own session: stop() can signal tritonserver and its stubs as one group.
            self._process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self._environment(),
                start_new_session=True,
            )
        self._finalizer = weakref.finalize(self, _terminate, self._process, 10.0)
        try:
            self._wait_ready(models)
        except BaseException:
            self.stop(grace_s=10.0)
            raise
        self.startup_seconds = time.perf_counter() - started

    def _wait_ready(self, models: Sequence[str]) -> None:
        from tritonclient.utils import InferenceServerException

        from shared.models.triton_client import open_triton

        deadline = time.monotonic() + self.startup_timeout_s
        client = open_triton(self.grpc_url, self.tls)
        try:
            while True:
                assert self._process is not None
                code = self._process.poll()
                if code is not None:
                    tail = self.log_tail()
                    if "Address already in use" in tail:
                        raise _PortInUse(tail)
                    raise TritonServerError(
                        f"tritonserver exited with status {code} before it was ready; "
                        f"log {self.log_file}:\n{tail}"
                    )
                with contextlib.suppress(InferenceServerException):
                    if client.is_server_ready(client_timeout=2.0) and all(
                        client.is_model_ready(name, client_timeout=2.0) for name in models
                    ):
                        return
                if time.monotonic() > deadline:
                    raise TritonServerError(
                        f"tritonserver not ready after {self.startup_timeout_s:.0f} s "
                        f"(models {', '.join(models)}); log {self.log_file}:\n{self.log_tail()}"
                    )
                time.sleep(0.2)
        finally:
            client.close()

    def _remove_own_shm(self) -> None:
        if self._shm_prefix:
            for region in SHM_DIR.glob(f"{self._shm_prefix}*"):
                with contextlib.suppress(FileNotFoundError):
                    region.unlink()


class _PortInUse(TritonServerError):
    pass


def _terminate(process: subprocess.Popen[bytes], grace_s: float) -> None:
    """SIGTERM tritonserver, then SIGKILL its whole process group if it lingers."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    # Stubs outlive a killed server for a few seconds: end the rest of its group now.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)


def _another_server_of_ours_running() -> bool:
    """Whether some tritonserver started from this wheel is alive (then keep its shm)."""
    binary = str(pytriton_dist_dir() / "bin" / "tritonserver")
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            if os.readlink(proc / "exe") == binary:
                return True
    return False


def main(argv: list[str] | None = None) -> int:
    """Run Triton in the foreground until SIGINT or SIGTERM."""
    parser = argparse.ArgumentParser(description="Run Triton on the model repository.")
    parser.add_argument("--repository", type=Path, default=None)
    parser.add_argument("--grpc-port", type=int, default=8001, help="0 picks a free port")
    parser.add_argument("--address", default="127.0.0.1", help="listen address")
    parser.add_argument("--http-port", type=int, default=None, help="default: HTTP off")
    parser.add_argument("--metrics-port", type=int, default=None, help="default: metrics off")
    parser.add_argument("--models", nargs="*", default=None, help="default: every exported model")
    parser.add_argument("--timeout", type=float, default=180.0, help="start-up timeout, seconds")
    args = parser.parse_args(argv)
    try:
        # Mutual TLS on gRPC when SHOPSENSE_TLS_CERT/KEY/CA name files, as for the services.
        tls = TlsFiles.from_environment(os.environ)
    except ValueError as error:
        print(error, file=sys.stderr)
        return 2

    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    server = TritonServer(
        args.repository,
        args.models,
        grpc_port=args.grpc_port,
        http_port=args.http_port,
        metrics_port=args.metrics_port,
        startup_timeout_s=args.timeout,
        address=args.address,
        tls=tls,
    )
    try:
        server.start()
    except TritonServerError as error:
        print(error, file=sys.stderr)
        return 1
    print(
        f"Triton ready on {server.grpc_url} in {server.startup_seconds:.1f} s "
        f"(models: {', '.join(server.models or [])}; log {server.log_file})",
        flush=True,
    )
    try:
        while not stop.wait(1.0):
            if not server.is_running():
                print(f"tritonserver exited; log tail:\n{server.log_tail()}", file=sys.stderr)
                return 1
    finally:
        server.stop()
        print("Triton stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
