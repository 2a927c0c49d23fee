"""The one server bootstrap every service uses.

``build_server`` gives a gRPC server with the standard health service (NOT_SERVING until
``mark_serving``), reflection, the shared interceptors and a limit on the size of the
requests it accepts, bound to an address whose port may be 0 (tests); ``build_service``
does it with a service's own settings (address, workers, message limit, security).
``run_until_signal`` serves until SIGTERM or SIGINT, then flips health to NOT_SERVING and
stops with a grace period so in-flight calls finish.

Security (:class:`ServerSecurity`, README section Security): TLS with client certificates
on every listener (``shared.rpc.tls``), API keys, scopes and limits (``shared.rpc.auth``,
the first interceptor), and up to two more listeners of the same servicers: the operator
listener (``SHOPSENSE_{SERVICE}_OPERATOR_LISTEN``, its own grpc.Server, since a gRPC
Python handler cannot tell which port a call came in on) and a plaintext listener with
the health service only (``SHOPSENSE_{SERVICE}_HEALTH_LISTEN``: Kubernetes' gRPC probes
speak no TLS). The health status is one servicer shared by all three.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Sequence
from concurrent import futures
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import grpc
import structlog
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from shared.rpc import tracing
from shared.rpc.auth import (
    ALL,
    MAIN,
    OPERATOR,
    OPERATOR_SCOPES,
    STOREFRONT_SCOPES,
    AuthInterceptor,
    AuthPolicy,
    KeyLimiter,
    KeyStore,
    Limits,
    service_scopes,
)
from shared.rpc.interceptors import ServerInterceptor
from shared.rpc.logging import configure_logging
from shared.rpc.metrics import OFF, MetricsEndpoint, RpcMetrics, serve_metrics
from shared.rpc.tls import TLS_VARIABLES, TlsFiles, server_credentials
from shared.settings import ServiceSettings

# What a server may answer with, bytes: its own replies (a retrieval answer of 1,000
# candidates is a few MB). Requests are limited per service (ServiceSettings).
MAX_SEND_BYTES = 32 * 1024 * 1024
# How often a client may ping a connection on which the server sends nothing (a WatchJob
# stream through a long evaluation). With gRPC's default, 5 minutes, a client pinging every
# 30 s (shared.rpc.clients) had its stream closed with GOAWAY "too_many_pings" after a few
# minutes of silence (`make demo DEMO_ARGS=--continuous`, watching an offline evaluation).
MIN_CLIENT_PING_INTERVAL_MS = 5_000
# The operator listener's and the health listener's worker threads: operators' calls are
# few, and a health check takes microseconds.
OPERATOR_WORKERS, HEALTH_WORKERS = 4, 2
_log = structlog.get_logger("shopsense.rpc")


@dataclass(frozen=True)
class ServerSecurity:
    """TLS, keys, limits and extra listeners of a server; the default is the embedded one:
    plaintext, no keys, one listener."""

    tls: TlsFiles | None = None
    keys_file: Path | None = None
    limits: Limits = field(default_factory=Limits)
    operator_address: str = ""
    health_address: str = ""
    # The operator listener's variable, named in refusals on the main listener.
    operator_variable: str = ""
    max_concurrent_streams: int = 100
    max_connection_idle_s: float = 0.0

    @classmethod
    def from_settings(
        cls, settings: ServiceSettings, service_names: Sequence[str]
    ) -> ServerSecurity:
        """The security ``settings`` ask for; in production, ValueError naming every
        variable a production server needs and lacks (it then refuses to start)."""
        tls = TlsFiles.from_settings(settings)
        operator_variable = f"SHOPSENSE_{settings.NAME.upper()}_OPERATOR_LISTEN"
        check_production(settings, service_names, databases=False)
        return cls(
            tls=tls,
            keys_file=Path(settings.api_keys_file) if settings.api_keys_file else None,
            limits=Limits(
                settings.rate_limit_per_s,
                settings.rate_limit_burst,
                settings.max_streams_per_key,
                settings.stream_idle_s,
            ),
            operator_address=settings.operator_listen,
            health_address=settings.health_listen,
            operator_variable=operator_variable,
            max_concurrent_streams=settings.max_concurrent_streams,
            max_connection_idle_s=settings.max_connection_idle_s,
        )


def check_production(
    settings: ServiceSettings, service_names: Sequence[str], *, databases: bool = True
) -> None:
    """In production, ValueError naming every variable the server lacks: TLS, keys and the
    operator listener (``production_problems``) and, with ``databases`` (the server opens
    its stores from the settings), a shared database for each ``*_DB_URL``. A server calls
    it before it opens anything; nothing in the embedded mode."""
    if not settings.production:
        return
    problems = production_problems(
        settings.NAME,
        service_names,
        tls=TlsFiles.from_settings(settings) is not None,
        keys=bool(settings.api_keys_file),
        operator=bool(settings.operator_listen),
    )
    if databases:
        problems += settings.shared_database_problems()
    if problems:
        raise ValueError(
            f"{settings.NAME}: SHOPSENSE_MODE=production refuses to start: " + "; ".join(problems)
        )


def production_problems(
    name: str, service_names: Sequence[str], *, tls: bool, keys: bool, operator: bool
) -> list[str]:
    """What a production server lacks: TLS always; a keys file when it serves storefront
    or operator RPCs; an operator listener when it serves operator RPCs."""
    scopes = service_scopes(list(service_names), name)
    problems = []
    if not tls:
        problems.append(f"TLS is required: set {', '.join(TLS_VARIABLES)} (PEM files)")
    if not keys and scopes & (STOREFRONT_SCOPES | OPERATOR_SCOPES):
        problems.append(
            "API keys are required (it serves storefront or operator RPCs): set "
            "SHOPSENSE_API_KEYS_FILE"
        )
    if not operator and scopes & OPERATOR_SCOPES:
        problems.append(
            "operator RPCs need their own listener: set "
            f"SHOPSENSE_{name.upper()}_OPERATOR_LISTEN (host:port)"
        )
    return problems


@dataclass
class ServerHandle:
    """A built server: the grpc.Server, the port it bound and its health servicer; the
    operator and health listeners' servers and ports when configured (else port 0)."""

    name: str
    server: grpc.Server
    port: int
    health: health.HealthServicer
    service_names: Sequence[str]
    # The HTTP /metrics endpoint (None: SHOPSENSE_{SERVICE}_METRICS_LISTEN is "off").
    metrics: MetricsEndpoint | None = None
    operator_port: int = 0
    health_port: int = 0
    tls: bool = False
    _listeners: list[grpc.Server] = field(default_factory=list)
    _stopped: threading.Event = field(default_factory=threading.Event)
    _on_stop: list[Callable[[], None]] = field(default_factory=list)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def metrics_port(self) -> int:
        """The port /metrics is served on (0: none)."""
        return self.metrics.port if self.metrics is not None else 0

    @property
    def operator_address(self) -> str:
        """The operator listener, or the main one when there is none."""
        return f"127.0.0.1:{self.operator_port}" if self.operator_port else self.address

    @property
    def health_address(self) -> str:
        return f"127.0.0.1:{self.health_port}" if self.health_port else ""

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
        stopping = [server.stop(grace) for server in (self.server, *self._listeners)]
        for event in stopping:
            event.wait()
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
    security: ServerSecurity | None = None,
) -> ServerHandle:
    """Build and start a server; ``register`` adds the service's servicers to it (once per
    listener: the same servicer objects). A request over ``max_message_bytes`` is refused
    with RESOURCE_EXHAUSTED before it is parsed. Every call, refused ones included, is
    counted in the service's metrics registry; ``metrics_address`` serves them over HTTP
    (/metrics; "off": not served). Traced when ``shared.rpc.tracing`` is on."""
    security = security or ServerSecurity()
    keys = KeyStore(security.keys_file) if security.keys_file else None
    policy = AuthPolicy(
        name,
        keys,
        tls=security.tls is not None,
        operator_variable=security.operator_variable,
        limiter=KeyLimiter(security.limits),
    )
    options = [
        ("grpc.max_receive_message_length", max_message_bytes),
        ("grpc.max_send_message_length", MAX_SEND_BYTES),
        ("grpc.so_reuseport", 0),
        ("grpc.http2.min_ping_interval_without_data_ms", MIN_CLIENT_PING_INTERVAL_MS),
        ("grpc.max_concurrent_streams", security.max_concurrent_streams),
    ]
    if security.max_connection_idle_s > 0:
        options.append(("grpc.max_connection_idle_ms", int(security.max_connection_idle_s * 1e3)))
    health_servicer = health.HealthServicer()

    def listener(workers: int, role: str) -> grpc.Server:
        server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix=f"{name}-{role}"),
            interceptors=[
                # Tracing outermost; the shared interceptor inside the call's span (request
                # id, log line, metrics); then authentication, so a refusal is counted in
                # grpc_server_handled_total with its code like any other status.
                *tracing.server_interceptors(),
                ServerInterceptor(name, rpc_metrics, tracing.mark_call if traced else None),
                AuthInterceptor(policy, role),
            ],
            options=options,
            maximum_concurrent_rpcs=workers * 8,
        )
        register(server)
        health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
        reflection.enable_server_reflection(
            [*service_names, health.SERVICE_NAME, reflection.SERVICE_NAME], server
        )
        return server

    def bind(server: grpc.Server, where: str, secure: bool = True) -> int:
        if security.tls is not None and secure:
            # Credentials of their own for each listener: gRPC hands a dynamic
            # credential's initial certificate to the first server that uses it only.
            port = server.add_secure_port(where, server_credentials(security.tls)[0])
        else:
            port = server.add_insecure_port(where)
        if port == 0:
            raise RuntimeError(f"{name}: could not bind {where}")
        return port

    traced = tracing.enabled()
    rpc_metrics = RpcMetrics(name)
    main = listener(max_workers, MAIN if security.operator_address else ALL)
    port = bind(main, address)
    handle = ServerHandle(name, main, port, health_servicer, service_names)
    try:
        handle.metrics = serve_metrics(name, metrics_address)
    except OSError as exc:
        raise RuntimeError(f"{name}: could not serve /metrics on {metrics_address}: {exc}") from exc
    handle.tls = security.tls is not None
    if security.operator_address:
        operator = listener(OPERATOR_WORKERS, OPERATOR)
        handle.operator_port = bind(operator, security.operator_address)
        handle._listeners.append(operator)
    if security.health_address:
        probes = grpc.server(
            futures.ThreadPoolExecutor(HEALTH_WORKERS, thread_name_prefix=f"{name}-health")
        )
        health_pb2_grpc.add_HealthServicer_to_server(health_servicer, probes)
        handle.health_port = bind(probes, security.health_address, secure=False)
        handle._listeners.append(probes)
    try:
        for server in (main, *handle._listeners):
            server.start()
    except BaseException:
        if handle.metrics is not None:
            handle.metrics.stop()
        raise
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
        security=ServerSecurity.from_settings(settings, service_names),
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
