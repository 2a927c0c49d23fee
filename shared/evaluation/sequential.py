"""Next-item metrics over a full ranking of every item (the protocol of the sequential
recommendation papers: one held-out item per shopper, ranked against the whole catalog).

From each case's target rank r (0 = first): Recall@k is the share of cases with r < k
(one relevant item: HitRate@k is the same number), NDCG@k averages 1 / log2(r + 2) over
the cases with r < k (0 otherwise).
"""

from __future__ import annotations

import numpy as np

CUTOFFS = (10, 50)


def next_item_metrics(ranks: np.ndarray, cutoffs: tuple[int, ...] = CUTOFFS) -> dict[str, float]:
    """``recall@k`` and ``ndcg@k`` for each cutoff; empty ``ranks`` give zeros."""
    ranks = np.asarray(ranks, dtype=np.float64)
    out: dict[str, float] = {}
    for k in cutoffs:
        if ranks.size == 0:
            out[f"recall@{k}"] = out[f"ndcg@{k}"] = 0.0
            continue
        hit = ranks < k
        out[f"recall@{k}"] = float(hit.mean())
        out[f"ndcg@{k}"] = float(np.where(hit, 1.0 / np.log2(ranks + 2.0), 0.0).mean())
    return out
