"""Channels to other services, with the shared client interceptor and limits.

A channel is TLS with this process's certificate when ``SHOPSENSE_TLS_*`` name the files
(a service's own certificate is its client certificate: mutual TLS), and sends
``SHOPSENSE_API_KEY`` as ``authorization: Bearer <key>`` when it is set. Both are read
from the environment when the channel is opened unless a :class:`ClientSecurity` is given:
a channel opened after a certificate rotation uses the new files; one opened before keeps
its credentials (``shared.rpc.tls`` says how rotation stays safe with that).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import grpc

from shared.rpc import tracing
from shared.rpc.auth import AUTHORIZATION_KEY
from shared.rpc.interceptors import RequestIdClientInterceptor
from shared.rpc.server import MAX_SEND_BYTES
from shared.rpc.tls import TlsFiles, channel_credentials
from shared.settings import ClientSettings

# A ping on a connection that has said nothing for this long, so a dead peer is found on a
# long silent stream (WatchJob); servers accept one every MIN_CLIENT_PING_INTERVAL_MS.
KEEPALIVE_MS = 30_000


@dataclass(frozen=True)
class ClientSecurity:
    """A channel's TLS files (None: plaintext) and API key ("": none)."""

    tls: TlsFiles | None = None
    api_key: str = ""

    @classmethod
    def from_settings(cls, settings: Any) -> ClientSecurity:
        """From a record with ``tls_cert``, ``tls_key``, ``tls_ca`` (and ``api_key``)."""
        return cls(TlsFiles.from_settings(settings), getattr(settings, "api_key", ""))

    @classmethod
    def from_environment(cls) -> ClientSecurity:
        return cls.from_settings(ClientSettings.load())


def open_channel(target: str, security: ClientSecurity | None = None) -> grpc.Channel:
    """A channel that passes request ids on, and the trace context when tracing is on
    (``shared.rpc.tracing``): TLS and an API key per ``security`` (default: this process's
    environment), plaintext in the embedded default."""
    security = ClientSecurity.from_environment() if security is None else security
    options = [
        # A client takes any answer a server may send, and sends what the server's own
        # limit allows (it answers RESOURCE_EXHAUSTED beyond it).
        ("grpc.max_receive_message_length", MAX_SEND_BYTES),
        ("grpc.max_send_message_length", MAX_SEND_BYTES),
        ("grpc.keepalive_time_ms", KEEPALIVE_MS),
        ("grpc.enable_retries", 1),
        # A restarted service is found again within about two seconds, not gRPC's
        # default of up to two minutes of reconnect backoff.
        ("grpc.initial_reconnect_backoff_ms", 200),
        ("grpc.min_reconnect_backoff_ms", 200),
        ("grpc.max_reconnect_backoff_ms", 2000),
    ]
    if security.tls is not None:
        channel = grpc.secure_channel(target, channel_credentials(security.tls), options=options)
    else:
        channel = grpc.insecure_channel(target, options=options)
    interceptors: list[Any] = [RequestIdClientInterceptor()]
    if security.api_key:
        interceptors.append(ApiKeyClientInterceptor(security.api_key))
    return tracing.traced_channel(grpc.intercept_channel(channel, *interceptors))


class _WithMetadata(grpc.ClientCallDetails):
    def __init__(self, details: grpc.ClientCallDetails, extra: tuple[str, str]) -> None:
        self.method = details.method
        self.timeout = details.timeout
        self.metadata = [*(details.metadata or ()), extra]
        self.credentials = details.credentials
        self.wait_for_ready = getattr(details, "wait_for_ready", None)
        self.compression = getattr(details, "compression", None)


class ApiKeyClientInterceptor(
    grpc.UnaryUnaryClientInterceptor,
    grpc.UnaryStreamClientInterceptor,
    grpc.StreamUnaryClientInterceptor,
    grpc.StreamStreamClientInterceptor,
):
    """Sends ``authorization: Bearer <key>`` on every call, streams included."""

    def __init__(self, key: str) -> None:
        self._header = (AUTHORIZATION_KEY, f"Bearer {key}")

    def _call(self, continuation: Callable[..., Any], details: Any, request: Any) -> Any:
        return continuation(_WithMetadata(details, self._header), request)

    def intercept_unary_unary(self, continuation, client_call_details, request):  # type: ignore[no-untyped-def]
        return self._call(continuation, client_call_details, request)

    def intercept_unary_stream(self, continuation, client_call_details, request):  # type: ignore[no-untyped-def]
        return self._call(continuation, client_call_details, request)

    def intercept_stream_unary(self, continuation, client_call_details, request_iterator):  # type: ignore[no-untyped-def]
        return self._call(continuation, client_call_details, request_iterator)

    def intercept_stream_stream(self, continuation, client_call_details, request_iterator):  # type: ignore[no-untyped-def]
        return self._call(continuation, client_call_details, request_iterator)


def remaining(context: grpc.ServicerContext | None, default: float) -> float:
    """Seconds left of the caller's deadline (``default`` when the caller set none)."""
    if context is None:
        return default
    left = context.time_remaining()
    if left is None or left > 1e6:
        return default
    return max(0.0, left)
