"""CatalogIndex: persistence, deletes, per-product validation, retrieval modes, threads and
one embedding version at a time (the background reindex: test_catalog_reindex.py)."""

from __future__ import annotations

import dataclasses
import threading
from pathlib import Path

import numpy as np
import pytest

from shared.data.catalog import Product
from shared.errors import InvalidArgument
from shared.search.catalog_index import CatalogIndex, EmbeddingVersionMismatch
from shared.search.filters import Filters
from shared.search.retrieval import RetrieveOptions
from tests.unit.catalog_support import CLASSES, DIM, ids, make_products, unit_vectors

pytestmark = pytest.mark.unit


@pytest.fixture
def catalog(tmp_path: Path) -> CatalogIndex:
    index = CatalogIndex.open(tmp_path / "catalog.db", dim=DIM)
    outcomes = index.upsert(make_products(64), unit_vectors(64, 0), "enc-v1")
    assert all(o.status == "created" for o in outcomes)
    yield index
    index.close()


def test_persistence_roundtrip(tmp_path: Path, catalog: CatalogIndex) -> None:
    qv = unit_vectors(3, 99)
    queries = [
        ("grey velvet sofa", qv[0], Filters(), [("Sofas", 0.9)]),
        ("oak table", qv[1], Filters(price_max=50.0, attributes={"colour": ["Blue"]}), []),
        ("rug", None, Filters(classes=["Area Rugs"]), []),
    ]

    def snapshot(index: CatalogIndex) -> list[list[tuple[str, float, int | None, int | None]]]:
        out = []
        for text, vec, filters, intent in queries:
            result = index.retrieve(
                text, vec, RetrieveOptions(filters=filters, intent=intent, k=20)
            )
            out.append(
                [(c.product.product_id, round(c.score, 6), c.lexical_rank, c.dense_rank)
                 for c in result.candidates]
            )  # fmt: skip
        return out

    catalog.upsert(make_products(4, start=2), unit_vectors(4, 5), "enc-v1")  # updates
    catalog.delete(["p10", "p11"])
    catalog.upsert(make_products(1, start=100), unit_vectors(1, 6), "enc-v1")  # reuses a row
    before = snapshot(catalog)
    assert any(before)
    products_before = catalog.get(["p3", "p100", "p10"])
    classes, attrs = catalog.classes(), catalog.attribute_names()
    centroids = catalog.class_centroids()
    catalog.close()

    reopened = CatalogIndex.open(tmp_path / "catalog.db", dim=DIM)
    try:
        assert len(reopened) == 63
        assert snapshot(reopened) == before
        assert reopened.get(["p3", "p100", "p10"]) == products_before
        assert reopened.classes() == classes
        assert reopened.attribute_names() == attrs
        assert reopened.embedding_versions() == {"enc-v1": 63}
        assert reopened.embedding_version == "enc-v1"
        for name, (count, mean) in reopened.class_centroids().items():
            assert centroids[name][0] == count
            np.testing.assert_allclose(mean, centroids[name][1], atol=1e-5)
    finally:
        reopened.close()


def test_delete_removes_from_every_structure(catalog: CatalogIndex) -> None:
    target = catalog.get(["p0"])[0]
    assert target is not None
    vec = unit_vectors(64, 0)[0]
    generation = catalog.generation
    assert catalog.delete(["p0", "missing"]) == [True, False]
    assert catalog.generation > generation
    assert catalog.get(["p0"]) == [None]
    assert len(catalog) == 63
    assert catalog.classes()["Sofas"] == 15
    everything = catalog.retrieve(
        target.title, vec, RetrieveOptions(filters=Filters(), k=500, lexical_k=500, dense_k=500)
    )
    assert "p0" not in ids(everything)
    for mode in ("lexical", "dense"):
        assert "p0" not in ids(
            catalog.retrieve(target.title, vec, RetrieveOptions(mode=mode, k=500))
        )
    grey_sofas = Filters(classes=["Sofas"], attributes={"colour": ["grey"]})
    assert "p0" not in ids(catalog.retrieve("sofa", vec, RetrieveOptions(filters=grey_sofas)))
    assert catalog.delete(["p0"]) == [False]


def test_invalid_product_rejected_others_stored(catalog: CatalogIndex) -> None:
    good = make_products(2, start=300)
    bad_vec = unit_vectors(1, 3)[0].copy()
    bad_vec[5] = np.nan
    batch = [
        good[0],
        Product("p201", "", price=1.0),
        Product("p202", "Chair", price=-5.0),
        Product("x" * 129, "Chair"),
        Product("p204", "Chair", rating=7.0),
        Product("p205", "Chair"),
        good[1],
    ]
    vecs = np.vstack([unit_vectors(5, 4), bad_vec[None, :], unit_vectors(1, 8)])
    outcomes = catalog.upsert(batch, vecs, "enc-v1")
    assert [o.status for o in outcomes] == ["created"] + ["invalid"] * 5 + ["created"]
    errors = [o.error or "" for o in outcomes[1:6]]
    assert errors[0].startswith("title:")
    assert errors[1].startswith("price: must be >= 0")
    assert errors[2].startswith("product_id: must be at most 128")
    assert errors[3].startswith("rating:")
    assert errors[4].startswith("embedding: must be finite")
    stored = catalog.get(["p300", "p301", "p201", "p202", "p204", "p205"])
    assert [p is not None for p in stored] == [True, True, False, False, False, False]
    assert len(catalog) == 66
    wrong_dim = catalog.upsert([good[0]], np.zeros((1, 10), dtype=np.float32), "enc-v1")
    assert wrong_dim[0].status == "invalid" and "384 dimensions" in (wrong_dim[0].error or "")
    with pytest.raises(InvalidArgument, match="embeddings"):
        catalog.upsert(good, unit_vectors(1, 1), "enc-v1")


