"""A stream that sends nothing for minutes (WatchJob through a long offline evaluation)
stays open while the client's keepalive pings it. With gRPC's default server settings a
client pinging more often than every 5 minutes is answered GOAWAY "too_many_pings"."""

from __future__ import annotations

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from shared.rpc import clients
from shared.rpc.server import MIN_CLIENT_PING_INTERVAL_MS, build_server

pytestmark = pytest.mark.integration

# Faster than the services' own clients (clients.KEEPALIVE_MS) so the test is short, still
# slower than the servers accept; pinging whether or not data flows, as a throttled client
# ends up doing. Without the servers' setting the stream is closed after about 16 s.
TEST_KEEPALIVE_MS = 5_500
SILENCE_S = 25.0


def test_the_clients_keepalive_is_one_the_servers_accept() -> None:
    assert clients.KEEPALIVE_MS >= 2 * MIN_CLIENT_PING_INTERVAL_MS
    assert TEST_KEEPALIVE_MS > MIN_CLIENT_PING_INTERVAL_MS


def test_a_silent_stream_outlives_the_clients_keepalive_pings() -> None:
    handle = build_server("keepalive", lambda server: None, [])
    channel = grpc.insecure_channel(
        handle.address,
        options=[
            ("grpc.keepalive_time_ms", TEST_KEEPALIVE_MS),
            ("grpc.http2.max_pings_without_data", 0),
        ],
    )
    try:
        # Health.Watch answers the status now, then nothing until it changes.
        stream = health_pb2_grpc.HealthStub(channel).Watch(
            health_pb2.HealthCheckRequest(service=""), timeout=SILENCE_S
        )
        assert next(stream).status == health_pb2.HealthCheckResponse.NOT_SERVING
        with pytest.raises(grpc.RpcError) as ended:
            next(stream)
        assert ended.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED, ended.value.details()
    finally:
        channel.close()
        handle.stop(grace=0)
