"""`make bench-rpc` (shared.bench.rpc): real servers on free ports, every layer measured,
the machine and the cases written as JSON. Short runs: what it reports, not how fast."""

from __future__ import annotations

import io
import json
import threading
import time
from pathlib import Path

from shopsense.retrieval.v1 import retrieval_service_pb2

from shared.bench.rpc import IDLE_GAPS_MS, after_idle, candidates_reply, main, measure, thread_echo


def test_every_layer_is_measured_at_1_and_8_clients() -> None:
    log = io.StringIO()
    results = measure(0.05, log)
    layers = [case for case in results if "in process" not in case and "idle" not in case]
    assert layers == [
        "grpc bare",
        "shopsense server",
        "shopsense server + channel",
        "shopsense server + channel + 100 candidates",
    ]
    for case in layers:
        for clients in ("1", "8"):
            figures = results[case][clients]
            assert figures["calls"] > 0 and figures["per_second"] > 0, (case, clients)
            assert 0 < figures["p50_us"] <= figures["p99_us"]
    # Our server stack ran for real: one JSON line per call, with the method.
    lines = [json.loads(line) for line in log.getvalue().splitlines()]
    assert any(
        line.get("method") == "/shopsense.intent.v1.IntentService/Classify" for line in lines
    )


def test_the_reply_is_a_retrieval_page_of_100_candidates_without_descriptions() -> None:
    reply = candidates_reply()
    assert len(reply.candidates) == 100
    assert all(c.product.product_id and not c.product.description for c in reply.candidates)
    parsed = retrieval_service_pb2.RetrieveResponse.FromString(reply.SerializeToString())
    assert parsed == reply


def test_main_prints_the_machine_and_writes_json(tmp_path: Path, capsys) -> None:
    out = tmp_path / "rpc.json"
    assert main(["--seconds", "0.05", "--json", str(out)]) == 0
    assert capsys.readouterr().out.startswith("machine: ")
    written = json.loads(out.read_text())
    assert written["machine"]["cores"] >= 1
    assert written["cases"]["grpc bare"]["1"]["p50_us"] > 0


def test_the_logging_configuration_is_put_back() -> None:
    import structlog

    before = structlog.get_config()
    measure(0.02, io.StringIO())
    assert structlog.get_config() == before


def test_a_hop_is_measured_after_each_idle_gap_beside_a_thread_hand_off() -> None:
    results = measure(0.05, io.StringIO())
    for gap in IDLE_GAPS_MS:
        for case in ("grpc bare", "shopsense server + channel", "hand-off between two threads"):
            figures = results[f"{case}, after {gap} ms idle"]["1"]
            assert figures["calls"] == 5 and 0 < figures["p50_us"] <= figures["p99_us"]
    assert "hand-off between two threads, after 0 ms idle" in results


def test_after_idle_sleeps_before_each_call_and_times_only_the_call() -> None:
    slept: list[float] = []
    last = [0.0]

    def call() -> None:
        now = time.perf_counter()
        if last[0]:
            slept.append(now - last[0])
        time.sleep(0.002)
        last[0] = time.perf_counter()

    figures = after_idle(call, 10, 4)
    assert figures["calls"] == 4
    assert all(gap >= 0.01 for gap in slept)  # a 10 ms gap before every call after the first
    assert 2000 <= figures["p50_us"] < 9000  # the 2 ms call, not the 10 ms gap


def test_the_echo_thread_hands_back_and_stops() -> None:
    with thread_echo() as hand_off:
        assert hand_off() == 1
    assert not any(t.name == "echo" and t.is_alive() for t in threading.enumerate())
