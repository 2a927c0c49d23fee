"""Channels to other services, with the shared client interceptor and limits."""

from __future__ import annotations

import grpc

from shared.rpc import tracing
from shared.rpc.interceptors import RequestIdClientInterceptor
from shared.rpc.server import MAX_SEND_BYTES

# A ping on a connection that has said nothing for this long, so a dead peer is found on a
# long silent stream (WatchJob); servers accept one every MIN_CLIENT_PING_INTERVAL_MS.
KEEPALIVE_MS = 30_000


def open_channel(target: str) -> grpc.Channel:
    """An insecure channel (the services talk over a private network) that passes request ids
    on, and the trace context when tracing is on (``shared.rpc.tracing``)."""
    channel = grpc.insecure_channel(
        target,
        options=[
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
        ],
    )
    return tracing.traced_channel(grpc.intercept_channel(channel, RequestIdClientInterceptor()))


def remaining(context: grpc.ServicerContext | None, default: float) -> float:
    """Seconds left of the caller's deadline (``default`` when the caller set none)."""
    if context is None:
        return default
    left = context.time_remaining()
    if left is None or left > 1e6:
        return default
    return max(0.0, left)
