"""The catalog's tables in their own SQLite file, and every statement on them.

Three tables: ``catalog_products`` (each product's fields as JSON, its in-memory row and
its embedding as little-endian float32 bytes with their version), ``catalog_staging`` (a
running reindex's vectors of the next version, not yet serving) and ``catalog_meta``
(facts about the whole catalog: its ``embedding_version``). The file is the source of
truth of the in-memory index (``shared.search.catalog_index``), which reloads from it
on start; ``CatalogStore`` is the only code that touches it.

Errors: the writes on a request's path raise ``Unavailable`` naming the operation
(``catalog database: upsert failed (OperationalError)``); ``load``, ``stage`` and
``swapping_staging`` let SQLAlchemy's errors through, so a reindex that fails on them
reports them as they are. The store does no locking: its callers serialise writers.
"""

from __future__ import annotations

import dataclasses
import json
from collections import Counter
from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Self

import numpy as np
from sqlalchemy import Connection, Engine, event, text
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import registry
from sqlmodel import Field, SQLModel, create_engine, delete, select

from shared.data.catalog import MAX_PRODUCT_ID_LENGTH, Product
from shared.errors import FailedPrecondition, Unavailable

# Ids per ``IN (...)`` clause, under SQLite's limit on bound parameters.
_SQL_IN_CHUNK = 500
_META_VERSION = "embedding_version"


class _CatalogModel(SQLModel, registry=registry()):
    """Own metadata, so these tables never collide with another component's models."""


class ProductRecord(_CatalogModel, table=True):
    """One stored product: its fields as JSON and its embedding as little-endian float32."""

    __tablename__ = "catalog_products"

    product_id: str = Field(primary_key=True, max_length=MAX_PRODUCT_ID_LENGTH)
    # The in-memory row, persisted so tie-breaking (by row) is identical after a restart.
    row: int = Field(index=True, unique=True)
    data: str
    embedding: bytes
    embedding_dim: int
    embedding_version: str
    updated_at: datetime


class StagedEmbedding(_CatalogModel, table=True):
    """A product's vector for a running reindex's target version, not yet serving."""

    __tablename__ = "catalog_staging"

    product_id: str = Field(primary_key=True, max_length=MAX_PRODUCT_ID_LENGTH)
    embedding: bytes
    embedding_version: str
    updated_at: datetime


class CatalogMeta(_CatalogModel, table=True):
    """Key-value facts about the whole catalog (``embedding_version``)."""

    __tablename__ = "catalog_meta"

    key: str = Field(primary_key=True, max_length=64)
    value: str


@dataclass(slots=True, frozen=True)
class StoredCatalog:
    """What ``CatalogStore.load`` read: the catalog's version and its products by row.

    ``version`` is "" for a catalog that never had one. ``rows``, ``products``,
    ``versions`` and the rows of ``vectors`` (float32, one per product) are in row order.
    """

    version: str
    rows: list[int]
    products: list[Product]
    vectors: np.ndarray
    versions: list[str]


@dataclass(slots=True, frozen=True)
class ProductRow:
    """One product to write: its row, its embedding and that embedding's version, and its
    vector of a running reindex's version (None: none given)."""

    product: Product
    row: int
    vector: np.ndarray
    version: str
    staged: np.ndarray | None = None


def _vector_bytes(vector: np.ndarray) -> bytes:
    return vector.astype("<f4").tobytes()


def _vectors(blobs: Sequence[bytes], dim: int) -> np.ndarray:
    vectors = np.frombuffer(b"".join(blobs), dtype="<f4")
    return vectors.reshape(len(blobs), dim).astype(np.float32)


