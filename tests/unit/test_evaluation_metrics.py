"""Ranking and intent metrics against hand-computed values, and the evaluation harness."""

from __future__ import annotations

import json

import pytest

from shared.data.catalog import Product
from shared.data.dataset import Dataset, Query
from shared.evaluation.harness import SearchOutcome, evaluate
from shared.evaluation.metrics import (
    evaluate_run,
    intent_accuracy,
    mrr_at_k,
    ndcg_at_k,
    recall_at_k,
)

pytestmark = pytest.mark.unit

# Gains: Exact 2, Partial 1, Irrelevant 0, unjudged ("x") 0.
JUDGED = {"a": "Exact", "b": "Partial", "c": "Irrelevant", "d": "Partial"}
RANKED = ["c", "a", "x", "b"]


def test_ndcg_hand_computed() -> None:
    # DCG  = 0/log2(2) + 2/log2(3) + 0/log2(4) + 1/log2(5)
    #      = 0 + 1.2618595 + 0 + 0.4306766 = 1.6925361
    # IDCG (all judged, sorted 2,1,1,0) = 2/1 + 1/log2(3) + 1/log2(4) + 0
    #      = 2 + 0.6309298 + 0.5 = 3.1309298
    # nDCG = 1.6925361 / 3.1309298 = 0.5405858
    assert ndcg_at_k(RANKED, JUDGED, k=10) == pytest.approx(0.5405858, abs=1e-7)
    # k = 2: DCG = 1.2618595; IDCG = 2 + 0.6309298 = 2.6309298 -> 0.4796249
    assert ndcg_at_k(RANKED, JUDGED, k=2) == pytest.approx(0.4796249, abs=1e-7)
    # a repeated id counts once: top-2 of [a, a, b] is [a, b], the ideal order -> 1.0
    assert ndcg_at_k(["a", "a", "b"], JUDGED, k=2) == pytest.approx(1.0)
    assert ndcg_at_k(RANKED, {"c": "Irrelevant"}) == 0.0
    assert ndcg_at_k([], JUDGED) == 0.0


def test_recall_hand_computed() -> None:
    # relevant = Exact or Partial = {a, b, d}
    assert recall_at_k(RANKED, JUDGED, k=3) == pytest.approx(1 / 3)  # top 3 holds a
    assert recall_at_k(RANKED, JUDGED, k=100) == pytest.approx(2 / 3)  # a, b; d missed
    assert recall_at_k(RANKED, {"c": "Irrelevant"}) == 0.0


def test_mrr_hand_computed() -> None:
    assert mrr_at_k(RANKED, JUDGED, k=10) == 0.5  # first Exact (a) at rank 2
    assert mrr_at_k(RANKED, JUDGED, k=1) == 0.0  # rank 1 is c
    assert mrr_at_k(["b", "a"], JUDGED) == 0.5  # a Partial does not count by default
    assert mrr_at_k(["b", "a"], JUDGED, relevant=("Exact", "Partial")) == 1.0


def test_evaluate_run_means_and_counts() -> None:
    labels = {
        "q1": JUDGED,
        "q2": {"z": "Partial"},
        "q3": {"y": "Irrelevant"},  # nothing to find: skipped
        "q4": {"w": "Exact"},  # not in the run: scores 0
    }
    run = {"q1": RANKED, "q2": ["z"], "q3": ["y"], "unjudged": ["a"]}
    scores = evaluate_run(run, labels)
    # nDCG:   q1 0.5405858, q2 1/1 = 1.0, q4 0 -> mean 1.5405858 / 3 = 0.5135286
    # Recall: q1 2/3, q2 1, q4 0 -> (2/3 + 1) / 3 = 0.5555556
    # MRR (queries with an Exact): q1 0.5, q4 0 -> 0.25 (q2 has no Exact)
    assert scores["ndcg@10"] == pytest.approx(0.5135286, abs=1e-7)
    assert scores["recall@100"] == pytest.approx(0.5555556, abs=1e-7)
    assert scores["mrr@10"] == pytest.approx(0.25)
    assert (scores["n_queries"], scores["n_mrr_queries"], scores["n_skipped"]) == (3, 2, 1)


