"""The observability settings' defaults: /metrics beside each gRPC port (never colliding
when servers take free ports), "off" turns it off, tracing is off unless configured."""

from __future__ import annotations

import grpc
import pytest

from shared.rpc import tracing
from shared.rpc.clients import open_channel
from shared.settings import PORTS, ClientSettings, GatewaySettings, RetrievalSettings

pytestmark = pytest.mark.unit


def test_metrics_listen_is_the_grpc_port_plus_1000_and_port_0_stays_0() -> None:
    assert GatewaySettings.load({}).metrics_listen == f"127.0.0.1:{PORTS['gateway'] + 1000}"
    assert RetrievalSettings.load({}, listen="0.0.0.0:50053").metrics_listen == "0.0.0.0:51053"
    assert GatewaySettings.load({}, listen="127.0.0.1:0").metrics_listen == "127.0.0.1:0"
    env = {"SHOPSENSE_GATEWAY_METRICS_LISTEN": "off"}
    assert GatewaySettings.load(env).metrics_listen == "off"


def test_a_malformed_metrics_address_is_refused_naming_the_variable() -> None:
    with pytest.raises(ValueError, match="SHOPSENSE_GATEWAY_METRICS_LISTEN"):
        GatewaySettings.load({"SHOPSENSE_GATEWAY_METRICS_LISTEN": "9090"})


def test_tracing_is_off_by_default() -> None:
    settings = GatewaySettings.load({})
    assert settings.otlp_endpoint == ""
    assert tracing.configure("gateway", settings.otlp_endpoint) is None
    assert not tracing.enabled()
    assert tracing.server_interceptors() == []
    channel = open_channel("127.0.0.1:9")
    try:  # only the request id interceptor: no OpenTelemetry wrapper
        assert type(channel).__module__ == grpc._interceptor.__name__
    finally:
        channel.close()


def test_the_client_finds_metrics_beside_each_target_and_triton_at_8002() -> None:
    targets = dict(item.split("=") for item in ClientSettings.load({}).metrics_targets.split(","))
    assert targets["gateway"] == "127.0.0.1:51051"
    assert targets["recommend"] == "127.0.0.1:51057"
    assert targets["triton"] == "127.0.0.1:8002"
