"""Simulated shoppers that drive the running suite over gRPC exactly as a storefront would.

Each shopper has hidden preferences: the queries they come with (drawn from the store's
judged queries), a price budget and a patience. For every search they send the query to
the gateway with their user id, look at the page with position bias (a position-based
click model: position k is examined with probability ``examine(k) = 1 / k**decay``),
click an examined result with a probability given by its hidden relevance (the store's
judgments: Exact, Partial, Irrelevant) and its price against their budget, put some
clicked items in the cart and buy some of those. Every impression, click, cart and
purchase goes to the feedback service with the search's attribution token.

The population also has a taste the store's judgments do not record (``ClickModel.taste``):
this season, products in some styles are more attractive than their relevance says and
products in others less, as when shoppers' fashion moves away from what the merchandisers
labelled. Only clicks reveal it, which is what retraining from feedback is for.

**Individual tastes** (``tastes=True``; off by default, so the demo and its tests see the
same shoppers as before): each shopper also has a taste of their own (``Taste``, drawn per
shopper from the seed): a style, a colour and sometimes a material they like, and a price
band. A product with a liked value is ``TASTE_LIKE`` times as attractive per value, one
outside the band ``TASTE_OFF_BAND`` as much; the same taste decides their clicks in search
and in **recommendation widgets** (``widgets=True``: after each search they see
RECOMMENDED_FOR_YOU and, when they clicked something, SIMILAR_ITEMS for it, through the
gateway's Recommend, with the same position bias; impressions, clicks, carts and purchases
go to feedback with the recommendation's attribution token). Shoppers with tastes shop in
rounds, one search (and its widgets) each a round, their events sent at once, with a pause
between rounds, so the recommendation service has read what they did before they search
again: what personalised search needs to be measured.

The ground truth never leaves the simulator: the suite sees only queries and events.
Runs are seeded: the same seed against the same suite state makes the same decisions
and the same event ids (sending them again stores nothing new).
"""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp
from shopsense.common.v1 import common_pb2
from shopsense.feedback.v1 import feedback_service_pb2 as fpb
from shopsense.feedback.v1 import feedback_service_pb2_grpc as fpb_grpc
from shopsense.recommend.v1 import recommend_service_pb2 as rpb
from shopsense.recommend.v1 import recommend_service_pb2_grpc as rpb_grpc
from shopsense.search.v1 import search_service_pb2 as spb
from shopsense.search.v1 import search_service_pb2_grpc as spb_grpc

from shared.data.dataset import Dataset
from shared.rpc.clients import open_channel

# Probability that an examined result is clicked, by hidden relevance.
ATTRACTION = {"Exact": 0.55, "Partial": 0.15, "Irrelevant": 0.02}
# Probability that a clicked result goes into the cart, and that a cart item is bought.
CART = {"Exact": 0.35, "Partial": 0.08, "Irrelevant": 0.01}
BUY = 0.5
# Individual tastes: the factor per liked attribute value a product has, and for a price
# outside the shopper's band.
TASTE_LIKE = 2.5
TASTE_OFF_BAND = 0.6
# The attributes a taste draws a liked value of, and the chance it has one.
TASTE_ATTRIBUTES = (("style", 1.0), ("colour", 1.0), ("material", 0.5))
# The price band: this share of the catalog's price quantiles, placed at random.
TASTE_BAND = 0.5
# Recommendation widgets: how attractive a shown product is before taste (nothing asked
# for it), and the chance a clicked one goes into the cart.
WIDGET_ATTRACTION = 0.08
WIDGET_CART = 0.15
WIDGET_PAGE_SIZE = 8


@dataclass(frozen=True)
class ClickModel:
    """Position bias and patience of the simulated shoppers."""

    decay: float = 0.9  # examine(k) = 1 / k**decay
    page_size: int = 10
    # A result over the shopper's budget is this much less attractive.
    over_budget: float = 0.3
    # The population's taste: (attribute, value) -> factor on attractiveness (at most 0.95).
    taste: tuple[tuple[str, str, float], ...] = (
        ("style", "Scandinavian", 2.0),
        ("style", "Mid-Century Modern", 2.0),
        ("style", "Traditional", 0.4),
        ("style", "Glam", 0.4),
    )

    def examine(self, position: int) -> float:
        return 1.0 / position**self.decay

    def liking(self, attributes: dict[str, str]) -> float:
        """The taste's factor for a product with these attributes."""
        factor = 1.0
        for name, value, weight in self.taste:
            if attributes.get(name) == value:
                factor *= weight
        return factor