def test_update_moves_product_between_classes(catalog: CatalogIndex) -> None:
    moved = make_products(1)[0]
    moved.product_class = "Beds"
    moved.title = "walnut bed frame"
    vec = unit_vectors(1, 42)
    assert catalog.upsert([moved], vec, "enc-v1")[0].status == "updated"
    assert catalog.classes()["Beds"] == 1 and catalog.classes()["Sofas"] == 15
    count, centroid = catalog.class_centroids()["Beds"]
    assert count == 1
    np.testing.assert_allclose(centroid, vec[0], atol=1e-6)
    assert ids(catalog.retrieve("walnut", None, RetrieveOptions(mode="lexical"))) == ["p0"]
    assert "p0" not in ids(
        catalog.retrieve("sofa", None, RetrieveOptions(filters=Filters(classes=["Sofas"]), k=100))
    )


def test_class_centroids_match_brute_force(catalog: CatalogIndex) -> None:
    vecs = unit_vectors(64, 0)
    for name, (count, mean) in catalog.class_centroids().items():
        rows = [i for i in range(64) if CLASSES[i % 4] == name]
        expected = vecs[rows].mean(axis=0)
        assert count == len(rows)
        np.testing.assert_allclose(mean, expected / np.linalg.norm(expected), atol=1e-5)


def test_modes_fallback_and_intent_boost(catalog: CatalogIndex) -> None:
    qv = unit_vectors(1, 77)[0]
    hybrid = catalog.retrieve("grey sofa", qv, RetrieveOptions(k=30))
    assert hybrid.mode == "hybrid" and hybrid.fallback is None
    assert any(c.sources == ["lexical", "dense"] for c in hybrid.candidates)
    scores = [c.score for c in hybrid.candidates]
    assert scores == sorted(scores, reverse=True)

    fallback = catalog.retrieve("grey sofa", None)
    assert fallback.mode == "lexical" and fallback.requested_mode == "hybrid"
    assert fallback.fallback is not None
    assert all(c.sources == ["lexical"] for c in fallback.candidates)

    dense = catalog.retrieve(
        "ignored", qv, RetrieveOptions(mode="dense", intent=[("Sofas", 1.0)], k=10)
    )
    assert [c.dense_rank for c in dense.candidates] == list(range(1, 11))
    assert all(c.intent_boost == 0.0 and c.lexical_rank is None for c in dense.candidates)

    # "model" matches every product; the boost must lift the intent class to the top.
    plain = catalog.retrieve("model", qv, RetrieveOptions(k=10))
    boosted = catalog.retrieve(
        "model", qv, RetrieveOptions(intent=[("Area Rugs", 0.9)], k=10, intent_boost=2.0)
    )
    top = boosted.candidates[0]
    assert top.product.product_class == "Area Rugs"
    assert top.intent_boost == pytest.approx(2.0 * 0.9 / 61)
    assert [c.product.product_class for c in boosted.candidates[:5]] == ["Area Rugs"] * 5
    assert ids(plain) != ids(boosted)

    with pytest.raises(InvalidArgument, match="query_vector: required"):
        catalog.retrieve("sofa", None, RetrieveOptions(mode="dense"))
    with pytest.raises(InvalidArgument, match="mode:"):
        catalog.retrieve("sofa", qv, RetrieveOptions(mode="fuzzy"))
    with pytest.raises(InvalidArgument, match=r"filters\.attributes: unknown attribute 'shape'"):
        catalog.retrieve(
            "sofa", qv, RetrieveOptions(filters=Filters(attributes={"shape": ["round"]}))
        )


def test_concurrent_retrieve_during_upserts(catalog: CatalogIndex) -> None:
    errors: list[BaseException] = []
    reads = [0] * 4
    stop = threading.Event()
    qv = unit_vectors(4, 11)

    def reader(seed: int) -> None:
        i = 0
        try:
            while not stop.is_set():
                result = catalog.retrieve(
                    "grey velvet sofa model",
                    qv[(seed + i) % 4],
                    RetrieveOptions(filters=Filters(price_max=5000.0), k=50),
                )
                for c in result.candidates:
                    # A product is never half-updated: title and class always agree.
                    assert c.product.title.endswith(c.product.product_id[1:])
                    assert c.product.product_class.lower() in c.product.title
                i += 1
                reads[seed] = i
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=reader, args=(s,)) for s in range(4)]
    for t in threads:
        t.start()
    try:
        for round_ in range(15):
            batch = make_products(40, start=(round_ % 3) * 30)
            catalog.upsert(batch, unit_vectors(40, 100 + round_), "enc-v1")
            catalog.delete([f"p{round_ * 2}"])
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=30)
    assert not errors, errors[0]
    assert min(reads) > 0
    assert catalog.retrieve("sofa", None).candidates


