"""A shopper's profile vector for personalised search: the kind- and recency-weighted mean
of their products' taste vectors (class-centred text vectors made of their attribute values'
centroids), empty for an unknown shopper, gone with their erasure."""

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
    class_centred,
    profile_vector,
    profile_weights,
    taste_vectors,
    taste_vectors_of,
)

pytestmark = pytest.mark.unit

T0 = 1_700_000_000.0
# Two classes, two colours: a product's vector is its class's direction plus its colour's.
PRODUCTS = [
    Product("grey-sofa", "Grey sofa", product_class="Sofas", price=500.0),
    Product("green-sofa", "Green sofa", product_class="Sofas", price=450.0),
    Product("grey-rug", "Grey rug", product_class="Rugs", price=100.0),
    Product("green-rug", "Green rug", product_class="Rugs", price=90.0),
]
SOFA, RUG, GREY, GREEN = np.eye(4, dtype=np.float32)
CATALOG_VECTORS = np.array(
    [SOFA + GREY, SOFA + GREEN, RUG + GREY, RUG + GREEN], dtype=np.float32
) / np.sqrt(2)
# Centred by class, only the colour is left: grey is +, green is - (grey less green).
GREY_LESS_GREEN = (GREY - GREEN) / np.sqrt(2)
# Orthogonal unit vectors: profile_vector's coordinates are the steps' weights.
VECTORS = np.eye(3, 4, dtype=np.float32)


def _recommender() -> Recommender:
    recommender = Recommender()
    recommender.set_catalog(PRODUCTS, CATALOG_VECTORS, generation=1, version="1")
    return recommender


def test_weights_follow_the_kind_and_halve_per_half_life_before_the_newest() -> None:
    steps = [
        Step(0, PURCHASE, T0, 1, "a"),
        Step(1, CART, T0 + PROFILE_HALF_LIFE_S, 1, "b"),
        Step(2, VIEW, T0 + 2 * PROFILE_HALF_LIFE_S, 1, "c"),
    ]
    assert profile_weights(steps) == pytest.approx([1.0 * 0.25, 0.5 * 0.5, 0.2])


def test_profile_vector_is_the_normalised_weighted_mean_of_the_rows() -> None:
    steps = [Step(0, PURCHASE, T0, 1, "a"), Step(1, VIEW, T0 + 60, 1, "a")]
    vector, used = profile_vector(steps, VECTORS)
    # The first (bought, weight 1.0) outweighs the second (viewed, 0.2) five to one.
    assert used == 2
    assert vector == pytest.approx(np.array([1.0, 0.2, 0.0, 0.0]) / np.hypot(1.0, 0.2), abs=1e-4)


def test_the_profile_carries_the_colour_across_classes_not_the_class() -> None:
    recommender = _recommender()
    recommender.ingest(
        [
            Interaction("grey-sofa", PURCHASE, T0, user="ann", session="s1"),
            Interaction("grey-rug", VIEW, T0 + 60, user="ann", session="s1"),
        ]
    )
    profile = recommender.profile("ann", "")
    assert profile.version == "1" and profile.steps == 2
    # Less their classes' centroids, both products are "grey rather than green": so is the
    # profile, and it says nothing of sofas or rugs.
    assert profile.vector == pytest.approx(GREY_LESS_GREEN, abs=1e-5)
    assert float(np.linalg.norm(profile.vector)) == pytest.approx(1.0)
    centred = class_centred(CATALOG_VECTORS, ["sofas", "sofas", "rugs", "rugs"])
    # The other class's grey product is the most like it, its green one the least; the
    # uncentred vectors would have found the green sofa as like it as the grey rug.
    assert centred @ profile.vector == pytest.approx([1.0, -1.0, 1.0, -1.0], abs=1e-5)


def test_class_centring_subtracts_each_class_mean_and_normalises() -> None:
    vectors = np.array([[3, 1], [1, 1], [0, 0], [5, 7], [2, 2]], dtype=np.float32)
    centred = class_centred(vectors, ["a", "a", "a", "b", ""])
    # Class a's mean is (2, 1) over its two vectors (the zero row has none and stays zero);
    # b has one product: nothing is left of it; the classless row is centred on the mean
    # of all vectors, (2.75, 2.75).
    assert centred[0] == pytest.approx([1.0, 0.0])
    assert centred[1] == pytest.approx([-1.0, 0.0])
    assert centred[2] == pytest.approx([0.0, 0.0])
    assert centred[3] == pytest.approx([0.0, 0.0])
    assert centred[4] == pytest.approx([-np.sqrt(0.5), -np.sqrt(0.5)], abs=1e-6)
    # A store without classes: every row less the catalog's mean.
    flat = class_centred(vectors[:2], ["", ""])
    assert flat == pytest.approx(np.array([[1.0, 0.0], [-1.0, 0.0]]))
    with pytest.raises(ValueError, match="classes: 1 labels for 2 vectors"):
        class_centred(vectors[:2], ["a"])