@dataclass(frozen=True)
class Taste:
    """One shopper's own taste: the (attribute, value) pairs they like and their price
    band."""

    likes: tuple[tuple[str, str], ...]
    price_low: float
    price_high: float

    def liking(self, attributes: dict[str, str], price: float) -> float:
        """The factor on a product's attractiveness for this shopper."""
        factor = 1.0
        for name, value in self.likes:
            if attributes.get(name) == value:
                factor *= TASTE_LIKE
        if not self.price_low <= price <= self.price_high:
            factor *= TASTE_OFF_BAND
        return factor


def draw_taste(rng: random.Random, values: dict[str, list[str]], prices: list[float]) -> Taste:
    """A taste from ``rng``: a value for each of TASTE_ATTRIBUTES the catalog has (drawn as
    often as products have it, with its chance), and a band of TASTE_BAND of the sorted
    ``prices``."""
    likes = []
    for name, chance in TASTE_ATTRIBUTES:
        seen = values.get(name)
        if seen and rng.random() < chance:
            likes.append((name, rng.choice(seen)))
    if not prices:
        return Taste(tuple(likes), 0.0, float("inf"))
    start = rng.uniform(0.0, 1.0 - TASTE_BAND)
    low = prices[int(start * (len(prices) - 1))]
    high = prices[int((start + TASTE_BAND) * (len(prices) - 1))]
    return Taste(tuple(likes), low, high)


@dataclass
class ArmCounts:
    searches: int = 0
    impressions: int = 0
    clicks: int = 0
    carts: int = 0
    purchases: int = 0
    revenue: float = 0.0
    # Recommendation widgets (individual tastes only): lists shown, impressions, clicks.
    widgets: int = 0
    widget_impressions: int = 0
    widget_clicks: int = 0


@dataclass
class Summary:
    """What the simulator did, per experiment arm (its own counts, not the suite's)."""

    arms: dict[str, ArmCounts] = field(default_factory=dict)
    events_sent: int = 0
    events_accepted: int = 0
    events_duplicate: int = 0
    events_rejected: int = 0
    rejections: Counter[str] = field(default_factory=Counter)

    def arm(self, name: str) -> ArmCounts:
        return self.arms.setdefault(name, ArmCounts())

    def merge(self, other: Summary) -> None:
        """Add ``other``'s counts to these."""
        for name, counts in other.arms.items():
            mine = self.arm(name)
            for key, value in vars(counts).items():
                setattr(mine, key, getattr(mine, key) + value)
        self.events_sent += other.events_sent
        self.events_accepted += other.events_accepted
        self.events_duplicate += other.events_duplicate
        self.events_rejected += other.events_rejected
        self.rejections.update(other.rejections)


@dataclass(frozen=True)
class Shopper:
    user_id: str
    queries: tuple[str, ...]  # query ids
    budget: float


