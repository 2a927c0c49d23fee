"""Next-basket evaluation of recommenders on purchase histories, and the offline baselines.

Definitions (the same for every system, so numbers compare):

- Split: a time ``split_at``. A case is an identified customer (guests are no one to
  recommend to) with purchases on both sides: the history is every purchase before
  ``split_at`` (oldest first), the target the products of the customer's first invoice at
  or after it. Cases are sorted by shopper.
- Metrics (the ranked list counts a repeated product once, at its first rank; an empty
  target scores 0.0): recall@k = |top-k ∩ target| / |target|; nDCG@k with binary gains and
  the ideal DCG over min(k, |target|) hits; hit rate@k = 1.0 when any of the top k is in
  the target. They are ``shared.evaluation.metrics``' recall, nDCG and MRR with every
  target product judged Exact, so each metric has a single definition.
- A system's scores (``score_system``) are means over the cases of recall@20, nDCG@20 and
  hit rate@10; coverage = distinct products in the top 20 over all cases / catalog size;
  new-product recall = micro recall@20 over the target products first sold on or after
  the split (hits over all such target products; 0.0 when there are none).
- Exposure (fairness): over every case's top 20, the share of all slots that go to the
  most shown 1% of the catalog (at least one product), and the Gini coefficient of the
  slots over every catalog product (0: all shown equally; 1: one product takes all).
  Intra-list diversity: the mean over cases of 1 - cosine between the text vectors of
  each pair in the top 20.

Baselines that need no service: ``Popularity`` (the products on the most distinct invoices
in the 30 days before the split, the same list for everyone) and ``ALSBaseline`` (implicit
ALS on customer x product, the shopper folded in from the case's history).
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
from implicit.cpu.als import AlternatingLeastSquares
from scipy.sparse import csr_matrix
from threadpoolctl import ThreadpoolController, threadpool_limits

from shared.data.dataset import EXACT
from shared.data.online_retail import RetailLine
from shared.evaluation.metrics import mrr_at_k, ndcg_at_k, recall_at_k
from shared.recommendation.diversity import intra_list_diversity

# The cut-offs of SystemScores.
RECALL_K = 20
NDCG_K = 20
HIT_RATE_K = 10
COVERAGE_K = 20
# ALS runs on at most this many threads (its own), with BLAS single-threaded.
ALS_THREADS = 2


@dataclass(frozen=True)
class HistoryItem:
    """One purchased product of a shopper's history: what, when (aware UTC), how many."""

    product_id: str
    at: datetime
    quantity: int


@dataclass(frozen=True)
class EvalCase:
    """A shopper's history before the split (oldest first) and the products of their first
    basket after it."""

    shopper: str
    history: list[HistoryItem]
    target: frozenset[str]


@dataclass(frozen=True)
class SystemScores:
    """A system's mean scores over the cases (see the module docstring)."""

    name: str
    recall_at_20: float
    ndcg_at_20: float
    hit_rate_at_10: float
    coverage: float
    new_product_recall: float
    cases: int
    # Exposure over the top 20 of every case: the share of all slots taken by the 1% of the
    # catalog shown most, and the Gini coefficient over every catalog product's slots.
    top1_share: float = 0.0
    gini: float = 0.0
    # Mean intra-list diversity of the top 20 (1 - cosine of the texts, over pairs); 0.0
    # when no vectors were given.
    intra_list_diversity: float = 0.0


def next_basket_cases(lines: Sequence[RetailLine], split_at: datetime) -> list[EvalCase]:
    """Every identified customer with purchases on both sides of ``split_at``: history =
    the purchases before it (oldest first), target = the products of the first invoice at or
    after it. Guests are left out; sorted by shopper."""
    history: dict[str, list[HistoryItem]] = defaultdict(list)
    first_after: dict[str, tuple[datetime, str]] = {}
    baskets: dict[str, set[str]] = defaultdict(set)  # shopper -> their first basket after
    for line in sorted(lines, key=lambda x: (x.at, x.invoice, x.product_id)):
        shopper = line.customer_id
        if not shopper:
            continue
        if line.at < split_at:
            history[shopper].append(HistoryItem(line.product_id, line.at, line.quantity))
            continue
        first = first_after.setdefault(shopper, (line.at, line.invoice))
        if first == (line.at, line.invoice):
            baskets[shopper].add(line.product_id)
    return [
        EvalCase(shopper, history[shopper], frozenset(baskets[shopper]))
        for shopper in sorted(first_after)
        if history.get(shopper)
    ]


