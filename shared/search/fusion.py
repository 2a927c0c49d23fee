"""Reciprocal rank fusion: combine ranked lists whose scores are not comparable.

BM25 scores and cosine similarities live on different scales, so the hybrid retriever
fuses ranks, not scores (Cormack, Clarke & Buettcher, SIGIR 2009):
``score(d) = sum_s w_s / (k + rank_s(d))`` with 1-based ranks and ``k = 60``.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np


@dataclass(slots=True)
class FusedHit:
    """One fused result: ``ranks`` maps each source that returned the row to its 1-based rank."""

    row: int
    score: float
    ranks: dict[str, int] = field(default_factory=dict)


def reciprocal_rank_fusion(
    lists: Mapping[str, Sequence[Hashable]],
    k: int = 60,
    weights: Mapping[str, float] | None = None,
) -> list[FusedHit]:
    """Fuse ranked lists (best first) into one list sorted by RRF score.

    A source missing from ``weights`` has weight 1. A row repeated within one list keeps
    its first (best) rank. Ties go to the row with the better best rank, then the lower
    row, so the output is deterministic.
    """
    if k < 0:
        raise ValueError(f"k must be >= 0 (got {k})")
    weights = weights or {}
    hits: dict[Hashable, FusedHit] = {}
    for source, rows in lists.items():
        w = float(weights.get(source, 1.0))
        for rank, row in enumerate(rows, start=1):
            hit = hits.get(row)
            if hit is None:
                hit = hits[row] = FusedHit(row=row, score=0.0)
            elif source in hit.ranks:
                continue
            hit.ranks[source] = rank
            hit.score += w / (k + rank)
    return sorted(hits.values(), key=lambda h: (-h.score, min(h.ranks.values()), h.row))


def reciprocal_rank_fusion_arrays(
    lists: Mapping[str, np.ndarray],
    k: int = 60,
    weights: Mapping[str, float] | None = None,
) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """Vectorised ``reciprocal_rank_fusion`` for lists of unique integer rows.

    Returns ``(rows, scores, ranks)`` in the same order as ``reciprocal_rank_fusion``
    (score, then best rank, then row); ``ranks[source]`` holds 1-based ranks with 0 where
    the source did not return the row. The retriever uses this on its hot path (hundreds
    of rows per query, where building Python objects per row costs more than the search).
    """
    if k < 0:
        raise ValueError(f"k must be >= 0 (got {k})")
    weights = weights or {}
    arrays = {s: np.asarray(r, dtype=np.int64) for s, r in lists.items()}
    if not arrays or not any(len(a) for a in arrays.values()):
        return np.zeros(0, dtype=np.int64), np.zeros(0), {s: np.zeros(0, np.int64) for s in arrays}
    rows, inverse = np.unique(np.concatenate(list(arrays.values())), return_inverse=True)
    scores = np.zeros(len(rows))
    best = np.full(len(rows), np.iinfo(np.int64).max)
    ranks: dict[str, np.ndarray] = {}
    start = 0
    for source, arr in arrays.items():
        idx = inverse[start : start + len(arr)]
        start += len(arr)
        r = np.arange(1, len(arr) + 1)
        # Within one list rows are unique, so plain fancy-index updates are exact.
        scores[idx] += float(weights.get(source, 1.0)) / (k + r)
        best[idx] = np.minimum(best[idx], r)
        ranks[source] = np.zeros(len(rows), dtype=np.int64)
        ranks[source][idx] = r
    order = np.lexsort((rows, best, -scores))
    return rows[order], scores[order], {s: a[order] for s, a in ranks.items()}
