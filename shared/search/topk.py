"""Deterministic top-k selection shared by the lexical and dense indexes."""

from __future__ import annotations

import numpy as np


def top_k(rows: np.ndarray, scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` best ``(rows, scores)``, best first, ties to the lower row.

    ``rows`` must be ascending (so equal scores at the cut keep the lowest rows). Uses
    ``np.argpartition``-style selection, O(n) plus O(k log k) for the final sort, and the
    tie rule makes results independent of how the candidates were gathered.
    """
    n = len(rows)
    if k <= 0 or n == 0:
        return rows[:0].astype(np.int64), scores[:0]
    if n > k:
        kth = np.partition(scores, n - k)[n - k]  # the k-th largest score
        keep = np.flatnonzero(scores >= kth)
        if len(keep) > k:  # ties at the cut: keep the lowest rows among them
            kept = scores[keep]
            above = keep[kept > kth]
            keep = np.concatenate((above, keep[kept == kth][: k - len(above)]))
        rows, scores = rows[keep], scores[keep]
    order = np.lexsort((rows, -scores))
    return rows[order].astype(np.int64), scores[order]