def _judged(target: Collection[str]) -> dict[str, str]:
    """A target set as judgments: every target product is relevant (Exact)."""
    return dict.fromkeys(target, EXACT)


def recall_at(ranked: Sequence[str], target: Collection[str], k: int) -> float:
    """|top-k ∩ target| / |target|; 0.0 for an empty target."""
    return recall_at_k(ranked, _judged(target), k)


def ndcg_at(ranked: Sequence[str], target: Collection[str], k: int) -> float:
    """nDCG@k with binary gains, the ideal DCG over min(k, |target|) hits."""
    return ndcg_at_k(ranked, _judged(target), k)


def hit_rate_at(ranked: Sequence[str], target: Collection[str], k: int) -> float:
    """1.0 when any of the top k is in the target, else 0.0."""
    return 1.0 if mrr_at_k(ranked, _judged(target), k) > 0 else 0.0


def _top(ranked: Sequence[str], k: int) -> list[str]:
    """The first k distinct ids of ``ranked``."""
    return list(dict.fromkeys(ranked))[:k]


def score_system(
    name: str,
    recommend: Callable[[EvalCase], Sequence[str]],
    cases: Sequence[EvalCase],
    *,
    new_products: Collection[str],
    catalog_size: int,
    vectors: Mapping[str, np.ndarray] | None = None,
) -> SystemScores:
    """Score ``recommend`` (case -> ranked product ids) on ``cases``; zeros when there are
    none. ``vectors`` (product id -> unit text vector) give the intra-list diversity."""
    new_products = frozenset(new_products)
    recall = ndcg = hits = 0.0
    recommended: set[str] = set()
    slots: Counter[str] = Counter()
    diversity = 0.0
    new_found = new_wanted = 0
    for case in cases:
        ranked = list(recommend(case))
        recall += recall_at(ranked, case.target, RECALL_K)
        ndcg += ndcg_at(ranked, case.target, NDCG_K)
        hits += hit_rate_at(ranked, case.target, HIT_RATE_K)
        top = _top(ranked, max(COVERAGE_K, RECALL_K))
        recommended.update(top[:COVERAGE_K])
        slots.update(top[:COVERAGE_K])
        if vectors is not None:
            diversity += intra_list_diversity(
                np.array([vectors[p] for p in top[:COVERAGE_K] if p in vectors])
            )
        new_targets = case.target & new_products
        new_wanted += len(new_targets)
        new_found += len(new_targets.intersection(top[:RECALL_K]))
    count = len(cases)
    return SystemScores(
        name=name,
        recall_at_20=recall / count if count else 0.0,
        ndcg_at_20=ndcg / count if count else 0.0,
        hit_rate_at_10=hits / count if count else 0.0,
        coverage=len(recommended) / catalog_size if catalog_size else 0.0,
        new_product_recall=new_found / new_wanted if new_wanted else 0.0,
        cases=count,
        top1_share=top_share(slots, catalog_size, 0.01),
        gini=gini(slots, catalog_size),
        intra_list_diversity=diversity / count if count and vectors is not None else 0.0,
    )


def top_share(slots: Counter[str], catalog_size: int, fraction: float) -> float:
    """The share of all slots taken by the most shown ``fraction`` of the catalog (at least
    one product)."""
    total = sum(slots.values())
    if not total:
        return 0.0
    head = max(1, math.floor(catalog_size * fraction))
    return sum(count for _, count in slots.most_common(head)) / total


def gini(slots: Counter[str], catalog_size: int) -> float:
    """The Gini coefficient of the slots over ``catalog_size`` products (never shown: 0)."""
    size = max(catalog_size, len(slots))
    counts = np.zeros(size)
    counts[: len(slots)] = sorted(slots.values())
    counts.sort()
    total = counts.sum()
    if size == 0 or total == 0:
        return 0.0
    ranks = np.arange(1, size + 1)
    return float((2 * (ranks * counts).sum()) / (size * total) - (size + 1) / size)


