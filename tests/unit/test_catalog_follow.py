"""Two CatalogIndex replicas over one catalog database (SQLite file, and PostgreSQL): each
follows the other's writes from the change log, with the same rows and generation, its
own writes applied once, a reindex swap reloaded, concurrent writers never clashing."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from shared.search.catalog_index import CatalogIndex
from shared.search.retrieval import RetrieveOptions
from shared.storage import catalog as catalog_store
from tests.unit.catalog_support import DIM, make_products, unit_vectors
from tests.unit.test_catalog_reindex import FakeEncoder

pytestmark = pytest.mark.unit


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'catalog.db'}"
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture
def pair(url: str) -> Iterator[tuple[CatalogIndex, CatalogIndex]]:
    a = CatalogIndex.open(url, dim=DIM)
    b = CatalogIndex.open(url, dim=DIM)
    yield a, b
    a.close()
    b.close()


def rows_of(index: CatalogIndex) -> dict[str, int]:
    return dict(index._row_of)


def lexical(index: CatalogIndex, query: str) -> list[str]:
    result = index.retrieve(query, None, RetrieveOptions(mode="lexical", k=20))
    return [c.product.product_id for c in result.candidates]


def test_upserts_and_deletes_through_one_are_followed_by_the_other(pair) -> None:
    a, b = pair
    products = make_products(40)
    a.upsert(products, unit_vectors(40, 1), "1")
    assert len(b) == 0 and b.follow() == 1
    assert len(b) == 40 and rows_of(b) == rows_of(a)
    assert (b.generation, b.embedding_version) == (a.generation, "1")
    assert a.follow() == 0  # its own write is not applied twice
    a.delete([p.product_id for p in products[:5]])
    a.upsert(make_products(3, start=100), unit_vectors(3, 2), "1")  # reuse freed rows
    assert b.follow() == 2
    assert rows_of(b) == rows_of(a) and b.generation == a.generation
    for query in ("sofa", "lamp", "table"):
        assert lexical(b, query) == lexical(a, query)
    np.testing.assert_array_equal(
        b.snapshot(with_vectors=True).vectors, a.snapshot(with_vectors=True).vectors
    )


def test_a_writer_applies_the_others_changes_before_allocating_rows(pair) -> None:
    a, b = pair
    a.upsert(make_products(10), unit_vectors(10, 1), "1")
    # B has not polled: its write catches up first, so its new products get fresh rows.
    b.upsert(make_products(10, start=50), unit_vectors(10, 3), "1")
    a.follow()
    assert len(a) == len(b) == 20 and rows_of(a) == rows_of(b)
    assert sorted(rows_of(a).values()) == list(range(20))


def test_concurrent_writers_never_clash(pair) -> None:
    a, b = pair
    errors: list[BaseException] = []

    def write(index: CatalogIndex, start: int) -> None:
        try:
            for i in range(10):
                products = make_products(5, start=start + 5 * i)
                index.upsert(products, unit_vectors(5, start + i), "1")
        except BaseException as exc:
            errors.append(exc)

    threads = [
        threading.Thread(target=write, args=(a, 0)),
        threading.Thread(target=write, args=(b, 1000)),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    a.follow()
    b.follow()
    assert len(a) == len(b) == 100 and rows_of(a) == rows_of(b)
    assert a.generation == b.generation


def test_a_reindex_swap_on_one_is_reloaded_by_the_other(pair) -> None:
    a, b = pair
    products = make_products(30)
    a.upsert(products, FakeEncoder("1")([p.embedding_text() for p in products]), "1")
    b.follow()
    assert a.start_reindex("2", FakeEncoder("2"), batch_size=8).state == "running"
    assert a.wait_reindex(30).state == "done"
    b.follow()
    assert b.embedding_version == "2" and b.embedding_versions() == {"2": 30}
    np.testing.assert_array_equal(
        b.snapshot(with_vectors=True).vectors, a.snapshot(with_vectors=True).vectors
    )


def test_a_replica_behind_a_pruned_log_reloads_everything(pair, monkeypatch) -> None:
    a, b = pair
    a.upsert(make_products(10), unit_vectors(10, 1), "1")
    monkeypatch.setattr(catalog_store, "CHANGE_RETENTION_S", -1.0)  # prune all but the last
    a.upsert(make_products(5, start=10), unit_vectors(5, 2), "1")
    a.delete(["p0"])
    b.follow()
    assert rows_of(b) == rows_of(a) and len(b) == 14 and b.generation == a.generation


def test_the_follow_thread_applies_changes_on_its_own(pair) -> None:
    a, b = pair
    b.start_following(0.05, on_error=lambda exc: None)
    a.upsert(make_products(4), unit_vectors(4, 1), "1")
    deadline = threading.Event()
    for _ in range(200):
        if len(b) == 4:
            break
        deadline.wait(0.01)
    assert len(b) == 4 and b.generation == a.generation
