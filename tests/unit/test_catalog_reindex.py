"""The background reindex of a CatalogIndex (with a fake encoder): the swap, catch-up of
changes made meanwhile, failure, cancel and restart."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from shared.errors import FailedPrecondition, InvalidArgument, Unavailable
from shared.search.catalog_index import CatalogIndex, EmbeddingVersionMismatch
from shared.search.retrieval import RetrieveOptions
from tests.unit.catalog_support import DIM, ids, make_products, unit_vectors

pytestmark = pytest.mark.unit


class FakeEncoder:
    """A deterministic encoder per version: version v rolls version 1's vector v-1 places,
    so vectors of two versions differ but every version ranks alike. ``fail_at`` makes
    the n-th call raise Unavailable; ``gate`` (if set) is awaited before each call."""

    def __init__(self, version: str, fail_at: int | None = None) -> None:
        self.version = version
        self.calls = 0
        self.fail_at = fail_at
        self.gate: threading.Event | None = None
        self.batches: list[int] = []

    @staticmethod
    def base(texts: list[str]) -> np.ndarray:
        seeds = [sum(t.encode()) * 7919 + len(t) for t in texts]
        return np.vstack([unit_vectors(1, s)[0] for s in seeds])

    def __call__(self, texts) -> np.ndarray:
        self.calls += 1
        if self.gate is not None:
            assert self.gate.wait(10)
        if self.fail_at is not None and self.calls >= self.fail_at:
            raise Unavailable(f"text encoder: version {self.version} is not ready")
        self.batches.append(len(texts))
        return np.roll(self.base(list(texts)), int(self.version) - 1, axis=1)


@pytest.fixture
def versioned(tmp_path: Path) -> CatalogIndex:
    index = CatalogIndex.open(tmp_path / "catalog.db", dim=DIM)
    products = make_products(150)
    index.upsert(products, FakeEncoder("1")([p.embedding_text() for p in products]), "1")
    yield index
    index.close()


def stored_vector(index: CatalogIndex, pid: str) -> tuple[np.ndarray, str]:
    from sqlalchemy import text

    with index._store.engine.connect() as conn:
        emb, version = conn.execute(
            text("SELECT embedding, embedding_version FROM catalog_products WHERE product_id=:p"),
            {"p": pid},
        ).one()
    return np.frombuffer(emb, dtype="<f4"), version


def test_reindex_swaps_every_vector_to_the_new_version(tmp_path: Path, versioned) -> None:
    encoder = FakeEncoder("2")
    generation = versioned.generation
    started = versioned.start_reindex("2", encoder, batch_size=40)
    assert started.state == "running" and started.total == 150 and started.source_version == "1"
    status = versioned.wait_reindex(30)
    assert status.state == "done", status
    assert (status.embedded, status.total) == (150, 150)
    assert status.finished_at is not None and status.finished_at >= status.started_at
    assert encoder.batches == [40, 40, 40, 30]
    assert versioned.embedding_version == "2"
    assert versioned.embedding_versions() == {"2": 150}
    assert versioned.generation > generation
    product = versioned.get(["p7"])[0]
    expected = FakeEncoder("2")([product.embedding_text()])[0]
    vec, version = stored_vector(versioned, "p7")
    np.testing.assert_allclose(vec, expected, atol=1e-6)
    assert version == "2"
    # Retrieval now scores version-2 queries, and the centroids follow the new vectors.
    q2 = FakeEncoder("2")([product.embedding_text()])[0]
    assert ids(
        versioned.retrieve("x", q2, RetrieveOptions(mode="dense", k=1, query_version="2"))
    ) == ["p7"]
    with pytest.raises(EmbeddingVersionMismatch):
        versioned.retrieve("x", q2, RetrieveOptions(query_version="1"))
    _, centroid = versioned.class_centroids()["Sofas"]
    rows = [p for p in versioned.get([f"p{i}" for i in range(0, 150, 4)])]
    expected_mean = FakeEncoder("2")([p.embedding_text() for p in rows]).mean(axis=0)
    np.testing.assert_allclose(centroid, expected_mean / np.linalg.norm(expected_mean), atol=1e-5)
    # The swap is on disk: a reopened index has version 2 and no staging rows.
    versioned.close()
    reopened = CatalogIndex.open(tmp_path / "catalog.db", dim=DIM)
    try:
        assert reopened.embedding_version == "2"
        assert reopened.embedding_versions() == {"2": 150}
        assert ids(
            reopened.retrieve("x", q2, RetrieveOptions(mode="dense", k=1, query_version="2"))
        ) == ["p7"]
    finally:
        reopened.close()


def test_reindex_requests_are_checked(versioned: CatalogIndex) -> None:
    with pytest.raises(InvalidArgument, match="text_encoder_version"):
        versioned.start_reindex("  ", FakeEncoder("2"))
    same = versioned.start_reindex("1", FakeEncoder("1"))
    assert same.state == "done" and "nothing to do" in same.message
    assert same.total == 0 and versioned.embedding_version == "1"

    encoder = FakeEncoder("2")
    encoder.gate = threading.Event()
    running = versioned.start_reindex("2", encoder, batch_size=50)
    try:
        assert versioned.staging_version == "2"
        assert versioned.start_reindex("2", encoder).state == "running"  # idempotent
        with pytest.raises(FailedPrecondition, match=r"text_encoder_version: .*'2' is running"):
            versioned.start_reindex("3", FakeEncoder("3"))
    finally:
        encoder.gate.set()
    assert running.target_version == "2"
    assert versioned.wait_reindex(30).state == "done"


def test_searches_see_one_version_until_the_swap(versioned: CatalogIndex) -> None:
    """Readers during the reindex: the old version until the swap, the new one after,
    and a query vector of the old version is never scored against new vectors."""
    encoder = FakeEncoder("2")
    encoder.gate = threading.Event()
    product = versioned.get(["p9"])[0]
    q = {v: FakeEncoder(v)([product.embedding_text()])[0] for v in ("1", "2")}
    versioned.start_reindex("2", encoder, batch_size=20)
    seen: list[str] = []
    for i in range(8):  # one batch at a time: read between batches
        result = versioned.retrieve(
            "x", q["1"], RetrieveOptions(mode="dense", k=1, query_version="1")
        )
        assert ids(result) == ["p9"] and result.embedding_version == "1"
        seen.append(result.embedding_version)
        encoder.gate.set()
        encoder.gate = threading.Event() if i < 7 else None
    encoder.gate = None
    status = versioned.wait_reindex(30)
    assert status.state == "done"
    result = versioned.retrieve("x", q["2"], RetrieveOptions(mode="dense", k=1, query_version="2"))
    assert ids(result) == ["p9"] and result.embedding_version == "2"
    assert seen == ["1"] * 8


def test_upserts_and_deletes_during_a_reindex_end_up_in_the_new_index(
    versioned: CatalogIndex,
) -> None:
    encoder = FakeEncoder("2")
    encoder.gate = threading.Event()
    versioned.start_reindex("2", encoder, batch_size=50)
    # While the first batch waits: a new product and an update, embedded with both versions
    # (as the retrieval service does); one update without a staged vector; a delete.
    changed = [*make_products(2, start=500), make_products(1, start=3)[0]]
    changed[2].title = "walnut sofa model 3"
    texts = [p.embedding_text() for p in changed]
    outcomes = versioned.upsert(
        changed, FakeEncoder("1")(texts), "1", staging_embeddings=("2", FakeEncoder("2")(texts))
    )
    assert [o.status for o in outcomes] == ["created", "created", "updated"]
    lonely = make_products(1, start=60)[0]
    lonely.title = "oak bench model 60"
    versioned.upsert([lonely], FakeEncoder("1")([lonely.embedding_text()]), "1")
    assert versioned.delete(["p100", "p101"]) == [True, True]
    assert versioned.embedding_version == "1"  # still serving version 1 meanwhile
    encoder.gate.set()
    encoder.gate = None
    status = versioned.wait_reindex(30)
    assert status.state == "done", status
    assert status.total == 151 and status.embedded == 151  # 150 + p60 caught up
    assert versioned.embedding_versions() == {"2": 150}
    for product in [*changed, lonely]:
        vec, version = stored_vector(versioned, product.product_id)
        assert version == "2"
        np.testing.assert_allclose(vec, FakeEncoder("2")([product.embedding_text()])[0], atol=1e-6)
    assert versioned.get(["p100"]) == [None]
    # An upsert that embedded both versions just before the swap still lands: its
    # version-2 vectors become the serving ones.
    late = make_products(1, start=700)
    text_ = [late[0].embedding_text()]
    versioned.upsert(
        late, FakeEncoder("1")(text_), "1", staging_embeddings=("2", FakeEncoder("2")(text_))
    )
    assert stored_vector(versioned, "p700")[1] == "2"
    with pytest.raises(EmbeddingVersionMismatch):
        versioned.upsert(late, FakeEncoder("1")(text_), "1")


def test_a_failed_reindex_leaves_the_old_index_serving(tmp_path: Path, versioned) -> None:
    from sqlalchemy import text

    product = versioned.get(["p5"])[0]
    q1 = FakeEncoder("1")([product.embedding_text()])[0]
    before = ids(versioned.retrieve("grey sofa", q1, RetrieveOptions(k=20, query_version="1")))
    generation = versioned.generation
    versioned.start_reindex("2", FakeEncoder("2", fail_at=3), batch_size=32)
    status = versioned.wait_reindex(30)
    assert status.state == "failed"
    assert "version 2 is not ready" in status.error and status.embedded == 64
    assert versioned.embedding_version == "1" and versioned.staging_version == ""
    assert versioned.embedding_versions() == {"1": 150}
    assert versioned.generation == generation
    assert (
        ids(versioned.retrieve("grey sofa", q1, RetrieveOptions(k=20, query_version="1"))) == before
    )
    with versioned._store.engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM catalog_staging")).scalar() == 0
    # A failed reindex can be asked for again.
    assert versioned.start_reindex("2", FakeEncoder("2")).state == "running"
    assert versioned.wait_reindex(30).state == "done"


def test_cancel_discards_the_staging(versioned: CatalogIndex) -> None:
    encoder = FakeEncoder("2")
    encoder.gate = threading.Event()
    versioned.start_reindex("2", encoder, batch_size=10)
    threading.Timer(0.2, encoder.gate.set).start()
    status = versioned.cancel_reindex(wait_s=10)
    assert status.state == "cancelled" and status.finished_at is not None
    assert versioned.embedding_version == "1" and versioned.staging_version == ""
    assert versioned.embedding_versions() == {"1": 150}
    assert versioned.cancel_reindex().state == "cancelled"  # nothing running: unchanged


def test_another_replica_opening_mid_reindex_leaves_the_staging_alone(
    tmp_path: Path, versioned
) -> None:
    """A replica starting (or restarting) while another one reindexes must not wipe the
    other's staged vectors: the reindex still completes. A staging left by a crash is
    emptied by the next reindex's start instead."""
    from sqlalchemy import text

    encoder = FakeEncoder("2")
    encoder.gate = threading.Event()
    versioned.start_reindex("2", encoder, batch_size=50)
    encoder.gate.set()
    encoder.gate = threading.Event()  # the second batch waits: one batch is staged
    deadline = threading.Event()
    while versioned.reindex_status().embedded < 50:
        deadline.wait(0.01)
    other = CatalogIndex.open(tmp_path / "catalog.db", dim=DIM)
    try:
        assert other.embedding_version == "1"
        assert other.reindex_status().state == "idle"
        with other._store.engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM catalog_staging")).scalar() == 50
    finally:
        other.close()
    encoder.gate.set()
    status = versioned.wait_reindex(30)
    assert status.state == "done", status
    assert versioned.embedding_version == "2"


def test_reindex_of_an_empty_index_pins_the_version(tmp_path: Path) -> None:
    index = CatalogIndex.open(tmp_path / "catalog.db", dim=DIM)
    try:
        status = index.start_reindex("5", FakeEncoder("5"))
        assert status.state == "done" and "empty" in status.message
        assert index.embedding_version == "5"
        with pytest.raises(EmbeddingVersionMismatch):
            index.upsert(make_products(1), unit_vectors(1, 0), "1")
    finally:
        index.close()
