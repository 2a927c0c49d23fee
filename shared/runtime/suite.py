"""Starts the whole suite on one machine: Triton, then every service as its own process.

Used by ``shopsense up`` (``make run``) with the documented ports, and by the system tests
with free ports and a temporary state folder, so the tests exercise exactly what a user
runs. ``stop()`` ends every process (SIGTERM, then SIGKILL after a grace period) and
leaves nothing behind.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from shared.models.triton_server import TritonServer, free_port
from shared.paths import REPO_ROOT, state_dir, triton_model_repository
from shared.rpc.clients import ClientSecurity, open_channel
from shared.rpc.tls import TlsFiles
from shared.settings import METRICS_PORT_OFFSET, PORTS, ClientSettings

# The trainer starts first: it loads the registry's serving versions onto Triton.
SERVICES = ("trainer", "retrieval", "ranking", "recommend", "feedback", "intent", "gateway")


def is_serving(target: str, timeout_s: float = 1.0, security: ClientSecurity | None = None) -> bool:
    """Whether the server at ``target`` answers the health check with SERVING (over TLS
    with ``security``'s certificate when it has one; the health service needs no key)."""
    with open_channel(target, security or ClientSecurity()) as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(), timeout=timeout_s
            )
        except grpc.RpcError:
            return False
    return reply.status == health_pb2.HealthCheckResponse.SERVING


# Starts of the services on newly picked free ports when one was taken before its bind.
PORT_TRIES = 3


@dataclass(frozen=True)
class Endpoints:
    """Where a running suite answers."""

    gateway: str
    intent: str
    retrieval: str
    triton: str
    trainer: str
    feedback: str = ""
    recommend: str = ""
    # Where each service's and Triton's /metrics answer (SHOPSENSE_METRICS_TARGETS' form).
    metrics: str = ""


@contextmanager
def running_suite(
    settings: ClientSettings, say: Callable[[str], None] = print
) -> Iterator[Endpoints]:
    """The suite at the configured addresses when its gateway is SERVING; otherwise one
    started here (as `make run` starts it) and stopped when the block ends."""
    if is_serving(settings.gateway_target, security=ClientSecurity.from_settings(settings)):
        yield Endpoints(
            settings.gateway_target,
            settings.intent_target,
            settings.retrieval_target,
            settings.triton_url,
            settings.trainer_target,
            settings.feedback_target,
            settings.recommend_target,
            settings.metrics_targets,
        )
        return
    say("no suite running: starting one")
    with Suite() as suite:
        yield suite.endpoints()