class Popularity:
    """The products bought on the most distinct invoices in the ``days`` before
    ``split_at`` (guests included; ties by product id), the same list for every shopper."""

    def __init__(self, lines: Sequence[RetailLine], split_at: datetime, days: int = 30) -> None:
        since = split_at - timedelta(days=days)
        invoices: dict[str, set[str]] = defaultdict(set)
        for line in lines:
            if since <= line.at < split_at:
                invoices[line.product_id].add(line.invoice)
        counts = Counter({product: len(seen) for product, seen in invoices.items()})
        self.ranking: list[str] = sorted(counts, key=lambda p: (-counts[p], p))

    def recommend(self, case: EvalCase, k: int = 20) -> list[str]:
        """The ``k`` most popular products (``case`` is not looked at)."""
        return self.ranking[:k]


class ALSBaseline:
    """Implicit-feedback ALS (``implicit``'s CPU AlternatingLeastSquares) on customer x
    product from the lines before ``split_at``.

    Rows: one per identified customer and one per guest invoice (a guest basket is still
    evidence of what sells together). Confidence = 1 + alpha * log1p(summed quantity).
    ``recommend`` folds the case's own history in (``recalculate_user=True``) and does not
    filter what the shopper already bought (a repeat-purchase store). Deterministic
    (random_state=0); at most ``ALS_THREADS`` threads, BLAS single-threaded.
    """

    def __init__(
        self,
        lines: Sequence[RetailLine],
        split_at: datetime,
        *,
        factors: int = 64,
        iterations: int = 15,
        regularization: float = 0.05,
        alpha: float = 10.0,
    ) -> None:
        self.alpha = alpha
        quantities: dict[tuple[str, str], int] = defaultdict(int)
        for line in lines:
            if line.at < split_at:
                row = line.customer_id or f"guest:{line.invoice}"
                quantities[row, line.product_id] += line.quantity
        rows = sorted({row for row, _ in quantities})
        self.products: list[str] = sorted({product for _, product in quantities})
        self.product_index = {product: i for i, product in enumerate(self.products)}
        row_index = {row: i for i, row in enumerate(rows)}
        user_items = csr_matrix(
            (
                [self._confidence(q) for q in quantities.values()],
                (
                    [row_index[row] for row, _ in quantities],
                    [self.product_index[product] for _, product in quantities],
                ),
            ),
            shape=(len(rows), len(self.products)),
            dtype=np.float32,
        )
        with threadpool_limits(limits=1, user_api="blas"):  # implicit checks it here
            self.model = AlternatingLeastSquares(
                factors=factors,
                iterations=iterations,
                regularization=regularization,
                alpha=1.0,  # the matrix already holds the confidences
                random_state=0,
                num_threads=ALS_THREADS,
            )
            if user_items.nnz:
                self.model.fit(user_items, show_progress=False)
        # Folding in one shopper is one small solve: a thread pool only adds its start-up
        # (measured: 17 ms a call with 2 threads against 0.5 ms with 1).
        self.model.num_threads = 1
        self._blas = ThreadpoolController()

    def _confidence(self, quantity: int) -> float:
        return 1.0 + self.alpha * math.log1p(quantity)

    def _history_row(self, case: EvalCase) -> csr_matrix:
        quantities: dict[int, int] = defaultdict(int)
        for item in case.history:
            index = self.product_index.get(item.product_id)
            if index is not None:
                quantities[index] += item.quantity
        columns = sorted(quantities)
        return csr_matrix(
            ([self._confidence(quantities[c]) for c in columns], ([0] * len(columns), columns)),
            shape=(1, len(self.products)),
            dtype=np.float32,
        )

    def recommend(self, case: EvalCase, k: int = 20) -> list[str]:
        """The ``k`` best products for the shopper of ``case``, scored from its history;
        [] when none of the history is known to the model."""
        history = self._history_row(case)
        if not history.nnz or not self.products:
            return []
        with self._blas.limit(limits=1, user_api="blas"):
            ids, _scores = self.model.recommend(
                0,
                history,
                N=min(k, len(self.products)),
                filter_already_liked_items=False,
                recalculate_user=True,
            )
        return [self.products[i] for i in ids]


class BuyAgain:
    """The shopper's own most bought products: by the number of baskets (invoices, or
    purchase times when invoices are unknown) they appear in, then by the latest purchase,
    then by id. Strong on a repeat-purchase store."""

    def recommend(self, case: EvalCase, k: int = 20) -> list[str]:
        baskets: dict[str, set[datetime]] = defaultdict(set)
        for item in case.history:
            baskets[item.product_id].add(item.at)
        latest = {product: max(times) for product, times in baskets.items()}
        ranked = sorted(baskets, key=lambda p: (-len(baskets[p]), -latest[p].timestamp(), p))
        return ranked[:k]
