"""OpenTelemetry traces across the services, off unless asked for.

On when ``SHOPSENSE_OTLP_ENDPOINT`` is set (``configure``: spans go by OTLP/gRPC to that
collector in batches) or when a test installs its own provider (``install``, e.g. with an
in-memory exporter). Off, nothing is added to a server or a channel: no span, no cost.

On, each server gets opentelemetry-instrumentation-grpc's server interceptor (outermost,
so the shared interceptor runs inside the span and puts the request id on it) and each
channel its client interceptor, which sends the trace context in the call's metadata: one
Search is one trace through gateway, intent, retrieval, ranking (and recommend for the
shopper's profile). Client calls made outside any served call (the background refresh
loops, every few seconds) are not traced: each would start a trace of its own and drown
the searches.

Calls that go through no traced channel (Triton's inference, by tritonclient) get a CLIENT
span of their own from ``client_span``, so the trace shows where a search's time goes
(the query's embedding before retrieval, the cross-encoder inside ranking).

The decision is taken when a server or channel is built, so ``configure``/``install``
come first (``serve_main`` does it before ``create_server``).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import grpc
from opentelemetry import trace
from opentelemetry.instrumentation.grpc import client_interceptor, grpcext, server_interceptor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
from opentelemetry.trace import SpanKind

from shared.rpc.interceptors import current_request_id

REQUEST_ID_ATTRIBUTE = "shopsense.request_id"
SERVICE_ATTRIBUTE = "shopsense.service"
_lock = threading.Lock()
_provider: TracerProvider | None = None
# Not traced on the server: probes every few seconds, and the reflection streams.
_UNTRACED_PREFIXES = ("/grpc.health", "/grpc.reflection")


def configure(service: str, endpoint: str, sample_ratio: float = 1.0) -> TracerProvider | None:
    """Export this process's spans to the OTLP/gRPC collector at ``endpoint``; nothing when
    ``endpoint`` is "". Sampling is decided once per trace, at its root (the gateway):
    the services downstream follow the caller's decision."""
    if not endpoint:
        return None
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

    target = endpoint.split("://", 1)[-1]
    provider = TracerProvider(
        resource=Resource.create({"service.name": f"shopsense-{service}"}),
        sampler=ParentBased(TraceIdRatioBased(sample_ratio)),
    )
    # insecure: the collector is a sidecar or on the cluster network; TLS to it is the
    # collector's own configuration (OTEL_EXPORTER_OTLP_* variables are honoured too).
    insecure = not endpoint.startswith("https://")
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(target, insecure=insecure)))
    install(provider)
    return provider


def install(provider: TracerProvider | None) -> None:
    """Trace with ``provider`` from now on (None: off again; tests put it back)."""
    global _provider
    with _lock:
        _provider = provider


def provider() -> TracerProvider | None:
    """The provider servers and channels built now trace with (None: tracing is off)."""
    return _provider


def enabled() -> bool:
    return _provider is not None


def _traced_method(details: Any) -> bool:
    method = getattr(details, "method", "") or ""
    return not method.startswith(_UNTRACED_PREFIXES)


def server_interceptors() -> list[grpc.ServerInterceptor]:
    """The tracing server interceptor, first in the list; [] when tracing is off."""
    current = _provider
    if current is None:
        return []
    return [server_interceptor(tracer_provider=current, filter_=_traced_method)]


def mark_call(service: str, request_id: str) -> None:
    """Name the service and the request id on the span of the call being served."""
    span = trace.get_current_span()
    if span.is_recording():
        span.set_attribute(SERVICE_ATTRIBUTE, service)
        span.set_attribute(REQUEST_ID_ATTRIBUTE, request_id)


def _client_request_hook(span: Any, _request: Any) -> None:
    request_id = current_request_id()
    if request_id and span.is_recording():
        span.set_attribute(REQUEST_ID_ATTRIBUTE, request_id)


def traced_channel(channel: grpc.Channel) -> grpc.Channel:
    """``channel`` with the tracing client interceptor when tracing is on (as it is)."""
    current = _provider
    if current is None:
        return channel
    traced = client_interceptor(current, request_hook=_client_request_hook)
    return grpcext.intercept_channel(channel, _InCallOnly(traced))  # type: ignore[no-any-return]


class _InCallOnly(grpcext.UnaryClientInterceptor, grpcext.StreamClientInterceptor):
    """The OpenTelemetry client interceptor, for calls made while a span is current (a
    served call); the rest (background loops) go out untraced."""

    def __init__(self, traced: Any) -> None:
        self._traced = traced

    def intercept_unary(self, request, metadata, client_info, invoker):  # type: ignore[no-untyped-def]
        if not _in_call():
            return invoker(request, metadata)
        return self._traced.intercept_unary(request, metadata, client_info, invoker)

    def intercept_stream(self, request_or_iterator, metadata, client_info, invoker):  # type: ignore[no-untyped-def]
        if not _in_call():
            return invoker(request_or_iterator, metadata)
        return self._traced.intercept_stream(request_or_iterator, metadata, client_info, invoker)


def _in_call() -> bool:
    return trace.get_current_span().get_span_context().is_valid


@contextmanager
def client_span(name: str, attributes: Mapping[str, str | int]) -> Iterator[Any]:
    """A CLIENT span ``name`` around an outgoing call made inside a served (traced) call,
    with ``attributes`` and the request id; the span, or None when tracing is off or no
    call is being served. An exception escaping it marks the span as an error."""
    current = _provider
    if current is None or not _in_call():
        yield None
        return
    tracer = current.get_tracer("shopsense")
    with tracer.start_as_current_span(
        name, kind=SpanKind.CLIENT, attributes=dict(attributes)
    ) as span:
        request_id = current_request_id()
        if request_id:
            span.set_attribute(REQUEST_ID_ATTRIBUTE, request_id)
        yield span
