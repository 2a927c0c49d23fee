"""Prometheus metrics: every RPC a server handles, the product's own facts, and /metrics.

RPCs are counted under the names the gRPC Prometheus libraries use (go-grpc-prometheus,
py-grpc-prometheus), so their dashboards and alerts apply as they are:

- ``grpc_server_started_total`` {grpc_type, grpc_service, grpc_method}
- ``grpc_server_handled_total`` {grpc_type, grpc_service, grpc_method, grpc_code}
- ``grpc_server_handling_seconds`` histogram {grpc_type, grpc_service, grpc_method}
- ``grpc_server_msg_received_total`` / ``grpc_server_msg_sent_total``

``grpc_code`` is the status's Python name (``OK``, ``INVALID_ARGUMENT``), as
py-grpc-prometheus writes it (go-grpc-prometheus writes ``InvalidArgument``).

**One registry a service** (``registry(service)``), not the process-wide default: several
servers run in one test process, and each /metrics must show its own service's calls
only. In a deployment one process is one service, so nothing changes there; a service's
code finds its metrics by its name (``counter("feedback", ...)``) without passing a
registry through every constructor. Two servers of the same service in one process (a
test restarting one) share it, which keeps counters monotonic as Prometheus expects.

The per-call cost is a few dict lookups and three or four lock-protected adds: the label
children are resolved once per method (``RpcMetrics.method``), not once per call.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import grpc
from prometheus_client import (
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    start_http_server,
)

# grpc_server_handling_seconds' buckets: prometheus_client's defaults (5 ms to 10 s) with
# 1 and 2.5 ms in front, because a Search at concurrency 1 takes about 5 ms end to end
# and its hops (intent, ranking on a warm cache) 1-3 ms: the defaults would put them all
# in the first bucket and make p50/p99 meaningless.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
UNARY, CLIENT_STREAM, SERVER_STREAM, BIDI_STREAM = (
    "unary",
    "client_stream",
    "server_stream",
    "bidi_stream",
)
_lock = threading.Lock()
_registries: dict[str, CollectorRegistry] = {}
_metrics: dict[tuple[str, str], Any] = {}


def registry(service: str) -> CollectorRegistry:
    """The service's own registry (created on first use), with the process's CPU, memory,
    open files and garbage collection beside its metrics, as a default registry has them."""
    with _lock:
        found = _registries.get(service)
        if found is None:
            found = _registries[service] = CollectorRegistry(auto_describe=True)
            for collector in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
                found.register(collector)
        return found


def _get_or_create(service: str, kind: type, name: str, doc: str, labels: Sequence[str], **kw):  # type: ignore[no-untyped-def]
    reg = registry(service)
    with _lock:
        found = _metrics.get((service, name))
        if found is None:
            found = kind(name, doc, labelnames=tuple(labels), registry=reg, **kw)
            _metrics[(service, name)] = found
        return found


def counter(service: str, name: str, doc: str, labels: Sequence[str] = ()) -> Counter:
    """The service's counter ``name`` (one object however often it is asked for).
    ``name`` is given without ``_total``; prometheus_client exposes it with it."""
    return _get_or_create(service, Counter, name, doc, labels)  # type: ignore[no-any-return]


def gauge(service: str, name: str, doc: str, labels: Sequence[str] = ()) -> Gauge:
    return _get_or_create(service, Gauge, name, doc, labels)  # type: ignore[no-any-return]


def histogram(
    service: str,
    name: str,
    doc: str,
    labels: Sequence[str] = (),
    buckets: Sequence[float] = LATENCY_BUCKETS,
) -> Histogram:
    return _get_or_create(service, Histogram, name, doc, labels, buckets=tuple(buckets))  # type: ignore[no-any-return]


def grpc_type(handler: grpc.RpcMethodHandler) -> str:
    """go-grpc-prometheus's name for the handler's shape."""
    if handler.request_streaming:
        return BIDI_STREAM if handler.response_streaming else CLIENT_STREAM
    return SERVER_STREAM if handler.response_streaming else UNARY


@dataclass
class MethodMetrics:
    """One method's label children, resolved once."""

    started: Any
    seconds: Any
    received: Any
    sent: Any
    _handled: Counter
    _labels: tuple[str, str, str]
    _by_code: dict[grpc.StatusCode, Any] = field(default_factory=dict)

    def handled(self, code: grpc.StatusCode, seconds: float) -> None:
        child = self._by_code.get(code)
        if child is None:
            child = self._by_code[code] = self._handled.labels(*self._labels, code.name)
        child.inc()
        self.seconds.observe(seconds)


class RpcMetrics:
    """The gRPC server metrics of one service (see the module docstring)."""

    def __init__(self, service: str) -> None:
        self.service = service
        labels = ("grpc_type", "grpc_service", "grpc_method")
        self._started = counter(
            service, "grpc_server_started", "RPCs started on the server.", labels
        )
        self._handled = counter(
            service,
            "grpc_server_handled",
            "RPCs completed on the server, regardless of success or failure.",
            (*labels, "grpc_code"),
        )
        self._seconds = histogram(
            service,
            "grpc_server_handling_seconds",
            "Seconds from an RPC's start to its last answer, on the server.",
            labels,
        )
        self._received = counter(
            service, "grpc_server_msg_received", "Messages received by the server.", labels
        )
        self._sent = counter(
            service, "grpc_server_msg_sent", "Messages sent by the server.", labels
        )
        self._methods: dict[tuple[str, str], MethodMetrics] = {}

    def method(self, full_method: str, kind: str) -> MethodMetrics:
        """The children of ``/package.Service/Method`` for an RPC of ``kind``."""
        key = (full_method, kind)
        found = self._methods.get(key)
        if found is None:
            service, _, name = full_method.lstrip("/").rpartition("/")
            labels = (kind, service, name)
            found = MethodMetrics(
                started=self._started.labels(*labels),
                seconds=self._seconds.labels(*labels),
                received=self._received.labels(*labels),
                sent=self._sent.labels(*labels),
                _handled=self._handled,
                _labels=labels,
            )
            self._methods[key] = found
        return found


OFF = "off"


class MetricsEndpoint:
    """The HTTP /metrics endpoint of one service's registry, on a thread of its own."""

    def __init__(self, service: str, address: str) -> None:
        host, _, port = address.rpartition(":")
        host = host.strip("[]") or "0.0.0.0"
        self._server, self._thread = start_http_server(int(port), host, registry(service))
        self.port: int = self._server.server_port
        self.host = host

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::") else self.host
        return f"http://{host}:{self.port}/metrics"

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5.0)


def serve_metrics(service: str, address: str) -> MetricsEndpoint | None:
    """Start ``service``'s /metrics at ``address`` (host:port, port 0 picks a free one);
    None when ``address`` is "off"."""
    if address == OFF:
        return None
    return MetricsEndpoint(service, address)
