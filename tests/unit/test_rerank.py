"""The cross-encoder blend: what a ranked list promises after the head is rescored."""

from __future__ import annotations

import numpy as np
import pytest

from shared.ranking.features import FeatureScorer, RankInput
from shared.ranking.rerank import CROSS_ENCODER_FEATURE, ranking_version, rerank_head, sigmoid

pytestmark = pytest.mark.unit


def _feature_ranking(n: int = 8):
    inputs = [
        RankInput(str(i), "Sofas", fused_score=1.0 / (i + 1), dense_score=0.5, lexical_score=None,
                  rating=4.0, review_count=10)
        for i in range(n)
    ]  # fmt: skip
    return FeatureScorer().score(inputs, {"Sofas": 0.9})


def test_cross_encoder_reorders_the_head_and_keeps_the_tail() -> None:
    scored = _feature_ranking()
    logits = np.array([-4.0, -2.0, 0.0, 6.0])  # the 4th feature-ranked item is the best match
    blended = rerank_head(scored, logits, weight=2.0)
    assert blended[0].product_id == scored[3].product_id
    assert [s.product_id for s in blended[4:]] == [s.product_id for s in scored[4:]]
    assert sorted(s.product_id for s in blended) == sorted(s.product_id for s in scored)


def test_scores_stay_sorted_and_parts_sum_to_the_score() -> None:
    scored = _feature_ranking()
    blended = rerank_head(scored, np.array([3.0, -3.0, 1.0, 0.5, -1.0]), weight=2.0)
    scores = [s.score for s in blended]
    assert scores == sorted(scores, reverse=True)
    for item in blended:
        assert sum(v * w for _, v, w in item.parts) == pytest.approx(item.score)
    head = {s.product_id for s in blended[:5]}
    for item in blended:
        features = [name for name, _, _ in item.parts]
        assert (CROSS_ENCODER_FEATURE in features) == (item.product_id in head)


def test_zero_weight_keeps_the_feature_order() -> None:
    scored = _feature_ranking()
    blended = rerank_head(scored, np.array([9.0, -9.0, 9.0]), weight=0.0)
    assert [s.product_id for s in blended] == [s.product_id for s in scored]


def test_bad_arguments_name_the_field() -> None:
    scored = _feature_ranking(3)
    with pytest.raises(ValueError, match="logits"):
        rerank_head(scored, np.zeros(4), weight=1.0)
    with pytest.raises(ValueError, match="weight"):
        rerank_head(scored, np.zeros(2), weight=-1.0)


def test_sigmoid_is_stable_and_versions_are_named() -> None:
    values = sigmoid(np.array([-1000.0, 0.0, 1000.0]))
    assert values.tolist() == pytest.approx([0.0, 0.5, 1.0])
    assert ranking_version("3") == "cross_encoder/3+features-v1"
    assert ranking_version("") == "features-v1"


def test_the_depth_fits_the_time_left_at_the_versions_measured_cost() -> None:
    from shared.ranking.rerank import DepthForDeadline

    depths = DepthForDeadline(smoothing=0.5, fill=1.0)
    assert depths.depth("3", 50, 0.001) == 50  # nothing measured yet: as asked
    depths.observe("3", 50, 0.100)  # 2 ms a pair
    assert depths.depth("3", 50, 1.0) == 50
    assert depths.depth("3", 50, 0.040) == 20
    assert depths.depth("4", 50, 0.040) == 50  # another version has its own cost
    depths.observe("3", 10, 0.040)  # 4 ms a pair: the average moves halfway, to 3 ms
    assert depths.depth("3", 50, 0.030) == 10
    depths.observe("3", 0, 1.0)  # no pairs: nothing learnt
    assert depths.depth("3", 50, 0.030) == 10


def test_a_head_kept_at_zero_recovers_as_the_estimate_shrinks() -> None:
    from shared.ranking.rerank import DepthForDeadline

    depths = DepthForDeadline(smoothing=0.5, recovery=0.5, fill=1.0)
    depths.observe("3", 1, 0.080)  # one slow call under load: 80 ms a pair
    assert depths.depth("3", 50, 0.050) == 0  # not one pair fits: features alone
    assert depths.depth("3", 50, 0.050) == 1  # 40 ms now: one pair fits, and is measured
    depths.observe("3", 1, 0.010)
    assert depths.depth("3", 50, 0.050) > 1


def test_the_head_leaves_room_for_a_slower_call_than_the_average() -> None:
    from shared.ranking.rerank import DepthForDeadline

    depths = DepthForDeadline()
    depths.observe("3", 10, 0.010)  # 1 ms a pair on average
    assert 69 <= depths.depth("3", 200, 0.100) <= 70  # 70% of the 100 ms left
