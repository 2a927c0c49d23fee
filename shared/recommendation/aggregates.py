"""The aggregates every shopper contributes to and none is named in: which products occur
together (per kind of interaction) and which are bought or viewed most lately.

**Co-occurrence.** When a shopper interacts with product ``i``, every product ``j`` of
their context pairs with it: the products of the same basket (weight 1) and of their
earlier baskets in ``window_s`` (weight ``earlier_weight``), at most ``context_limit`` of
them, most recent first. The pair is counted under the weaker of the two interactions'
kinds: both bought is co-purchase, a cart and a purchase co-cart, anything with a view
co-view. Counts are forward-decayed (``events.Decay``) and symmetric. They accumulate in
COO buffers and are summed into a sparse matrix per kind on ``flush``; the similarity of
``i`` and ``j`` is the cosine ``C[i, j] / sqrt(n_i * n_j)`` over the decayed number of
interactions ``n`` of each product that can pair in that kind (of that kind or a stronger
one), which keeps best sellers from being everyone's neighbour.

**Trending.** Per product, forward-decayed interactions with a short half-life, weighted by
kind (view 1, cart 3, purchase 5).

Products are numbered by ``ItemIds`` (shared with the shopper states); matrices grow as
new ids appear.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable, Sequence

import numpy as np
import scipy.sparse as sp

from shared.recommendation.events import KIND_NAMES, Decay

# Source names of the co-occurrence kinds, as score parts and options name them.
CO_SOURCES = ("co_view", "co_cart", "co_purchase")
TRENDING_KIND_WEIGHTS = (1.0, 3.0, 5.0)


class ItemIds:
    """Product id <-> dense index, for every product any event or the catalog named."""

    def __init__(self) -> None:
        self._index: dict[str, int] = {}
        self.ids: list[str] = []

    def __len__(self) -> int:
        return len(self.ids)

    def get(self, product_id: str) -> int | None:
        return self._index.get(product_id)

    def add(self, product_id: str) -> int:
        found = self._index.get(product_id)
        if found is None:
            found = self._index[product_id] = len(self.ids)
            self.ids.append(product_id)
        return found


class CoOccurrence:
    """Decayed, symmetric co-occurrence counts per kind, and item counts per kind."""

    def __init__(self, items: ItemIds) -> None:
        self._items = items
        self._matrices = [sp.csr_matrix((0, 0), dtype=np.float64) for _ in KIND_NAMES]
        self._counts = [np.zeros(0) for _ in KIND_NAMES]
        self._pending = [(array("l"), array("l"), array("d")) for _ in KIND_NAMES]
        self._pending_counts: list[list[tuple[int, float]]] = [[] for _ in KIND_NAMES]
        self._similarity: list[sp.csr_matrix | None] = [None for _ in KIND_NAMES]

    def add(
        self, item: int, kind: int, weight: float, context: Iterable[tuple[int, int, float]]
    ) -> None:
        """Count one interaction (``weight`` already decayed) with its context of
        ``(item, kind, factor)``: the pair goes to the weaker kind, times ``factor``."""
        for weaker in range(kind + 1):  # a purchase can pair as a view, a cart or a purchase
            self._pending_counts[weaker].append((item, weight))
        for other, other_kind, factor in context:
            if other == item:
                continue
            pair_kind = min(kind, other_kind)
            rows, cols, values = self._pending[pair_kind]
            value = weight * factor
            rows.append(item)
            cols.append(other)
            values.append(value)
            rows.append(other)
            cols.append(item)
            values.append(value)

    def pending(self) -> int:
        return sum(len(values) for _, _, values in self._pending)

    def flush(self) -> None:
        """Sum the buffered pairs into the matrices (and drop the cached similarities)."""
        size = len(self._items)
        for kind in range(len(KIND_NAMES)):
            rows, cols, values = self._pending[kind]
            matrix = self._grown(self._matrices[kind], size)
            if values:
                added = sp.coo_matrix(
                    (
                        np.frombuffer(values, dtype=np.float64),
                        (np.frombuffer(rows, dtype=np.int64), np.frombuffer(cols, dtype=np.int64)),
                    ),
                    shape=(size, size),
                ).tocsr()
                matrix = (matrix + added).tocsr()
                self._pending[kind] = (array("l"), array("l"), array("d"))
                self._similarity[kind] = None
            self._matrices[kind] = matrix
            counts = self._counts[kind]
            if len(counts) < size:
                counts = np.concatenate([counts, np.zeros(size - len(counts))])
            for item, weight in self._pending_counts[kind]:
                counts[item] += weight
            if self._pending_counts[kind]:
                self._similarity[kind] = None
            self._pending_counts[kind] = []
            self._counts[kind] = counts

    @staticmethod
    def _grown(matrix: sp.csr_matrix, size: int) -> sp.csr_matrix:
        if matrix.shape[0] >= size:
            return matrix
        grown = matrix.copy()
        grown.resize((size, size))
        return grown.tocsr()

    def scale(self, factor: float) -> None:
        """Multiply every count (``Decay.rescale``); flushes first."""
        self.flush()
        for kind in range(len(KIND_NAMES)):
            self._matrices[kind] = self._matrices[kind] * factor
            self._counts[kind] = self._counts[kind] * factor
            self._similarity[kind] = None

    def pairs(self) -> int:
        """Distinct stored pairs (i, j), i != j, over all kinds (each direction once)."""
        return int(sum(m.nnz for m in self._matrices) // 2)

    def similarity(self, kind: int) -> sp.csr_matrix:
        """Cosine-normalised co-occurrence of ``kind`` (rows and columns: item indexes)."""
        cached = self._similarity[kind]
        size = len(self._items)
        if cached is not None and cached.shape[0] == size:
            return cached
        matrix = self._grown(self._matrices[kind], size)
        counts = self._counts[kind]
        if len(counts) < size:
            counts = np.concatenate([counts, np.zeros(size - len(counts))])
        inverse = np.zeros(size)
        positive = counts > 0
        inverse[positive] = 1.0 / np.sqrt(counts[positive])
        scaled = sp.diags(inverse) @ matrix @ sp.diags(inverse)
        self._similarity[kind] = scaled.tocsr()
        return self._similarity[kind]

    def scores(self, kind: int, weights: dict[int, float]) -> np.ndarray:
        """Per item, the sum over ``weights`` (item -> weight) of weight * similarity."""
        size = len(self._items)
        if not weights:
            return np.zeros(size)
        similarity = self.similarity(kind)
        rows = np.fromiter(weights.keys(), dtype=np.int64, count=len(weights))
        values = np.fromiter(weights.values(), dtype=np.float64, count=len(weights))
        return np.asarray(values @ similarity[rows]).ravel()

    def between(self, kind: int, sources: Sequence[int], item: int) -> np.ndarray:
        """Similarity of ``item`` to each of ``sources`` (for the reason of an item). The
        matrix is symmetric, so the item's row serves (a CSR column slice scans it all)."""
        if not sources:
            return np.zeros(0)
        row = self.similarity(kind)[item]
        return np.asarray(row[:, list(sources)].todense()).ravel()


class Trending:
    """Decayed, kind-weighted interactions per product (short half-life)."""

    def __init__(self, decay: Decay) -> None:
        self._decay = decay
        self._scores = np.zeros(0)

    def add(self, item: int, kind: int, at: float) -> None:
        if item >= len(self._scores):
            self._scores = np.concatenate(
                [self._scores, np.zeros(max(item + 1 - len(self._scores), 1024))]
            )
        if self._decay.needs_rescale(at):
            self._scores *= self._decay.rescale(at)
        self._scores[item] += TRENDING_KIND_WEIGHTS[kind] * self._decay.weight(at)

    def weight(self, item: int) -> float:
        """One item's trending weight (0.0 for one never seen)."""
        return float(self._scores[item]) if item < len(self._scores) else 0.0

    def scores(self, size: int) -> np.ndarray:
        """Per item index (``size`` of them): its trending weight, zeros for the unseen."""
        if len(self._scores) >= size:
            return self._scores[:size]
        return np.concatenate([self._scores, np.zeros(size - len(self._scores))])
