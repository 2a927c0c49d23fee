"""Diversity and exposure: MMR's order, intra-list diversity, the Gini coefficient and the
top-1% share, and the recommender's diversity setting."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from shared.data.catalog import Product
from shared.evaluation.recs import gini, top_share
from shared.recommendation.diversity import intra_list_diversity, mmr_order
from shared.recommendation.events import PURCHASE, Interaction
from shared.recommendation.recommender import (
    FREQUENTLY_BOUGHT_TOGETHER,
    Recommender,
    RecQuery,
)

pytestmark = pytest.mark.unit


def _unit(rows: list[list[float]]) -> np.ndarray:
    vectors = np.array(rows, dtype=np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


# Two near-twins first, then a different one.
VECTORS = _unit([[1, 0], [1, 0.01], [0, 1]])
RELEVANCE = np.array([1.0, 0.95, 0.6])


def test_mmr_at_zero_keeps_the_relevance_order_and_trades_it_for_variety() -> None:
    assert mmr_order(RELEVANCE, VECTORS, 0.0, 3) == [0, 1, 2]
    assert mmr_order(RELEVANCE, VECTORS, 0.5, 3) == [0, 2, 1]  # the twin waits
    assert mmr_order(RELEVANCE, VECTORS, 0.5, 2) == [0, 2]
    assert mmr_order(np.zeros(0), VECTORS[:0], 0.5, 3) == []


def test_intra_list_diversity() -> None:
    assert intra_list_diversity(VECTORS[:1]) == 0.0
    assert intra_list_diversity(VECTORS[:2]) == pytest.approx(0.0, abs=1e-3)
    assert intra_list_diversity(VECTORS[[0, 2]]) == pytest.approx(1.0)


def test_gini_and_top_share() -> None:
    assert gini(Counter({str(i): 3 for i in range(10)}), 10) == pytest.approx(0.0)
    assert gini(Counter({"a": 7}), 10) == pytest.approx(0.9)  # one of ten takes all
    assert gini(Counter({"a": 1, "b": 1}), 4) == pytest.approx(0.5)  # two of four, unshown
    assert top_share(Counter({"a": 6, "b": 2, "c": 2}), 100, 0.01) == pytest.approx(0.6)
    assert top_share(Counter({"a": 6, "b": 2, "c": 2}), 200, 0.01) == pytest.approx(0.8)
    assert top_share(Counter(), 100, 0.01) == 0.0


def test_the_diversity_setting_reorders_near_duplicates() -> None:
    products = [
        Product("cup", "cup"),
        Product("red-saucer", "red saucer"),
        Product("red-saucer-2", "red saucer too"),
        Product("spoon", "spoon"),
    ]
    vectors = _unit([[0, 0, 1], [1, 0, 0], [1, 0.01, 0], [0.2, 1, 0]])
    recommender = Recommender()
    recommender.set_catalog(products, vectors, 1, "1")
    events = []
    for n, (pid, times) in enumerate([("red-saucer", 4), ("red-saucer-2", 3), ("spoon", 2)]):
        for k in range(times):
            basket = f"b{n}-{k}"
            events += [
                Interaction("cup", PURCHASE, 1000.0 + 10 * len(events), 1, "", basket),
                Interaction(pid, PURCHASE, 1001.0 + 10 * len(events), 1, "", basket),
            ]
    recommender.ingest(events)

    def order(diversity: float | None) -> list[str]:
        query = RecQuery(
            FREQUENTLY_BOUGHT_TOGETHER,
            session="x",
            context=["cup"],
            sources=["co_purchase"],
            diversity=diversity,
        )
        return [item.product.product_id for item in recommender.recommend(query).items]

    assert order(None) == order(0.0) == ["red-saucer", "red-saucer-2", "spoon"]
    assert order(0.7) == ["red-saucer", "spoon", "red-saucer-2"]
