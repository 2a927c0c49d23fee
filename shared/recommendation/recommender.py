"""The recommender: candidate sources blended per placement, with a reason for each item.

Sources (each a score per product in [0, 1]: the text cosines as they are, the others
divided by the best candidate's score in the request):

- ``co_purchase``, ``co_cart``, ``co_view``: co-occurrence similarity (``aggregates``) to
  the request's seeds: the context products, or for a shopper's placement their recent
  history weighted by kind and recency;
- ``content``: cosine of each product's text vector with the seeds' mean vector, so a
  product nobody has bought yet can be recommended the day it is added;
- ``new``: the same cosine for the products nobody has interacted with yet (their own
  source, so the co-occurrence of established products does not drown them);
- ``trending``: recent kind-weighted interactions, in the context's class when it has one;
- ``history``: the shopper's own purchases (and, for RECOMMENDED_FOR_YOU, carts; a view
  only seeds): buy again, by the baskets each product is in, a basket counting less the more
  baskets came after it (TIFU-KNN's within-shopper decay);
- ``sequence``: the fine-tuned ``sequence_recommender`` (served by Triton): the cosine of
  each product's item-tower embedding with the shopper tower's vector for the shopper's
  recent events, i.e. what shoppers with such a history did next. The service computes
  the shopper vector (:meth:`Recommender.sequence_inputs` gives the events) and the
  catalog's embeddings per model version (:meth:`Recommender.set_sequence`); without a
  trained version the source is empty.

For RECOMMENDED_FOR_YOU the seeds are every past basket, each product weighted by the
basket's decay over the basket's size, and the co-occurrence scores lean towards products
bought often (decayed purchase count to ``POPULARITY_EXPONENT``): a next basket is more
likely to hold a best seller than a rare neighbour of equal similarity.

The blend is a weighted sum with weights per placement (``DEFAULT_WEIGHTS``). The v1
weights of RECOMMENDED_FOR_YOU, the history decay, the seeds and the popularity exponent
were tuned for next-basket Recall@20 on the Online Retail dev split at 2011-03-01 (checked
on 2010-12-01), never on the evaluation's split; the other placements' were set by hand. When a
placement's own sources have nothing (cold shopper, unknown context), the trending list
answers and ``fallback`` says so. Every public method takes the recommender's lock: the
feedback poller ingests while requests read.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from shared.data.catalog import Product
from shared.errors import InvalidArgument
from shared.recommendation.aggregates import CO_SOURCES, CoOccurrence, ItemIds, Trending
from shared.recommendation.diversity import mmr_order
from shared.recommendation.events import CART, PURCHASE, VIEW, Decay, Interaction
from shared.recommendation.sequence_inputs import gap_buckets
from shared.recommendation.shoppers import Profile, ShopperStates, Step, profile_vector
from shared.search.filters import Filters, fold_spelling, normalize_value
from shared.settings import RecommendSettings

SIMILAR_ITEMS = "similar_items"
FREQUENTLY_BOUGHT_TOGETHER = "frequently_bought_together"
RECOMMENDED_FOR_YOU = "recommended_for_you"
TRENDING = "trending"
BUY_AGAIN = "buy_again"
PLACEMENTS = (SIMILAR_ITEMS, FREQUENTLY_BOUGHT_TOGETHER, RECOMMENDED_FOR_YOU, TRENDING, BUY_AGAIN)
CONTENT, TRENDING_SOURCE, HISTORY, NEW = "content", "trending", "history", "new"
SEQUENCE = "sequence"
SOURCES = (*CO_SOURCES, CONTENT, NEW, TRENDING_SOURCE, HISTORY, SEQUENCE)
SEQUENCE_MODEL = "sequence_recommender"
# Model versions whose catalog embeddings are kept (the newest and an experiment's pins).
_SEQUENCE_VERSIONS_KEPT = 4
RECOMMENDER_VERSION = "blend-v1"
DAY_S = 86400.0

# RECOMMENDED_FOR_YOU's default weight of the sequence source: 0, off. On Online Retail
# (split 2011-06-01) a model retrained from the imported orders learnt the order of lines
# within an invoice, and blending it at 0.5 cost 0.007 Recall@20 (README).
SEQUENCE_WEIGHT = 0.0
# The softmax temperature the sequence model trains with (its cosine / 0.05 logits).
SEQUENCE_TEMPERATURE = 0.05

DEFAULT_WEIGHTS: dict[str, dict[str, float]] = {
    # Like the product: its text, and what shoppers looked at with it (what they bought
    # with it is a complement: FREQUENTLY_BOUGHT_TOGETHER's).
    SIMILAR_ITEMS: {CONTENT: 1.0, "co_view": 0.5, "co_cart": 0.2, "co_purchase": 0.1},
    FREQUENTLY_BOUGHT_TOGETHER: {
        "co_purchase": 1.0,
        "co_cart": 0.6,
        "co_view": 0.2,
        CONTENT: 0.15,
    },
    RECOMMENDED_FOR_YOU: {
        HISTORY: 1.0,
        "co_purchase": 0.4,
        "co_cart": 0.3,
        "co_view": 0.2,
        CONTENT: 0.1,
        # Products nobody has bought yet, by text (dev split: 0.006 of the new products
        # found against 0 at weight 0, for -0.0002 Recall@20; at 1.0, 0.023 for -0.019).
        NEW: 0.6,
        # Only re-ranks the personal candidates: what sells now (season) is bought again.
        TRENDING_SOURCE: 0.2,
        # The fine-tuned sequence model joins with SHOPSENSE_RECOMMEND_SEQUENCE_WEIGHT (off
        # by default: see SEQUENCE_WEIGHT).
    },
    TRENDING: {TRENDING_SOURCE: 1.0},
    BUY_AGAIN: {HISTORY: 1.0},
}
# How much each kind of interaction says about interest, as a seed or in the history score.
KIND_WEIGHTS = {VIEW: 0.2, CART: 0.5, PURCHASE: 1.0}
_CO_KIND = {"co_view": VIEW, "co_cart": CART, "co_purchase": PURCHASE}
# Sources whose scores are cosines in [0, 1] already, blended as they are: divided by the
# best candidate's, a weak likeness in a small catalog would count as much as a strong one.
_ABSOLUTE = frozenset({CONTENT, NEW})
# The reviews' weight in trending: below any interaction's (forward-decay weights are >= 1
# from the anchor on, and interactions older than 30 half-lives matter to no one).
_REVIEW_PRIOR = 1e-9
# Candidates MMR chooses from, per slot of the page.
_MMR_POOL = 5
# Candidates each source contributes before the blend.
_PER_SOURCE = 200
# Per basket further back, a past basket's weight in the history score and the seeds.
BASKET_DECAY = 0.95
# RECOMMENDED_FOR_YOU's co-occurrence scores times (decayed purchases) ** this.
POPULARITY_EXPONENT = 0.25
_TIE_BREAK = 1e-6
_REASON_SEEDS = 3


@dataclass(frozen=True)
class RecommenderOptions:
    """The recommender's knobs (the service's settings fill them)."""

    cooccurrence_half_life_s: float = 60 * 86400.0
    trending_half_life_s: float = 7 * 86400.0
    # Context of a co-occurrence: earlier baskets within this window, this many items.
    cooccurrence_window_s: float = 30 * 86400.0
    context_limit: int = 30
    earlier_weight: float = 0.5
    basket_gap_s: float = 1800.0
    # A shopper's whole year of baskets counts for buy-again (heavy shoppers exceed 200).
    history_limit: int = 1000
    weights: dict[str, dict[str, float]] = field(default_factory=lambda: DEFAULT_WEIGHTS)
    # MMR's trade of relevance for variety (``diversity``); 0: the blend's order.
    diversity: float = 0.0

    @classmethod
    def from_settings(cls, settings: RecommendSettings) -> RecommenderOptions:
        """The recommendation service's settings (``SHOPSENSE_RECOMMEND_*``) as options."""
        return cls(
            cooccurrence_half_life_s=settings.cooccurrence_half_life_days * DAY_S,
            trending_half_life_s=settings.trending_half_life_days * DAY_S,
            history_limit=settings.history_limit,
            diversity=settings.diversity,
            weights=with_sequence_weight(DEFAULT_WEIGHTS, settings.sequence_weight),
        )


