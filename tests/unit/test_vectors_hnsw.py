"""The HNSW graph in front of the exact search (a bulk load above ``ann_threshold``): its
recall against exact search on clustered vectors, with and without filters; exact scores;
retired entries never returned; a small filter searched exactly; rebuilt on the next load."""

from __future__ import annotations

import numpy as np
import pytest

from shared.bench.scale import clustered_vectors
from shared.search.catalog_index import CatalogIndex
from shared.search.retrieval import RetrieveOptions
from shared.search.vectors import VectorIndex
from tests.unit.catalog_support import make_products

pytestmark = pytest.mark.unit

DIM, N = 48, 6_000


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray]:
    return clustered_vectors(N, DIM, 60, seed=1), clustered_vectors(40, DIM, 60, seed=2)


def pair(vectors: np.ndarray) -> tuple[VectorIndex, VectorIndex]:
    exact, approximate = VectorIndex(DIM, None), VectorIndex(DIM, ann_threshold=1_000)
    for index in (exact, approximate):
        index.set_many(np.arange(len(vectors)), vectors)
    assert approximate.approximate and not exact.approximate
    return exact, approximate


def recall(exact: VectorIndex, approximate: VectorIndex, queries, mask=None, k=100) -> float:
    found = []
    for q in queries:
        truth = set(exact.search(q, k, mask)[0].tolist())
        found.append(len(truth & set(approximate.search(q, k, mask)[0].tolist())) / len(truth))
    return float(np.mean(found))


def test_recall_against_exact_search_and_exact_scores(data) -> None:
    vectors, queries = data
    exact, approximate = pair(vectors)
    assert recall(exact, approximate, queries) >= 0.97
    rows, scores = approximate.search(queries[0], 50)
    assert np.allclose(scores, vectors[rows] @ queries[0], atol=1e-6)
    assert list(scores) == sorted(scores, reverse=True)


def test_filters_only_allowed_rows_widened_or_exact(data) -> None:
    vectors, queries = data
    exact, approximate = pair(vectors)
    wide = np.zeros(N, dtype=bool)
    wide[::6] = True  # a sixth: the graph, widened
    narrow = np.zeros(N, dtype=bool)
    narrow[::50] = True  # 2%: the allowed rows searched exactly
    for mask, floor in ((wide, 0.95), (narrow, 1.0)):
        assert recall(exact, approximate, queries, mask) >= floor
        rows, _ = approximate.search(queries[1], 100, mask)
        assert mask[rows].all()


def test_cleared_and_replaced_vectors(data) -> None:
    vectors, queries = data
    exact, approximate = pair(vectors)
    gone = list(range(0, 300))
    for index in (exact, approximate):
        for row in gone:
            index.clear(row)
        index.set(400, queries[5])  # replaced: its old entry retired
    for q in queries[:10]:
        rows = approximate.search(q, 200)[0].tolist()
        assert not set(rows) & set(gone)
    rows, scores = approximate.search(queries[5], 1)
    assert rows.tolist() == [400] and scores[0] == pytest.approx(1.0, abs=1e-5)
    assert recall(exact, approximate, queries) >= 0.97
    # The next bulk load rebuilds the graph without the retired entries.
    approximate.set_many(np.arange(300, N), vectors[300:])
    assert approximate._ann is not None and approximate._ann.size == N - 300


def test_a_catalog_loaded_above_the_threshold_retrieves_through_the_graph(tmp_path) -> None:
    vectors = clustered_vectors(1_500, 384, 30, seed=3)
    index = CatalogIndex.open(tmp_path / "c.db", dim=384, ann_threshold=1_000)
    index.upsert(make_products(1_500), vectors, "v1")
    assert not index._vectors.approximate  # grown by upserts: exact until the next load
    options = RetrieveOptions(mode="dense", k=20)
    before = [c.product.product_id for c in index.retrieve("", vectors[7], options).candidates]
    index.close()
    reopened = CatalogIndex.open(tmp_path / "c.db", dim=384, ann_threshold=1_000)
    assert reopened._vectors.approximate
    after = [c.product.product_id for c in reopened.retrieve("", vectors[7], options).candidates]
    assert after[0] == before[0] == "p7" and len(set(after) & set(before)) >= 18
    reopened.close()