# ---------------------------------------------------------------- embedding versions


def test_the_index_has_one_version_pinned_by_its_first_upsert(tmp_path: Path) -> None:
    index = CatalogIndex.open(tmp_path / "catalog.db", dim=DIM)
    try:
        assert index.embedding_version == ""
        index.upsert(make_products(4), unit_vectors(4, 0), "3")
        assert index.embedding_version == "3"
        with pytest.raises(EmbeddingVersionMismatch, match="embedding_version: '4'") as err:
            index.upsert(make_products(1, start=10), unit_vectors(1, 1), "4")
        assert err.value.index_version == "3" and len(index) == 4
        index.delete([p.product_id for p in make_products(4)])
        assert index.embedding_version == "3"  # an emptied index keeps its version
        qv = unit_vectors(1, 2)[0]
        assert (
            index.retrieve("sofa", qv, RetrieveOptions(query_version="3")).embedding_version == "3"
        )
    finally:
        index.close()


def test_query_vector_of_another_version_is_refused(catalog: CatalogIndex) -> None:
    qv = unit_vectors(1, 5)[0]
    assert catalog.retrieve("grey sofa", qv, RetrieveOptions(query_version="enc-v1")).candidates
    with pytest.raises(EmbeddingVersionMismatch, match="query_version") as err:
        catalog.retrieve("grey sofa", qv, RetrieveOptions(query_version="enc-v2"))
    assert err.value.index_version == "enc-v1"
    # Lexical retrieval uses no vector, so any version is fine.
    assert catalog.retrieve("grey sofa", None, RetrieveOptions(query_version="enc-v2")).candidates


def test_an_old_file_takes_its_majority_version(tmp_path: Path) -> None:
    from sqlalchemy import create_engine, text

    path = tmp_path / "catalog.db"
    index = CatalogIndex.open(path, dim=DIM)
    index.upsert(make_products(5), unit_vectors(5, 0), "1")
    index.close()
    engine = create_engine(f"sqlite:///{path}")
    with engine.begin() as conn:  # as written before the version was pinned
        conn.execute(text("DELETE FROM catalog_meta"))
        conn.execute(text("UPDATE catalog_products SET embedding_version = '2' WHERE row < 3"))
    engine.dispose()
    reopened = CatalogIndex.open(path, dim=DIM)
    try:
        assert reopened.embedding_version == "2"
        assert reopened.embedding_versions() == {"2": 3, "1": 2}
    finally:
        reopened.close()


def test_snapshot_is_the_catalog_in_id_order_and_stays_as_taken(catalog: CatalogIndex) -> None:
    vectors = dict(zip([f"p{i}" for i in range(64)], unit_vectors(64, 0), strict=True))
    catalog.delete(["p10"])
    catalog.upsert(make_products(1, start=100), unit_vectors(1, 7), "enc-v1")  # reuses p10's row
    vectors["p100"] = unit_vectors(1, 7)[0]
    del vectors["p10"]

    snap = catalog.snapshot(with_vectors=True)
    assert list(snap.product_ids) == sorted(vectors) and len(snap) == 64
    assert list(snap.products) == catalog.get(list(snap.product_ids))
    assert snap.vectors is not None and snap.vectors.dtype == np.float32
    np.testing.assert_allclose(snap.vectors, [vectors[pid] for pid in snap.product_ids], atol=1e-6)
    assert (snap.generation, snap.embedding_version) == (catalog.generation, "enc-v1")
    assert not snap.vectors.flags.writeable

    # Later writes change the index, not the snapshot.
    before = snap.vectors.copy()
    old_p3 = snap.products[snap.product_ids.index("p3")]
    catalog.upsert([dataclasses.replace(old_p3, title="renamed")], unit_vectors(1, 8), "enc-v1")
    catalog.delete(["p5"])
    catalog.upsert(make_products(1, start=200), unit_vectors(1, 9), "enc-v1")
    assert catalog.generation > snap.generation
    assert list(snap.product_ids) == sorted(vectors)
    assert snap.products[snap.product_ids.index("p3")].title == old_p3.title != "renamed"
    np.testing.assert_array_equal(snap.vectors, before)

    plain = catalog.snapshot()
    assert plain.vectors is None and "p5" not in plain.product_ids
    assert "p200" in plain.product_ids and len(plain) == 64


def test_snapshot_of_an_empty_index(tmp_path: Path) -> None:
    index = CatalogIndex.open(tmp_path / "catalog.db", dim=DIM)
    try:
        snap = index.snapshot(with_vectors=True)
        assert (snap.product_ids, snap.products, snap.embedding_version) == ((), (), "")
        assert snap.vectors is not None and snap.vectors.shape == (0, DIM)
        assert snap.generation == index.generation
    finally:
        index.close()