def with_sequence_weight(
    weights: dict[str, dict[str, float]], weight: float
) -> dict[str, dict[str, float]]:
    """``weights`` with RECOMMENDED_FOR_YOU blending the sequence source at ``weight`` (0:
    not at all, and the model is not asked)."""
    out = {placement: dict(sources) for placement, sources in weights.items()}
    out[RECOMMENDED_FOR_YOU].pop(SEQUENCE, None)
    if weight > 0:
        out[RECOMMENDED_FOR_YOU][SEQUENCE] = weight
    return out


@dataclass(frozen=True)
class RecQuery:
    """One request, checked (``shared/contracts/recommend.py`` builds it)."""

    placement: str
    user: str = ""
    session: str = ""
    context: Sequence[str] = ()
    history: Sequence[Interaction] = ()
    filters: Filters = field(default_factory=Filters)
    page_size: int = 10
    exclude_purchased: bool = False
    sources: Sequence[str] = ()
    history_only: bool = False
    # MMR's trade of relevance for variety, 0 to 1; None: the recommender's setting.
    diversity: float | None = None
    # The sequence model's version to use ("" = the newest held) and, once the service
    # has asked the model, the shopper's vector (None: no sequence source).
    sequence_version: str = ""
    sequence_vector: np.ndarray | None = None


