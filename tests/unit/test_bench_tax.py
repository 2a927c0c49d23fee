"""`make bench`'s account of where the suite's time goes (shared.bench.tax): a real server's
/metrics read around real calls, Triton's metrics text, a real process found by its command
line, and the two tables' arithmetic."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
from shopsense.intent.v1 import intent_service_pb2, intent_service_pb2_grpc

from shared.bench import tax
from shared.models.triton_server import free_port
from shared.rpc.clients import open_channel
from shared.rpc.server import build_server

INTENT = intent_service_pb2.DESCRIPTOR.services_by_name["IntentService"].full_name


class _SlowIntent(intent_service_pb2_grpc.IntentServiceServicer):
    """Spends 20 ms of this thread's CPU on every Classify (the process's CPU clock also
    counts gRPC's other threads, and could run out sooner than 20 ms of wall time)."""

    def Classify(self, request, context):  # type: ignore[no-untyped-def]
        until = time.thread_time() + 0.02
        while time.thread_time() < until:
            pass
        return intent_service_pb2.ClassifyResponse()


def test_a_servers_calls_time_and_cpu_are_read_from_its_metrics_around_the_calls(
    tmp_path: Path,
) -> None:
    metrics = f"127.0.0.1:{free_port()}"
    handle = build_server(
        "intent",
        lambda s: intent_service_pb2_grpc.add_IntentServiceServicer_to_server(_SlowIntent(), s),
        [INTENT],
        metrics_address=metrics,
    )
    handle.mark_serving()
    try:
        stub = intent_service_pb2_grpc.IntentServiceStub(open_channel(handle.address))
        request = intent_service_pb2.ClassifyRequest(query="oak desk")
        stub.Classify(request, timeout=5)  # counted before the meter starts
        meter = tax.Meter(tax.parse_targets(f"intent={metrics},triton=127.0.0.1:1"), tmp_path)
        with meter.measuring():
            for _ in range(5):
                stub.Classify(request, timeout=5)
    finally:
        handle.stop(0)
    total = meter.total
    assert total.calls[("intent", "Classify")] == 5
    # Each call spent 20 ms in its handler; the server's own time covers it, not much more.
    mean_s = total.seconds[("intent", "Classify")] / 5
    assert 0.02 <= mean_s < 0.2
    # The process's CPU covers the handlers' 100 ms (this test's process is the server).
    assert total.cpu_s["intent"] >= 0.09
    # Triton did not answer (nothing on port 1), and no Triton serves tmp_path: left out.
    assert not any(process == tax.TRITON for process, _ in total.calls)
    assert tax.TRITON not in total.cpu_s


TRITON_METRICS = """\
# HELP nv_inference_request_success Number of successful inference requests, all batch sizes
# TYPE nv_inference_request_success counter
nv_inference_request_success{model="text_encoder",version="1"} 40
nv_inference_request_success{model="text_encoder",version="2"} 10
nv_inference_request_success{model="cross_encoder",version="1"} 7
# HELP nv_inference_request_duration_us Cumulative inference request duration in microseconds
# TYPE nv_inference_request_duration_us counter
nv_inference_request_duration_us{model="text_encoder",version="1"} 120000
nv_inference_request_duration_us{model="text_encoder",version="2"} 30000
nv_inference_request_duration_us{model="cross_encoder",version="1"} 700000
"""


def test_tritons_requests_and_durations_are_summed_per_model_over_versions() -> None:
    reading = tax.Reading()
    tax.read_triton(TRITON_METRICS, reading)
    assert reading.calls[(tax.TRITON, "text_encoder")] == 50
    assert reading.seconds[(tax.TRITON, "text_encoder")] == pytest.approx(0.15)
    assert reading.calls[(tax.TRITON, "cross_encoder")] == 7
    assert reading.seconds[(tax.TRITON, "cross_encoder")] == pytest.approx(0.7)


def test_triton_processes_are_found_by_the_model_repository_in_their_command_line(
    tmp_path: Path,
) -> None:
    repository = tmp_path / "triton_models"
    assert tax.triton_cpu_s(repository) is None
    # A process named like a python-backend stub with the repository in its arguments,
    # spending about 0.3 s of CPU and then waiting.
    spin = "import time,sys\nt=time.process_time()+0.3\nwhile time.process_time()<t: pass\n"
    spin += "print(flush=True)\ntime.sleep(30)"
    stub = subprocess.Popen(
        [sys.executable, "-c", spin, "triton_python_backend_stub", str(repository / "m" / "1")],
        stdout=subprocess.PIPE,
    )
    try:
        assert stub.stdout is not None
        stub.stdout.readline()
        cpu = tax.triton_cpu_s(repository)
        assert cpu is not None and 0.25 <= cpu < 2.0
        # Another repository's processes are not this one's.
        assert tax.triton_cpu_s(tmp_path / "other") is None
    finally:
        stub.kill()
        stub.wait()


def test_the_hop_table_sets_each_hop_against_its_server_and_the_floor() -> None:
    meter = tax.Reading(
        calls={
            ("intent", "Classify"): 4,
            ("gateway", "Search"): 4,
            (tax.TRITON, "text_encoder"): 4,
        },
        seconds={
            ("intent", "Classify"): 0.004,
            ("gateway", "Search"): 0.08,
            (tax.TRITON, "text_encoder"): 0.012,
        },
    )
    seen = {"embed": [4.0, 6.0], "intent": [2.0, 4.0], "retrieval": [9.0], "total": [19.0]}
    rows = tax.hop_table(meter, seen, [24.0, 26.0], {"embed": [2.0], "intent": [0.5]})
    assert rows["embed"] == {
        "gateway_ms": 5.0,
        "server_ms": 3.0,
        "transport_ms": 2.0,
        "floor_ms": 2.0,
    }
    assert rows["intent"] == {
        "gateway_ms": 3.0,
        "server_ms": 1.0,
        "transport_ms": 2.0,
        "floor_ms": 0.5,
    }
    # No server said anything of retrieval, and the floor has no such step here.
    assert rows["retrieval"] == {"gateway_ms": 9.0}
    # The whole search: as the client saw it, against the gateway's own handling.
    assert rows["total"] == {"gateway_ms": 25.0, "server_ms": 20.0, "transport_ms": 5.0}
    assert "ranking" not in rows


def test_the_cpu_table_divides_each_process_by_the_searches_and_adds_them_up() -> None:
    meter = tax.Reading(cpu_s={"gateway": 0.8, "retrieval": 1.2, "feedback": 0.0, "triton": 0.4})
    rows = tax.cpu_table(meter, 100, floor_cpu_s=1.5, floor_searches=150)
    assert rows == {"retrieval": 12.0, "gateway": 8.0, "triton": 4.0, "suite": 24.0, "floor": 10.0}
    assert list(rows)[:3] == ["retrieval", "gateway", "triton"]  # the largest first
