"""The search contract (shopsense.search.v1): a page of results out of the candidates
retrieval found and the order ranking (and the experiment's arms) gave them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from shopsense.common.v1 import common_pb2
from shopsense.retrieval.v1 import retrieval_service_pb2
from shopsense.search.v1 import search_service_pb2 as pb

# (product id, score, score parts) in result order.
Ranked = tuple[str, float, Sequence]
# Search request metadata that asks for a fresh search: the gateway's result cache is
# neither read nor written (benchmarks of the pipeline, a storefront previewing an edit).
NO_CACHE = ("cache-control", "no-cache")


def results_page(
    candidates: Mapping[str, retrieval_service_pb2.Candidate],
    order: Sequence[Ranked],
    intent: common_pb2.Intent | None,
    offset: int,
    page_size: int,
) -> pb.SearchResponse:
    """``order[offset:offset + page_size]`` as results (1-based positions), each with its
    explanation: the sources that found it, its ranks there, whether its class matches the
    intent, and every score part's contribution. ``total_size`` is ``len(order)``."""
    intent_classes = {c.product_class for c in intent.classes} if intent else set()
    response = pb.SearchResponse(total_size=len(order))
    if intent is not None:
        response.intent.CopyFrom(intent)
    results = response.results
    for position, (pid, score, parts) in enumerate(
        order[offset : offset + page_size], start=offset + 1
    ):
        c = candidates[pid]
        product = c.product
        # Built in place (add), not built apart and copied in: half the cost.
        result = results.add(
            product_id=pid,
            title=product.title,
            price=product.price,
            score=score,
            product_class=product.product_class,
            position=position,
        )
        explanation = result.explanation
        explanation.sources.extend(c.sources)
        explanation.lexical_rank = c.lexical_rank
        explanation.dense_rank = c.dense_rank
        explanation.intent_match = product.product_class in intent_classes
        score_parts = explanation.score_parts
        for p in parts:
            score_parts.add(
                feature=p.feature, value=p.value, weight=p.weight, contribution=p.contribution
            )
    return response
