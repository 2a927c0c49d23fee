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

The ground truth never leaves the simulator: the suite sees only queries and events.
Runs are seeded: the same seed against the same suite state makes the same decisions
and the same event ids (sending them again stores nothing new).
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime

from google.protobuf.timestamp_pb2 import Timestamp
from shopsense.common.v1 import common_pb2
from shopsense.feedback.v1 import feedback_service_pb2 as fpb
from shopsense.feedback.v1 import feedback_service_pb2_grpc as fpb_grpc
from shopsense.search.v1 import search_service_pb2 as spb
from shopsense.search.v1 import search_service_pb2_grpc as spb_grpc

from shared.data.dataset import Dataset
from shared.rpc.clients import open_channel

# Probability that an examined result is clicked, by hidden relevance.
ATTRACTION = {"Exact": 0.55, "Partial": 0.15, "Irrelevant": 0.02}
# Probability that a clicked result goes into the cart, and that a cart item is bought.
CART = {"Exact": 0.35, "Partial": 0.08, "Irrelevant": 0.01}
BUY = 0.5


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


@dataclass
class ArmCounts:
    searches: int = 0
    impressions: int = 0
    clicks: int = 0
    carts: int = 0
    purchases: int = 0
    revenue: float = 0.0


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
    ) -> None:
        self._queries = {
            q.query_id: q.text for q in dataset.queries if dataset.labels.get(q.query_id)
        }
        if not self._queries:
            raise ValueError("dataset: no judged queries to simulate shoppers with")
        self._labels = dataset.labels
        self._prices = {p.product_id: p.price for p in dataset.products}
        self._attributes = {p.product_id: p.attributes for p in dataset.products}
        self._search = spb_grpc.SearchServiceStub(open_channel(gateway_target))
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
        if concurrency <= 1:
            for shopper in population:
                summary.merge(self._shop(shopper, searches_each, timeout_s))
            return summary
        with ThreadPoolExecutor(concurrency, thread_name_prefix="shopper") as pool:
            for part in pool.map(lambda s: self._shop(s, searches_each, timeout_s), population):
                summary.merge(part)
        return summary

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
        base = f"{shopper.user_id}-{number}"
        events = []

        def event(kind: int, tag: str, result: spb.SearchResult, **fields) -> fpb.Event:
            return fpb.Event(
                event_id=f"{base}-{tag}-{result.position}",
                type=kind,
                timestamp=stamp,
                user_id=shopper.user_id,
                product_id=result.product_id,
                attribution_token=reply.attribution_token,
                position=result.position,
                **fields,
            )

        for result in reply.results:
            events.append(event(fpb.EVENT_TYPE_IMPRESSION, "imp", result))
            counts.impressions += 1
            relevance = judged.get(result.product_id, "Irrelevant")
            attraction = ATTRACTION.get(relevance, ATTRACTION["Irrelevant"])
            if result.price > shopper.budget:
                attraction *= self._model.over_budget
            liking = self._model.liking(self._attributes.get(result.product_id, {}))
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
            if carted:
                events.append(event(fpb.EVENT_TYPE_ADD_TO_CART, "cart", result))
                counts.carts += 1
                if bought:
                    price = round(result.price, 2) or 1.0
                    events.append(
                        event(fpb.EVENT_TYPE_PURCHASE, "buy", result, amount=price, currency="USD")
                    )
                    counts.purchases += 1
                    counts.revenue += price
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
