"""`make bench-rpc` (shared.bench.rpc): real servers on free ports, every layer measured,
the machine and the cases written as JSON. Short runs: what it reports, not how fast."""

from __future__ import annotations

import io
import json
from pathlib import Path

from shopsense.retrieval.v1 import retrieval_service_pb2

from shared.bench.rpc import candidates_reply, main, measure


def test_every_layer_is_measured_at_1_and_8_clients() -> None:
    log = io.StringIO()
    results = measure(0.05, log)
    layers = [case for case in results if "in process" not in case]
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
