"""What the sequence recommender's shopper tower reads for each history event, computed
the same way in training (torch) and serving (numpy, no torch): the event's kind and the
log-bucketed time since the event before it (a visit boundary shows as a long gap).

A history is oldest first and at most ``history_length`` long (the newest events are
kept). Arrays are left-padded, so the newest event is always the last position.

Baskets: purchases less than a minute apart (gap bucket 1) are one basket, as an order's
lines are (the Online Retail import gives every line its invoice's time). Their order in
the history is the order the lines were written in, not an order the shopper chose. Dev
cases read whole baskets (``shared.training.sequence_data``); with the ``basket_targets``
hyperparameter a model also trains on what comes after a basket, from the state before it
(``basket_sources``), instead of on the next line.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from shared.recommendation.events import CART, PURCHASE, VIEW

NUM_KINDS = 3
# Bucket 0: no earlier event or no time known; then 1 + floor(log2(1 + minutes)), capped.
GAP_BUCKETS = 24
assert (VIEW, CART, PURCHASE) == (0, 1, 2)


def gap_buckets(times: Sequence[float] | None, length: int) -> np.ndarray:
    """int64 ``[length]``: each event's gap bucket, from Unix seconds (None: all 0)."""
    out = np.zeros(length, dtype=np.int64)
    if times is None or length < 2:
        return out
    at = np.asarray(times, dtype=np.float64)
    gaps = np.maximum(np.diff(at), 0.0) / 60.0
    buckets = 1 + np.floor(np.log2(1.0 + gaps))
    out[1:] = np.minimum(buckets, GAP_BUCKETS - 1).astype(np.int64)
    return out


# The gap bucket of an event less than a minute after the one before it.
SAME_MINUTE = 1


def basket_sources(kinds: np.ndarray, gaps: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """int64 ``[B, T]`` from left-padded ``[B, T]`` arrays: for each event, the position
    whose state predicts it: the last event before its basket (see the module docstring;
    a view or cart is its own basket, so that is the event before it); -1 when nothing
    precedes its basket (or it is padding)."""
    kinds, gaps, mask = np.asarray(kinds), np.asarray(gaps), np.asarray(mask).astype(bool)
    width = kinds.shape[1]
    continues = np.zeros(kinds.shape, dtype=bool)
    continues[:, 1:] = (
        (gaps[:, 1:] == SAME_MINUTE)
        & (kinds[:, 1:] == PURCHASE)
        & (kinds[:, :-1] == PURCHASE)
        & mask[:, 1:]
        & mask[:, :-1]
    )
    positions = np.broadcast_to(np.arange(width), kinds.shape)
    starts = np.maximum.accumulate(np.where(continues, 0, positions), axis=1)
    sources = starts - 1
    has_source = mask & (sources >= 0)
    has_source[has_source] &= mask[has_source.nonzero()[0], sources[has_source]]
    return np.where(has_source, sources, -1).astype(np.int64)


def left_padded(
    histories: Sequence[tuple[Sequence[int], Sequence[int], Sequence[int]]], length: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Stack ``(rows, kinds, gaps)`` histories into ``[B, T]`` arrays, T = the longest
    (at most ``length``): rows (-1 = padding), kinds, gaps and the mask (1 = an event)."""
    width = max(1, min(length, max((len(h[0]) for h in histories), default=1)))
    batch = len(histories)
    rows = np.full((batch, width), -1, dtype=np.int64)
    kinds = np.zeros((batch, width), dtype=np.int64)
    gaps = np.zeros((batch, width), dtype=np.int64)
    for i, (r, k, g) in enumerate(histories):
        r, k, g = list(r)[-width:], list(k)[-width:], list(g)[-width:]
        if r:
            rows[i, width - len(r) :] = r
            kinds[i, width - len(k) :] = k
            gaps[i, width - len(g) :] = g
    return rows, kinds, gaps, (rows >= 0).astype(np.int64)