@dataclass
class Suite:
    """The running suite's processes and addresses."""

    state: Path = field(default_factory=state_dir)
    model_repository: Path = field(default_factory=triton_model_repository)
    ephemeral_ports: bool = False
    triton_grpc_port: int = 8001
    # Triton's metrics port (Triton's default; 0: a free one, as with ephemeral ports).
    triton_metrics_port: int = 8002
    extra_env: dict[str, str] = field(default_factory=dict)
    log_dir: Path | None = None
    ports: dict[str, int] = field(default_factory=dict)
    # Each service's /metrics port.
    metrics_ports: dict[str, int] = field(default_factory=dict)
    triton: TritonServer | None = None
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    _log_dir: Path = field(default_factory=Path)

    def address(self, service: str) -> str:
        return f"127.0.0.1:{self.ports[service]}"

    def endpoints(self) -> Endpoints:
        """Where this suite, started, answers."""
        assert self.triton is not None
        return Endpoints(
            self.address("gateway"),
            self.address("intent"),
            self.address("retrieval"),
            self.triton.grpc_url,
            self.address("trainer"),
            self.address("feedback"),
            self.address("recommend"),
            self.metrics_targets(),
        )

    def _default_ports(self) -> dict[str, int]:
        if self.ephemeral_ports:
            return {name: free_port() for name in SERVICES}
        return {name: PORTS[name] for name in SERVICES}

    def _default_metrics_ports(self) -> dict[str, int]:
        if self.ephemeral_ports:
            return {name: free_port() for name in SERVICES}
        return {name: self.ports[name] + METRICS_PORT_OFFSET for name in SERVICES}

    def metrics_targets(self) -> str:
        """Where each service's and Triton's /metrics answer, as SHOPSENSE_METRICS_TARGETS
        takes them ("gateway=127.0.0.1:51051,...,triton=127.0.0.1:8002")."""
        assert self.triton is not None
        targets = {name: f"127.0.0.1:{port}" for name, port in self.metrics_ports.items()}
        if self.triton.metrics_port:
            targets["triton"] = f"127.0.0.1:{self.triton.metrics_port}"
        return ",".join(f"{name}={target}" for name, target in targets.items())

    def environment(self) -> dict[str, str]:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            [str(REPO_ROOT), str(REPO_ROOT / "shared" / "gen"), env.get("PYTHONPATH", "")]
        ).rstrip(os.pathsep)
        # The databases, the catalog and the training runs follow the state folder.
        env["SHOPSENSE_STATE_DIR"] = str(self.state)
        env["SHOPSENSE_TRITON_MODELS"] = str(self.model_repository)
        assert self.triton is not None
        env["SHOPSENSE_TRITON_URL"] = self.triton.grpc_url
        # One OpenBLAS thread per service process: two cores are shared with Triton.
        env.setdefault("OPENBLAS_NUM_THREADS", "1")
        env.setdefault("OMP_NUM_THREADS", "1")
        for name in SERVICES:
            upper = name.upper()
            env[f"SHOPSENSE_{upper}_LISTEN"] = self.address(name)
            env[f"SHOPSENSE_{upper}_TARGET"] = self.address(name)
            env[f"SHOPSENSE_{upper}_METRICS_LISTEN"] = f"127.0.0.1:{self.metrics_ports[name]}"
        env.update(self.extra_env)
        return env

    def start(self, timeout_s: float = 180.0) -> Suite:
        started = time.monotonic()
        self.state.mkdir(parents=True, exist_ok=True)
        log_dir = self.log_dir or self.state / "logs"
        log_dir.mkdir(parents=True, exist_ok=True)
        self.triton = TritonServer(
            self.model_repository,
            grpc_port=0 if self.ephemeral_ports else self.triton_grpc_port,
            metrics_port=0 if self.ephemeral_ports else self.triton_metrics_port,
            log_file=log_dir / "triton.log",
            # The services' own certificate: with TLS on, Triton asks them for it too.
            tls=TlsFiles.from_environment({**os.environ, **self.extra_env}),
        )
        self.triton.start()
        self._log_dir = log_dir
        # Free ports are picked, then bound by the services: another process may take one
        # in between. Then the services start again on newly picked ports (ephemeral only).
        tries = PORT_TRIES if self.ephemeral_ports else 1
        for attempt in range(tries):
            self.ports = self._default_ports()
            self.metrics_ports = self._default_metrics_ports()
            try:
                for name in SERVICES:
                    self._spawn(name)
                self.wait_serving(timeout_s - (time.monotonic() - started), SERVICES)
                return self
            except RuntimeError as error:
                lost_port = "Address already in use" in str(error)
                if not lost_port or attempt == tries - 1:
                    self.stop()
                    raise
                self._stop_services()
            except BaseException:
                self.stop()
                raise
        return self

    def _spawn(self, name: str) -> None:
        with open(self._log_dir / f"{name}.log", "ab") as log:
            self.processes[name] = subprocess.Popen(
                [sys.executable, "-m", f"services.{name}"],
                cwd=REPO_ROOT,
                env=self.environment(),
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def restart(self, name: str, timeout_s: float = 60.0) -> None:
        """Stop one service gracefully and start it again (its state must survive)."""
        self.stop_service(name)
        self._spawn(name)
        self.wait_serving(timeout_s, [name])

    def security(self) -> ClientSecurity:
        """What a client of this suite's services uses: the services' own certificate
        when ``extra_env`` (or this environment) turns TLS on."""
        return ClientSecurity.from_settings(ClientSettings.load(self.environment()))

    def wait_serving(self, timeout_s: float, names: Sequence[str]) -> None:
        log_dir = self._log_dir
        deadline = time.monotonic() + timeout_s
        security = self.security()
        for name in names:
            while not is_serving(self.address(name), security=security):
                process = self.processes[name]
                if process.poll() is not None:
                    tail = (log_dir / f"{name}.log").read_text(errors="replace")[-3000:]
                    raise RuntimeError(f"{name} exited with {process.returncode}:\n{tail}")
                if time.monotonic() > deadline:
                    tail = (log_dir / f"{name}.log").read_text(errors="replace")[-3000:]
                    raise TimeoutError(f"{name} not SERVING after {timeout_s:.0f} s:\n{tail}")
                time.sleep(0.2)

    def stop_service(self, name: str, grace_s: float = 10.0) -> None:
        process = self.processes.get(name)
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(grace_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def _stop_services(self) -> None:
        for name in reversed(SERVICES):
            self.stop_service(name)

    def stop(self) -> None:
        self._stop_services()
        if self.triton is not None:
            self.triton.stop()

    def __enter__(self) -> Suite:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
