"""The ranking contract (shopsense.ranking.v1): candidates in as the feature scorer's
inputs, the scored order out as ranked items with their explanations."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from shopsense.retrieval.v1 import retrieval_service_pb2 as rpb

from shared.contracts.common import check_count
from shared.errors import InvalidArgument
from shared.ranking.features import RankInput, Scored

MAX_CANDIDATES = 1000


def rank_inputs(candidates: Sequence[rpb.Candidate]) -> list[RankInput]:
    """The scorer's inputs; INVALID_ARGUMENT naming ``candidates[i]...`` for a missing or
    repeated product id, or too many or no candidates."""
    check_count(candidates, "candidates", MAX_CANDIDATES, minimum=1)
    inputs = []
    seen: set[str] = set()
    for i, c in enumerate(candidates):
        pid = c.product.product_id
        if not pid:
            raise InvalidArgument(f"candidates[{i}].product.product_id: required")
        if pid in seen:
            raise InvalidArgument(f"candidates[{i}].product.product_id: duplicate id {pid!r}")
        seen.add(pid)
        inputs.append(
            RankInput(
                product_id=pid,
                product_class=c.product.product_class,
                fused_score=c.fused_score,
                dense_score=c.dense_score if "dense" in c.sources or c.dense_score else None,
                lexical_score=c.lexical_score if c.lexical_rank else None,
                rating=c.product.rating,
                review_count=c.product.review_count,
                attributes=c.product.attributes,
            )
        )
    return inputs


def add_ranked_items(items: Any, ranked: Sequence[Scored], explain: int) -> None:
    """The order as items added to ``items`` (a response's repeated field, built in place:
    half the cost of building messages and copying them in); the first ``explain`` carry
    every score part's contribution."""
    for position, s in enumerate(ranked):
        item = items.add(product_id=s.product_id, score=s.score)
        if position < explain:
            parts = item.parts
            for f, v, w in s.parts:
                parts.add(feature=f, value=v, weight=w, contribution=v * w)