class CatalogStore:
    """The catalog file's tables for embeddings of ``dim`` dimensions.

    Create with ``CatalogStore.open(path, dim)``; release with ``close()``.
    """

    def __init__(self, engine: Engine, dim: int) -> None:
        """Use ``open``; this constructor takes an engine whose tables exist."""
        self.engine = engine
        self.dim = dim

    @classmethod
    def open(cls, path: Path, dim: int) -> Self:
        """The store of the SQLite file at ``path``, created with its tables if needed.

        WAL journal (readers never block the writer) with synchronous=NORMAL: the catalog
        can be rebuilt from its source, so a commit need not wait for the disk.
        """
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            f"sqlite:///{path}", connect_args={"check_same_thread": False, "timeout": 30}
        )

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()

        _CatalogModel.metadata.create_all(engine)
        return cls(engine, dim)

    def close(self) -> None:
        """Release the database connections."""
        self.engine.dispose()

    # ------------------------------------------------------------------ reading
    def load(self) -> StoredCatalog:
        """Every product with its embedding, and the catalog's version.

        A reindex interrupted by a restart is discarded, not resumed: its staged vectors
        are deleted (its job state died with the process and a new request is cheap to
        make). A file from before the version was pinned takes its majority version,
        which is pinned now. Raises ``FailedPrecondition`` if the stored embeddings have
        another dimension than ``dim``.
        """
        t = ProductRecord
        with self.engine.begin() as conn:
            conn.execute(delete(StagedEmbedding))
            records = conn.execute(
                select(t.row, t.data, t.embedding, t.embedding_dim, t.embedding_version).order_by(
                    t.row
                )
            ).all()
            stored = conn.execute(
                select(CatalogMeta.value).where(CatalogMeta.key == _META_VERSION)
            ).scalar_one_or_none()
            if stored is None and records:
                counts = Counter(r.embedding_version for r in records)
                stored = max(sorted(counts), key=counts.__getitem__)
                self._pin_version(conn, stored)
        version = stored or ""
        if not records:
            return StoredCatalog(version, [], [], np.zeros((0, self.dim), np.float32), [])
        dims = {r.embedding_dim for r in records}
        if dims != {self.dim}:
            raise FailedPrecondition(
                f"dim: the stored catalog has {sorted(dims)}-dimensional embeddings, "
                f"opened with dim={self.dim}"
            )
        vectors = _vectors([r.embedding for r in records], self.dim)
        products = [Product(**json.loads(r.data)) for r in records]
        return StoredCatalog(
            version,
            [r.row for r in records],
            products,
            vectors,
            [r.embedding_version for r in records],
        )

    # ------------------------------------------------------------------ writing
    def upsert(
        self,
        items: Sequence[ProductRow],
        *,
        pin_version: str | None = None,
        staging_version: str = "",
    ) -> None:
        """In one transaction: create or replace ``items`` (at least one) and pin the
        catalog's version when ``pin_version`` is given. While a reindex to
        ``staging_version`` runs ("": none), each item's ``staged`` vector is stored for it,
        and an item without one loses its staged vector (now stale). Raises ``Unavailable``
        (nothing written)."""
        now = datetime.now(UTC)
        params = [
            {
                "product_id": it.product.product_id,
                "row": it.row,
                "data": json.dumps(dataclasses.asdict(it.product), ensure_ascii=False),
                "embedding": _vector_bytes(it.vector),
                "embedding_dim": self.dim,
                "embedding_version": it.version,
                "updated_at": now,
            }
            for it in items
        ]
        stmt = sqlite_insert(ProductRecord)
        stmt = stmt.on_conflict_do_update(
            index_elements=["product_id"],
            set_={c: stmt.excluded[c] for c in params[0] if c != "product_id"},
        )
        staging = items if staging_version else []
        staged = [(it.product.product_id, it.staged) for it in staging if it.staged is not None]
        unstaged = [it.product.product_id for it in staging if it.staged is None]
        try:
            with self.engine.begin() as conn:
                conn.execute(stmt, params)
                if staged:
                    self._stage(conn, staged, staging_version)
                for s in range(0, len(unstaged), _SQL_IN_CHUNK):
                    chunk = unstaged[s : s + _SQL_IN_CHUNK]
                    conn.execute(
                        delete(StagedEmbedding).where(StagedEmbedding.product_id.in_(chunk))
                    )
                if pin_version is not None:
                    self._pin_version(conn, pin_version)
        except SQLAlchemyError as exc:
            raise Unavailable(
                f"catalog database: upsert failed ({exc.__class__.__name__})"
            ) from exc

    def delete(self, ids: Sequence[str]) -> None:
        """Delete products and their staged vectors, in one transaction. Raises
        ``Unavailable`` (nothing deleted)."""
        try:
            with self.engine.begin() as conn:
                for s in range(0, len(ids), _SQL_IN_CHUNK):
                    chunk = ids[s : s + _SQL_IN_CHUNK]
                    conn.execute(delete(ProductRecord).where(ProductRecord.product_id.in_(chunk)))
                    conn.execute(
                        delete(StagedEmbedding).where(StagedEmbedding.product_id.in_(chunk))
                    )
        except SQLAlchemyError as exc:
            raise Unavailable(
                f"catalog database: delete failed ({exc.__class__.__name__})"
            ) from exc

    # ------------------------------------------------------------------ the reindex's
    def pin_version(self, version: str) -> None:
        """Make ``version`` the catalog's (a reindex of an empty catalog). Raises
        ``Unavailable``."""
        try:
            with self.engine.begin() as conn:
                self._pin_version(conn, version)
        except SQLAlchemyError as exc:
            raise Unavailable(
                f"catalog database: reindex failed ({exc.__class__.__name__})"
            ) from exc

    def clear_staging(self) -> None:
        """Delete every staged vector (a reindex starts or stops). Raises ``Unavailable``."""
        try:
            with self.engine.begin() as conn:
                conn.execute(delete(StagedEmbedding))
        except SQLAlchemyError as exc:
            raise Unavailable(
                f"catalog database: reindex failed ({exc.__class__.__name__})"
            ) from exc

    def stage(self, items: Sequence[tuple[str, np.ndarray]], version: str) -> None:
        """Store (product id, vector) pairs of ``version`` in the staging table."""
        with self.engine.begin() as conn:
            self._stage(conn, items, version)

    @contextmanager
    def swapping_staging(
        self, version: str, product_ids: Collection[str]
    ) -> Iterator[tuple[list[str], np.ndarray]]:
        """Make the staged vectors the serving ones, in one transaction.

        Reads the staging table, which must hold exactly ``product_ids``, all of
        ``version`` (else ``RuntimeError``), and yields its ids and vectors (float32, in
        the same order). When the ``with`` body returns, the staged vectors replace the
        products' embeddings, the staging table is emptied and ``version`` pinned; if the
        body raises, nothing changes.
        """
        s = StagedEmbedding
        with self.engine.begin() as conn:
            staged = conn.execute(select(s.product_id, s.embedding, s.embedding_version)).all()
            if {r.product_id for r in staged} != product_ids or any(
                r.embedding_version != version for r in staged
            ):
                raise RuntimeError("staging table does not match the catalog")
            yield [r.product_id for r in staged], _vectors([r.embedding for r in staged], self.dim)
            updated = conn.execute(
                text(
                    "UPDATE catalog_products SET embedding = s.embedding, "
                    "embedding_version = s.embedding_version, updated_at = s.updated_at "
                    "FROM catalog_staging AS s WHERE s.product_id = catalog_products.product_id"
                )
            ).rowcount
            if updated != len(staged):
                raise RuntimeError(f"swap updated {updated} of {len(staged)} products")
            conn.execute(delete(StagedEmbedding))
            self._pin_version(conn, version)

    # ------------------------------------------------------------------ statements
    @staticmethod
    def _stage(conn: Connection, items: Sequence[tuple[str, np.ndarray]], version: str) -> None:
        now = datetime.now(UTC)
        stmt = sqlite_insert(StagedEmbedding)
        stmt = stmt.on_conflict_do_update(
            index_elements=["product_id"],
            set_={c: stmt.excluded[c] for c in ("embedding", "embedding_version", "updated_at")},
        )
        conn.execute(
            stmt,
            [
                {
                    "product_id": pid,
                    "embedding": _vector_bytes(vec),
                    "embedding_version": version,
                    "updated_at": now,
                }
                for pid, vec in items
            ],
        )

    @staticmethod
    def _pin_version(conn: Connection, version: str) -> None:
        stmt = sqlite_insert(CatalogMeta).values(key=_META_VERSION, value=version)
        conn.execute(stmt.on_conflict_do_update(index_elements=["key"], set_={"value": version}))