@dataclass(frozen=True)
class Reason:
    kind: str  # bought_together, viewed_together, similar, because_you_viewed, bought_before, trending
    text: str
    product_ids: tuple[str, ...] = ()
    product_class: str = ""


@dataclass(frozen=True)
class ScorePart:
    source: str
    value: float
    weight: float

    @property
    def contribution(self) -> float:
        return self.value * self.weight


@dataclass(frozen=True)
class RecItem:
    product: Product
    score: float
    reason: Reason
    parts: tuple[ScorePart, ...]


@dataclass(frozen=True)
class RecAnswer:
    items: list[RecItem]
    fallback: bool = False
    unknown: list[str] = field(default_factory=list)
    content_degraded: bool = False
    versions: dict[str, str] = field(default_factory=dict)
    sequence_degraded: bool = False


@dataclass(frozen=True)
class _Catalog:
    """The catalog snapshot aligned with ``ItemIds``: which items exist, their records,
    vectors (zeros where none), normalised classes and prices."""

    generation: int = -1
    version: str = ""
    available: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))
    products: dict[int, Product] = field(default_factory=dict)
    vectors: np.ndarray | None = None
    classes: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=object))
    prices: np.ndarray = field(default_factory=lambda: np.zeros(0))
    # log1p(review count) x rating / 5 (the trending prior); 0 where unreviewed.
    reviews: np.ndarray = field(default_factory=lambda: np.zeros(0))
    attributes: frozenset[str] = frozenset()


@dataclass(frozen=True)
class SequenceTable:
    """One sequence model version's item-tower embeddings, rows aligned with ``ItemIds``
    (zeros for products it has none for)."""

    version: str
    embeddings: np.ndarray
    known: np.ndarray
    history_length: int
    catalog_generation: int


def _baskets(steps: Sequence[Step]) -> list[list[Step]]:
    """``steps`` (oldest first) grouped into baskets, oldest first: by basket id, or for a
    request's history (no basket id) by time, a basket's lines sharing their time."""
    baskets: list[list[Step]] = []
    last: str | float | None = None
    for step in steps:
        key = step.basket or step.at
        if not baskets or key != last:
            baskets.append([])
        baskets[-1].append(step)
        last = key
    return baskets


