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
