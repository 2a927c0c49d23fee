"""The recommender's core: co-occurrence updates and their kinds, forward decay, reasons,
fallbacks, exclusions and a shopper's erasure."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from shared.data.catalog import Product
from shared.errors import InvalidArgument
from shared.recommendation.aggregates import CoOccurrence, ItemIds
from shared.recommendation.events import CART, PURCHASE, VIEW, Decay, Interaction
from shared.recommendation.recommender import (
    BUY_AGAIN,
    FREQUENTLY_BOUGHT_TOGETHER,
    RECOMMENDED_FOR_YOU,
    SIMILAR_ITEMS,
    TRENDING,
    Recommender,
    RecommenderOptions,
    RecQuery,
)
from shared.search.filters import Filters

pytestmark = pytest.mark.unit

DAY = 86400.0
T0 = 1_700_000_000.0
PRODUCTS = [
    Product("mug", "Red mug", product_class="Kitchen", price=5.0),
    Product("teapot", "Blue teapot", product_class="Kitchen", price=20.0),
    Product("spoon", "Tea spoon", product_class="Kitchen", price=2.0),
    Product("sofa", "Grey sofa", product_class="Sofas", price=500.0),
    Product("cushion", "Velvet cushion", product_class="Decor", price=15.0),
    Product("lamp", "Brass lamp", product_class="Lighting", price=40.0),
]


def _vectors() -> np.ndarray:
    """Unit vectors: the kitchen items close together, the rest apart."""
    rows = {
        "mug": [1.0, 0.1, 0, 0],
        "teapot": [0.9, 0.3, 0, 0],
        "spoon": [0.8, 0.0, 0.2, 0],
        "sofa": [0, 0, 1.0, 0.1],
        "cushion": [0, 0.1, 0.9, 0.3],
        "lamp": [0, 0, 0, 1.0],
    }
    vectors = np.array([rows[p.product_id] for p in PRODUCTS], dtype=np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def _recommender(**options) -> Recommender:
    recommender = Recommender(RecommenderOptions(**options))
    recommender.set_catalog(PRODUCTS, _vectors(), generation=1, version="1")
    return recommender


def _buy(user: str, session: str, at: float, *products: str, kind: int = PURCHASE):
    return [Interaction(p, kind, at + i, 1, user, session) for i, p in enumerate(products)]


def _ids(answer) -> list[str]:
    return [item.product.product_id for item in answer.items]


def test_pairs_are_symmetric_and_counted_under_the_weaker_kind() -> None:
    items = ItemIds()
    mug, teapot, lamp = items.add("mug"), items.add("teapot"), items.add("lamp")
    co = CoOccurrence(items)
    co.add(mug, PURCHASE, 1.0, [])
    co.add(teapot, PURCHASE, 1.0, [(mug, PURCHASE, 1.0)])
    co.add(lamp, PURCHASE, 1.0, [(mug, VIEW, 1.0)])
    co.flush()
    purchase = co.similarity(PURCHASE).toarray()
    view = co.similarity(VIEW).toarray()
    assert purchase[mug, teapot] == purchase[teapot, mug] > 0
    assert purchase[mug, lamp] == 0 and view[mug, lamp] > 0  # a view with a purchase: co-view
    assert co.similarity(CART).nnz == 0
    assert co.pairs() == 2


def test_counts_add_up_incrementally() -> None:
    recommender = _recommender()
    recommender.ingest(_buy("a", "s1", T0, "mug", "teapot"))
    first = recommender.stats()["pairs"]
    recommender.ingest(_buy("b", "s2", T0 + 10, "mug", "spoon"))
    assert recommender.stats()["pairs"] == first + 1
    assert recommender.stats()["events_read"] == 4


def test_forward_decay_weighs_recent_pairs_more_and_rescaling_keeps_the_ratios() -> None:
    decay = Decay(half_life_s=DAY)
    old, new = decay.weight(T0), decay.weight(T0 + 2 * DAY)
    assert new / old == pytest.approx(4.0)
    far = T0 + 300 * DAY  # 2**300: past the rescale point
    assert decay.needs_rescale(far)
    factor = decay.rescale(far)
    assert decay.weight(far) == 1.0
    assert old * factor == pytest.approx(2.0**-300)

    # Bought together long ago (mug+spoon) against lately (mug+teapot): lately wins.
    recommender = _recommender(cooccurrence_half_life_s=7 * DAY)
    for n in range(3):
        recommender.ingest(_buy(f"old{n}", f"o{n}", T0, "mug", "spoon"))
    for n in range(2):
        recommender.ingest(_buy(f"new{n}", f"n{n}", T0 + 60 * DAY, "mug", "teapot"))
    answer = recommender.recommend(
        RecQuery(FREQUENTLY_BOUGHT_TOGETHER, session="x", context=["mug"], sources=["co_purchase"])
    )
    assert _ids(answer)[:2] == ["teapot", "spoon"]


def test_bought_together_names_the_context_product_in_its_reason() -> None:
    recommender = _recommender()
    for n in range(3):
        recommender.ingest(_buy(f"u{n}", f"s{n}", T0 + n * 100, "mug", "teapot"))
    answer = recommender.recommend(
        RecQuery(FREQUENTLY_BOUGHT_TOGETHER, session="x", context=["mug"])
    )
    top = answer.items[0]
    assert top.product.product_id == "teapot"
    assert top.reason.kind == "bought_together"
    assert top.reason.product_ids == ("mug",)
    assert top.reason.text == "Bought together with Red mug"
    assert "mug" not in _ids(answer)  # the context is never recommended
    parts = {p.source: p for p in top.parts}
    assert top.score == pytest.approx(sum(p.contribution for p in parts.values()))
    assert parts["co_purchase"].value == 1.0
    assert not answer.fallback


def test_similar_items_come_from_text_for_a_product_nobody_bought() -> None:
    recommender = _recommender()
    answer = recommender.recommend(RecQuery(SIMILAR_ITEMS, session="x", context=["teapot"]))
    assert _ids(answer)[:2] == ["mug", "spoon"]
    assert answer.items[0].reason.kind == "similar"
    assert answer.items[0].reason.text == "Similar to Blue teapot"


def test_buy_again_ranks_by_quantity_and_recency_and_explains() -> None:
    recommender = _recommender()
    recommender.ingest(_buy("a", "s1", T0, "mug", "lamp"))
    recommender.ingest(_buy("a", "s2", T0 + DAY, "mug"))
    recommender.ingest(_buy("a", "s3", T0 + 2 * DAY, "sofa", kind=VIEW))
    answer = recommender.recommend(RecQuery(BUY_AGAIN, user="a"))
    assert _ids(answer) == ["mug", "lamp"]  # views are not bought
    assert answer.items[0].reason.kind == "bought_before"


def test_exclude_purchased_and_filters() -> None:
    recommender = _recommender()
    for n in range(2):
        recommender.ingest(_buy(f"u{n}", f"s{n}", T0 + n, "mug", "teapot", "spoon", "lamp"))
    recommender.ingest(_buy("a", "sa", T0 + 50, "mug", "teapot"))
    query = RecQuery(RECOMMENDED_FOR_YOU, user="a", exclude_purchased=True)
    assert not {"mug", "teapot"} & set(_ids(recommender.recommend(query)))
    cheap = RecQuery(RECOMMENDED_FOR_YOU, user="a", filters=Filters(price_max=10.0), page_size=20)
    assert all(item.product.price <= 10.0 for item in recommender.recommend(cheap).items)
    kitchen = RecQuery(TRENDING, session="x", filters=Filters(classes=["kitchen"]))
    assert set(_ids(recommender.recommend(kitchen))) <= {"mug", "teapot", "spoon"}


def test_cold_shopper_and_unknown_context_get_trending_with_the_fallback_flag() -> None:
    recommender = _recommender()
    recommender.ingest(_buy("u", "s", T0, "lamp", "lamp", "sofa"))
    cold = recommender.recommend(RecQuery(RECOMMENDED_FOR_YOU, user="nobody"))
    assert cold.fallback and _ids(cold)[0] == "lamp"
    assert cold.items[0].reason.kind == "trending"
    unknown = recommender.recommend(
        RecQuery(SIMILAR_ITEMS, session="x", context=["gone", "gone", "also-gone"])
    )
    assert unknown.fallback and unknown.unknown == ["gone", "also-gone"]
    assert _ids(unknown)


def test_an_empty_catalog_answers_an_empty_list() -> None:
    recommender = Recommender()
    recommender.ingest(_buy("u", "s", T0, "mug"))
    for placement in (SIMILAR_ITEMS, RECOMMENDED_FOR_YOU, TRENDING, BUY_AGAIN):
        answer = recommender.recommend(RecQuery(placement, user="u", context=["mug"]))
        assert answer.items == []


def test_unknown_source_is_invalid_argument() -> None:
    with pytest.raises(InvalidArgument, match=r"^options.sources: unknown source 'magic'"):
        _recommender().recommend(RecQuery(TRENDING, session="x", sources=["magic"]))


def test_request_history_is_used_without_stored_state() -> None:
    recommender = _recommender()
    for n in range(3):
        recommender.ingest(_buy(f"u{n}", f"s{n}", T0 + n, "mug", "teapot"))
    history = [Interaction("mug", PURCHASE, T0 + 100, 1), Interaction("mug", CART, T0 + 101, 1)]
    answer = recommender.recommend(
        RecQuery(RECOMMENDED_FOR_YOU, session="anon", history=history, exclude_purchased=True)
    )
    assert _ids(answer)[0] == "teapot"
    assert answer.items[0].reason.kind == "because_you_viewed"
    assert answer.items[0].reason.product_ids == ("mug",)


def test_erasure_drops_the_shopper_and_aggregates_hold_no_shopper_ids() -> None:
    recommender = _recommender()
    recommender.ingest(_buy("alice-7", "sess-alice", T0, "mug", "teapot"))
    recommender.ingest(_buy("", "sess-alice-anon", T0 + 5, "spoon"))
    recommender.ingest(_buy("bob-3", "sess-bob", T0 + 9, "mug", "spoon"))
    assert recommender.holds_shopper("alice-7") and recommender.holds_shopper("sess-alice")
    # The aggregates (co-occurrence, trending, the product numbering) name no shopper.
    aggregates = pickle.dumps(
        (recommender._cooccurrence, recommender._trending, recommender._items)
    )
    for shopper in (b"alice-7", b"sess-alice", b"bob-3", b"sess-bob"):
        assert shopper not in aggregates

    assert recommender.forget("alice-7", "") == 1  # her state (her session's events are in it)
    assert not recommender.holds_shopper("alice-7")
    assert not recommender.holds_shopper("sess-alice")
    assert recommender.holds_shopper("sess-alice-anon")  # another shopper as far as we know
    assert recommender.holds_shopper("bob-3")
    answer = recommender.recommend(RecQuery(BUY_AGAIN, user="alice-7"))
    assert answer.fallback  # nothing of hers is left to buy again
    assert _ids(recommender.recommend(RecQuery(BUY_AGAIN, user="bob-3"))) == ["spoon", "mug"]


def test_history_keeps_the_newest_within_the_limit() -> None:
    recommender = _recommender(history_limit=3)
    recommender.ingest(_buy("a", "s", T0, "lamp", "mug", "teapot", "spoon"))
    answer = recommender.recommend(RecQuery(BUY_AGAIN, user="a", page_size=10))
    assert set(_ids(answer)) == {"mug", "teapot", "spoon"}


def test_a_store_without_events_trends_by_its_reviews() -> None:
    recommender = Recommender()
    recommender.set_catalog(
        [
            Product("a", "A", review_count=10, rating=4.0),
            Product("b", "B", review_count=500, rating=4.5, product_class="Lamps"),
            Product("c", "C"),  # no reviews: nothing says it is popular
        ],
        None,
        1,
        "",
    )
    answer = recommender.recommend(RecQuery(TRENDING, session="x"))
    assert _ids(answer) == ["b", "a"]
    assert answer.items[0].reason.text == "Well reviewed in Lamps"
    recommender.ingest(_buy("u", "s", T0, "a", kind=VIEW))  # one real view beats any review
    answer = recommender.recommend(RecQuery(TRENDING, session="x"))
    assert _ids(answer) == ["a", "b"]
    assert answer.items[0].reason.text == "Popular this week"