class ShopperSimulator:
    """``run(shoppers, searches_each)`` against a gateway and a feedback service."""

    def __init__(
        self,
        dataset: Dataset,
        gateway_target: str,
        feedback_target: str,
        seed: int = 1,
        click_model: ClickModel | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        user_prefix: str = "sim",
        tastes: bool = False,
        widgets: bool = False,
        round_pause_s: float = 3.0,
    ) -> None:
        """``tastes``: each shopper has a taste of their own and shops in rounds
        (``round_pause_s`` apart); ``widgets``: they also see recommendation widgets
        (needs ``tastes``)."""
        self._queries = {
            q.query_id: q.text for q in dataset.queries if dataset.labels.get(q.query_id)
        }
        if not self._queries:
            raise ValueError("dataset: no judged queries to simulate shoppers with")
        self._labels = dataset.labels
        self._prices = {p.product_id: p.price for p in dataset.products}
        self._attributes = {p.product_id: p.attributes for p in dataset.products}
        gateway = open_channel(gateway_target)
        self._search = spb_grpc.SearchServiceStub(gateway)
        self._recommend = rpb_grpc.RecommendServiceStub(gateway)
        self._tastes = tastes
        self._widgets = widgets and tastes
        self._round_pause_s = round_pause_s
        self._values: dict[str, list[str]] = {}
        for product in dataset.products:  # in catalog order, repeated: drawn by frequency
            for name, _ in TASTE_ATTRIBUTES:
                if product.attributes.get(name):
                    self._values.setdefault(name, []).append(product.attributes[name])
        self._taste_of: dict[str, Taste] = {}
        self._feedback = fpb_grpc.FeedbackServiceStub(open_channel(feedback_target))
        self._seed = seed
        self._model = click_model or ClickModel()
        self._clock = clock
        self._prefix = user_prefix

    def shoppers(self, count: int) -> list[Shopper]:
        """The seeded population: each with 1-3 queries it comes back with, and a budget."""
        rng = random.Random(f"{self._seed}/population")
        ids = sorted(self._queries)
        prices = sorted(self._prices.values()) or [100.0]
        population = []
        for number in range(count):
            queries = tuple(rng.sample(ids, k=min(len(ids), rng.randint(1, 3))))
            budget = prices[int(rng.uniform(0.4, 1.0) * (len(prices) - 1))]
            population.append(Shopper(f"{self._prefix}-{self._seed}-{number}", queries, budget))
        return population

    def taste(self, shopper: Shopper) -> Taste:
        """The shopper's own taste: drawn from the seed and their id alone, so the same
        seed gives every shopper the same taste whatever else is drawn."""
        taste = self._taste_of.get(shopper.user_id)
        if taste is None:
            rng = random.Random(f"{self._seed}/taste/{shopper.user_id}")
            taste = draw_taste(rng, self._values, sorted(self._prices.values()))
            self._taste_of[shopper.user_id] = taste
        return taste

    def run(
        self,
        shoppers: int,
        searches_each: int = 2,
        timeout_s: float = 10.0,
        concurrency: int = 1,
    ) -> Summary:
        """Every shopper's searches and events; ``concurrency`` shoppers at a time (each
        shopper's decisions depend only on the seed and what the suite shows them)."""
        summary = Summary()
        population = self.shoppers(shoppers)
        if self._tastes:
            return self._run_rounds(population, searches_each, timeout_s, concurrency)
        if concurrency <= 1:
            for shopper in population:
                summary.merge(self._shop(shopper, searches_each, timeout_s))
            return summary
        with ThreadPoolExecutor(concurrency, thread_name_prefix="shopper") as pool:
            for part in pool.map(lambda s: self._shop(s, searches_each, timeout_s), population):
                summary.merge(part)
        return summary

    def _run_rounds(
        self, population: list[Shopper], rounds: int, timeout_s: float, concurrency: int
    ) -> Summary:
        """Shoppers with tastes: a round is one search (and its widgets) by each shopper,
        their events sent at once; then a pause so the suite reads them."""
        summary = Summary()
        for number in range(rounds):
            if number:
                time.sleep(self._round_pause_s)
            with ThreadPoolExecutor(max(1, concurrency), thread_name_prefix="shopper") as pool:
                for part in pool.map(
                    lambda s, n=number: self._shop_round(s, n, timeout_s), population
                ):
                    summary.merge(part)
        return summary

    def _shop_round(self, shopper: Shopper, number: int, timeout_s: float) -> Summary:
        summary = Summary()
        rng = random.Random(f"{self._seed}/{shopper.user_id}/{number}")
        query_id = shopper.queries[number % len(shopper.queries)]
        events = self._search_once(shopper, query_id, number, rng, summary, timeout_s)
        if self._widgets:
            clicked = [e.product_id for e in events if e.type == fpb.EVENT_TYPE_CLICK]
            arm = summary.arm(next(iter(summary.arms), ""))
            events += self._widget(
                shopper, number, rpb.PLACEMENT_RECOMMENDED_FOR_YOU, [], rng, arm, timeout_s
            )
            if clicked:
                events += self._widget(
                    shopper, number, rpb.PLACEMENT_SIMILAR_ITEMS, clicked[-1:], rng, arm, timeout_s
                )
        if events:
            self._send(events, summary, timeout_s)
        return summary

    def _widget(
        self,
        shopper: Shopper,
        number: int,
        placement: int,
        context: list[str],
        rng: random.Random,
        counts: ArmCounts,
        timeout_s: float,
    ) -> list[fpb.Event]:
        """One recommendation widget: shown, examined by position, clicked by taste."""
        reply = self._recommend.Recommend(
            rpb.RecommendRequest(
                placement=placement,
                user=common_pb2.UserContext(user_id=shopper.user_id),
                context_product_ids=context,
                page_size=WIDGET_PAGE_SIZE,
            ),
            timeout=timeout_s,
        )
        counts.widgets += 1
        stamp = Timestamp()
        stamp.FromDatetime(self._clock())
        taste = self.taste(shopper)
        event = _event_maker(
            f"{shopper.user_id}-{number}-w{placement}",
            stamp,
            shopper.user_id,
            reply.attribution_token,
        )
        events: list[fpb.Event] = []
        for item in reply.items:
            events.append(event(fpb.EVENT_TYPE_IMPRESSION, "imp", item))
            counts.widget_impressions += 1
            liking = taste.liking(self._attributes.get(item.product_id, {}), item.price)
            attraction = min(0.95, WIDGET_ATTRACTION * liking)
            examined = rng.random() < self._model.examine(item.position)
            clicked = rng.random() < attraction
            carted = rng.random() < WIDGET_CART
            bought = rng.random() < BUY
            if not (examined and clicked):
                continue
            events.append(event(fpb.EVENT_TYPE_CLICK, "click", item))
            counts.widget_clicks += 1
            _cart_and_buy(event, item, carted, bought, counts, events)
        return events

    def _shop(self, shopper: Shopper, searches_each: int, timeout_s: float) -> Summary:
        summary = Summary()
        rng = random.Random(f"{self._seed}/{shopper.user_id}")
        events: list[fpb.Event] = []
        for number in range(searches_each):
            query_id = shopper.queries[number % len(shopper.queries)]
            events += self._search_once(shopper, query_id, number, rng, summary, timeout_s)
        if events:
            self._send(events, summary, timeout_s)
        return summary

    def _search_once(
        self,
        shopper: Shopper,
        query_id: str,
        number: int,
        rng: random.Random,
        summary: Summary,
        timeout_s: float,
    ) -> list[fpb.Event]:
        reply = self._search.Search(
            spb.SearchRequest(
                query=self._queries[query_id],
                user=common_pb2.UserContext(user_id=shopper.user_id),
                page_size=self._model.page_size,
            ),
            timeout=timeout_s,
        )
        counts = summary.arm(reply.experiment_arm)
        counts.searches += 1
        stamp = Timestamp()
        stamp.FromDatetime(self._clock())
        judged = self._labels.get(query_id, {})
        event = _event_maker(
            f"{shopper.user_id}-{number}", stamp, shopper.user_id, reply.attribution_token
        )
        events: list[fpb.Event] = []
        for result in reply.results:
            events.append(event(fpb.EVENT_TYPE_IMPRESSION, "imp", result))
            counts.impressions += 1
            relevance = judged.get(result.product_id, "Irrelevant")
            attraction = ATTRACTION.get(relevance, ATTRACTION["Irrelevant"])
            if result.price > shopper.budget:
                attraction *= self._model.over_budget
            liking = self._model.liking(self._attributes.get(result.product_id, {}))
            if self._tastes:
                liking *= self.taste(shopper).liking(
                    self._attributes.get(result.product_id, {}), result.price
                )
            attraction = min(0.95, attraction * liking)
            # Both draws are made for every result, so a change in one result's relevance
            # does not shift the dice of the results after it.
            examined = rng.random() < self._model.examine(result.position)
            clicked = rng.random() < attraction
            carted = rng.random() < CART.get(relevance, CART["Irrelevant"])
            bought = rng.random() < BUY
            if not (examined and clicked):
                continue
            events.append(event(fpb.EVENT_TYPE_CLICK, "click", result))
            counts.clicks += 1
            _cart_and_buy(event, result, carted, bought, counts, events)
        return events

    def _send(self, events: list[fpb.Event], summary: Summary, timeout_s: float) -> None:
        reply = self._feedback.RecordEvents(
            fpb.RecordEventsRequest(events=events), timeout=timeout_s
        )
        summary.events_sent += len(events)
        summary.events_accepted += reply.accepted
        summary.events_duplicate += reply.duplicates
        summary.events_rejected += reply.rejected
        for result in reply.results:
            if result.status == fpb.EVENT_STATUS_REJECTED:
                summary.rejections[result.error.split(":")[0]] += 1


