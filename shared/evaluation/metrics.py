"""Ranking and intent metrics over WANDS-style graded judgments.

Definitions (the same for every system, so numbers compare):

- Gains: Exact = 2, Partial = 1, Irrelevant = 0, and an unjudged product is 0 (a
  product nobody judged is treated as not relevant, as WANDS evaluations do).
- nDCG@k: DCG = sum over the first k results of gain / log2(rank + 1) (linear gain);
  the ideal DCG sorts *all* judged products of the query by gain, not only the ones
  the system returned.
- Recall@k: relevant means Exact or Partial; the share of the query's relevant
  judged products found in the first k results.
- MRR@k: reciprocal rank of the first Exact result in the first k (WANDS's papers
  count only Exact there); ``relevant=`` widens it, e.g. to (Exact, Partial).
- A repeated product id counts once, at its first rank.
- Means skip queries with nothing to find: nDCG and Recall are averaged over queries
  with at least one Exact or Partial judgment, MRR over queries with at least one
  product of the ``relevant`` grades. Such a query scores 0.0 on its own.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence

GAINS: dict[str, int] = {"Exact": 2, "Partial": 1, "Irrelevant": 0}
RELEVANT = ("Exact", "Partial")
MRR_RELEVANT = ("Exact",)

Judgments = Mapping[str, str]


def gain(label: str | None) -> int:
    """Graded gain of a label; unjudged (None) and unknown labels are 0."""
    return GAINS.get(label, 0) if label is not None else 0


def _unique_top(ranked_ids: Sequence[str], k: int) -> list[str]:
    seen: set[str] = set()
    top: list[str] = []
    for pid in ranked_ids:
        if pid not in seen:
            seen.add(pid)
            top.append(pid)
            if len(top) == k:
                break
    return top


def _dcg(gains: Iterable[int]) -> float:
    return sum(g / math.log2(rank + 2) for rank, g in enumerate(gains))


def ndcg_at_k(ranked_ids: Sequence[str], judgments: Judgments, k: int = 10) -> float:
    """nDCG@k with linear gains; 0.0 when the query has no Exact or Partial product."""
    ideal = _dcg(sorted((gain(label) for label in judgments.values()), reverse=True)[:k])
    if ideal == 0:
        return 0.0
    return _dcg(gain(judgments.get(pid)) for pid in _unique_top(ranked_ids, k)) / ideal


def recall_at_k(ranked_ids: Sequence[str], judgments: Judgments, k: int = 100) -> float:
    """Share of the Exact-or-Partial products found in the top k; 0.0 when there are none."""
    relevant = {pid for pid, label in judgments.items() if label in RELEVANT}
    if not relevant:
        return 0.0
    return len(relevant.intersection(_unique_top(ranked_ids, k))) / len(relevant)


def mrr_at_k(
    ranked_ids: Sequence[str],
    judgments: Judgments,
    k: int = 10,
    relevant: Sequence[str] = MRR_RELEVANT,
) -> float:
    """1/rank of the first result whose label is in ``relevant`` (default Exact) in the
    top k; 0.0 when none is."""
    for rank, pid in enumerate(_unique_top(ranked_ids, k), start=1):
        if judgments.get(pid) in relevant:
            return 1.0 / rank
    return 0.0


def _normalise(name: str) -> str:
    return " ".join(name.casefold().split())


def intent_accuracy(
    predictions: Mapping[str, Sequence[str]], truth: Mapping[str, str | None]
) -> dict[str, float | int]:
    """Top-1 and top-3 accuracy of predicted classes (best first) against each query's
    class. Queries without a class are left out; a query with no prediction counts as
    a miss. Class names compare case- and whitespace-insensitively."""
    hits1 = hits3 = n = 0
    for qid, expected in truth.items():
        if not expected:
            continue
        n += 1
        predicted = [_normalise(c) for c in predictions.get(qid, ())[:3]]
        target = _normalise(expected)
        hits1 += bool(predicted) and predicted[0] == target
        hits3 += target in predicted
    return {
        "top1": hits1 / n if n else 0.0,
        "top3": hits3 / n if n else 0.0,
        "n": n,
    }


def evaluate_run(
    run: Mapping[str, Sequence[str]],
    labels: Mapping[str, Judgments],
    k_ndcg: int = 10,
    k_recall: int = 100,
    k_mrr: int = 10,
) -> dict[str, float | int]:
    """Mean nDCG, Recall and MRR of a run (query_id -> ranked product ids) over the
    judged queries; a judged query missing from the run scores 0.

    Returns ``ndcg@{k}``, ``recall@{k}``, ``mrr@{k}`` and the counts behind them:
    ``n_queries`` (judged queries with a relevant product, the nDCG/Recall mean),
    ``n_mrr_queries`` (those with an Exact product, the MRR mean) and ``n_skipped``.
    """
    ndcgs: list[float] = []
    recalls: list[float] = []
    mrrs: list[float] = []
    skipped = 0
    for qid, judgments in labels.items():
        ranked = run.get(qid, ())
        if not any(label in RELEVANT for label in judgments.values()):
            skipped += 1
            continue
        ndcgs.append(ndcg_at_k(ranked, judgments, k_ndcg))
        recalls.append(recall_at_k(ranked, judgments, k_recall))
        if any(label in MRR_RELEVANT for label in judgments.values()):
            mrrs.append(mrr_at_k(ranked, judgments, k_mrr))
    return {
        f"ndcg@{k_ndcg}": _mean(ndcgs),
        f"recall@{k_recall}": _mean(recalls),
        f"mrr@{k_mrr}": _mean(mrrs),
        "n_queries": len(ndcgs),
        "n_mrr_queries": len(mrrs),
        "n_skipped": skipped,
    }


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else 0.0
