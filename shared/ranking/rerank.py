"""Ranking v2: the fine-tuned cross-encoder rescores the head of the feature ranking.

The feature scorer orders every candidate; the cross-encoder scores the best ``depth`` of
them; each head item's score becomes its feature score plus ``weight * sigmoid(logit)``,
and the head is re-sorted by it. The blended term is never negative, so every head item
still scores at least as high as any tail item: the whole list stays sorted by score, and
each item's parts still sum to its score. The ranking service and the offline evaluation
both call this, so what is measured is what is served.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

import numpy as np

from shared.ranking.features import VERSION as FEATURES_VERSION
from shared.ranking.features import Scored

CROSS_ENCODER_FEATURE = "cross_encoder"
DEFAULT_DEPTH = 50
MAX_DEPTH = 200
# Weight of the cross-encoder's probability against the features (which sum to 0.94 at
# most): chosen on the dev judgments of the synthetic training store with the models
# `make train` publishes (a grid over 0-8: 0.5 was best; a cross-encoder trained on this
# 2-core budget adds MRR more than nDCG, and larger weights let it override the features).
DEFAULT_WEIGHT = 0.5


def sigmoid(logits: np.ndarray) -> np.ndarray:
    """Numerically stable logistic function."""
    return 0.5 * (1.0 + np.tanh(0.5 * np.asarray(logits, dtype=np.float64)))


def rerank_head(scored: Sequence[Scored], logits: np.ndarray, weight: float) -> list[Scored]:
    """Blend cross-encoder ``logits`` (for ``scored[:len(logits)]``) into the head.

    ``scored`` is the feature ranking, best first. The tail keeps its order and scores.
    """
    depth = len(logits)
    if depth > len(scored):
        raise ValueError(f"logits: {depth} scores for {len(scored)} candidates")
    if weight < 0:
        raise ValueError(f"weight: must be >= 0, got {weight}")
    probabilities = sigmoid(logits).tolist()
    head = [
        Scored(
            s.product_id,
            s.score + weight * p,
            [(CROSS_ENCODER_FEATURE, p, weight), *s.parts],
        )
        for s, p in zip(scored[:depth], probabilities, strict=True)
    ]
    head.sort(key=lambda s: -s.score)  # stable: ties keep the feature order
    return [*head, *scored[depth:]]


def ranking_version(cross_encoder_version: str | None, features: str = FEATURES_VERSION) -> str:
    """The name a response gives the ranker that produced it."""
    if cross_encoder_version:
        return f"{CROSS_ENCODER_FEATURE}/{cross_encoder_version}+{features}"
    return features


class DepthForDeadline:
    """The rerank depth that fits the time a request has left.

    Each cross-encoder version's seconds per pair (call overhead included, so a short head
    is estimated on the safe side) are learnt from its recent calls as an exponential
    average; a request then reranks ``min(wanted, fill * seconds_left / seconds_per_pair)``
    candidates, and none when not one pair fits (the features rank alone, in time). ``fill``
    below 1 leaves room for a call slower than the average (at 1, about half the calls
    would run out of time). An estimate that keeps a version's head at 0 shrinks by
    ``recovery`` each time, so that a cost learnt in a burst of load does not keep the
    cross-encoder off after it.
    """

    def __init__(self, smoothing: float = 0.2, recovery: float = 0.9, fill: float = 0.7) -> None:
        self._smoothing, self._recovery, self._fill = smoothing, recovery, fill
        self._per_pair: dict[str, float] = {}
        self._lock = threading.Lock()

    def depth(self, version: str, wanted: int, seconds_left: float) -> int:
        """Candidates to rerank out of ``wanted`` with ``seconds_left`` for the call."""
        with self._lock:
            cost = self._per_pair.get(version)
            if cost is None or wanted <= 0:
                return wanted
            fits = int(max(0.0, seconds_left) * self._fill / cost)
            if fits < 1:
                self._per_pair[version] = cost * self._recovery
            return min(wanted, fits)

    def observe(self, version: str, pairs: int, seconds: float) -> None:
        """A call of ``version`` scored ``pairs`` pairs in ``seconds``."""
        if pairs < 1:
            return
        per_pair = seconds / pairs
        with self._lock:
            old = self._per_pair.get(version)
            self._per_pair[version] = (
                per_pair if old is None else old + self._smoothing * (per_pair - old)
            )
