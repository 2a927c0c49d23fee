"""Reciprocal rank fusion against a hand-computed example."""

from __future__ import annotations

import numpy as np
import pytest

from shared.search.fusion import reciprocal_rank_fusion, reciprocal_rank_fusion_arrays

pytestmark = pytest.mark.unit


def test_rrf_hand_computed() -> None:
    # k = 60; lexical [1, 2, 3], dense [3, 1, 4]
    # row 1: 1/61 + 1/62 = 0.0163934 + 0.0161290 = 0.0325224
    # row 3: 1/63 + 1/61 = 0.0158730 + 0.0163934 = 0.0322664
    # row 2: 1/62 = 0.0161290
    # row 4: 1/63 = 0.0158730
    hits = reciprocal_rank_fusion({"lexical": [1, 2, 3], "dense": [3, 1, 4]}, k=60)
    assert [h.row for h in hits] == [1, 3, 2, 4]
    assert [h.score for h in hits] == pytest.approx(
        [0.0325224, 0.0322664, 0.0161290, 0.0158730], rel=1e-5
    )
    assert hits[0].ranks == {"lexical": 1, "dense": 2}
    assert hits[1].ranks == {"lexical": 3, "dense": 1}
    assert hits[3].ranks == {"dense": 3}


def test_rrf_weights() -> None:
    # dense weighted 2: row 3 = 1/63 + 2/61 = 0.0486602 beats row 1 = 1/61 + 2/62 = 0.0486515
    hits = reciprocal_rank_fusion(
        {"lexical": [1, 2, 3], "dense": [3, 1, 4]}, k=60, weights={"dense": 2.0}
    )
    assert [h.row for h in hits][:2] == [3, 1]
    assert hits[0].score == pytest.approx(0.0486602, rel=1e-5)


def test_rrf_ties_and_repeats() -> None:
    # rows 5 and 7 both score 1/61; the lower row wins; a repeated row keeps its first rank
    hits = reciprocal_rank_fusion({"a": [7, 7], "b": [5]}, k=60)
    assert [h.row for h in hits] == [5, 7]
    assert hits[1].ranks == {"a": 1}
    assert reciprocal_rank_fusion({}) == []


def test_array_version_matches() -> None:
    rng = np.random.default_rng(3)
    for _ in range(20):
        a = rng.choice(100, size=int(rng.integers(0, 40)), replace=False)
        b = rng.choice(100, size=int(rng.integers(0, 40)), replace=False)
        weights = {"lexical": 1.0, "dense": float(rng.uniform(0.5, 2))}
        expected = reciprocal_rank_fusion(
            {"lexical": a.tolist(), "dense": b.tolist()}, k=60, weights=weights
        )
        rows, scores, ranks = reciprocal_rank_fusion_arrays(
            {"lexical": a, "dense": b}, k=60, weights=weights
        )
        assert rows.tolist() == [h.row for h in expected]
        np.testing.assert_allclose(scores, [h.score for h in expected])
        assert ranks["lexical"].tolist() == [h.ranks.get("lexical", 0) for h in expected]
