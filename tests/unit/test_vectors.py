"""Exact dense search equals brute force, with masks, clears and growth."""

from __future__ import annotations

import numpy as np
import pytest

from shared.search.vectors import VectorIndex

pytestmark = pytest.mark.unit


def _unit(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    v = rng.standard_normal((n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def _brute(matrix: np.ndarray, allowed: np.ndarray, q: np.ndarray, k: int) -> list[int]:
    scores = matrix @ q
    rows = [r for r in np.argsort(-scores, kind="stable").tolist() if allowed[r]]
    return rows[:k]


def test_search_equals_brute_force() -> None:
    rng = np.random.default_rng(0)
    dim, n = 32, 3000  # more than the initial capacity: exercises growth
    vecs = _unit(rng, n, dim)
    index = VectorIndex(dim)
    for row in range(n):
        index.set(row, vecs[row])
    cleared = rng.choice(n, size=300, replace=False)
    for row in cleared.tolist():
        assert index.clear(row)
    assert len(index) == n - 300
    present = np.ones(n, dtype=bool)
    present[cleared] = False
    sparse_mask = rng.random(n) < 0.05  # gathered path
    dense_mask = rng.random(n) < 0.8  # full-matrix path
    for q in _unit(rng, 5, dim):
        rows, scores = index.search(q, 25)
        assert rows.tolist() == _brute(vecs, present, q, 25)
        np.testing.assert_allclose(scores, vecs[rows] @ q, rtol=1e-5)
        for mask in (sparse_mask, dense_mask):
            rows, _ = index.search(q, 25, mask)
            assert rows.tolist() == _brute(vecs, present & mask, q, 25)


def test_set_many_replace_and_edge_cases() -> None:
    rng = np.random.default_rng(1)
    index = VectorIndex(8)
    vecs = _unit(rng, 10, 8)
    index.set_many(np.arange(10), vecs)
    index.set(3, vecs[0])  # replace: rows 0 and 3 now tie; the lower row comes first
    rows, _ = index.search(vecs[0], 2)
    assert rows.tolist() == [0, 3]
    assert len(index) == 10
    assert index.search(vecs[0], 5, np.zeros(10, dtype=bool))[0].tolist() == []
    assert index.search(vecs[0], 0)[0].tolist() == []
    with pytest.raises(ValueError, match="shape"):
        index.set(0, np.zeros(7, dtype=np.float32))
    with pytest.raises(ValueError, match="shape"):
        index.search(np.zeros(9, dtype=np.float32), 3)