def test_taste_vectors_are_made_of_the_centroids_of_common_attribute_values() -> None:
    # Four sofas: a class direction, a colour, and each its own title word (noise).
    sofa, grey, green = np.eye(7, dtype=np.float32)[:3]
    words = np.eye(7, dtype=np.float32)[3:]
    own = [sofa + grey, sofa + grey, sofa + green, sofa + green]
    vectors = np.array([v + word for v, word in zip(own, words, strict=True)]) / np.sqrt(3)
    colours = [{"colour": "Grey"}, {"colour": "Grey"}, {"colour": "Green"}, {"colour": "Teal"}]
    tastes = taste_vectors(vectors, ["sofas"] * 4, colours.__getitem__, min_products=2)
    centred = class_centred(vectors, ["sofas"] * 4)
    # The two grey sofas share a value held by two products: the same taste vector, their
    # title words averaged away; centred only, their own words keep them apart.
    assert float(tastes[0] @ tastes[1]) == pytest.approx(1.0)
    assert float(centred[0] @ centred[1]) < 0.5
    # Green and Teal are held by one product each: those sofas keep their centred vectors.
    assert tastes[2] == pytest.approx(centred[2]) and tastes[3] == pytest.approx(centred[3])
    # No value common enough (a store without attributes): the centred vectors.
    assert taste_vectors(vectors, ["sofas"] * 4, colours.__getitem__) == pytest.approx(centred)


def test_the_taste_vectors_are_computed_once_per_catalog_snapshot() -> None:
    classes = np.array(["sofas", "sofas", "rugs", "rugs"], dtype=object)
    calls: list[int] = []

    def attributes(row: int) -> dict[str, str]:
        calls.append(row)
        return {}

    first = taste_vectors_of(CATALOG_VECTORS, classes, attributes)
    assert first is not None and calls
    calls.clear()
    assert taste_vectors_of(CATALOG_VECTORS, classes, attributes) is first and not calls
    # A new snapshot (new arrays, even equal ones) is computed anew.
    again = taste_vectors_of(CATALOG_VECTORS.copy(), classes, attributes)
    assert again is not first and again == pytest.approx(first)
    assert taste_vectors_of(None, classes, attributes) is None


def test_an_unknown_shopper_has_an_empty_profile() -> None:
    profile = _recommender().profile("nobody", "nowhere")
    assert (profile.vector, profile.version, profile.steps) == (None, "", 0)


def test_erasure_removes_the_profile_with_the_shoppers_state() -> None:
    recommender = _recommender()
    recommender.ingest(
        [
            Interaction("grey-sofa", VIEW, T0 - 60, user="", session="bob-s"),  # signed out
            Interaction("green-rug", CART, T0, user="bob", session="bob-s"),
            Interaction("grey-rug", VIEW, T0, user="", session="anon"),
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
            Interaction("green-rug", VIEW, T0, user="cy"),
        ]
    )
    profile = recommender.profile("cy", "")
    assert profile.steps == 1
    assert profile.vector == pytest.approx(-GREY_LESS_GREEN, abs=1e-5)
    without_vectors = Recommender()
    without_vectors.set_catalog(PRODUCTS, None, generation=1, version="")
    without_vectors.ingest([Interaction("green-rug", VIEW, T0, user="cy")])
    assert without_vectors.profile("cy", "").vector is None


def test_only_the_newest_steps_are_read() -> None:
    steps = [Step(0, VIEW, T0 + n, 1, "a") for n in range(PROFILE_STEPS)]
    steps.append(Step(1, VIEW, T0 + PROFILE_STEPS, 1, "a"))
    vector, used = profile_vector(steps, VECTORS)
    assert used == PROFILE_STEPS
    assert vector is not None and vector[1] > 0 and vector[0] > vector[1]
