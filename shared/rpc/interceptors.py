"""Server and client interceptors shared by every service.

Server side: bind a request id into the logging context, log one line per call, map domain
errors to their status codes and anything unexpected to INTERNAL with a generic message
(the details go to the log, never to the caller), count and time the call
(``shared.rpc.metrics``). Client side: pass the request id on so
one search can be followed through every service's logs.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

import grpc
import structlog

from shared.errors import ShopsenseError
from shared.rpc.metrics import MethodMetrics, RpcMetrics, grpc_type
from shared.rpc.status import status_of

REQUEST_ID_KEY = "x-request-id"
_log = structlog.get_logger("shopsense.rpc")


def current_request_id() -> str:
    """The request id bound for the call being served, or "" outside a call."""
    return str(structlog.contextvars.get_contextvars().get("request_id", ""))


def _request_id_from(context: grpc.ServicerContext) -> str:
    for key, value in context.invocation_metadata() or ():
        if key == REQUEST_ID_KEY and value:
            return str(value)[:64]
    return uuid.uuid4().hex


def _abort_for(exc: BaseException, context: grpc.ServicerContext, method: str) -> None:
    if _status_set(context):
        # context.abort() raised it (an inner interceptor's refusal, or the handler's own):
        # the status stands, and whoever set it logged it.
        raise exc
    if isinstance(exc, ShopsenseError):
        code = status_of(exc)
        _log.info("rpc_error", method=method, code=code.name, error=exc.message)
        context.abort(code, exc.message)
    _log.exception("rpc_internal_error", method=method)
    context.abort(
        grpc.StatusCode.INTERNAL,
        f"internal error; request id {current_request_id()} identifies it in the server logs",
    )


def _status_set(context: grpc.ServicerContext) -> bool:
    code = context.code()
    return isinstance(code, grpc.StatusCode) and code != grpc.StatusCode.OK


class ServerInterceptor(grpc.ServerInterceptor):
    """Request id, call log line, error mapping and (with ``metrics``) the RPC metrics
    around every handler. One interceptor does it all: each one more in the list wraps
    every call in one more layer of Python.

    ``on_call(service, request_id)`` runs at the start of each call (tracing names the
    request on the call's span). Health checks are counted but neither logged nor given
    a request id. It runs outside authentication (``shared.rpc.auth``), so a refused call
    is counted with its code and its refusal is logged with the call's request id."""

    def __init__(
        self,
        service: str,
        metrics: RpcMetrics | None = None,
        on_call: Callable[[str, str], None] | None = None,
    ) -> None:
        self._service = service
        self._metrics = metrics
        self._on_call = on_call

    def _begin(self, context: grpc.ServicerContext) -> None:
        structlog.contextvars.clear_contextvars()
        request_id = _request_id_from(context)
        structlog.contextvars.bind_contextvars(service=self._service, request_id=request_id)
        if self._on_call is not None:
            self._on_call(self._service, request_id)

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Any],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Any:
        handler = continuation(handler_call_details)
        if handler is None:
            return None
        method = handler_call_details.method
        logged = not method.startswith("/grpc.health")
        observed = (
            self._metrics.method(method, grpc_type(handler)) if self._metrics is not None else None
        )
        if not logged and observed is None:
            return handler

        def wrap(behavior: Callable[..., Any], streaming_response: bool) -> Callable[..., Any]:
            def unary_response(request_or_iterator: Any, context: grpc.ServicerContext) -> Any:
                if logged:
                    self._begin(context)
                if observed is not None:
                    observed.started.inc()
                    request_or_iterator = _counted(request_or_iterator, observed, handler)
                started = time.perf_counter()
                failed = True
                try:
                    try:
                        response = behavior(request_or_iterator, context)
                    except grpc.RpcError:
                        raise  # a client call's error the handler let through: UNKNOWN
                    except Exception as exc:
                        if not logged:
                            raise
                        _abort_for(exc, context, method)
                        raise  # unreachable: abort raises
                    failed = False
                finally:
                    if observed is not None:
                        _done(observed, context, failed, time.perf_counter() - started)
                if observed is not None:
                    observed.sent.inc()
                if logged:
                    _log.info(
                        "rpc",
                        method=method,
                        code="OK",
                        ms=round((time.perf_counter() - started) * 1e3, 2),
                    )
                return response

            def stream_response(request_or_iterator: Any, context: grpc.ServicerContext) -> Any:
                if logged:
                    self._begin(context)
                if observed is not None:
                    observed.started.inc()
                    request_or_iterator = _counted(request_or_iterator, observed, handler)
                started = time.perf_counter()
                failed = True
                try:
                    try:
                        for reply in behavior(request_or_iterator, context):
                            if observed is not None:
                                observed.sent.inc()
                            yield reply
                    except grpc.RpcError:
                        raise
                    except Exception as exc:
                        if not logged:
                            raise
                        _abort_for(exc, context, method)
                    failed = False
                finally:
                    if observed is not None:
                        _done(observed, context, failed, time.perf_counter() - started)

            return stream_response if streaming_response else unary_response

        if handler.unary_unary:
            return grpc.unary_unary_rpc_method_handler(
                wrap(handler.unary_unary, False),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.stream_unary:
            return grpc.stream_unary_rpc_method_handler(
                wrap(handler.stream_unary, False),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.unary_stream:
            return grpc.unary_stream_rpc_method_handler(
                wrap(handler.unary_stream, True),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        return grpc.stream_stream_rpc_method_handler(
            wrap(handler.stream_stream, True),
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )


def _counted(requests: Any, observed: MethodMetrics, handler: grpc.RpcMethodHandler) -> Any:
    """The request (counted as one message), or a client stream counting each message."""
    if not handler.request_streaming:
        observed.received.inc()
        return requests

    def counting() -> Any:
        for request in requests:
            observed.received.inc()
            yield request

    return counting()


def _done(
    observed: MethodMetrics, context: grpc.ServicerContext, failed: bool, seconds: float
) -> None:
    """Count the call handled with the status it ends with: the one a handler or the error
    mapping set, else OK (or UNKNOWN, as gRPC answers an escaped exception)."""
    code = context.code()
    if not isinstance(code, grpc.StatusCode):
        if not failed:
            code = grpc.StatusCode.OK
        elif not context.is_active():  # the caller went away mid-stream
            code = grpc.StatusCode.CANCELLED
        else:
            code = grpc.StatusCode.UNKNOWN
    observed.handled(code, seconds)


class _ClientCallDetails(grpc.ClientCallDetails):
    def __init__(self, details: grpc.ClientCallDetails, metadata: list[tuple[str, str]]) -> None:
        self.method = details.method
        self.timeout = details.timeout
        self.metadata = metadata
        self.credentials = details.credentials
        self.wait_for_ready = getattr(details, "wait_for_ready", None)
        self.compression = getattr(details, "compression", None)


class RequestIdClientInterceptor(
    grpc.UnaryUnaryClientInterceptor,
    grpc.StreamUnaryClientInterceptor,
):
    """Adds the current request id to outgoing calls' metadata."""

    def _details(self, details: grpc.ClientCallDetails) -> grpc.ClientCallDetails:
        request_id = current_request_id()
        metadata = list(details.metadata or [])
        if request_id and not any(k == REQUEST_ID_KEY for k, _ in metadata):
            metadata.append((REQUEST_ID_KEY, request_id))
        return _ClientCallDetails(details, metadata)

    def intercept_unary_unary(self, continuation, client_call_details, request):  # type: ignore[no-untyped-def]
        return continuation(self._details(client_call_details), request)

    def intercept_stream_unary(self, continuation, client_call_details, request_iterator):  # type: ignore[no-untyped-def]
        return continuation(self._details(client_call_details), request_iterator)