def test_intent_accuracy_hand_computed() -> None:
    predictions = {
        "q1": ["Sofas", "Sectionals"],
        "q2": ["Beds", "area  rugs", "Lamps"],  # right at rank 2, case/space differ
        "q3": ["A", "B", "C", "Desks"],  # rank 4: outside top 3
        "q5": ["Sofas"],  # no truth: ignored
    }
    truth = {"q1": "Sofas", "q2": "Area Rugs", "q3": "Desks", "q4": "Lamps", "q6": None}
    # n = 4 (q6 has no class; q4 has no prediction: a miss)
    # top1: q1 -> 1/4; top3: q1, q2 -> 2/4
    assert intent_accuracy(predictions, truth) == {"top1": 0.25, "top3": 0.5, "n": 4}
    assert intent_accuracy({}, {}) == {"top1": 0.0, "top3": 0.0, "n": 0}


def _dataset(with_labels: bool) -> Dataset:
    queries = [
        Query("q1", "grey couch", "Sofas"),
        Query("q2", "area rug", "Area Rugs"),
        Query("q3", "something", None),
    ]
    products = [Product(pid, pid) for pid in ("a", "b", "c", "d", "z")]
    labels = {"q1": dict(JUDGED), "q2": {"z": "Partial"}} if with_labels else {}
    return Dataset(queries, products if with_labels else None, labels, name="tiny")


def test_harness_scores_each_system() -> None:
    calls: list[str] = []

    def ideal(query: Query) -> SearchOutcome:
        calls.append(query.query_id)
        ranked = {"q1": ["a", "b", "d", "c"], "q2": ["z"]}.get(query.query_id, [])
        return SearchOutcome(ranked, [query.query_class or "Sofas", "Beds"])

    def keyword(query: Query) -> SearchOutcome:
        return SearchOutcome({"q1": RANKED}.get(query.query_id, ["nothing"]))

    def flaky(query: Query) -> SearchOutcome:
        if query.query_id == "q2":
            raise RuntimeError("unavailable")
        return SearchOutcome(RANKED, ["Beds"])

    report = evaluate(
        _dataset(True), {"ideal": ideal, "keyword": keyword, "flaky": flaky}, progress=False
    )
    assert calls == ["q1", "q2", "q3"]
    assert (report.n_queries, report.n_judged_queries) == (3, 2)
    ideal_r, keyword_r, flaky_r = report.systems
    assert ideal_r.ndcg_at_10 == pytest.approx(1.0)
    assert ideal_r.recall_at_100 == pytest.approx(1.0)
    assert ideal_r.mrr_at_10 == pytest.approx(1.0)  # q1: Exact at rank 1; q2 has no Exact
    assert ideal_r.n_ranked_queries == 2
    assert (ideal_r.intent_top1, ideal_r.intent_top3, ideal_r.n_intent_queries) == (1.0, 1.0, 2)
    # keyword: q1 0.5405858, q2 0 -> 0.2702929
    assert keyword_r.ndcg_at_10 == pytest.approx(0.2702929, abs=1e-7)
    assert keyword_r.mrr_at_10 == pytest.approx(0.5)  # q1 only: Exact at rank 2
    assert keyword_r.intent_top1 is None  # returns no intent
    assert flaky_r.errors == 1 and flaky_r.intent_top1 == 0.0
    assert all(
        s.latency_ms_mean >= 0 and s.latency_ms_p95 >= s.latency_ms_p50 for s in report.systems
    )

    table = report.to_table()
    assert "ideal" in table and "keyword" in table and "nDCG@10" in table
    parsed = json.loads(report.to_json())
    assert parsed["systems"][0]["name"] == "ideal"
    assert parsed["systems"][1]["intent_top1"] is None


def test_harness_on_queries_only_gives_intent_metrics() -> None:
    def intent_only(query: Query) -> SearchOutcome:
        return SearchOutcome([], ["Sofas", "Area Rugs"])

    report = evaluate(_dataset(False), {"hybrid": intent_only}, progress=False)
    (system,) = report.systems
    assert system.ndcg_at_10 is None and system.n_ranked_queries == 0
    # q1 Sofas: top1 hit; q2 Area Rugs: top3 hit; q3 has no class
    assert (system.intent_top1, system.intent_top3, system.n_intent_queries) == (0.5, 1.0, 2)
    assert "-" in report.to_table()
