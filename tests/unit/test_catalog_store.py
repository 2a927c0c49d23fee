"""CatalogStore: the catalog file's tables and statements, without the in-memory index."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import text

from shared.data.catalog import Product
from shared.errors import FailedPrecondition
from shared.storage.catalog import CatalogStore, ProductRow

pytestmark = pytest.mark.unit

DIM = 8


def vector(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(DIM).astype(np.float32)


def rows(n: int, version: str = "1") -> list[ProductRow]:
    return [
        ProductRow(
            Product(f"p{i}", f"Sofa {i}", attributes={"colour": "grey"}, price=float(i)),
            row=i,
            vector=vector(i),
            version=version,
        )
        for i in range(n)
    ]


def count(store: CatalogStore, table: str) -> int:
    with store.engine.connect() as conn:
        return conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[CatalogStore]:
    store = CatalogStore.open(tmp_path / "catalog.db", DIM)
    yield store
    store.close()


def test_an_empty_file_loads_nothing(store: CatalogStore) -> None:
    loaded = store.load()
    assert (loaded.version, loaded.rows, loaded.products) == ("", [], [])
    assert loaded.vectors.shape == (0, DIM)


def test_upsert_then_load_gives_products_vectors_and_version(
    tmp_path: Path, store: CatalogStore
) -> None:
    written = rows(3)
    store.upsert(written, pin_version="1")
    store.upsert([ProductRow(Product("p1", "Oak table"), 1, vector(9), "1")])  # replaces
    store.close()
    reopened = CatalogStore.open(tmp_path / "catalog.db", DIM)
    try:
        loaded = reopened.load()
        assert loaded.version == "1" and loaded.rows == [0, 1, 2]
        assert loaded.products == [
            written[0].product,
            Product("p1", "Oak table"),
            written[2].product,
        ]
        assert loaded.vectors.dtype == np.float32
        np.testing.assert_array_equal(loaded.vectors, np.vstack([vector(0), vector(9), vector(2)]))
        assert loaded.versions == ["1", "1", "1"]
    finally:
        reopened.close()


def staged(row: ProductRow, seed: int) -> ProductRow:
    return ProductRow(row.product, row.row, row.vector, row.version, staged=vector(seed))


def test_delete_removes_products_and_their_staged_vectors(store: CatalogStore) -> None:
    store.upsert([staged(rows(1)[0], 5), *rows(4)[1:]], pin_version="1", staging_version="2")
    store.stage([("p1", vector(6)), ("p2", vector(7))], "2")
    assert count(store, "catalog_staging") == 3
    store.delete(["p0", "p1"])
    assert [p.product_id for p in store.load().products] == ["p2", "p3"]


def test_staged_vectors_are_written_only_while_a_reindex_runs(store: CatalogStore) -> None:
    store.upsert([staged(row, 5) for row in rows(2)], pin_version="1")  # no reindex
    assert count(store, "catalog_staging") == 0
    store.upsert([staged(row, 5) for row in rows(2)], staging_version="2")
    assert count(store, "catalog_staging") == 2
    store.upsert(rows(1), staging_version="2")  # p0 without one: its staged vector is stale
    with store.engine.connect() as conn:
        assert conn.execute(text("SELECT product_id FROM catalog_staging")).scalars().all() == [
            "p1"
        ]


def test_loading_keeps_the_staging_and_pins_an_old_files_majority(
    store: CatalogStore,
) -> None:
    store.upsert([staged(rows(1)[0], 5), *rows(5)[1:]], staging_version="2")
    with store.engine.begin() as conn:
        conn.execute(text("UPDATE catalog_products SET embedding_version = '2' WHERE row < 3"))
    loaded = store.load()
    assert loaded.version == "2" and loaded.versions == ["2", "2", "2", "1", "1"]
    # Another replica's reindex may be filling it; a reindex empties it when it starts.
    assert count(store, "catalog_staging") == 1
    assert count(store, "catalog_meta") == 1


def test_another_dimension_is_refused(tmp_path: Path, store: CatalogStore) -> None:
    store.upsert(rows(2), pin_version="1")
    other = CatalogStore.open(tmp_path / "catalog.db", DIM * 2)
    try:
        with pytest.raises(FailedPrecondition, match=r"dim: .*\[8\]-dimensional .*dim=16"):
            other.load()
    finally:
        other.close()


def test_the_swap_makes_staged_vectors_serve(store: CatalogStore) -> None:
    store.upsert(rows(3), pin_version="1")
    staged = [(f"p{i}", vector(10 + i)) for i in range(3)]
    store.stage(staged, "2")
    with store.swapping_staging("2", {"p0", "p1", "p2"}) as (ids, vectors):
        assert sorted(ids) == ["p0", "p1", "p2"]
        np.testing.assert_array_equal(vectors[ids.index("p1")], vector(11))
    loaded = store.load()
    assert loaded.version == "2" and loaded.versions == ["2"] * 3
    np.testing.assert_array_equal(loaded.vectors, np.vstack([v for _, v in staged]))
    assert count(store, "catalog_staging") == 0


def test_a_failed_swap_changes_nothing(store: CatalogStore) -> None:
    store.upsert(rows(2), pin_version="1")
    store.stage([("p0", vector(10))], "2")
    with (
        pytest.raises(RuntimeError, match="staging table does not match the catalog"),
        store.swapping_staging("2", {"p0", "p1"}),
    ):
        pass
    store.stage([("p1", vector(11))], "2")
    with pytest.raises(ValueError, match="stop"), store.swapping_staging("2", {"p0", "p1"}):
        raise ValueError("stop")
    assert count(store, "catalog_staging") == 2
    loaded = store.load()
    assert loaded.version == "1" and loaded.versions == ["1", "1"]
    np.testing.assert_array_equal(loaded.vectors, np.vstack([vector(0), vector(1)]))


def test_pin_version_and_clear_staging(store: CatalogStore) -> None:
    store.pin_version("5")
    store.stage([("p0", vector(1))], "6")
    store.clear_staging()
    assert count(store, "catalog_staging") == 0
    assert store.load().version == "5"
