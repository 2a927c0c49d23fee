"""The recommender's ``sequence`` source: the shopper tower's input built from the
shopper's newest events, scores from the held item embeddings, the version it answers
with, pins, and a catalog change that retires the embeddings."""

from __future__ import annotations

import numpy as np
import pytest

from shared.data.catalog import Product
from shared.errors import InvalidArgument
from shared.recommendation.events import CART, PURCHASE, VIEW, Interaction
from shared.recommendation.recommender import (
    DEFAULT_WEIGHTS,
    RECOMMENDED_FOR_YOU,
    SEQUENCE,
    SIMILAR_ITEMS,
    Recommender,
    RecommenderOptions,
    RecQuery,
)
from shared.settings import RecommendSettings

pytestmark = pytest.mark.unit

T0 = 1_700_000_000.0
PRODUCTS = [Product(f"p{i}", f"Product {i}", price=1.0 + i) for i in range(6)]


def _recommender() -> Recommender:
    recommender = Recommender()
    vectors = np.eye(6, 4, dtype=np.float32)
    recommender.set_catalog(PRODUCTS, vectors, generation=1, version="1")
    # Item embeddings: p0..p5 on the unit circle, 60 degrees apart (p5 has none).
    angles = np.arange(5) * np.pi / 3
    embeddings = np.stack([np.cos(angles), np.sin(angles)], axis=1).astype(np.float32)
    recommender.set_sequence("3", [f"p{i}" for i in range(5)], embeddings, history_length=2)
    return recommender


def _query(**fields) -> RecQuery:
    history = [
        Interaction("p0", VIEW, T0),
        Interaction("p5", CART, T0 + 60),  # no embedding: left out
        Interaction("p1", CART, T0 + 120),
        Interaction("p2", PURCHASE, T0 + 7200),
        Interaction("p2", PURCHASE, T0 + 7260),  # a repeat: one event, as in training
    ]
    fields.setdefault("history", history)
    return RecQuery(RECOMMENDED_FOR_YOU, session="s", history_only=True, **fields)


def test_inputs_are_the_newest_events_with_embeddings() -> None:
    recommender = _recommender()
    table = recommender.sequence_table()
    assert table is not None and table.version == "3"
    embeddings, kinds, gaps = recommender.sequence_inputs(_query(), table)
    assert embeddings.shape == (2, 2)  # history_length 2: p1 then p2
    np.testing.assert_allclose(embeddings[1], [np.cos(2 * np.pi / 3), np.sin(2 * np.pi / 3)])
    assert kinds.tolist() == [CART, PURCHASE]
    assert gaps[0] == 0 and gaps[1] > 0  # two hours after p1 (the repeat is not read)
    assert recommender.sequence_inputs(_query(history=[]), table) is None


def test_scores_follow_the_shopper_vector_and_name_the_version() -> None:
    recommender = _recommender()
    # A shopper vector pointing at p3 (180 degrees): p3 first, then p4 (cos 0.5).
    # Only differences count: the same vector shifted to negative cosines ranks the same.
    vector = np.array([-1.0, 0.0], dtype=np.float32)
    query = _query(sources=[SEQUENCE], sequence_vector=vector, sequence_version="3")
    answer = recommender.recommend(query)
    ids = [item.product.product_id for item in answer.items]
    # The shopper's own products (p0, p1, p2) are not the model's to recommend.
    assert ids == ["p3", "p4"]
    part = answer.items[0].parts[0]
    assert (part.source, round(part.value, 4)) == (SEQUENCE, 1.0)
    # p4 scores exp((0.5 - 1) / 0.05) of p3: the model's probabilities' ratio.
    second = answer.items[1].parts[0]
    assert second.value == pytest.approx(np.exp(-0.5 / 0.05), rel=1e-4)
    assert answer.versions["sequence_recommender"] == "3"
    assert "p5" not in ids  # no embedding, no sequence score


def test_without_a_vector_the_source_is_quiet() -> None:
    recommender = _recommender()
    answer = recommender.recommend(_query(sources=[SEQUENCE]))
    assert "sequence_recommender" not in answer.versions
    assert answer.fallback  # nothing from the source: trending answers


def test_a_new_catalog_retires_the_embeddings_until_they_are_recomputed() -> None:
    recommender = _recommender()
    recommender.set_catalog(PRODUCTS, np.eye(6, 4, dtype=np.float32), generation=2, version="1")
    assert recommender.sequence_table() is None
    assert recommender.sequence_table("3") is None
    recommender.drop_sequence()
    assert recommender.sequence_table("3") is None


def test_the_setting_puts_the_source_into_for_you_only() -> None:
    off = RecommenderOptions.from_settings(RecommendSettings.load())
    assert SEQUENCE not in off.weights[RECOMMENDED_FOR_YOU]  # off by default
    on = RecommenderOptions.from_settings(RecommendSettings.load(sequence_weight=0.5))
    assert on.weights[RECOMMENDED_FOR_YOU][SEQUENCE] == 0.5
    assert SEQUENCE not in on.weights[SIMILAR_ITEMS]
    assert SEQUENCE not in DEFAULT_WEIGHTS[RECOMMENDED_FOR_YOU]  # the defaults untouched


def test_unknown_source_names_the_known_ones() -> None:
    with pytest.raises(InvalidArgument, match="sequence"):
        _recommender().recommend(_query(sources=["nonsense"]))
