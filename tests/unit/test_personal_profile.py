"""A shopper's profile vector for personalised search: the kind- and recency-weighted mean
of their products' text vectors, empty for an unknown shopper, gone with their erasure."""

from __future__ import annotations

import numpy as np
import pytest

from shared.data.catalog import Product
from shared.recommendation.events import CART, PURCHASE, VIEW, Interaction
from shared.recommendation.recommender import Recommender
from shared.recommendation.shoppers import (
    PROFILE_HALF_LIFE_S,
    PROFILE_STEPS,
    Step,
    profile_vector,
    profile_weights,
)

pytestmark = pytest.mark.unit

T0 = 1_700_000_000.0
PRODUCTS = [
    Product("sofa", "Grey sofa", price=500.0),
    Product("rug", "Wool rug", price=100.0),
    Product("lamp", "Brass lamp", price=40.0),
]
# Orthogonal unit vectors: the profile's coordinates are the products' weights.
VECTORS = np.eye(3, 4, dtype=np.float32)


def _recommender() -> Recommender:
    recommender = Recommender()
    recommender.set_catalog(PRODUCTS, VECTORS, generation=1, version="1")
    return recommender


def test_weights_follow_the_kind_and_halve_per_half_life_before_the_newest() -> None:
    steps = [
        Step(0, PURCHASE, T0, 1, "a"),
        Step(1, CART, T0 + PROFILE_HALF_LIFE_S, 1, "b"),
        Step(2, VIEW, T0 + 2 * PROFILE_HALF_LIFE_S, 1, "c"),
    ]
    assert profile_weights(steps) == pytest.approx([1.0 * 0.25, 0.5 * 0.5, 0.2])


def test_the_profile_is_the_normalised_weighted_mean_of_the_products_vectors() -> None:
    recommender = _recommender()
    recommender.ingest(
        [
            Interaction("sofa", PURCHASE, T0, user="ann", session="s1"),
            Interaction("rug", VIEW, T0 + 60, user="ann", session="s1"),
        ]
    )
    profile = recommender.profile("ann", "")
    assert profile.version == "1" and profile.steps == 2
    # The sofa (bought, weight 1.0) outweighs the rug (viewed, 0.2) five to one.
    expected = np.array([1.0, 0.2, 0.0, 0.0]) / np.hypot(1.0, 0.2)
    assert profile.vector == pytest.approx(expected, abs=1e-4)
    assert float(np.linalg.norm(profile.vector)) == pytest.approx(1.0)


def test_an_unknown_shopper_has_an_empty_profile() -> None:
    profile = _recommender().profile("nobody", "nowhere")
    assert (profile.vector, profile.version, profile.steps) == (None, "", 0)


def test_erasure_removes_the_profile_with_the_shoppers_state() -> None:
    recommender = _recommender()
    recommender.ingest(
        [
            Interaction("sofa", VIEW, T0 - 60, user="", session="bob-s"),  # before signing in
            Interaction("lamp", CART, T0, user="bob", session="bob-s"),
            Interaction("rug", VIEW, T0, user="", session="anon"),
        ]
    )
    assert recommender.profile("bob", "bob-s").steps == 2
    assert recommender.forget("bob", "") == 2  # the user's state and its session's
    assert recommender.profile("bob", "").vector is None
    assert recommender.profile("", "bob-s").vector is None
    assert recommender.profile("", "anon").vector is not None  # someone else


def test_products_without_vectors_or_no_longer_in_the_catalog_do_not_count() -> None:
    recommender = _recommender()
    recommender.ingest(
        [
            Interaction("gone", PURCHASE, T0, user="cy"),
            Interaction("lamp", VIEW, T0, user="cy"),
        ]
    )
    profile = recommender.profile("cy", "")
    assert profile.steps == 1
    assert profile.vector == pytest.approx([0.0, 0.0, 1.0, 0.0])
    without_vectors = Recommender()
    without_vectors.set_catalog(PRODUCTS, None, generation=1, version="")
    without_vectors.ingest([Interaction("lamp", VIEW, T0, user="cy")])
    assert without_vectors.profile("cy", "").vector is None


def test_only_the_newest_steps_are_read() -> None:
    steps = [Step(0, VIEW, T0 + n, 1, "a") for n in range(PROFILE_STEPS)]
    steps.append(Step(1, VIEW, T0 + PROFILE_STEPS, 1, "a"))
    vector, used = profile_vector(steps, VECTORS)
    assert used == PROFILE_STEPS
    assert vector is not None and vector[1] > 0 and vector[0] > vector[1]
