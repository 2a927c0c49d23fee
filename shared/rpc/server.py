"""The one server bootstrap every service uses.

``build_server`` gives a gRPC server with the standard health service (NOT_SERVING until
``mark_serving``), reflection, the shared interceptors and a limit on the size of the
requests it accepts, bound to an address whose port may be 0 (tests); ``build_service``
does it with a service's own settings (address, workers, message limit). ``run_until_signal`` serves until SIGTERM or SIGINT,
then flips health to NOT_SERVING and stops with a grace period so in-flight calls finish.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Sequence
from concurrent import futures
from dataclasses import dataclass, field
from typing import TypeVar

import grpc
import structlog
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from shared.rpc import tracing
from shared.rpc.interceptors import ServerInterceptor
from shared.rpc.logging import configure_logging
from shared.rpc.metrics import OFF, MetricsEndpoint, RpcMetrics, serve_metrics
from shared.settings import ServiceSettings

# What a server may answer with, bytes: its own replies (a retrieval answer of 1,000
# candidates is a few MB). Requests are limited per service (ServiceSettings).
MAX_SEND_BYTES = 32 * 1024 * 1024
# How often a client may ping a connection on which the server sends nothing (a WatchJob
# stream through a long evaluation). With gRPC's default, 5 minutes, a client pinging every
# 30 s (shared.rpc.clients) had its stream closed with GOAWAY "too_many_pings" after a few
# minutes of silence (`make demo DEMO_ARGS=--continuous`, watching an offline evaluation).
MIN_CLIENT_PING_INTERVAL_MS = 5_000
_log = structlog.get_logger("shopsense.rpc")


@dataclass
class ServerHandle:
    """A built server: the grpc.Server, the port it bound and its health servicer."""

    name: str
    server: grpc.Server
    port: int
    health: health.HealthServicer
    service_names: Sequence[str]
    # The HTTP /metrics endpoint (None: SHOPSENSE_{SERVICE}_METRICS_LISTEN is "off").
    metrics: MetricsEndpoint | None = None
    _stopped: threading.Event = field(default_factory=threading.Event)
    _on_stop: list[Callable[[], None]] = field(default_factory=list)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def metrics_port(self) -> int:
        """The port /metrics is served on (0: none)."""
        return self.metrics.port if self.metrics is not None else 0

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
        if self.metrics is not None:  # last: a final scrape still sees the last calls
            self.metrics.stop()
        _log.info("stopped", service=self.name)


def build_server(
    name: str,
    register: Callable[[grpc.Server], None],
    service_names: Sequence[str],
    address: str = "127.0.0.1:0",
    max_workers: int = 16,
    max_message_bytes: int = ServiceSettings.MAX_MESSAGE_BYTES,
    metrics_address: str = OFF,
) -> ServerHandle:
    """Build and start a server; ``register`` adds the service's servicers to it. A request
    over ``max_message_bytes`` is refused with RESOURCE_EXHAUSTED before it is parsed.
    Every call is counted in the service's metrics registry; ``metrics_address`` serves
    them over HTTP (/metrics; "off": not served). Traced when ``shared.rpc.tracing`` is on."""
    traced = tracing.enabled()
    interceptors = [
        # Tracing outermost: the shared interceptor then runs inside the call's span.
        *tracing.server_interceptors(),
        ServerInterceptor(name, RpcMetrics(name), tracing.mark_call if traced else None),
    ]
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix=name),
        interceptors=interceptors,
        options=[
            ("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.max_send_message_length", MAX_SEND_BYTES),
            ("grpc.so_reuseport", 0),
            ("grpc.http2.min_ping_interval_without_data_ms", MIN_CLIENT_PING_INTERVAL_MS),
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
    try:
        metrics = serve_metrics(name, metrics_address)
    except OSError as exc:
        server.stop(0)
        raise RuntimeError(f"{name}: could not serve /metrics on {metrics_address}: {exc}") from exc
    try:
        server.start()
    except BaseException:
        if metrics is not None:
            metrics.stop()
        raise
    handle = ServerHandle(name, server, port, health_servicer, service_names, metrics)
    handle.mark_not_serving()
    return handle


def build_service(
    settings: ServiceSettings,
    register: Callable[[grpc.Server], None],
    service_names: Sequence[str],
) -> ServerHandle:
    """``build_server`` for the service ``settings.NAME`` with its own settings."""
    return build_server(
        settings.NAME,
        register,
        service_names,
        address=settings.listen,
        max_workers=settings.grpc_workers,
        max_message_bytes=settings.max_message_bytes,
        metrics_address=settings.metrics_listen,
    )


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


S = TypeVar("S", bound=ServiceSettings)


def serve_main(settings_class: type[S], create_server: Callable[[S], ServerHandle]) -> None:
    """The whole of a service's ``__main__``: its settings from the environment, JSON logs,
    serve until a signal."""
    settings = settings_class.load()
    configure_logging(settings.log_level, settings.NAME, settings.log_key)
    # Before create_server: its servers and channels are built traced or not.
    tracing.configure(settings.NAME, settings.otlp_endpoint, settings.trace_sample_ratio)
    run_until_signal(create_server(settings), settings.shutdown_grace_s)
