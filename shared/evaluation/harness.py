"""Offline evaluation of search systems, whatever transport serves them.

A *system* is any callable from a Query to a SearchOutcome: the lead's gRPC client
for the gateway in its hybrid, BM25-only or dense-only mode, or an in-process fake
in a test. The harness sends every query of a Dataset to each system, times each
call, and reports ranking metrics (on the queries that have judgments) and intent
accuracy (on the queries that name a class, for systems that predict intent). A
Dataset holding only queries (the 330 real WANDS queries) gives intent metrics only.
"""

from __future__ import annotations

import io
import json
import statistics
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field

from shared.data.dataset import Dataset, Query
from shared.evaluation.metrics import evaluate_run, intent_accuracy


@dataclass(slots=True)
class SearchOutcome:
    """What one search returned: ranked product ids, and predicted classes best first
    (empty for a system without intent detection)."""

    product_ids: list[str]
    intent_classes: list[str] = field(default_factory=list)


System = Callable[[Query], SearchOutcome]


@dataclass(slots=True)
class SystemReport:
    """One system's scores. A metric is None where the dataset or system cannot give it."""

    name: str
    n_queries: int
    errors: int
    ndcg_at_10: float | None = None
    recall_at_100: float | None = None
    mrr_at_10: float | None = None
    n_ranked_queries: int = 0
    intent_top1: float | None = None
    intent_top3: float | None = None
    n_intent_queries: int = 0
    latency_ms_mean: float = 0.0
    latency_ms_p50: float = 0.0
    latency_ms_p95: float = 0.0
    latency_ms_max: float = 0.0


@dataclass(slots=True)
class EvalReport:
    """Scores of every system on one dataset, printable and serialisable."""

    dataset: str
    n_queries: int
    n_judged_queries: int
    systems: list[SystemReport]

    def to_json(self) -> str:
        """The report as JSON, for CI artefacts and comparisons between runs."""
        return json.dumps(asdict(self), indent=2)

    def to_table(self) -> str:
        """The report as a rich-rendered text table, for a terminal."""
        from rich.console import Console
        from rich.table import Table

        table = Table(
            title=f"{self.dataset}: {self.n_queries} queries, {self.n_judged_queries} judged"
        )
        for column in (
            "system", "nDCG@10", "Recall@100", "MRR@10", "ranked q", "intent@1", "intent@3",
            "intent q", "ms mean", "ms p50", "ms p95", "errors",
        ):  # fmt: skip
            table.add_column(column, justify="left" if column == "system" else "right")
        for s in self.systems:
            table.add_row(
                s.name, _fmt(s.ndcg_at_10), _fmt(s.recall_at_100), _fmt(s.mrr_at_10),
                str(s.n_ranked_queries), _fmt(s.intent_top1), _fmt(s.intent_top3),
                str(s.n_intent_queries), f"{s.latency_ms_mean:.1f}", f"{s.latency_ms_p50:.1f}",
                f"{s.latency_ms_p95:.1f}", str(s.errors),
            )  # fmt: skip
        console = Console(file=io.StringIO(), width=140, color_system=None)
        console.print(table)
        return console.file.getvalue()


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def evaluate(
    dataset: Dataset,
    systems: Mapping[str, System],
    progress: bool = True,
) -> EvalReport:
    """Run every query of ``dataset`` through each system and score the results.

    A call that raises counts as an error and as an empty result (so a flaky system
    scores lower rather than stopping the evaluation). Latency is wall time around
    each call, in milliseconds.
    """
    from tqdm import tqdm

    judged = dataset.judged_query_ids() & {q.query_id for q in dataset.queries}
    truth = {q.query_id: q.query_class for q in dataset.queries if q.query_class}
    reports = []
    for name, system in systems.items():
        run: dict[str, list[str]] = {}
        intents: dict[str, list[str]] = {}
        latencies: list[float] = []
        errors = 0
        for query in tqdm(dataset.queries, desc=name, unit="q", disable=not progress):
            start = time.perf_counter()
            try:
                outcome = system(query)
            except Exception:
                outcome = SearchOutcome([])
                errors += 1
            latencies.append((time.perf_counter() - start) * 1000.0)
            run[query.query_id] = list(outcome.product_ids)
            intents[query.query_id] = list(outcome.intent_classes)
        report = SystemReport(name=name, n_queries=len(dataset.queries), errors=errors)
        labels = {qid: dataset.labels[qid] for qid in judged if qid in run}
        if labels:
            scores = evaluate_run(run, labels, k_ndcg=10, k_recall=100, k_mrr=10)
            report.ndcg_at_10 = float(scores["ndcg@10"])
            report.recall_at_100 = float(scores["recall@100"])
            report.mrr_at_10 = float(scores["mrr@10"])
            report.n_ranked_queries = int(scores["n_queries"])
        if truth and any(intents.values()):
            accuracy = intent_accuracy(intents, truth)
            report.intent_top1 = float(accuracy["top1"])
            report.intent_top3 = float(accuracy["top3"])
            report.n_intent_queries = int(accuracy["n"])
        if latencies:
            report.latency_ms_mean = statistics.fmean(latencies)
            report.latency_ms_p50 = _percentile(latencies, 0.50)
            report.latency_ms_p95 = _percentile(latencies, 0.95)
            report.latency_ms_max = max(latencies)
        reports.append(report)
    return EvalReport(
        dataset=dataset.name or "dataset",
        n_queries=len(dataset.queries),
        n_judged_queries=len(judged),
        systems=reports,
    )