class Recommender:
    """Ingests interactions, holds the catalog snapshot, answers ``RecQuery``s."""

    def __init__(self, options: RecommenderOptions | None = None) -> None:
        self.options = options or RecommenderOptions()
        self._lock = threading.RLock()
        self._items = ItemIds()
        self._co_decay = Decay(self.options.cooccurrence_half_life_s)
        self._cooccurrence = CoOccurrence(self._items)
        self._trending = Trending(Decay(self.options.trending_half_life_s))
        # Popularity on the co-occurrence's time scale (RECOMMENDED_FOR_YOU's lean).
        self._popular = Trending(Decay(self.options.cooccurrence_half_life_s))
        self._shoppers = ShopperStates(self.options.history_limit, self.options.basket_gap_s)
        self._catalog = _Catalog()
        # Version -> its table; the newest version set last is the default.
        self._sequence: dict[str, SequenceTable] = {}
        self._sequence_newest = ""
        # Placement -> weights learned from feedback (shared.recommendation.blend), used
        # instead of the options' for that placement.
        self._learned: dict[str, dict[str, float]] = {}
        self.events_read = 0
        self.newest_event: float | None = None

    # -- state -----------------------------------------------------------------------

    def weights(self, placement: str) -> dict[str, float]:
        """The blend's weights of ``placement``: learned ones when set, else the options'."""
        learned = self._learned.get(placement)
        return dict(learned if learned is not None else self.options.weights[placement])

    def set_learned_weights(self, weights: Mapping[str, Mapping[str, float]]) -> None:
        """Use these weights for their placements (others keep the options'); a source a
        placement's options do not blend is refused (ValueError naming it)."""
        for placement, sources in weights.items():
            unknown = set(sources) - set(self.options.weights[placement])
            if unknown:
                raise ValueError(f"weights: {placement} does not blend {sorted(unknown)}")
        self._learned = {p: dict(w) for p, w in weights.items()}

    def set_catalog(
        self,
        products: Sequence[Product],
        vectors: np.ndarray | None,
        generation: int,
        version: str,
    ) -> None:
        """Replace the catalog snapshot (``vectors``: one row per product, or None)."""
        with self._lock:
            indexes = [self._items.add(p.product_id) for p in products]
            size = len(self._items)
            available = np.zeros(size, dtype=bool)
            available[indexes] = True
            classes = np.full(size, "", dtype=object)
            prices = np.zeros(size)
            reviews = np.zeros(size)
            names: set[str] = set()
            for index, product in zip(indexes, products, strict=True):
                classes[index] = normalize_value(product.product_class)
                prices[index] = product.price
                reviews[index] = np.log1p(max(product.review_count, 0)) * product.rating / 5
                names.update(product.attributes)
            aligned = None
            if vectors is not None and len(products):
                aligned = np.zeros((size, vectors.shape[1]), dtype=np.float32)
                aligned[indexes] = vectors
            self._catalog = _Catalog(
                generation=generation,
                version=version,
                available=available,
                products=dict(zip(indexes, products, strict=True)),
                vectors=aligned,
                classes=classes,
                prices=prices,
                reviews=reviews,
                attributes=frozenset(names),
            )

    def set_sequence(
        self,
        version: str,
        product_ids: Sequence[str],
        embeddings: np.ndarray,
        history_length: int,
        newest: bool = True,
    ) -> None:
        """Hold ``version``'s item embeddings of the catalog's products (for the catalog
        generation loaded now); ``newest``: requests without a pin use it."""
        with self._lock:
            rows = [self._items.add(pid) for pid in product_ids]
            size = len(self._items)
            table = np.zeros((size, embeddings.shape[1] if len(rows) else 0), dtype=np.float32)
            known = np.zeros(size, dtype=bool)
            if rows:
                table[rows] = embeddings
                known[rows] = True
            self._sequence[version] = SequenceTable(
                version, table, known, history_length, self._catalog.generation
            )
            if newest:
                self._sequence_newest = version
            for old in [v for v in self._sequence if v != self._sequence_newest]:
                if len(self._sequence) <= _SEQUENCE_VERSIONS_KEPT:
                    break
                del self._sequence[old]

    def drop_sequence(self) -> None:
        """No sequence model is served any more: the source goes quiet."""
        with self._lock:
            self._sequence.clear()
            self._sequence_newest = ""

    def sequence_table(self, version: str = "") -> SequenceTable | None:
        """The table of ``version`` ("" = the newest), if held for the current catalog."""
        with self._lock:
            table = self._sequence.get(version or self._sequence_newest)
            if table is None or table.catalog_generation != self._catalog.generation:
                return None
            return table

    def sequence_inputs(
        self, query: RecQuery, table: SequenceTable
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """The shopper tower's input for ``query``: the item embeddings ``[T, d]``, kinds
        and gap buckets of the newest events the model has embeddings for; None when the
        shopper has none."""
        with self._lock:
            steps: list[Step] = []
            for step in self._history(query, self._available(), {}):
                if step.item >= len(table.known) or not table.known[step.item]:
                    continue
                # As training reads histories: a repeat of the event before it (same
                # product, same kind) is one event, at its first time.
                if steps and (steps[-1].item, steps[-1].kind) == (step.item, step.kind):
                    continue
                steps.append(step)
            steps = steps[-table.history_length :]
            if not steps:
                return None
            rows = [s.item for s in steps]
            kinds = np.array([s.kind for s in steps], dtype=np.int64)
            gaps = gap_buckets([s.at for s in steps], len(steps))
            return table.embeddings[rows], kinds, gaps

    def profile(self, user: str, session: str) -> Profile:
        """The shopper's profile (``shared.recommendation.shoppers.profile_vector``) over the
        catalog's taste vectors (``taste_vectors``: ranking computes the candidates' alike),
        computed now from their state (products still in the catalog only); empty for a
        shopper this holds nothing of."""
        from shared.recommendation.shoppers import taste_vectors_of

        with self._lock:
            catalog = self._catalog
            available = self._available()
            steps = [s for s in self._shoppers.steps(user, session) if available[s.item]]
        # Outside the lock: a new snapshot's taste vectors take about a second, once, and
        # recommendations need not wait for them (the snapshot is never changed in place).
        products = catalog.products
        tastes = taste_vectors_of(
            catalog.vectors,
            catalog.classes,
            lambda row: products[row].attributes if row in products else {},
        )
        vector, used = profile_vector(steps, tastes)
        return Profile(vector, catalog.version if vector is not None else "", used)

    def attribute_names(self) -> set[str]:
        """The catalog's attribute names (what a filter may name)."""
        return set(self._catalog.attributes)

    @property
    def catalog_generation(self) -> int:
        return self._catalog.generation

    def ingest(self, interactions: Iterable[Interaction]) -> int:
        """Count interactions (oldest first is best); how many were taken."""
        options = self.options
        taken = 0
        with self._lock:
            for event in interactions:
                if not (event.user or event.session):
                    continue
                item = self._items.add(event.product_id)
                if self._co_decay.needs_rescale(event.at):
                    self._cooccurrence.scale(self._co_decay.rescale(event.at))
                weight = self._co_decay.weight(event.at)
                state = self._shoppers.state_for_event(event.user, event.session)
                basket = state.basket_of(event.session, event.at, options.basket_gap_s)
                step = Step(item, event.kind, event.at, max(1, event.quantity), basket)
                context = [
                    (s.item, s.kind, 1.0 if s.basket == basket else options.earlier_weight)
                    for s in state.context(
                        step, options.cooccurrence_window_s, options.context_limit
                    )
                ]
                state.append(step)
                self._cooccurrence.add(item, event.kind, weight, context)
                self._trending.add(item, event.kind, event.at)
                self._popular.add(item, event.kind, event.at)
                if self.newest_event is None or event.at > self.newest_event:
                    self.newest_event = event.at
                taken += 1
                if self._cooccurrence.pending() > 5_000_000:
                    self._cooccurrence.flush()
            self._cooccurrence.flush()
            self.events_read += taken
        return taken

    def forget(self, user: str, session: str) -> int:
        with self._lock:
            return self._shoppers.forget(user, session)

    def holds_shopper(self, shopper_id: str) -> bool:
        with self._lock:
            return self._shoppers.holds(shopper_id)

    def stats(self) -> dict[str, float | int | None]:
        with self._lock:
            return {
                "products": int(self._catalog.available.sum()),
                "events_read": self.events_read,
                "newest_event": self.newest_event,
                "shoppers": len(self._shoppers),
                "pairs": self._cooccurrence.pairs(),
                "catalog_generation": self._catalog.generation,
            }

    # -- answers ---------------------------------------------------------------------

    def recommend(self, query: RecQuery) -> RecAnswer:
        with self._lock:
            return self._recommend(query)

    def _recommend(self, query: RecQuery) -> RecAnswer:
        catalog = self._catalog
        size = len(self._items)
        for name in query.sources:
            if name not in SOURCES:
                raise InvalidArgument(
                    f"options.sources: unknown source {name!r} (known: {', '.join(SOURCES)})"
                )
        available = self._available()
        unknown: dict[str, None] = {}  # ordered, each id once
        context: list[int] = []
        for pid in dict.fromkeys(query.context):
            index = self._items.get(pid)
            if index is None or not available[index]:
                unknown[pid] = None
            else:
                context.append(index)
        history = self._history(query, available, unknown)
        allowed = available & self._filter_mask(query.filters, catalog, size)
        allowed[context] = False
        if query.exclude_purchased and query.placement != BUY_AGAIN:
            allowed[[s.item for s in history if s.kind == PURCHASE]] = False

        weights = self.weights(query.placement)
        if query.sources:
            weights = {name: weights.get(name, 1.0) for name in query.sources}
        scores, seeds = self._source_scores(
            query.placement,
            weights,
            context,
            history,
            size,
            self._query_sequence(query, size, history),
        )
        content_degraded = CONTENT in weights and catalog.vectors is None
        diversity = self.options.diversity if query.diversity is None else query.diversity
        items = self._blend(
            scores, weights, allowed, query.page_size, seeds, query.placement, diversity
        )
        fallback = False
        if not items and query.placement != TRENDING:
            fallback = True
            trend = {TRENDING_SOURCE: self._trending_scores(context, size)}
            items = self._blend(
                trend, {TRENDING_SOURCE: 1.0}, allowed, query.page_size, {}, TRENDING
            )
        versions = {"recommender": RECOMMENDER_VERSION}
        if catalog.version:
            versions["text_encoder"] = catalog.version
        if SEQUENCE in weights and query.sequence_vector is not None:
            versions[SEQUENCE_MODEL] = query.sequence_version
        return RecAnswer(items, fallback, list(unknown), content_degraded, versions)

    def _available(self) -> np.ndarray:
        """bool ``[products known]``: in the current catalog (a product the events named
        but the catalog does not hold is not)."""
        available = np.zeros(len(self._items), dtype=bool)
        available[: len(self._catalog.available)] = self._catalog.available
        return available

    def _history(
        self, query: RecQuery, available: np.ndarray, unknown: dict[str, None]
    ) -> list[Step]:
        """The shopper's steps (stored unless ``history_only``, then the request's),
        oldest first, the newest ``history_limit``; products not in the catalog dropped."""
        steps: list[Step] = []
        if not query.history_only:
            steps = [
                s
                for s in self._shoppers.steps(query.user, query.session)
                if s.item < len(available) and available[s.item]
            ]
        for event in query.history:
            index = self._items.get(event.product_id)
            if index is None or not available[index]:
                unknown[event.product_id] = None
                continue
            steps.append(Step(index, event.kind, event.at, max(1, event.quantity), ""))
        steps.sort(key=lambda s: s.at)
        return steps[-self.options.history_limit :]

    def _filter_mask(self, filters: Filters, catalog: _Catalog, size: int) -> np.ndarray:
        mask = np.ones(size, dtype=bool)
        if filters.is_empty():
            return mask
        known = len(catalog.classes)
        if filters.classes:
            wanted = {normalize_value(name) for name in filters.classes}
            mask[:known] &= np.isin(catalog.classes, list(wanted))
        prices = catalog.prices
        if filters.price_min is not None:
            mask[:known] &= prices >= filters.price_min
        if filters.price_max is not None:
            mask[:known] &= prices <= filters.price_max
        if filters.attributes:
            wanted_values = {
                fold_spelling(name): {fold_spelling(v) for v in values}
                for name, values in filters.attributes.items()
            }
            for index in np.flatnonzero(mask[:known]):
                product = catalog.products.get(int(index))
                attributes = {
                    fold_spelling(k): fold_spelling(v)
                    for k, v in (product.attributes if product else {}).items()
                }
                if any(attributes.get(n) not in vs for n, vs in wanted_values.items()):
                    mask[index] = False
        mask[known:] = False
        return mask

    def _seed_weights(
        self, placement: str, context: list[int], history: list[Step]
    ) -> dict[int, float]:
        """Item -> weight of the products the request is about."""
        seeds: dict[int, float] = dict.fromkeys(context, 1.0)
        if placement in (SIMILAR_ITEMS, FREQUENTLY_BOUGHT_TOGETHER) or not history:
            return seeds
        # Every basket seeds, split over its products, so one big order does not drown the
        # rest; older baskets count less (measured: better than the last baskets only).
        baskets = _baskets(history)
        for back, basket in enumerate(reversed(baskets)):
            share = BASKET_DECAY**back / len(basket)
            for step in basket:
                seeds[step.item] = seeds.get(step.item, 0.0) + KIND_WEIGHTS[step.kind] * share
        return seeds

    def _history_scores(self, placement: str, history: list[Step], size: int) -> np.ndarray:
        """Per product, the baskets it is in, each ``BASKET_DECAY`` per later basket, by its
        strongest kind there. Quantity is left out: on the dev split it made recall worse."""
        scores = np.zeros(size)
        # Buy again: purchases; for you, carts too (a view only seeds: showing the product
        # just looked at again is a "recently viewed" list, not a recommendation).
        wanted = (PURCHASE,) if placement == BUY_AGAIN else (CART, PURCHASE)
        steps = [s for s in history if s.kind in wanted]
        for back, basket in enumerate(reversed(_baskets(steps))):
            strongest: dict[int, float] = {}
            for step in basket:
                kind = KIND_WEIGHTS[step.kind]
                strongest[step.item] = max(strongest.get(step.item, 0.0), kind)
            decay = BASKET_DECAY**back
            for item, kind in strongest.items():
                scores[item] += kind * decay
        # Ties (same baskets) go to the product touched last, as a time decay would have it.
        for rank, step in enumerate(steps, start=1):
            scores[step.item] += _TIE_BREAK * rank / len(steps)
        return scores

    def _trending_scores(self, context: list[int], size: int) -> np.ndarray:
        """Trending, within the context's most common class when it has one. A product's
        reviews add a prior far below any interaction's weight: a store without events
        yet trends by its best-reviewed products instead of showing nothing."""
        scores = self._trending.scores(size).copy()
        reviews = self._catalog.reviews
        scores[: len(reviews)] += _REVIEW_PRIOR * reviews
        classes = self._catalog.classes
        named = [classes[i] for i in context if i < len(classes) and classes[i]]
        if named:
            top = Counter(named).most_common(1)[0][0]
            in_class = np.zeros(size, dtype=bool)
            in_class[: len(classes)] = classes == top
            scores[~in_class] = 0.0
        return scores

    def _query_sequence(self, query: RecQuery, size: int, history: list[Step]) -> np.ndarray:
        """Per product, the model's probability that it comes next (softmax of cosine /
        temperature over the products it has embeddings for), over the most probable's;
        zeros without a vector or a table of its version. Only the cosines' differences
        carry meaning (training is a softmax): their absolute values may all be
        negative. The shopper's own products are left out, as the model was evaluated
        (buying again is the history source's part)."""
        scores = np.zeros(size)
        table = self._sequence.get(query.sequence_version or self._sequence_newest)
        vector = query.sequence_vector
        if table is None or vector is None or len(vector) != table.embeddings.shape[1]:
            return scores
        rows = min(size, len(table.embeddings))
        known = table.known[:rows].copy()
        known[[s.item for s in history if s.item < rows]] = False
        if not known.any():
            return scores
        values = table.embeddings[:rows] @ np.asarray(vector, dtype=np.float32)
        best = float(values[known].max())
        scores[:rows] = np.where(known, np.exp((values - best) / SEQUENCE_TEMPERATURE), 0.0)
        return scores

    def _source_scores(
        self,
        placement: str,
        weights: dict[str, float],
        context: list[int],
        history: list[Step],
        size: int,
        sequence: np.ndarray | None = None,
    ) -> tuple[dict[str, np.ndarray], dict[int, float]]:
        seeds = self._seed_weights(placement, context, history)
        popular = self._popular.scores(size)
        lean = popular**POPULARITY_EXPONENT if placement == RECOMMENDED_FOR_YOU else None
        scores: dict[str, np.ndarray] = {}
        for name in weights:
            if name in _CO_KIND:
                scores[name] = self._cooccurrence.scores(_CO_KIND[name], seeds)
                if lean is not None:
                    scores[name] *= lean
            elif name == CONTENT:
                scores[name] = self._content_scores(seeds, size)
            elif name == NEW:
                # Content for the products nobody has interacted with yet: no co-occurrence
                # can speak for them, so their text's likeness does, on its own scale.
                content = scores.get(CONTENT)
                if content is None:
                    content = self._content_scores(seeds, size)
                scores[name] = np.where(popular > 0, 0.0, content)
            elif name == TRENDING_SOURCE:
                scores[name] = self._trending_scores(context, size)
            elif name == HISTORY:
                scores[name] = self._history_scores(placement, history, size)
            elif name == SEQUENCE:
                scores[name] = sequence if sequence is not None else np.zeros(size)
        return scores, seeds

    def _content_scores(self, seeds: dict[int, float], size: int) -> np.ndarray:
        vectors = self._catalog.vectors
        if vectors is None or not seeds:
            return np.zeros(size)
        rows = [i for i in seeds if i < len(vectors)]
        if not rows:
            return np.zeros(size)
        # float32 throughout: a float64 profile would copy the whole matrix to float64.
        weights = np.array([seeds[i] for i in rows], dtype=np.float32)
        profile = weights @ vectors[rows]
        norm = float(np.linalg.norm(profile))
        if norm == 0:
            return np.zeros(size)
        scores = np.zeros(size)
        scores[: len(vectors)] = np.clip(vectors @ (profile / np.float32(norm)), 0.0, None)
        return scores

    def _blend(
        self,
        scores: dict[str, np.ndarray],
        weights: dict[str, float],
        allowed: np.ndarray,
        page_size: int,
        seeds: dict[int, float],
        placement: str,
        diversity: float = 0.0,
    ) -> list[RecItem]:
        """The page: each source's best allowed candidates, normalised, weighted, summed;
        with ``diversity`` > 0, in MMR's order (an item's score stays the blend's)."""
        candidates: set[int] = set()
        personal = [n for n in scores if n != TRENDING_SOURCE or placement == TRENDING]
        for name in personal:
            masked = np.where(allowed, scores[name], 0.0)
            positive = np.flatnonzero(masked > 0)
            if len(positive) > _PER_SOURCE:
                top = np.argpartition(-masked[positive], _PER_SOURCE)[:_PER_SOURCE]
                positive = positive[top]
            candidates.update(int(i) for i in positive)
        if not candidates:
            return []
        rows = np.fromiter(candidates, dtype=np.int64, count=len(candidates))
        values: dict[str, np.ndarray] = {}
        for name, array in scores.items():
            picked = array[rows]
            if name in _ABSOLUTE:
                values[name] = picked
                continue
            best = float(picked.max()) if len(picked) else 0.0
            values[name] = picked / best if best > 0 else np.zeros(len(rows))
        total = sum(values[name] * weights[name] for name in values)
        trend = values.get(TRENDING_SOURCE, np.zeros(len(rows)))
        # The page's rows in order: every row scoring at least the page_size-th best total
        # (ties at the edge included), then sorted by total, trending, id.
        if len(rows) > page_size:
            edge = np.partition(-total, page_size - 1)[page_size - 1]
            near = np.flatnonzero(-total <= edge)
        else:
            near = np.arange(len(rows))
        ids = self._items.ids
        if diversity > 0 and self._catalog.vectors is not None:
            # MMR over the best candidates (five a slot): the blend's order traded for
            # products less like those already on the list.
            pool = min(len(rows), page_size * _MMR_POOL)
            edge = np.partition(-total, pool - 1)[pool - 1]
            near = np.flatnonzero(-total <= edge)
        order = sorted(
            (int(k) for k in near), key=lambda k: (-total[k], -trend[k], ids[int(rows[k])])
        )
        if diversity > 0 and self._catalog.vectors is not None:
            vectors = self._catalog.vectors
            pooled = np.zeros((len(order), vectors.shape[1]), dtype=np.float32)
            for i, k in enumerate(order):
                if rows[k] < len(vectors):
                    pooled[i] = vectors[rows[k]]
            picked = mmr_order(total[order], pooled, diversity, page_size)
            order = [order[i] for i in picked]
        items = []
        for k in order[:page_size]:
            item = int(rows[k])
            parts = tuple(ScorePart(name, float(values[name][k]), weights[name]) for name in values)
            product = self._catalog.products[item]
            reason = self._reason(item, parts, seeds, placement)
            items.append(RecItem(product, float(total[k]), reason, parts))
        return items

    def _reason(
        self, item: int, parts: tuple[ScorePart, ...], seeds: dict[int, float], placement: str
    ) -> Reason:
        best = max(parts, key=lambda p: p.contribution)
        products = self._catalog.products
        if best.source == TRENDING_SOURCE or best.contribution <= 0:
            product_class = products[item].product_class
            where = f" in {product_class}" if product_class else ""
            if not self._trending.weight(item):  # the reviews' prior alone put it here
                return Reason("trending", f"Well reviewed{where}", (), product_class)
            return Reason("trending", f"Popular{where} this week", (), product_class)
        if best.source == HISTORY:
            return Reason("bought_before", "You bought this before", (products[item].product_id,))
        ranked = self._explaining_seeds(best.source, item, seeds)
        names = tuple(self._items.ids[i] for i in ranked)
        title = products[ranked[0]].title if ranked and ranked[0] in products else ""
        if best.source == NEW:
            return Reason("similar", f"New, like {title}", names)
        if placement == RECOMMENDED_FOR_YOU:
            return Reason("because_you_viewed", f"Because you looked at {title}", names)
        if best.source == "co_purchase":
            return Reason("bought_together", f"Bought together with {title}", names)
        if best.source in ("co_cart", "co_view"):
            return Reason("viewed_together", f"Shoppers also looked at {title}", names)
        return Reason("similar", f"Similar to {title}", names)

    def _explaining_seeds(self, source: str, item: int, seeds: dict[int, float]) -> list[int]:
        """The seeds that contributed most to ``item``'s score in ``source``."""
        seed_rows = [s for s in seeds if s != item]
        if not seed_rows:
            return []
        table = self._sequence.get(self._sequence_newest)
        if source in _CO_KIND:
            similarity = self._cooccurrence.between(_CO_KIND[source], seed_rows, item)
        else:
            vectors = self._catalog.vectors
            if source == SEQUENCE and table is not None:
                vectors = table.embeddings
            if vectors is None or item >= len(vectors):
                return []
            rows = [s for s in seed_rows if s < len(vectors)]
            seed_rows = rows
            similarity = vectors[rows] @ vectors[item] if rows else np.zeros(0)
        contribution = similarity * np.array([seeds[s] for s in seed_rows])
        order = np.argsort(-contribution, kind="stable")[:_REASON_SEEDS]
        return [seed_rows[i] for i in order if contribution[i] > 0]
