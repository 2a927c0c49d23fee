"""The whole suite as a user runs it (`make run`'s launcher): a real Triton, every service
as its own process on free ports, real MiniLM weights, a 2,000-product synthetic demo
store, called from the outside as a storefront would."""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from shopsense.common.v1 import common_pb2
from shopsense.feedback.v1 import feedback_service_pb2 as fpb
from shopsense.feedback.v1 import feedback_service_pb2_grpc
from shopsense.search.v1 import search_service_pb2 as spb
from shopsense.search.v1 import search_service_pb2_grpc

from shared.contracts.search import NO_CACHE
from shared.data.wands import load_wands
from shared.evaluation.remote import evaluate_gateway
from shared.runtime.catalog import catalog_size
from shared.runtime.suite import Suite

pytestmark = pytest.mark.system


def _search(suite: Suite, query: str, fresh: bool = False, **kw) -> spb.SearchResponse:
    """``fresh``: past the gateway's result cache (a hop's state is what is tested)."""
    stub = search_service_pb2_grpc.SearchServiceStub(
        grpc.insecure_channel(suite.address("gateway"))
    )
    kw.setdefault("user", common_pb2.UserContext(user_id="shopper-1"))
    metadata = (NO_CACHE,) if fresh else ()
    return stub.Search(spb.SearchRequest(query=query, **kw), timeout=10, metadata=metadata)


def test_leather_sofa_finds_sofas_with_sofa_intent(suite: Suite):
    reply = _search(suite, "leather sofa")
    assert len(reply.results) == 20 and reply.total_size >= 100
    assert reply.intent.classes[0].product_class == "Sofas"
    top_classes = [r.product_class for r in reply.results[:10]]
    assert top_classes.count("Sofas") >= 8, top_classes
    assert not any((reply.degraded.intent, reply.degraded.ranking, reply.degraded.dense))


def test_hybrid_beats_keyword_and_embedding_baselines_on_the_synthetic_store(suite: Suite):
    dataset = load_wands(suite.demo_folder)
    dataset.queries = dataset.queries[:120]
    report = evaluate_gateway(dataset, suite.address("gateway"), progress=False)
    ndcg = {s.name: s.ndcg_at_10 for s in report.systems}
    assert all(s.errors == 0 for s in report.systems)
    assert ndcg["hybrid (suite)"] > ndcg["bm25 only"], ndcg
    assert ndcg["hybrid (suite)"] > ndcg["dense only"], ndcg


def test_feedback_with_the_search_token_is_stored_and_a_forged_one_rejected(suite: Suite):
    reply = _search(suite, "round dining table")
    now = Timestamp()
    now.GetCurrentTime()
    top = reply.results[0]
    token = reply.attribution_token
    forged = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    events = [
        fpb.Event(event_id=str(uuid.uuid4()), type=fpb.EVENT_TYPE_IMPRESSION, timestamp=now,
                  user_id="shopper-1", product_id=top.product_id, attribution_token=token, position=1),
        fpb.Event(event_id=str(uuid.uuid4()), type=fpb.EVENT_TYPE_CLICK, timestamp=now,
                  user_id="shopper-1", product_id=top.product_id, attribution_token=forged),
    ]  # fmt: skip
    stub = feedback_service_pb2_grpc.FeedbackServiceStub(
        grpc.insecure_channel(suite.address("feedback"))
    )
    result = stub.RecordEvents(fpb.RecordEventsRequest(events=events), timeout=10)
    assert [r.status for r in result.results] == [
        fpb.EVENT_STATUS_ACCEPTED,
        fpb.EVENT_STATUS_REJECTED,
    ]
    assert "attribution_token" in result.results[1].error
    again = stub.RecordEvents(fpb.RecordEventsRequest(events=events[:1]), timeout=10)
    assert again.results[0].status == fpb.EVENT_STATUS_DUPLICATE


def _search_once_reconnected(suite: Suite, query: str, timeout_s: float = 10.0):
    """Search past the result cache (a cached answer would not prove the path works),
    retrying UNAVAILABLE while the gateway's channel to a restarted service reconnects
    (its backoff may still be running when the service is SERVING again)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return _search(suite, query, fresh=True)
        except grpc.RpcError as exc:
            if exc.code() != grpc.StatusCode.UNAVAILABLE or time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def test_catalog_survives_a_retrieval_restart_without_reembedding(suite: Suite):
    before = _search(suite, "outdoor teak bench")
    suite.restart("retrieval")
    assert catalog_size(suite.address("retrieval")) == suite.demo_products
    after = _search_once_reconnected(suite, "outdoor teak bench")
    assert [r.product_id for r in after.results] == [r.product_id for r in before.results]


def test_gateway_degrades_when_ranking_stops_and_recovers_when_it_returns(suite: Suite):
    kept = _search(suite, "leather sofa")  # now in the gateway's result cache
    suite.stop_service("ranking")
    reply = _search(suite, "leather sofa", fresh=True)
    assert reply.degraded.ranking and reply.results
    # A search the result cache kept before is still answered whole.
    again = _search(suite, "leather sofa")
    assert not again.degraded.ranking and again.results == kept.results
    suite.restart("ranking")
    deadline = time.monotonic() + 10  # the gateway reconnects within its backoff (<= 2 s)
    while _search(suite, "leather sofa", fresh=True).degraded.ranking:
        assert time.monotonic() < deadline, "ranking still degraded 10 s after it came back"
        time.sleep(0.2)


def test_stopping_leaves_no_process_behind(exported_model_repository: Path, tmp_path: Path):
    running = Suite(
        state=tmp_path, model_repository=exported_model_repository, ephemeral_ports=True
    )
    running.start()
    pids = [p.pid for p in running.processes.values()] + [running.triton.pid]
    running.stop()
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def test_cli_search_and_eval_on_the_real_wands_queries(suite: Suite, tmp_path: Path, capsys):
    from shared.cli.main import main
    from shared.paths import shared_data_dir

    assert main(["search", "leather sofa", "--target", suite.address("gateway")]) == 0
    printed = capsys.readouterr().out
    assert "leather sofa" in printed and "Sofas" in printed

    out = tmp_path / "report.json"
    wands = shared_data_dir() / "wands"  # only query.csv: intent metrics only
    assert (
        main(
            ["eval", "--data", str(wands), "--target", suite.address("gateway"), "--json", str(out)]
        )
        == 0
    )
    import json

    (system,) = json.loads(out.read_text())["systems"]
    assert system["n_intent_queries"] == 328 and system["errors"] == 0
    assert system["ndcg_at_10"] is None  # no judgments in that folder
    assert system["intent_top3"] >= system["intent_top1"] > 0.3
