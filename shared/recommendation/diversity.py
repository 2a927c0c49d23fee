"""Diversity of a recommendation list: Maximal Marginal Relevance (Carbonell and Goldstein,
SIGIR 1998) over the products' text vectors, and how diverse a list is.

MMR picks the list one item at a time: the candidate with the best
``(1 - diversity) * relevance - diversity * (its highest cosine to an item already
picked)``, relevance being the blended score divided by the best candidate's. At
``diversity`` 0 that is the blend's own order; at 1, the items least like each other.
"""

from __future__ import annotations

import numpy as np


def mmr_order(relevance: np.ndarray, vectors: np.ndarray, diversity: float, k: int) -> list[int]:
    """Indexes into ``relevance`` (one per candidate, its row in ``vectors``: unit vectors,
    zeros where a product has none) of the ``k`` items MMR picks, in pick order. Ties go to
    the earlier candidate, so callers pass candidates best first."""
    count = len(relevance)
    if count == 0 or k <= 0:
        return []
    best = float(relevance.max())
    scaled = relevance / best if best > 0 else np.zeros(count)
    closest = np.full(count, 0.0)  # each candidate's highest cosine to the picked ones
    picked: list[int] = []
    free = np.ones(count, dtype=bool)
    for _ in range(min(k, count)):
        gain = (1.0 - diversity) * scaled - diversity * closest
        gain[~free] = -np.inf
        choice = int(np.argmax(gain))
        picked.append(choice)
        free[choice] = False
        closest = np.maximum(closest, vectors @ vectors[choice])
    return picked


def intra_list_diversity(vectors: np.ndarray) -> float:
    """Mean over the list's pairs of 1 - cosine (0: all alike; rows are unit vectors)."""
    count = len(vectors)
    if count < 2:
        return 0.0
    similarity = vectors @ vectors.T
    pairs = similarity[np.triu_indices(count, k=1)]
    return float(np.mean(1.0 - pairs))
