import numpy as np
import pytest

from shared.intent.prototypes import build_prototypes
from shared.ranking.features import FeatureScorer, RankInput

pytestmark = pytest.mark.unit


def _c(pid, cls="Sofas", fused=0.03, dense=0.5, lexical=5.0, rating=4.0, reviews=10):
    return RankInput(pid, cls, fused, dense, lexical, rating, reviews)


def test_contributions_sum_to_the_score_and_values_are_normalised():
    scored = FeatureScorer().score([_c("a"), _c("b", fused=0.01, lexical=None)], {"Sofas": 0.8})
    for s in scored:
        assert s.score == pytest.approx(sum(v * w for _, v, w in s.parts))
        assert all(0.0 <= v <= 1.0 for _, v, _ in s.parts)
    assert [s.product_id for s in scored] == ["a", "b"]


def test_intent_match_lifts_the_matching_class():
    candidates = [_c("chair", cls="Accent Chairs"), _c("sofa", cls="Sofas")]
    scored = FeatureScorer().score(candidates, {"Sofas": 0.9, "Accent Chairs": 0.05})
    assert scored[0].product_id == "sofa"
    parts = {f: v for f, v, _ in scored[0].parts}
    assert parts["intent_match"] == pytest.approx(0.9)


def test_unknown_feature_weight_is_refused():
    with pytest.raises(ValueError, match="unknown ranking features"):
        FeatureScorer({"colour_magic": 1.0})


def test_prototypes_classify_by_nearest_blend():
    rng = np.random.default_rng(0)
    sofa, rug = rng.normal(size=8), rng.normal(size=8)
    sofa, rug = sofa / np.linalg.norm(sofa), rug / np.linalg.norm(rug)
    prototypes = build_prototypes({"Sofas": sofa, "Area Rugs": rug}, {"Sofas": sofa}, "p1")
    top = prototypes.classify(sofa, top_k=2)
    assert top[0][0] == "Sofas"
    assert sum(p for _, p in top) == pytest.approx(1.0)
    assert top[0][1] > 0.9


def test_attribute_matcher_finds_catalog_values_longest_first():
    from shared.intent.attributes import AttributeMatcher

    matcher = AttributeMatcher(
        {
            "colour": {"grey": 50, "light grey": 10, "white": 40},
            "material": {"velvet": 30, "solid wood": 20},
            "brand": {"white": 1},  # also a colour: the more frequent attribute wins
        }
    )
    assert matcher.match("Light Grey velvet couches") == {
        "colour": "light grey",
        "material": "velvet",
    }
    assert matcher.match("white solid wood desk") == {"colour": "white", "material": "solid wood"}
    assert matcher.match("couch") == {}


def test_attribute_match_rewards_products_with_the_named_values():
    grey = RankInput(
        "grey", "Sofas", 0.03, 0.5, 5.0, 4.0, 10, {"colour": "Grey", "material": "linen"}
    )
    blue = RankInput(
        "blue", "Sofas", 0.03, 0.5, 5.0, 4.0, 10, {"colour": "blue", "material": "velvet"}
    )
    scored = FeatureScorer().score(
        [blue, grey], {"Sofas": 1.0}, {"colour": "grey", "material": "velvet"}
    )
    parts = {s.product_id: dict((f, v) for f, v, _ in s.parts) for s in scored}
    assert parts["grey"]["attribute_match"] == pytest.approx(0.5)
    assert parts["blue"]["attribute_match"] == pytest.approx(0.5)
    only_colour = FeatureScorer().score([blue, grey], {"Sofas": 1.0}, {"colour": "grey"})
    assert only_colour[0].product_id == "grey"


def test_a_fine_tuned_intent_is_trusted_more_than_the_prototypes() -> None:
    from shared.ranking.features import (
        FINE_TUNED_INTENT_VERSION,
        VERSION,
        FeatureScorer,
        intent_boost_for,
    )

    tuned = FeatureScorer.for_intent("intent_classifier/3")
    zero_shot = FeatureScorer.for_intent("prototypes-g12")
    assert tuned.version == FINE_TUNED_INTENT_VERSION and zero_shot.version == VERSION
    assert tuned.weights["intent_match"] > zero_shot.weights["intent_match"]
    assert intent_boost_for("intent_classifier/3") > intent_boost_for("prototypes-g12")
    assert intent_boost_for("") == intent_boost_for("prototypes-g12")
