"""The catalog's tables in any SQL database (its own SQLite file by default, PostgreSQL
shared by every retrieval replica in production), and every statement on them.

Four tables: ``catalog_products`` (each product's fields as JSON, its in-memory row and
its embedding as little-endian float32 bytes with their version), ``catalog_staging`` (a
running reindex's vectors of the next version, not yet serving), ``catalog_meta`` (facts
about the whole catalog: its ``embedding_version``) and ``catalog_changes`` (the change
log: one row per committed write, its ``seq`` increasing in commit order, naming the
products it touched). The database is the source of truth of the in-memory index
(``shared.search.catalog_index``), which loads from it on start and then follows the log,
so that a write through one replica is served by all; ``CatalogStore`` is the only code
that touches it. Its schema is the ``catalog`` migration history's
(``shared.storage.migrate``).

Writers across replicas: every write runs in ``writing()``, one transaction holding the
catalog's write lock (a PostgreSQL transaction-level advisory lock; on SQLite
``BEGIN IMMEDIATE``, its one writer lock). So the log's ``seq`` order is the commit order
(a reader that sees ``seq`` n has seen every write before it), and a writer can apply the
others' changes before it allocates rows, so rows stay unique and the same on every
replica.

Errors: the writes on a request's path raise ``Unavailable`` naming the operation
(``catalog database: upsert failed (OperationalError)``); ``load``, ``stage`` and
``swapping_staging`` let SQLAlchemy's errors through, so a reindex that fails on them
reports them as they are. Within a process its callers serialise writers.
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
from sqlalchemy import BigInteger, Connection, Engine, Integer, MetaData, Text, event, func, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import registry
from sqlmodel import Field, SQLModel, delete, select

from shared.data.catalog import MAX_PRODUCT_ID_LENGTH, Product
from shared.errors import FailedPrecondition, Unavailable
from shared.storage.database import create_db_engine
from shared.storage.feedback import UTCDateTime
from shared.storage.migrate import upgrade

# Ids per ``IN (...)`` clause, under SQLite's limit on bound parameters.
_SQL_IN_CHUNK = 500
_META_VERSION = "embedding_version"
# The highest change seq pruned from the log: a replica behind it reloads the whole catalog.
_META_PRUNED = "changes_pruned_through"
# Changes kept in the log, seconds: a replica that stopped following for longer (or a new
# one) reloads everything instead. An hour of log at 100 writes/s is 360,000 small rows.
CHANGE_RETENTION_S = 3600.0
# The advisory lock key of catalog writers (PostgreSQL), one per database.
_WRITE_LOCK_KEY = 0x5C47A106
# Kinds of change-log rows: products created or replaced, products deleted, the version
# pinned (empty catalog), every vector replaced (a reindex swap): replicas reload.
UPSERT, DELETE, VERSION, SWAP = "upsert", "delete", "version", "swap"


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


class CatalogChange(_CatalogModel, table=True):
    """One committed write: its kind and the product ids it touched (a JSON list)."""

    __tablename__ = "catalog_changes"
    __table_args__ = {"sqlite_autoincrement": True}  # never reuse a seq, even after pruning

    seq: int | None = Field(
        default=None, primary_key=True, sa_type=BigInteger().with_variant(Integer(), "sqlite")
    )
    kind: str = Field(max_length=16)
    product_ids: str = Field(sa_type=Text)
    created_at: datetime = Field(sa_type=UTCDateTime, index=True)


def catalog_metadata() -> MetaData:
    """The catalog's tables (kept apart from ``SQLModel.metadata``: own database)."""
    return _CatalogModel.metadata


@dataclass(slots=True, frozen=True)
class Change:
    """A change-log row as a replica applies it."""

    seq: int
    kind: str
    product_ids: tuple[str, ...]


@dataclass(slots=True, frozen=True)
class StoredProduct:
    """One product as stored: its row, its vector and that vector's version."""

    row: int
    product: Product
    vector: np.ndarray
    version: str


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
    # The last change-log seq the load saw (in the same snapshot): follow from there.
    seq: int = 0


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


def catalog_url(location: str | Path) -> str:
    """A SQLAlchemy URL for ``location``: a URL as it is, a path as its SQLite file."""
    if isinstance(location, str) and "://" in location:
        return location
    return f"sqlite:///{Path(location).expanduser()}"


