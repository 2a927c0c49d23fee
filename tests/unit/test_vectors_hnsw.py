"""The HNSW graph in front of the exact search: its recall against exact search on
clustered vectors, with and without filters; exact scores; retired entries never returned;
writes during a build applied when it is attached; a small filter searched exactly; the
catalog index building it in the background once it holds ``ann_threshold`` products."""

from __future__ import annotations

import time

import numpy as np
import pytest

from shared.bench.scale import clustered_vectors
from shared.search.catalog_index import CatalogIndex
from shared.search.retrieval import RetrieveOptions
from shared.search.vectors import VectorIndex, build_graph
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
    assert approximate.ann_due() and not exact.ann_due()
    approximate.build_ann()
    assert approximate.approximate and not exact.approximate and not approximate.ann_due()
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
    # A new index (a load, a reindex) builds a graph without the retired entries.
    fresh = VectorIndex(DIM, ann_threshold=1_000)
    fresh.set_many(np.arange(300, N), vectors[300:])
    fresh.build_ann()
    assert fresh._ann is not None and fresh._ann.size == N - 300


def test_writes_during_a_build_are_in_the_attached_graph(data) -> None:
    vectors, queries = data
    index = VectorIndex(DIM, ann_threshold=1_000)
    index.set_many(np.arange(N), vectors)
    rows, copy = index.begin_ann()
    assert not index.ann_due()  # one build at a time
    index.set(10, queries[3])  # written while the graph is built from the copy
    index.clear(11)
    index.set(N + 5, queries[4])  # a new row
    graph = build_graph(DIM, rows, copy)
    assert not index.approximate  # exact until attached
    index.finish_ann(graph)
    assert index.approximate
    assert index.search(queries[3], 1)[0].tolist() == [10]
    assert index.search(queries[4], 1)[0].tolist() == [N + 5]
    assert 11 not in index.search(vectors[11], 50)[0].tolist()


def wait_approximate(index: CatalogIndex, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not index.approximate and time.monotonic() < deadline:
        time.sleep(0.05)
    assert index.approximate, index._ann_error


def test_the_catalog_index_builds_the_graph_in_the_background(tmp_path) -> None:
    vectors = clustered_vectors(1_500, 384, 30, seed=3)
    index = CatalogIndex.open(tmp_path / "c.db", dim=384, ann_threshold=1_000)
    options = RetrieveOptions(mode="dense", k=20)
    index.upsert(make_products(900), vectors[:900], "v1")
    assert not index._vectors.ann_due()  # below the threshold: exact
    index.upsert(make_products(600, start=900), vectors[900:], "v1")  # past it: a build
    wait_approximate(index)
    brute = [f"p{i}" for i in np.argsort(-(vectors @ vectors[7]), kind="stable")[:20]]
    after = [c.product.product_id for c in index.retrieve("", vectors[7], options).candidates]
    assert after[0] == "p7" and len(set(after) & set(brute)) >= 18
    index.close()
    reopened = CatalogIndex.open(tmp_path / "c.db", dim=384, ann_threshold=1_000)
    wait_approximate(reopened)  # a load above the threshold builds it again
    again = [c.product.product_id for c in reopened.retrieve("", vectors[7], options).candidates]
    assert again[0] == "p7" and len(set(again) & set(after)) >= 18
    reopened.close()