def _event_maker(base: str, stamp: Timestamp, user_id: str, token: str) -> Callable[..., fpb.Event]:
    """``event(kind, tag, item, **fields)``: the event of a shown item (a search result or
    a recommendation: both have product_id and position), its id made of ``base``, the tag
    and the item's position, so a resend carries the same ids."""

    def event(kind: int, tag: str, item: Any, **fields: Any) -> fpb.Event:
        return fpb.Event(
            event_id=f"{base}-{tag}-{item.position}",
            type=kind,
            timestamp=stamp,
            user_id=user_id,
            product_id=item.product_id,
            attribution_token=token,
            position=item.position,
            **fields,
        )

    return event


def _cart_and_buy(
    event: Callable[..., fpb.Event],
    item: Any,
    carted: bool,
    bought: bool,
    counts: ArmCounts,
    events: list[fpb.Event],
) -> None:
    """After a click: the add-to-cart and then the purchase (at the item's price) the dice
    decided, appended to ``events`` and counted."""
    if not carted:
        return
    events.append(event(fpb.EVENT_TYPE_ADD_TO_CART, "cart", item))
    counts.carts += 1
    if bought:
        price = round(item.price, 2) or 1.0
        events.append(event(fpb.EVENT_TYPE_PURCHASE, "buy", item, amount=price, currency="USD"))
        counts.purchases += 1
        counts.revenue += price
