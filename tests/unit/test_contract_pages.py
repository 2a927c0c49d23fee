"""What ranking answers and what a search page shows, built in place in the reply: every
item in order, the explanation's parts for the explained head only, each result's
explanation (sources, ranks, intent match, score parts)."""

from __future__ import annotations

import pytest
from shopsense.common.v1 import common_pb2
from shopsense.ranking.v1 import ranking_service_pb2 as kpb
from shopsense.retrieval.v1 import retrieval_service_pb2 as rpb

from shared.contracts.ranking import add_ranked_items
from shared.contracts.search import results_page
from shared.ranking.features import Scored

pytestmark = pytest.mark.unit


def _scored(n: int) -> list[Scored]:
    return [
        Scored(f"p{i}", 1.0 / (i + 1), [("fused", 0.5, 2.0), ("rating", 0.25 * i, 0.4)])
        for i in range(n)
    ]


def test_ranked_items_keep_the_order_and_explain_only_the_head() -> None:
    reply = kpb.RankResponse()
    add_ranked_items(reply.items, _scored(5), explain=2)
    assert [item.product_id for item in reply.items] == ["p0", "p1", "p2", "p3", "p4"]
    assert [item.score for item in reply.items] == pytest.approx([1, 1 / 2, 1 / 3, 1 / 4, 1 / 5])
    assert [len(item.parts) for item in reply.items] == [2, 2, 0, 0, 0]
    rating = reply.items[1].parts[1]
    assert (rating.feature, rating.value, rating.weight) == ("rating", 0.25, pytest.approx(0.4))
    assert rating.contribution == pytest.approx(0.1)


def test_a_page_shows_its_slice_with_each_results_explanation() -> None:
    candidates = {
        f"p{i}": rpb.Candidate(
            product=common_pb2.Product(
                product_id=f"p{i}", title=f"Sofa {i}", price=100.0 + i, product_class=cls
            ),
            sources=["lexical", "dense"] if i % 2 else ["dense"],
            lexical_rank=i + 1 if i % 2 else 0,
            dense_rank=i + 2,
        )
        for i, cls in enumerate(["Sofas", "Chairs", "Sofas", "Beds"])
    }
    ranked = kpb.RankResponse()
    add_ranked_items(ranked.items, _scored(4), explain=4)
    order = [(item.product_id, item.score, item.parts) for item in ranked.items]
    intent = common_pb2.Intent(
        classes=[common_pb2.IntentClass(product_class="Sofas", probability=0.8)]
    )
    page = results_page(candidates, order, intent, offset=1, page_size=2)
    assert page.total_size == 4 and page.intent == intent
    assert [(r.product_id, r.position) for r in page.results] == [("p1", 2), ("p2", 3)]
    first, second = page.results
    assert (first.title, first.price, first.product_class) == ("Sofa 1", 101.0, "Chairs")
    assert first.score == pytest.approx(1 / 2)
    assert list(first.explanation.sources) == ["lexical", "dense"]
    assert (first.explanation.lexical_rank, first.explanation.dense_rank) == (2, 3)
    assert not first.explanation.intent_match and second.explanation.intent_match
    assert [p.feature for p in second.explanation.score_parts] == ["fused", "rating"]
    assert second.explanation.score_parts[1].contribution == pytest.approx(0.5 * 0.4)
