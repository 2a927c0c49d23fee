"""The blend learned from recommendation feedback: position bias removed, evidence required,
and the recommender answering with the learned weights."""

from __future__ import annotations

import numpy as np
import pytest

from shared.data.catalog import Product
from shared.recommendation.blend import ShownItem, fit_blend, fit_placement
from shared.recommendation.events import PURCHASE, Interaction
from shared.recommendation.recommender import (
    BUY_AGAIN,
    DEFAULT_WEIGHTS,
    RECOMMENDED_FOR_YOU,
    Recommender,
    RecQuery,
)

EXAMINATION = [1.0 / k for k in range(1, 21)]


def _pages(pages: int = 3000, seed: int = 0) -> list[ShownItem]:
    """SYNTHETIC pages ranked mostly by source b; shoppers like items by source a only,
    and look at position k with probability 1/k."""
    rng = np.random.default_rng(seed)
    items = []
    for _ in range(pages):
        a, b = rng.random(10), rng.random(10)
        for position, i in enumerate(np.argsort(-(0.2 * a + 1.0 * b)), start=1):
            liking = 1 / (1 + np.exp(3 - 4 * a[i]))
            clicked = rng.random() < EXAMINATION[position - 1] * liking
            items.append(ShownItem("p", position, {"a": a[i], "b": b[i]}, bool(clicked)))
    return items


def test_the_learned_weights_credit_what_shoppers_like_not_where_it_was_shown() -> None:
    items = _pages()
    current = {"a": 0.2, "b": 1.0}
    fit = fit_placement("p", items, current, EXAMINATION)
    assert fit.used and fit.clicks > 1000 and fit.gain > 0
    assert fit.weights["a"] > 3 * fit.weights["b"], fit.weights
    assert sum(fit.weights.values()) == pytest.approx(sum(current.values()))
    # Without the position term, b's top positions earn it the clicks: the bias it removes.
    naive = fit_placement("p", items, current, [1.0] * 20)
    assert naive.weights["b"] > naive.weights["a"], naive.weights


def test_too_few_clicks_keep_the_current_weights_and_say_why() -> None:
    items = _pages(pages=40)
    fits = fit_blend(items, {"p": {"a": 0.2, "b": 1.0}, "q": {"a": 1.0}}, EXAMINATION)
    assert not fits["p"].used and fits["p"].weights == {"a": 0.2, "b": 1.0}
    assert "fewer than 200" in fits["p"].reason and fits["p"].clicks == sum(
        item.clicked for item in items
    )
    assert fits["q"].impressions == 0 and not fits["q"].used


def test_the_recommender_answers_with_learned_weights() -> None:
    recommender = Recommender()
    products = [Product(f"p{i}", f"Product {i}", price=1.0) for i in range(4)]
    recommender.set_catalog(products, None, 1, "")
    recommender.ingest(
        [
            Interaction("p1", PURCHASE, 100.0, user="ann"),
            Interaction("p2", PURCHASE, 200.0, user="ann"),
        ]
    )
    query = RecQuery(placement=BUY_AGAIN, user="ann", page_size=2)
    assert recommender.weights(BUY_AGAIN) == DEFAULT_WEIGHTS[BUY_AGAIN]
    recommender.set_learned_weights({BUY_AGAIN: {"history": 3.0}})
    answer = recommender.recommend(query)
    assert {part.weight for item in answer.items for part in item.parts} == {3.0}
    assert recommender.weights(RECOMMENDED_FOR_YOU) == DEFAULT_WEIGHTS[RECOMMENDED_FOR_YOU]
    with pytest.raises(ValueError, match="buy_again does not blend \\['content'\\]"):
        recommender.set_learned_weights({BUY_AGAIN: {"content": 1.0}})
