"""Simulated shoppers with individual tastes: drawn per shopper from the seed (the same seed,
the same tastes), different from shopper to shopper, deciding clicks in search and in
recommendation widgets; the default shoppers are the ones the demo has always used."""

from __future__ import annotations

import pytest
from shopsense.feedback.v1 import feedback_service_pb2 as fpb
from shopsense.recommend.v1 import recommend_service_pb2 as rpb
from shopsense.search.v1 import search_service_pb2 as spb

from shared.data.dataset import Dataset
from shared.data.synthetic import generate_store
from shared.simulation.shoppers import TASTE_LIKE, TASTE_OFF_BAND, ShopperSimulator, Taste

pytestmark = pytest.mark.unit

STORE = generate_store(n_products=300, n_queries=10, seed=5).to_dataset()


def _simulator(store: Dataset = STORE, seed: int = 3, **kw) -> ShopperSimulator:
    # Nothing listens at the discard port: these tests replace the stubs they call.
    return ShopperSimulator(store, "127.0.0.1:9", "127.0.0.1:9", seed=seed, **kw)


def _tastes(simulator: ShopperSimulator, count: int = 40) -> list[Taste]:
    return [simulator.taste(shopper) for shopper in simulator.shoppers(count)]


def test_tastes_are_individual_and_the_same_for_the_same_seed() -> None:
    tastes = _tastes(_simulator(tastes=True))
    assert len({t.likes for t in tastes}) > len(tastes) // 2  # shoppers differ
    assert len({(t.price_low, t.price_high) for t in tastes}) > 1
    assert all(dict(t.likes).keys() >= {"style", "colour"} for t in tastes)
    assert _tastes(_simulator(tastes=True)) == tastes  # deterministic per seed
    assert _tastes(_simulator(seed=4, tastes=True)) != tastes


def test_a_taste_multiplies_attractiveness_per_liked_value_and_outside_its_band() -> None:
    taste = Taste((("style", "Glam"), ("colour", "Gold")), price_low=100.0, price_high=300.0)
    assert taste.liking({"style": "Glam", "colour": "Gold"}, 200.0) == TASTE_LIKE**2
    assert taste.liking({"style": "Glam", "colour": "Red"}, 200.0) == TASTE_LIKE
    assert taste.liking({"style": "Rustic"}, 50.0) == TASTE_OFF_BAND


class _Search:
    """The gateway's answer: the query's judged products, Exact first."""

    def __init__(self, store: Dataset) -> None:
        order = {"Exact": 0, "Partial": 1, "Irrelevant": 2}
        self.judged = {
            q.text: sorted(store.labels.get(q.query_id, {}).items(), key=lambda j: order[j[1]])
            for q in store.queries
        }

    def Search(self, request: spb.SearchRequest, timeout: float) -> spb.SearchResponse:
        return spb.SearchResponse(
            results=[
                spb.SearchResult(product_id=pid, position=n, price=0.0)
                for n, (pid, _) in enumerate(self.judged[request.query][:10], start=1)
            ],
            attribution_token="tok",
            experiment_arm="control",
        )


class _Recommend:
    def __init__(self, products: list[str]) -> None:
        self.products = products
        self.placements: list[int] = []

    def Recommend(self, request: rpb.RecommendRequest, timeout: float) -> rpb.RecommendResponse:
        self.placements.append(request.placement)
        return rpb.RecommendResponse(
            items=[
                rpb.RecommendedItem(product_id=pid, position=n, price=0.0)
                for n, pid in enumerate(self.products, start=1)
            ],
            attribution_token="rec-tok",
        )


class _Feedback:
    def __init__(self) -> None:
        self.batches: list[list[fpb.Event]] = []

    def RecordEvents(self, request: fpb.RecordEventsRequest, timeout: float):
        self.batches.append(list(request.events))
        return fpb.RecordEventsResponse(accepted=len(request.events))


def _wired(simulator: ShopperSimulator) -> tuple[_Recommend, _Feedback]:
    shown = [p.product_id for p in STORE.products[:10]]
    recommend, feedback = _Recommend(shown), _Feedback()
    simulator._search = _Search(STORE)  # type: ignore[assignment]
    simulator._recommend = recommend  # type: ignore[assignment]
    simulator._feedback = feedback  # type: ignore[assignment]
    return recommend, feedback


def test_the_default_shoppers_have_no_tastes_widgets_or_rounds() -> None:
    simulator = _simulator()
    recommend, feedback = _wired(simulator)
    simulator.run(5, searches_each=3)
    assert recommend.placements == []
    assert len(feedback.batches) == 5  # one batch a shopper, after all their searches
    # ...and the same decisions as a simulator that was never told of tastes at all.
    again = _simulator(tastes=False, widgets=True)
    _, same = _wired(again)
    again.run(5, searches_each=3)
    assert [[e.event_id for e in b] for b in same.batches] == [
        [e.event_id for e in b] for b in feedback.batches
    ]


def test_shoppers_with_tastes_shop_in_rounds_and_click_widgets_with_their_token() -> None:
    simulator = _simulator(tastes=True, widgets=True, round_pause_s=0.0)
    recommend, feedback = _wired(simulator)
    summary = simulator.run(20, searches_each=2)
    assert len(feedback.batches) == 40  # a batch a shopper a round
    assert recommend.placements.count(rpb.PLACEMENT_RECOMMENDED_FOR_YOU) == 40
    widget_events = [
        e for batch in feedback.batches for e in batch if e.attribution_token == "rec-tok"
    ]
    clicks = [e for e in widget_events if e.type == fpb.EVENT_TYPE_CLICK]
    assert clicks and all(e.position >= 1 for e in clicks)
    counts = summary.arms["control"]
    assert counts.widget_clicks == len(clicks) and counts.widgets == len(recommend.placements)


def test_tastes_decide_which_products_shoppers_click() -> None:
    """Over many shoppers, the products a shopper likes are clicked more than the rest."""
    simulator = _simulator(tastes=True, widgets=False, round_pause_s=0.0)
    _, feedback = _wired(simulator)
    population = simulator.shoppers(150)
    simulator.run(150, searches_each=2)
    attributes = {p.product_id: p.attributes for p in STORE.products}
    liked, other = [0, 0], [0, 0]  # [clicks, impressions]
    for batch in feedback.batches:
        for event in batch:
            shopper = next(s for s in population if s.user_id == event.user_id)
            taste = simulator.taste(shopper)
            likes = taste.liking(attributes[event.product_id], 0.0) / TASTE_OFF_BAND > 1
            bucket = liked if likes else other
            bucket[0] += event.type == fpb.EVENT_TYPE_CLICK
            bucket[1] += event.type == fpb.EVENT_TYPE_IMPRESSION
    assert liked[1] and other[1]
    assert liked[0] / liked[1] > 1.3 * other[0] / other[1]
