"""The one server bootstrap every service uses.

``build_server`` gives a gRPC server with the standard health service (NOT_SERVING until
``mark_serving``), reflection, the shared interceptors and message-size limits, bound to an
address whose port may be 0 (tests). ``run_until_signal`` serves until SIGTERM or SIGINT,
then flips health to NOT_SERVING and stops with a grace period so in-flight calls finish.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Sequence
from concurrent import futures
from dataclasses import dataclass, field

import grpc
import structlog
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from shared.rpc.interceptors import ServerInterceptor
from shared.rpc.logging import configure_logging
from shared.settings import Settings
from shared.settings import load as load_settings

MAX_MESSAGE_BYTES = 32 * 1024 * 1024
_log = structlog.get_logger("shopsense.rpc")


@dataclass
class ServerHandle:
    """A built server: the grpc.Server, the port it bound and its health servicer."""

    name: str
    server: grpc.Server
    port: int
    health: health.HealthServicer
    service_names: Sequence[str]
    _stopped: threading.Event = field(default_factory=threading.Event)
    _on_stop: list[Callable[[], None]] = field(default_factory=list)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def mark_serving(self) -> None:
        """Health SERVING for the server and each service: call once models and indexes are warm."""
        for name in ("", *self.service_names):
            self.health.set(name, health_pb2.HealthCheckResponse.SERVING)
        _log.info("serving", service=self.name, port=self.port)

    def mark_not_serving(self) -> None:
        for name in ("", *self.service_names):
            self.health.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)

    def on_stop(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` when the server stops (background threads, open files)."""
        self._on_stop.append(callback)

    def stop(self, grace: float = 5.0) -> None:
        """NOT_SERVING first (load balancers stop sending), then let in-flight calls finish."""
        if self._stopped.is_set():
            return
        self._stopped.set()
        self.mark_not_serving()
        self.server.stop(grace).wait()
        for callback in self._on_stop:
            callback()
        _log.info("stopped", service=self.name)


def build_server(
    name: str,
    register: Callable[[grpc.Server], None],
    service_names: Sequence[str],
    address: str = "127.0.0.1:0",
    max_workers: int = 16,
) -> ServerHandle:
    """Build and start a server; ``register`` adds the service's servicers to it."""
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix=name),
        interceptors=[ServerInterceptor(name)],
        options=[
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            ("grpc.so_reuseport", 0),
        ],
        maximum_concurrent_rpcs=max_workers * 8,
    )
    register(server)
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        [*service_names, health.SERVICE_NAME, reflection.SERVICE_NAME], server
    )
    port = server.add_insecure_port(address)
    if port == 0:
        raise RuntimeError(f"{name}: could not bind {address}")
    server.start()
    handle = ServerHandle(name, server, port, health_servicer, service_names)
    handle.mark_not_serving()
    return handle


def serve_when_ready(
    handle: ServerHandle, probe: Callable[[], object], retry_s: float = 1.0
) -> None:
    """Mark SERVING once ``probe`` succeeds (models answer, indexes loaded); retry meanwhile."""
    stop = threading.Event()
    handle.on_stop(stop.set)

    def loop() -> None:
        while not stop.is_set():
            try:
                probe()
            except Exception as exc:  # a dependency still starting
                _log.warning("not_ready", service=handle.name, error=str(exc))
                stop.wait(retry_s)
                continue
            handle.mark_serving()
            return

    threading.Thread(target=loop, name=f"{handle.name}-warmup", daemon=True).start()


def run_until_signal(handle: ServerHandle, grace: float = 5.0) -> None:
    """Block until SIGTERM/SIGINT, then shut down gracefully."""
    done = threading.Event()

    def _on_signal(signum: int, _frame: object) -> None:
        _log.info("signal", service=handle.name, signal=signal.Signals(signum).name)
        done.set()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    done.wait()
    handle.stop(grace)


def serve_main(name: str, create_server: Callable[[Settings], ServerHandle]) -> None:
    """The whole of a service's ``__main__``: settings from the environment, JSON logs, serve."""
    settings = load_settings()
    configure_logging(settings.log_level, name)
    run_until_signal(create_server(settings), settings.shutdown_grace_s)
