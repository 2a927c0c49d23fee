"""What ``CatalogIndex.retrieve`` takes and gives: its options, its candidates, its result.

Retrieval, hybrid mode:

1. The filter mask is computed from the row sets (no scan of products in Python).
2. BM25 takes its top ``lexical_k`` and the dense index its top ``dense_k`` under the mask.
3. Reciprocal rank fusion: ``rrf(d) = sum_s w_s / (rrf_k + rank_s(d))``.
4. Intent boost: ``boost(d) = intent_weight * p(class(d)) / (rrf_k + 1)`` where
   ``p(class(d))`` is the intent probability of the product's class (0 if absent). With
   ``intent_weight = 1`` a certain intent is worth exactly one extra first place in one
   source; the default 0.5 is half of that.
5. Candidates are sorted by ``fused_score + intent_boost`` (``Candidate.score``).

"lexical" and "dense" modes use one source and no boost (evaluation baselines). Hybrid
mode without a query vector falls back to lexical (with the intent boost) and says so in
``RetrievalResult.fallback``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from shared.data.catalog import Product
from shared.errors import InvalidArgument
from shared.search.filters import Filters, normalize_value

MODES: tuple[str, ...] = ("hybrid", "lexical", "dense")


@dataclass(slots=True, frozen=True, kw_only=True)
class RetrieveOptions:
    """How to retrieve candidates for one query (the defaults suit a search page).

    ``filters`` restrict the candidates (None: none). ``intent`` is (product class,
    probability) pairs for the intent boost. ``k`` candidates come back, fused from the
    BM25 top ``lexical_k`` and the dense top ``dense_k`` with RRF constant ``rrf_k``;
    ``mode`` is "hybrid", "lexical" or "dense". ``intent_boost`` overrides the index's
    ``intent_weight`` and ``source_weights`` (``{"lexical": w, "dense": w}``, a missing one
    is 0) its fusion weights, for this call. ``query_version`` is the text encoder version
    of the query vector (None: not checked).

    ``CatalogIndex.retrieve`` checks the options, in the order of ``checked_weights``, then
    the query vector, then ``intent_probabilities``; errors name the request's fields.
    """

    filters: Filters | None = None
    intent: Sequence[tuple[str, float]] = ()
    k: int = 200
    mode: str = "hybrid"
    lexical_k: int = 200
    dense_k: int = 200
    rrf_k: int = 60
    intent_boost: float | None = None
    query_version: str | None = None
    source_weights: Mapping[str, float] | None = None

    def checked_weights(
        self, source_weights: Mapping[str, float], intent_weight: float
    ) -> tuple[dict[str, float], float]:
        """The fusion weights by source and the intent boost's weight of this call (the
        index's ``source_weights`` and ``intent_weight`` unless overridden), after checking
        mode, k, lexical_k, dense_k, rrf_k, the fusion weights and intent_boost.

        Raises ``InvalidArgument`` naming the first bad one.
        """
        if self.mode not in MODES:
            raise InvalidArgument(f"mode: must be one of {', '.join(MODES)} (got {self.mode!r})")
        for name in ("k", "lexical_k", "dense_k"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise InvalidArgument(f"{name}: must be an integer >= 1 (got {value!r})")
        if not isinstance(self.rrf_k, int) or self.rrf_k < 0:
            raise InvalidArgument(f"rrf_k: must be an integer >= 0 (got {self.rrf_k!r})")
        weights = dict(source_weights)
        if self.source_weights is not None:
            for name in ("lexical", "dense"):
                value = float(self.source_weights.get(name, 0.0))
                if not math.isfinite(value) or value < 0:
                    raise InvalidArgument(f"fusion.{name}: must be finite and >= 0 (got {value})")
                weights[name] = value
            if weights["lexical"] == 0 and weights["dense"] == 0:
                raise InvalidArgument("fusion: the lexical and dense weights are both 0")
        weight = intent_weight if self.intent_boost is None else float(self.intent_boost)
        if not math.isfinite(weight) or weight < 0:
            raise InvalidArgument(
                f"intent_boost: must be finite and >= 0 (got {self.intent_boost})"
            )
        return weights, weight

    def intent_probabilities(self) -> dict[str, float]:
        """Normalised class name -> its highest probability in ``intent``.

        Raises ``InvalidArgument`` naming the first probability outside [0, 1].
        """
        probabilities: dict[str, float] = {}
        for i, (cls, p) in enumerate(self.intent):
            if not math.isfinite(p) or not 0 <= p <= 1:
                raise InvalidArgument(f"intent[{i}]: probability must be in [0, 1] (got {p})")
            key = normalize_value(cls)
            probabilities[key] = max(probabilities.get(key, 0.0), float(p))
        return probabilities


@dataclass(slots=True)
class Candidate:
    """One retrieved product with the evidence a ranker needs.

    Ranks are 1-based within each source's list; a source that did not return the
    product leaves its rank None (and its score None, except ``dense_score``, which is
    the query-product cosine for every candidate whenever a query vector was given).
    ``fused_score`` is the RRF score only; the candidates are ordered by
    ``score = fused_score + intent_boost``.
    The ``product`` is shared with the index: treat it as read-only.
    """

    product: Product
    fused_score: float
    lexical_score: float | None
    lexical_rank: int | None
    dense_score: float | None
    dense_rank: int | None
    sources: list[str]
    intent_boost: float = 0.0

    @property
    def score(self) -> float:
        return self.fused_score + self.intent_boost


@dataclass(slots=True)
class RetrievalResult:
    """Candidates, best first, with the mode actually used.

    ``fallback`` is None when ``mode == requested_mode``, otherwise the reason (e.g. hybrid
    without a query vector ran lexical only). ``generation`` is the catalog generation the
    candidates were read at.
    """

    candidates: list[Candidate]
    mode: str
    requested_mode: str
    fallback: str | None = None
    generation: int = 0
    # The index's text encoder version when the candidates were read ("" if none yet).
    embedding_version: str = ""