def _sqlite_transactions(engine: Engine) -> None:
    """Let the catalog choose how a SQLite transaction begins (SQLAlchemy's documented
    recipe): the driver's own handling starts none before a SELECT, so two reads would see
    two states; here every transaction is a real ``BEGIN`` (one snapshot in WAL mode), and
    a write's is ``BEGIN IMMEDIATE`` (the writer lock up front, so a writer's reads are of
    the latest commit and its write cannot fail on a lock upgrade)."""

    @event.listens_for(engine, "connect")
    def _connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        # NORMAL, not the suite's FULL: the catalog can be rebuilt from its source, so a
        # commit need not wait for the disk.
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        immediate = conn.get_execution_options().get("catalog_write", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


class CatalogWrite:
    """One write transaction holding the catalog's write lock (``CatalogStore.writing``).

    ``changes`` reads the others' changes to apply first; each write method logs its own
    change and returns its seq. Nothing is visible to others before the ``with`` ends.
    """

    def __init__(self, store: CatalogStore, conn: Connection) -> None:
        self._store = store
        self.conn = conn
        # The seq of this transaction's last logged change (0: none yet).
        self.seq = 0

    def version(self) -> str:
        """The catalog's pinned embedding version ("" when none)."""
        return self._store._version(self.conn)

    def changes(self, after: int) -> list[Change]:
        return self._store._changes(self.conn, after)

    def pruned_through(self) -> int:
        return self._store._pruned_through(self.conn)

    def products(self, ids: Collection[str]) -> dict[str, StoredProduct]:
        return self._store._products(self.conn, ids)

    def load(self) -> StoredCatalog:
        return self._store._load(self.conn)

    def upsert(
        self,
        items: Sequence[ProductRow],
        *,
        pin_version: str | None = None,
        staging_version: str = "",
    ) -> int:
        self.seq = self._store._upsert(self.conn, items, pin_version, staging_version)
        return self.seq

    def delete(self, ids: Sequence[str]) -> int:
        self.seq = self._store._delete(self.conn, ids)
        return self.seq

    def pin_version(self, version: str) -> int:
        self._store._pin_version(self.conn, version)
        self.seq = self._store._log(self.conn, VERSION, [])
        return self.seq


class CatalogStore:
    """The catalog's tables for embeddings of ``dim`` dimensions.

    Create with ``CatalogStore.open(url_or_path, dim)``; release with ``close()``.
    """

    def __init__(self, engine: Engine, dim: int) -> None:
        """Use ``open``; this constructor takes an engine whose tables exist."""
        self.engine = engine
        self.dim = dim
        self._postgres = engine.dialect.name == "postgresql"
        self._insert = postgresql.insert if self._postgres else sqlite.insert

    @classmethod
    def open(cls, location: str | Path, dim: int) -> Self:
        """The store at ``location`` (a SQLAlchemy URL, or a path: its SQLite file), its
        tables created or upgraded by the catalog's migration history.

        SQLite: WAL journal (readers never block the writer) with synchronous=NORMAL.
        """
        url = catalog_url(location)
        engine = create_db_engine(url)
        backend = make_url(url).get_backend_name()
        if backend == "sqlite":
            _sqlite_transactions(engine)
        elif backend != "postgresql":
            engine.dispose()
            raise ValueError(f"catalog store: unsupported database {backend!r}")
        upgrade(engine, "catalog")
        return cls(engine, dim)

    def close(self) -> None:
        """Release the database connections."""
        self.engine.dispose()

    # ------------------------------------------------------------ transactions
    @contextmanager
    def writing(self, operation: str | None = None) -> Iterator[CatalogWrite]:
        """One write transaction holding the catalog's write lock across every process;
        commits when the ``with`` body returns. With ``operation``, SQLAlchemy's errors
        become ``Unavailable`` naming it (nothing written)."""
        try:
            with self.engine.connect() as conn:
                conn.execution_options(catalog_write=True)
                with conn.begin():
                    if self._postgres:
                        conn.execute(
                            text("SELECT pg_advisory_xact_lock(:key)"), {"key": _WRITE_LOCK_KEY}
                        )
                    yield CatalogWrite(self, conn)
        except SQLAlchemyError as exc:
            if operation is None:
                raise
            raise Unavailable(
                f"catalog database: {operation} failed ({exc.__class__.__name__})"
            ) from exc

    @contextmanager
    def reading(self) -> Iterator[CatalogWrite]:
        """One read-only transaction seeing one state of the catalog (REPEATABLE READ on
        PostgreSQL; a SQLite read transaction is a snapshot), without the write lock.
        Only its read methods may be called."""
        with self.engine.connect() as conn:
            if self._postgres:
                conn.execution_options(isolation_level="REPEATABLE READ")
            with conn.begin():
                yield CatalogWrite(self, conn)

    # ------------------------------------------------------------------ reading
    def load(self) -> StoredCatalog:
        """Every product with its embedding, the catalog's version and the change log's
        last seq, as of one moment.

        A file from before the version was pinned takes its majority version, which is
        pinned now. The staging table is left alone: another replica's reindex may be
        filling it (a reindex empties it when it starts). Raises ``FailedPrecondition`` if
        the stored embeddings have another dimension than ``dim``.
        """
        with self.writing() as write:
            return write.load()

    def _load(self, conn: Connection) -> StoredCatalog:
        t = ProductRecord
        records = conn.execute(
            select(t.row, t.data, t.embedding, t.embedding_dim, t.embedding_version).order_by(t.row)
        ).all()
        stored = conn.execute(
            select(CatalogMeta.value).where(CatalogMeta.key == _META_VERSION)
        ).scalar_one_or_none()
        seq = self._last_seq(conn)
        if stored is None and records:
            counts = Counter(r.embedding_version for r in records)
            stored = max(sorted(counts), key=counts.__getitem__)
            self._pin_version(conn, stored)
        version = stored or ""
        if not records:
            return StoredCatalog(version, [], [], np.zeros((0, self.dim), np.float32), [], seq)
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
            seq,
        )

    @staticmethod
    def _last_seq(conn: Connection) -> int:
        return int(conn.execute(select(func.max(CatalogChange.seq))).scalar_one() or 0)

    @staticmethod
    def _changes(conn: Connection, after: int) -> list[Change]:
        c = CatalogChange
        rows = conn.execute(
            select(c.seq, c.kind, c.product_ids).where(c.seq > after).order_by(c.seq)
        ).all()
        return [Change(int(r.seq), r.kind, tuple(json.loads(r.product_ids))) for r in rows]

    @staticmethod
    def _version(conn: Connection) -> str:
        value = conn.execute(
            select(CatalogMeta.value).where(CatalogMeta.key == _META_VERSION)
        ).scalar_one_or_none()
        return value or ""

    @staticmethod
    def _pruned_through(conn: Connection) -> int:
        value = conn.execute(
            select(CatalogMeta.value).where(CatalogMeta.key == _META_PRUNED)
        ).scalar_one_or_none()
        return int(value or 0)

    def _products(self, conn: Connection, ids: Collection[str]) -> dict[str, StoredProduct]:
        t = ProductRecord
        out: dict[str, StoredProduct] = {}
        wanted = sorted(ids)
        for s in range(0, len(wanted), _SQL_IN_CHUNK):
            for r in conn.execute(
                select(t.product_id, t.row, t.data, t.embedding, t.embedding_version).where(
                    t.product_id.in_(wanted[s : s + _SQL_IN_CHUNK])
                )
            ):
                vector = _vectors([r.embedding], self.dim)[0]
                product = Product(**json.loads(r.data))
                out[r.product_id] = StoredProduct(r.row, product, vector, r.embedding_version)
        return out

    # ------------------------------------------------------------------ writing
    def upsert(
        self,
        items: Sequence[ProductRow],
        *,
        pin_version: str | None = None,
        staging_version: str = "",
    ) -> int:
        """In one transaction: create or replace ``items`` (at least one) and pin the
        catalog's version when ``pin_version`` is given. While a reindex to
        ``staging_version`` runs ("": none), each item's ``staged`` vector is stored for it,
        and an item without one loses its staged vector (now stale). Returns the change's
        seq. Raises ``Unavailable`` (nothing written)."""
        with self.writing("upsert") as write:
            return write.upsert(items, pin_version=pin_version, staging_version=staging_version)

    def _upsert(
        self,
        conn: Connection,
        items: Sequence[ProductRow],
        pin_version: str | None,
        staging_version: str,
    ) -> int:
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
        stmt = self._insert(ProductRecord)
        stmt = stmt.on_conflict_do_update(
            index_elements=["product_id"],
            set_={c: stmt.excluded[c] for c in params[0] if c != "product_id"},
        )
        staging = items if staging_version else []
        staged = [(it.product.product_id, it.staged) for it in staging if it.staged is not None]
        unstaged = [it.product.product_id for it in staging if it.staged is None]
        conn.execute(stmt, params)
        if staged:
            self._stage(conn, staged, staging_version)
        for s in range(0, len(unstaged), _SQL_IN_CHUNK):
            chunk = unstaged[s : s + _SQL_IN_CHUNK]
            conn.execute(delete(StagedEmbedding).where(StagedEmbedding.product_id.in_(chunk)))
        if pin_version is not None:
            self._pin_version(conn, pin_version)
        return self._log(conn, UPSERT, [it.product.product_id for it in items])

    def delete(self, ids: Sequence[str]) -> int:
        """Delete products and their staged vectors, in one transaction; the change's seq.
        Raises ``Unavailable`` (nothing deleted)."""
        with self.writing("delete") as write:
            return write.delete(ids)

    def _delete(self, conn: Connection, ids: Sequence[str]) -> int:
        for s in range(0, len(ids), _SQL_IN_CHUNK):
            chunk = ids[s : s + _SQL_IN_CHUNK]
            conn.execute(delete(ProductRecord).where(ProductRecord.product_id.in_(chunk)))
            conn.execute(delete(StagedEmbedding).where(StagedEmbedding.product_id.in_(chunk)))
        return self._log(conn, DELETE, list(ids))

    def _log(self, conn: Connection, kind: str, ids: Sequence[str]) -> int:
        """Append a change (the caller's transaction holds the write lock) and prune the
        log past its retention, keeping the newest row; the new seq."""
        now = datetime.now(UTC)
        c = CatalogChange.__table__.c  # type: ignore[attr-defined]
        seq = conn.execute(
            CatalogChange.__table__.insert()  # type: ignore[attr-defined]
            .values(kind=kind, product_ids=json.dumps(list(ids)), created_at=now)
            .returning(c.seq)
        ).scalar_one()
        cutoff = now.timestamp() - CHANGE_RETENTION_S
        old = conn.execute(
            select(func.max(c.seq)).where(
                c.created_at < datetime.fromtimestamp(cutoff, UTC), c.seq < seq
            )
        ).scalar_one()
        if old is not None:
            conn.execute(delete(CatalogChange).where(CatalogChange.seq <= old))
            self._set_meta(conn, _META_PRUNED, str(old))
        return int(seq)

    # ------------------------------------------------------------------ the reindex's
    def pin_version(self, version: str) -> int:
        """Make ``version`` the catalog's (a reindex of an empty catalog); the change's
        seq. Raises ``Unavailable``."""
        with self.writing("reindex") as write:
            return write.pin_version(version)

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
        self, version: str, product_ids: Collection[str], write: CatalogWrite | None = None
    ) -> Iterator[tuple[list[str], np.ndarray]]:
        """Make the staged vectors the serving ones, in ``write`` 's transaction (None: one
        of its own).

        Reads the staging table, which must hold exactly ``product_ids``, all of
        ``version`` (else ``RuntimeError``), and yields its ids and vectors (float32, in
        the same order). When the ``with`` body returns, the staged vectors replace the
        products' embeddings, the staging table is emptied, ``version`` pinned and the
        swap logged; if the body raises, nothing changes (the caller's transaction rolls
        back).
        """
        if write is None:
            with self.writing() as own, self.swapping_staging(version, product_ids, own) as got:
                yield got
            return
        conn = write.conn
        s = StagedEmbedding
        staged = conn.execute(select(s.product_id, s.embedding, s.embedding_version)).all()
        if {r.product_id for r in staged} != set(product_ids) or any(
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
        write.seq = self._log(conn, SWAP, [])

    # ------------------------------------------------------------------ statements
    def _stage(
        self, conn: Connection, items: Sequence[tuple[str, np.ndarray]], version: str
    ) -> None:
        now = datetime.now(UTC)
        stmt = self._insert(StagedEmbedding)
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

    def _pin_version(self, conn: Connection, version: str) -> None:
        self._set_meta(conn, _META_VERSION, version)

    def _set_meta(self, conn: Connection, key: str, value: str) -> None:
        stmt = self._insert(CatalogMeta).values(key=key, value=value)
        conn.execute(stmt.on_conflict_do_update(index_elements=["key"], set_={"value": value}))
