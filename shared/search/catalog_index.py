"""The catalog index: products, BM25, embeddings and filter postings behind one API.

The catalog store (``shared.storage.catalog``: a SQLite file, or PostgreSQL shared by
every replica) is the source of truth, so a restart reloads products and their embeddings
without re-embedding; everything in memory (BM25 postings, the vector matrix, class and
attribute row sets, class centroids) is derived from it and updated incrementally on every
upsert and delete, this replica's own and, through the store's change log, the other
replicas' (``follow``, polled by ``start_following``; a writer applies them first, inside
its locked transaction, so rows are allocated on the whole catalog and are the same
everywhere). ``generation`` is the last change-log seq applied: equal on every replica
that applied the same changes. ``retrieve`` scores
as ``shared.search.retrieval`` describes; ``upsert`` checks and prepares its products
outside the locks (``shared.search.upsert``).

Embedding versions: the index holds vectors of ONE text encoder version at a time
(``embedding_version``, kept in the ``catalog_meta`` table; a file written before the
table existed takes its majority version). An empty index without a version takes the
version of its first upsert; afterwards upserts and query vectors of another version are
refused (``EmbeddingVersionMismatch``), so a query is never scored against vectors of
another model. ``start_reindex`` moves the index to another version in the background
(``shared.search.reindex``).

Locks: three, always taken in this order, none held while taking an earlier one.

1. ``_write_mutex`` (a mutex) serialises the writers: ``upsert``, ``delete``, ``follow``
   and the reindex's start, staging of each batch, catch-up check and swap, and discard. A
   writer holds it across its database transaction and its in-memory update, so the file
   and memory change in the same order. It guards the row allocation (``_free_rows``),
   the reindex's ``Staging`` and every database write; writers read the in-memory state
   under it alone, since only its holder changes that state.
2. ``CatalogReindex._job_lock`` guards the current or last reindex job (state, progress,
   times, message). Taken alone by the status, cancel and wait calls and by the reindex
   thread as it counts; the reindex's start takes it inside ``_write_mutex``. Nobody
   waits for the thread while holding it.
3. ``_lock`` (a readers-writer lock, not reentrant) guards the in-memory structures:
   BM25, vectors, postings, the products, class keys and versions by row, ``_row_of``,
   class statistics, version counts, ``_embedding_version`` and ``_generation``.
   ``retrieve``, ``get`` and the other reads take its read side, so they run
   concurrently with each other (``snapshot`` holds it only to copy the catalog out). Its write side is taken only by a holder of
   ``_write_mutex`` (or by ``open`` before anyone else can call): upserts and deletes
   apply ``APPLY_CHUNK`` products per hold, so a reader waits at most one chunk and never
   sees a half-updated product; a reindex swap or version pin is one hold.

``generation``, ``embedding_version``, ``staging_version`` and ``len()`` read one attribute
without a lock, so they may be a moment stale.
"""

from __future__ import annotations

import contextlib
import threading
from collections import Counter
from collections.abc import Callable, Iterator, KeysView, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

import numpy as np

from shared.data.catalog import Product
from shared.errors import FailedPrecondition, InvalidArgument, Unavailable
from shared.search.bm25 import BM25Index
from shared.search.filters import FilterPostings, Filters, normalize_value
from shared.search.fusion import reciprocal_rank_fusion_arrays
from shared.search.milvus import EngineRow, MilvusEngine
from shared.search.reindex import REINDEX_BATCH, CatalogReindex, ReindexStatus
from shared.search.retrieval import Candidate, RetrievalResult, RetrieveOptions
from shared.search.rwlock import ReadWriteLock
from shared.search.text import analyze
from shared.search.upsert import PreparedProduct, UpsertOutcome, prepare_upsert
from shared.search.vectors import ANN_THRESHOLD, VectorIndex, build_graph
from shared.storage.catalog import (
    DELETE,
    SWAP,
    UPSERT,
    CatalogStore,
    CatalogWrite,
    ProductRow,
    StoredCatalog,
)

# Products applied to memory per write-lock hold: bounds how long a reader can wait.
APPLY_CHUNK = 512


class _Rebuilt(Exception):
    """The catalog's vectors were swapped while the engine's collection was built."""


class EmbeddingVersionMismatch(FailedPrecondition):
    """Vectors of another text encoder version than the index's were offered.

    ``index_version`` is the index's version at the time, so a caller can re-embed with it.
    """

    def __init__(self, message: str, index_version: str) -> None:
        super().__init__(message)
        self.index_version = index_version


@dataclass(slots=True)
class _ClassStats:
    name: str
    count: int = 0
    total: np.ndarray = field(default_factory=lambda: np.zeros(0))


@dataclass(slots=True, frozen=True)
class _VectorSwap:
    """A reindex's new vectors and class centroids, built before they are installed."""

    vectors: VectorIndex
    class_stats: dict[str, _ClassStats]
    count: int


@dataclass(slots=True, frozen=True)
class CatalogSnapshot:
    """The whole catalog at one generation, copied out of the index (``CatalogIndex.snapshot``)
    so that it can be read at leisure, without a lock, while the index changes.

    ``products[i]`` and ``vectors[i]`` are those of ``product_ids[i]``; the ids are sorted.
    ``vectors`` is a read-only float32 ``(len, dim)`` matrix of unit vectors of
    ``embedding_version``, or None when not asked for. The products are the index's own
    objects (an upsert replaces them, never changes them): treat them as read-only.
    """

    product_ids: tuple[str, ...]
    products: tuple[Product, ...]
    vectors: np.ndarray | None
    generation: int
    embedding_version: str

    def __len__(self) -> int:
        return len(self.product_ids)


class CatalogIndex:
    """Products plus their lexical, dense and filter indexes; persisted in SQLite.

    Create with ``CatalogIndex.open(path)``; close with ``close()`` (or use ``with``).
    """

    def __init__(
        self,
        store: CatalogStore,
        *,
        intent_weight: float = 0.5,
        lexical_weight: float = 1.0,
        dense_weight: float = 1.0,
        bm25_k1: float = 1.2,
        bm25_b: float = 0.75,
        engine: MilvusEngine | None = None,
        ann_threshold: int | None = ANN_THRESHOLD,
    ) -> None:
        """Use ``open``; this constructor takes an open store (its ``dim`` is the index's)
        and, for the Milvus backend, an engine not opened yet (``open`` syncs it).
        ``ann_threshold``: from this many products the in-process dense search gets an
        HNSW graph, built in a thread (None: always exact; see ``shared.search.vectors``)."""
        if intent_weight < 0 or lexical_weight < 0 or dense_weight < 0:
            raise ValueError("intent_weight, lexical_weight and dense_weight must be >= 0")
        self.dim = store.dim
        self.intent_weight = float(intent_weight)
        self.source_weights = {"lexical": float(lexical_weight), "dense": float(dense_weight)}
        self._store = store
        self._lock = ReadWriteLock()
        self._write_mutex = threading.Lock()
        self._bm25_params = (bm25_k1, bm25_b)
        self._bm25 = BM25Index(k1=bm25_k1, b=bm25_b)
        self._ann_threshold = ann_threshold
        self._vectors = VectorIndex(self.dim, ann_threshold)
        self._postings = FilterPostings()
        self._products: list[Product | None] = []  # by row
        self._class_keys: list[str] = []  # normalised class by row ("" if none)
        self._versions: list[str] = []  # embedding version by row
        self._row_of: dict[str, int] = {}
        self._free_rows: list[int] = []
        self._class_stats: dict[str, _ClassStats] = {}
        self._version_counts: Counter[str] = Counter()
        # The last change-log seq applied to memory; also the generation, so that every
        # replica that applied the same changes reports the same generation.
        self._generation = 0
        self._embedding_version = ""  # the index's one version; "" until the first upsert
        self._reindex = CatalogReindex(self, store, self._write_mutex)
        self._following: threading.Thread | None = None
        self._stop_following = threading.Event()
        # The Milvus backend (None: the in-process one). ``_engine_current``: its served
        # collection holds the catalog as in memory, so its dense list may be used (until
        # a rebuild catches up after a reindex swap or a failed write, the dense list
        # comes from memory; the lexical one comes from the engine throughout).
        self._engine = engine
        self._engine_current = False
        self._engine_rebuild: threading.Thread | None = None
        self._engine_error = ""
        # Builds the in-process HNSW graph when it is due (shared.search.vectors).
        self._ann_builder: threading.Thread | None = None
        self._ann_lock = threading.Lock()  # one builder at a time
        self._ann_error = ""  # why the last build failed ("" if none did)

    # ------------------------------------------------------------------ lifecycle
    @classmethod
    def open(
        cls,
        path: str | Path,
        dim: int = 384,
        *,
        engine: MilvusEngine | None = None,
        **options: Any,
    ) -> Self:
        """Open (creating if needed) the catalog stored at ``path`` (a SQLAlchemy URL, or
        a SQLite file's path) and load it into memory.

        ``engine``: the Milvus backend (None: search in process). Its served collection is
        used when it holds this catalog's generation; otherwise one is built from the
        catalog before ``open`` returns.
        ``options`` are the constructor's keyword parameters (``intent_weight``, ...).
        Raises ``FailedPrecondition`` if the stored embeddings have another dimension.
        """
        store = CatalogStore.open(path, dim)
        index = cls(store, engine=engine, **options)
        try:
            index._load()
            if engine is not None:
                index._open_engine()
        except BaseException:
            store.close()
            raise
        index._schedule_ann()
        return index

    @property
    def backend(self) -> str:
        """Where the lexical and dense searches run: "memory" or "milvus"."""
        return self._engine.name if self._engine is not None else "memory"

    def close(self) -> None:
        """Stop following, cancel a running reindex, then release the database connections
        (in-memory state stays readable)."""
        self._stop_following.set()
        if self._following is not None:
            self._following.join(30.0)
        self.cancel_reindex(wait_s=30.0)
        if self._engine_rebuild is not None:
            self._engine_rebuild.join(60.0)
        if self._engine is not None:
            self._engine.close()
        self._store.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _load(self) -> None:
        self._install_stored(self._store.load())

    def _install_stored(self, stored: StoredCatalog) -> None:
        """Make ``stored`` the whole in-memory catalog (at open, or when a reindex swap by
        another replica replaced every vector); one write-lock hold."""
        rows, vectors = stored.rows, stored.vectors
        prepared = [
            PreparedProduct(product, vec, analyze(product.lexical_text()), version, row)
            for row, product, vec, version in zip(
                rows, stored.products, vectors, stored.versions, strict=True
            )
        ]
        with self._lock.write():
            k1, b = self._bm25_params
            self._bm25 = BM25Index(k1=k1, b=b)
            self._vectors = VectorIndex(self.dim, self._ann_threshold)
            self._postings = FilterPostings()
            self._products, self._class_keys, self._versions = [], [], []
            self._row_of, self._free_rows = {}, []
            self._class_stats, self._version_counts = {}, Counter()
            self._embedding_version = stored.version
            if rows:
                self._ensure_rows(max(rows))
                if self._engine is None:
                    self._bm25.add_many(rows, (p.terms for p in prepared))
                self._vectors.set_many(np.asarray(rows), vectors)
                for p in prepared:
                    self._index_product(p, with_text=False)
                used = set(rows)
                self._free_rows = [r for r in range(max(rows), -1, -1) if r not in used]
            self._generation = stored.seq
            self._engine_current = False

    # ------------------------------------------------------------ the HNSW graph
    @property
    def approximate(self) -> bool:
        """Whether the in-process dense search goes through the HNSW graph now."""
        return self._vectors.approximate

    def _schedule_ann(self) -> None:
        """Build the HNSW graph in a thread if it is due (none is while the Milvus backend
        serves the dense list); searches stay exact until it is attached."""
        if self._engine is not None or not self._vectors.ann_due():
            return
        with self._ann_lock:
            if self._ann_builder is not None and self._ann_builder.is_alive():
                return  # the builder looks again when it is done
            self._ann_builder = threading.Thread(
                target=self._build_ann, name="hnsw-build", daemon=True
            )
            self._ann_builder.start()

    def _build_ann(self) -> None:
        """The builder thread: copy, build away from the locks, attach; again while due."""
        while not self._stop_following.is_set():
            with self._lock.read():  # writers excluded while the vectors are copied
                vectors = self._vectors
                if not vectors.ann_due():
                    return
                rows, copy = vectors.begin_ann()
            try:
                graph = build_graph(self.dim, rows, copy)
            except Exception as exc:
                with self._lock.write():
                    vectors.abandon_ann()
                self._ann_error = f"{exc.__class__.__name__}: {exc}"
                return
            del copy
            with self._lock.write():
                if self._vectors is vectors:
                    vectors.finish_ann(graph)
            # A reindex swap meanwhile left a new, graphless index: the loop builds again.

    # ------------------------------------------------------------ the Milvus backend
    def _open_engine(self) -> None:
        """Serve the engine's collection if it holds this catalog, else build one now."""
        engine = self._engine
        assert engine is not None
        try:
            state = engine.open(self.dim)
        except Exception as exc:
            raise Unavailable(
                f"milvus_uri: the engine at {engine.uri} cannot be read "
                f"({exc.__class__.__name__}: {exc})"
            ) from exc
        if state is not None and state.version == self._embedding_version:
            if state.generation == self._generation and state.count == len(self._row_of):
                self._engine_current = True
                return
            if engine.shared and state.generation > self._generation:
                self._engine_current = True  # other replicas wrote since this one loaded
                return
        self._rebuild_engine()

    def _rebuild_engine(self) -> None:
        """Build a collection of the whole catalog outside the locks, then, under the
        write mutex, write what changed meanwhile and serve it."""
        engine = self._engine
        assert engine is not None
        with self._lock.read():
            rows_of = dict(self._row_of)
            products = {row: self._products[row] for row in rows_of.values()}
            vectors_obj, version = self._vectors, self._embedding_version
            rows = np.fromiter(rows_of.values(), dtype=np.int64, count=len(rows_of))
            vectors = vectors_obj._matrix[rows] if len(rows) else np.zeros((0, self.dim))

        def stream() -> Iterator[EngineRow]:
            for i, row in enumerate(rows.tolist()):
                product = products[row]
                assert product is not None
                yield EngineRow(row, product, analyze(product.lexical_text()), vectors[i])

        name = engine.build(stream(), len(rows))
        try:
            with self._write_mutex:
                if self._vectors is not vectors_obj or self._embedding_version != version:
                    raise _Rebuilt("vectors swapped during the build")
                current = self._row_of
                upserts = [
                    EngineRow(row, p, analyze(p.lexical_text()), self._vectors._matrix[row])
                    for row in current.values()
                    if (p := self._products[row]) is not None and products.get(row) is not p
                ]
                deletes = sorted(set(products) - set(current.values()))
                engine.write(
                    upserts,
                    deletes,
                    self._generation,
                    self._embedding_version,
                    len(current),
                    collection=name,
                )
                engine.switch(name, self._generation, self._embedding_version, len(current))
                self._engine_current = True
                self._engine_error = ""
        except BaseException:
            engine.drop(name)
            raise

    def _engine_stale(self, reason: str) -> None:
        """The engine's collection no longer holds the catalog: rebuild it in the
        background (the dense list comes from memory until it is current again)."""
        self._engine_current = False
        self._engine_error = reason
        if self._engine_rebuild is not None and self._engine_rebuild.is_alive():
            return

        def loop() -> None:
            while not self._stop_following.is_set():
                try:
                    self._rebuild_engine()
                    return
                except Exception as exc:  # Milvus away, or a swap meanwhile: try again
                    self._engine_error = f"rebuild failed: {exc.__class__.__name__}: {exc}"
                    self._stop_following.wait(1.0 if isinstance(exc, _Rebuilt) else 5.0)

        self._engine_rebuild = threading.Thread(target=loop, name="milvus-rebuild", daemon=True)
        self._engine_rebuild.start()

    def _engine_write(
        self,
        upserts: Sequence[PreparedProduct],
        deletes: Sequence[int],
        seq: int,
        version: str,
        count: int,
    ) -> None:
        """Write one change to the engine (write mutex held, inside the store's write
        transaction for this replica's own changes). On failure the engine is rebuilt in
        the background and ``Unavailable`` raised, so the transaction rolls back."""
        engine = self._engine
        if engine is None:
            return
        try:
            engine.write(
                [EngineRow(p.row, p.product, p.terms, p.vector) for p in upserts],
                deletes,
                seq,
                version,
                count,
            )
        except Unavailable as exc:
            self._engine_stale(str(exc))
            raise

    # ------------------------------------------------------------ following replicas
    def follow(self) -> int:
        """Apply the changes other processes (replicas) committed since the last ones
        applied; returns how many log entries were applied (0: none new).

        Upserts and deletes are applied product by product (the stored rows, so rows and
        tie-breaks are the same on every replica); a reindex swap, or a log pruned past
        this replica's position, reloads the whole catalog. Raises ``Unavailable`` when the
        database cannot be read (nothing applied).
        """
        with self._write_mutex:
            before = self._generation
            try:
                with self._store.reading() as tx:
                    return self._catch_up(tx, before)
            except Exception as exc:
                if isinstance(exc, Unavailable | FailedPrecondition):
                    raise
                raise Unavailable(
                    f"catalog database: follow failed ({exc.__class__.__name__})"
                ) from exc

    def start_following(self, interval_s: float, on_error: Callable[[Exception], None]) -> None:
        """Call ``follow`` every ``interval_s`` seconds in a daemon thread until ``close``;
        a failed poll is reported to ``on_error`` and the next one tries again."""
        if self._following is not None:
            raise RuntimeError("already following")

        def loop() -> None:
            while not self._stop_following.wait(interval_s):
                try:
                    self.follow()
                except Exception as exc:  # the database away: keep serving, keep trying
                    with contextlib.suppress(Exception):
                        on_error(exc)

        self._following = threading.Thread(target=loop, name="catalog-follow", daemon=True)
        self._following.start()

    def _catch_up(self, tx: CatalogWrite, after: int) -> int:
        """Apply the log's entries after seq ``after`` read in ``tx`` (write mutex held);
        how many there were."""
        changes = tx.changes(after)
        if not changes:
            return 0
        last = changes[-1].seq
        if tx.pruned_through() > after or any(c.kind == SWAP for c in changes):
            self._install_stored(tx.load())
            # A running reindex here must re-embed what it staged: its products changed.
            self._reindex.staging.ids.clear()
            if self._engine is not None:
                self._engine_stale("the catalog was reloaded (a reindex swap or a pruned log)")
            self._schedule_ann()
            return len(changes)
        ids: set[str] = set()
        for change in changes:
            if change.kind in (UPSERT, DELETE):
                ids.update(change.product_ids)
        stored = tx.products(ids)
        prepared = [
            PreparedProduct(
                sp.product, sp.vector, analyze(sp.product.lexical_text()), sp.version, sp.row
            )
            for sp in stored.values()
        ]
        version = tx.version()
        if self._engine is not None and not self._engine.shared:
            # This replica's own collection follows the others' writes (a shared one has
            # them already: each writer writes it inside its transaction).
            new_rows = {p.row for p in prepared}
            old_rows = {self._row_of[pid] for pid in ids if pid in self._row_of}
            count = len(self._row_of) + sum(1 for pid in stored if pid not in self._row_of)
            count -= sum(1 for pid in ids if pid in self._row_of and pid not in stored)
            self._engine_write(prepared, sorted(old_rows - new_rows), last, version, count)
        with self._lock.write():
            for pid in ids:
                row = self._row_of.get(pid)
                if row is not None:
                    self._unindex_row(row)
            for prep in prepared:
                if prep.row < len(self._products) and self._products[prep.row] is not None:
                    self._unindex_row(prep.row)  # cannot happen in one snapshot; be safe
                self._index_product(prep)
            for pid in ids:
                self._reindex.staging.ids.discard(pid)
            self._free_rows = [
                r for r in range(len(self._products) - 1, -1, -1) if self._products[r] is None
            ]
            self._embedding_version = version
            self._generation = last
        return len(changes)

    # ------------------------------------------------------------ in-memory state
    def _ensure_rows(self, row: int) -> None:
        grow = row + 1 - len(self._products)
        if grow > 0:
            self._products.extend([None] * grow)
            self._class_keys.extend([""] * grow)
            self._versions.extend([""] * grow)

    def _index_product(self, p: PreparedProduct, *, with_text: bool = True) -> None:
        """Add a prepared product at ``p.row`` to every structure (write lock held)."""
        row, product = p.row, p.product
        self._ensure_rows(row)
        self._products[row] = product
        self._row_of[product.product_id] = row
        key = normalize_value(product.product_class) if product.product_class else ""
        self._class_keys[row] = key
        self._versions[row] = p.version
        self._version_counts[p.version] += 1
        self._postings.add(row, product)
        if with_text:
            if self._engine is None:
                self._bm25.add_terms(row, p.terms)
            self._vectors.set(row, p.vector)
        if key:
            stats = self._class_stats.get(key)
            if stats is None:
                stats = self._class_stats[key] = _ClassStats(
                    product.product_class, 0, np.zeros(self.dim, dtype=np.float64)
                )
            stats.count += 1
            stats.total += p.vector

    def _unindex_row(self, row: int, *, keep_text: bool = False) -> None:
        """Remove the product at ``row`` from every structure (write lock held)."""
        product = self._products[row] if row < len(self._products) else None
        if product is None:
            return
        key = self._class_keys[row]
        if key:
            stats = self._class_stats[key]
            stats.count -= 1
            vec = self._vectors.get(row)
            if stats.count == 0:
                del self._class_stats[key]
            elif vec is not None:
                stats.total -= vec
        self._version_counts[self._versions[row]] -= 1
        if self._version_counts[self._versions[row]] <= 0:
            del self._version_counts[self._versions[row]]
        self._postings.remove(row, product)
        if not keep_text:
            self._bm25.remove(row)
            self._vectors.clear(row)
        self._row_of.pop(product.product_id, None)
        self._products[row] = None
        self._class_keys[row] = ""
        self._versions[row] = ""

    # -------------------------------------------------------------------- writing
    def upsert(
        self,
        products: Sequence[Product],
        embeddings: np.ndarray,
        embedding_version: str,
        *,
        staging_embeddings: tuple[str, np.ndarray] | None = None,
    ) -> list[UpsertOutcome]:
        """Create or replace products with their embeddings, in one transaction.

        Each product is validated on its own: an invalid one gets an outcome whose error
        names the field, and the valid ones are still stored. Embeddings are re-normalised
        to unit length. Within one call a repeated product_id is applied in order (the
        last one wins).

        ``embedding_version`` must be the index's version (an index without one takes it).
        During a reindex, ``staging_embeddings = (target_version, vectors)`` are the same
        products embedded with the reindex's target version: they go to the staging table
        so the reindex need not embed these products again. If the reindex swapped in
        ``target_version`` meanwhile, those vectors are stored as the serving ones.

        Raises ``InvalidArgument`` if the call itself is malformed,
        ``EmbeddingVersionMismatch`` if no vectors of the index's version were given and
        ``Unavailable`` if the database write fails (in every case nothing changed).
        """
        batch = prepare_upsert(
            products, embeddings, embedding_version, staging_embeddings, self.dim
        )
        embedding_version, staged_version = batch.version, batch.staged_version
        outcomes, prepared, first_index = batch.outcomes, batch.prepared, batch.first_index
        if not prepared:
            return [o for o in outcomes if o is not None]

        with self._write_mutex:
            # The others' writes first: the version check and the row allocation must
            # see the whole catalog, and the log lock keeps it still until commit.
            with self._store.writing("upsert") as tx:
                self._catch_up(tx, self._generation)
                index_version = self._embedding_version or embedding_version
                if index_version == embedding_version:
                    pass
                elif staged_version == index_version and all(
                    p.staged is not None for p in prepared.values()
                ):
                    # A reindex to the staging version was swapped in after the caller embedded.
                    for prep in prepared.values():
                        prep.vector, prep.version, prep.staged = prep.staged, staged_version, None
                else:
                    raise EmbeddingVersionMismatch(
                        f"embedding_version: {embedding_version!r} is not the index's text encoder "
                        f"version {index_version!r}",
                        index_version,
                    )
                staging = self._reindex.staging
                stage_as = staging.target
                if stage_as and staged_version != stage_as:
                    for prep in prepared.values():
                        prep.staged = None
                free, next_row = list(self._free_rows), len(self._products)
                for i, p in enumerate(products):
                    if outcomes[i] is not None:
                        continue
                    pid = p.product_id.strip()
                    known = pid in self._row_of or first_index[pid] < i
                    outcomes[i] = UpsertOutcome(pid, "updated" if known else "created")
                for pid, prep in prepared.items():
                    row = self._row_of.get(pid)
                    if row is None:
                        if free:
                            row = free.pop()
                        else:
                            row, next_row = next_row, next_row + 1
                    prep.row = row
                seq = tx.upsert(
                    [
                        ProductRow(prep.product, prep.row, prep.vector, prep.version, prep.staged)
                        for prep in prepared.values()
                    ],
                    pin_version=index_version if index_version != self._embedding_version else None,
                    staging_version=stage_as,
                )
                count = len(self._row_of) + sum(1 for pid in prepared if pid not in self._row_of)
                self._engine_write(list(prepared.values()), [], seq, index_version, count)
            if stage_as:
                for pid, prep in prepared.items():
                    if prep.staged is not None:
                        staging.ids.add(pid)
                    else:
                        staging.ids.discard(pid)
            self._embedding_version = index_version
            self._free_rows = free
            items = list(prepared.values())
            for start in range(0, len(items), APPLY_CHUNK):
                with self._lock.write():
                    for prep in items[start : start + APPLY_CHUNK]:
                        # An update keeps its row; BM25 and the vector are replaced in place.
                        self._unindex_row(prep.row, keep_text=True)
                        self._index_product(prep)
                    if start + APPLY_CHUNK >= len(items):
                        self._generation = seq
        self._schedule_ann()  # a catalog that grew past the threshold
        return [o for o in outcomes if o is not None]

    def delete(self, ids: Sequence[str]) -> list[bool]:
        """Delete products by id, in one transaction; returns whether each one existed.

        A running reindex's staged vectors of these products are deleted with them."""
        with self._write_mutex:
            with self._store.writing("delete") as tx:
                self._catch_up(tx, self._generation)
                found = [pid in self._row_of for pid in ids]
                doomed = sorted({pid for pid, ok in zip(ids, found, strict=True) if ok})
                if not doomed:
                    return found
                seq = tx.delete(doomed)
                self._engine_write(
                    [],
                    sorted(self._row_of[pid] for pid in doomed),
                    seq,
                    self._embedding_version,
                    len(self._row_of) - len(doomed),
                )
            for start in range(0, len(doomed), APPLY_CHUNK):
                with self._lock.write():
                    for pid in doomed[start : start + APPLY_CHUNK]:
                        row = self._row_of[pid]
                        self._unindex_row(row)
                        self._free_rows.append(row)
                        self._reindex.staging.ids.discard(pid)
                    if start + APPLY_CHUNK >= len(doomed):
                        self._generation = seq
            return found

    # -------------------------------------------------------------------- reading
    def __len__(self) -> int:
        return len(self._row_of)

    @property
    def generation(self) -> int:
        """Increments on every change, so caches and other components can tell."""
        return self._generation

    @property
    def embedding_version(self) -> str:
        """The text encoder version of the index's vectors ("" before the first upsert)."""
        return self._embedding_version

    @property
    def staging_version(self) -> str:
        """The running reindex's target version, whose vectors upserts should bring too
        (``upsert(staging_embeddings=...)``); "" when no reindex runs."""
        return self._reindex.staging.target

    def get(self, ids: Sequence[str]) -> list[Product | None]:
        """Products by id (None where unknown); treat them as read-only."""
        with self._lock.read():
            rows = [self._row_of.get(pid) for pid in ids]
            return [self._products[r] if r is not None else None for r in rows]

    def snapshot(self, *, with_vectors: bool = False) -> CatalogSnapshot:
        """Every product, in product id order, with its vector if ``with_vectors``, as of
        one generation (a consistent copy; see ``CatalogSnapshot``).

        One read-lock hold copies the id-to-row map, the product list and the vectors: a
        waiting writer blocks new readers, so the sorting happens after it.
        """
        with self._lock.read():
            ids = list(self._row_of)
            rows = np.fromiter(self._row_of.values(), dtype=np.int64, count=len(ids))
            by_row = list(self._products)
            # One fancy-indexed copy (upserts overwrite the stored rows in place); row by row
            # through VectorIndex.get would hold the lock ten times longer.
            vectors = self._vectors._matrix[rows] if with_vectors else None
            generation, version = self._generation, self._embedding_version
        order = np.asarray(sorted(range(len(ids)), key=ids.__getitem__), dtype=np.int64)
        if vectors is not None:
            vectors = vectors[order]
            vectors.flags.writeable = False
        return CatalogSnapshot(
            product_ids=tuple(ids[i] for i in order.tolist()),
            products=tuple(by_row[r] for r in rows[order].tolist()),  # type: ignore[misc]
            vectors=vectors,
            generation=generation,
            embedding_version=version,
        )

    def attribute_names(self) -> set[str]:
        """Attribute names used by at least one product (what filters may name)."""
        with self._lock.read():
            return self._postings.attribute_names()

    def attribute_values(self) -> dict[str, dict[str, int]]:
        """Attribute name -> normalised value -> product count (intent's attribute vocabulary)."""
        with self._lock.read():
            return self._postings.attribute_values()

    def classes(self) -> dict[str, int]:
        """Product class -> number of products."""
        with self._lock.read():
            return self._postings.class_counts()

    def embedding_versions(self) -> dict[str, int]:
        """Embedding model version -> number of products (to spot stale embeddings)."""
        with self._lock.read():
            return dict(self._version_counts)

    def class_centroids(self) -> dict[str, tuple[int, np.ndarray]]:
        """Class -> (product count, unit-length mean embedding); kept incrementally."""
        with self._lock.read():
            out = {}
            for stats in self._class_stats.values():
                mean = stats.total / stats.count
                norm = np.linalg.norm(mean)
                out[stats.name] = (
                    stats.count,
                    (mean / norm if norm > 0 else mean).astype(np.float32),
                )
            return out

    def retrieve(
        self,
        query_text: str,
        query_vector: np.ndarray | None,
        options: RetrieveOptions | None = None,
    ) -> RetrievalResult:
        """Candidates for a query: BM25 and dense top lists under the filters, fused by RRF,
        boosted by intent (hybrid only), best first. See ``shared.search.retrieval`` for the
        formulas and ``RetrieveOptions`` for the options (None: the defaults).

        ``options.query_version`` is the text encoder version of ``query_vector``; when
        given, it is checked against the index's version under the same lock as the search,
        so a reindex swap between embedding and searching raises ``EmbeddingVersionMismatch``
        (carrying the new version) instead of mixing models.
        Raises ``InvalidArgument`` naming the field for bad arguments or filters.
        """
        if options is None:
            options = RetrieveOptions()
        mode, k, rrf_k = options.mode, options.k, options.rrf_k
        query_version = options.query_version
        weights, weight = options.checked_weights(self.source_weights, self.intent_weight)
        qvec = None
        if query_vector is not None:
            qvec = np.asarray(query_vector, dtype=np.float32)
            if qvec.shape != (self.dim,):
                raise InvalidArgument(
                    f"query_vector: must have {self.dim} dimensions (got shape {qvec.shape})"
                )
            if not np.isfinite(qvec).all():
                raise InvalidArgument("query_vector: must be finite")
        if mode == "dense" and qvec is None:
            raise InvalidArgument("query_vector: required in dense mode")
        intent_p = options.intent_probabilities()
        filters = options.filters or Filters()
        terms = analyze(query_text) if mode != "dense" else []

        use_lexical = mode in ("hybrid", "lexical")
        use_dense = mode == "dense" or (mode == "hybrid" and qvec is not None)
        effective = mode if mode != "hybrid" or use_dense else "lexical"
        fallback = None if effective == mode else "no query vector: lexical retrieval only"
        boost_on = mode == "hybrid" and weight > 0 and bool(intent_p)

        with self._lock.read():
            version = self._embedding_version
            if (
                qvec is not None
                and query_version is not None
                and version not in ("", query_version)
            ):
                raise EmbeddingVersionMismatch(
                    f"query_version: {query_version!r} is not the index's text encoder "
                    f"version {version!r}",
                    version,
                )
            filters.validate(self._postings.attribute_names())
            generation = self._generation
            engine = self._engine
            memory_dense = engine is None or not self._engine_current
            mask = (
                self._postings.mask(filters, len(self._products))
                if engine is None or (use_dense and memory_dense)
                else None
            )
            lists: dict[str, np.ndarray] = {}
            source_scores: dict[str, np.ndarray] = {}
            if use_lexical:
                lists["lexical"], source_scores["lexical"] = (
                    self._bm25.search_terms(terms, options.lexical_k, mask)
                    if engine is None
                    else self._present(engine.lexical(terms, options.lexical_k, filters))
                )
            if use_dense:
                lists["dense"], source_scores["dense"] = (
                    self._vectors.search(qvec, options.dense_k, mask)
                    if memory_dense
                    else self._present(engine.dense(qvec, options.dense_k, filters))  # type: ignore[union-attr]
                )
            rows, fused, ranks = reciprocal_rank_fusion_arrays(lists, k=rrf_k, weights=weights)
            boosts = np.zeros(len(rows))
            if boost_on and len(rows):
                keys = self._class_keys
                probs = [intent_p.get(keys[r], 0.0) for r in rows.tolist()]
                boosts = weight * np.asarray(probs) / (rrf_k + 1)
                # Stable: equal totals keep the fused order (best rank, then row).
                order = np.argsort(-(fused + boosts), kind="stable")
                rows, fused, boosts = rows[order], fused[order], boosts[order]
                ranks = {s: r[order] for s, r in ranks.items()}
            rows, fused, boosts = rows[:k], fused[:k], boosts[:k]
            ranks = {s: r[:k].tolist() for s, r in ranks.items()}
            products = [self._products[r] for r in rows.tolist()]
            # Dense similarity for every candidate, not only those the dense list found, so
            # a ranker compares like with like.
            similarities = (
                self._vectors.similarity(rows, qvec).tolist() if qvec is not None else None
            )
        candidates = []
        for i, product in enumerate(products):
            evidence: dict[str, tuple[float | None, int | None]] = {}
            for source in ("lexical", "dense"):
                rank = ranks[source][i] if source in ranks else 0
                if rank:
                    evidence[source] = (float(source_scores[source][rank - 1]), rank)
            lex_score, lex_rank = evidence.get("lexical", (None, None))
            dense_score, dense_rank = evidence.get("dense", (None, None))
            if similarities is not None:
                dense_score = similarities[i]
            candidates.append(
                Candidate(
                    product=product,  # type: ignore[arg-type]
                    fused_score=float(fused[i]),
                    lexical_score=lex_score,
                    lexical_rank=lex_rank,
                    dense_score=dense_score,
                    dense_rank=dense_rank,
                    sources=list(evidence),
                    intent_boost=float(boosts[i]),
                )
            )
        return RetrievalResult(candidates, effective, mode, fallback, generation, version)

    def _present(self, hits: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """An engine's hits less rows this replica does not hold (read lock held): a row
        written to a shared collection by another replica before this one followed."""
        rows, scores = hits
        products = self._products
        keep = [
            i for i, r in enumerate(rows.tolist()) if r < len(products) and products[r] is not None
        ]
        if len(keep) == len(rows):
            return rows, scores
        return rows[keep], scores[keep]

    # -------------------------------------------------------------------- reindex
    def reindex_status(self) -> ReindexStatus:
        """The current or last reindex since the index was opened (state "idle": none)."""
        return self._reindex.status()

    def start_reindex(
        self,
        target_version: str,
        embed: Callable[[Sequence[str]], np.ndarray],
        *,
        batch_size: int = REINDEX_BATCH,
        on_finish: Callable[[ReindexStatus], None] | None = None,
    ) -> ReindexStatus:
        """Re-embed every product with ``target_version`` in a background thread and swap
        the new vectors in when complete; returns the status at once. See
        ``CatalogReindex.start`` for the arguments and errors."""
        return self._reindex.start(
            target_version, embed, batch_size=batch_size, on_finish=on_finish
        )

    def cancel_reindex(self, wait_s: float = 30.0) -> ReindexStatus:
        """Stop a running reindex (waiting up to ``wait_s``); see ``CatalogReindex.cancel``."""
        return self._reindex.cancel(wait_s)

    def wait_reindex(self, timeout_s: float | None = None) -> ReindexStatus:
        """Wait for the running reindex to end (at most ``timeout_s``); its status."""
        return self._reindex.wait(timeout_s)

    # The reindex's view of the catalog (``shared.search.reindex``); write mutex held.
    def _snapshot(self) -> list[tuple[str, Product]]:
        """Every (product id, product), in the order products were first stored."""
        return [(pid, self._products[row]) for pid, row in self._row_of.items()]  # type: ignore[misc]

    def _product_ids(self) -> KeysView[str]:
        return self._row_of.keys()

    def _holds(self, pid: str, product: Product) -> bool:
        """Whether ``product`` (a snapshot's) is still the catalog's ``pid``, unchanged."""
        row = self._row_of.get(pid)
        return row is not None and self._products[row] is product

    def _held_versions(self) -> set[str]:
        """The embedding versions of the products' vectors."""
        return set(self._version_counts)

    def _set_version(self, version: str, seq: int) -> None:
        """The version of an empty catalog (its store pinned it as change ``seq``)."""
        with self._lock.write():
            self._embedding_version = version
            self._generation = seq

    def _vectors_swap(self, pids: list[str], vectors: np.ndarray) -> _VectorSwap:
        """A vector index and class centroids of ``vectors`` (one per product, of another
        version), to ``_install`` once the store swapped them in."""
        rows = np.asarray([self._row_of[pid] for pid in pids], dtype=np.int64)
        new_vectors = VectorIndex(self.dim, self._ann_threshold)
        new_vectors.set_many(rows, vectors)
        new_stats = {
            key: _ClassStats(old.name, old.count, np.zeros(self.dim, dtype=np.float64))
            for key, old in self._class_stats.items()
        }
        for row, vec in zip(rows.tolist(), vectors, strict=True):
            key = self._class_keys[row]
            if key:
                new_stats[key].total += vec
        return _VectorSwap(new_vectors, new_stats, len(pids))

    def _install(self, swap: _VectorSwap, version: str, seq: int) -> None:
        """Serve ``swap``'s vectors, all of ``version``, from now on (one write-lock hold)."""
        versions = [version if p is not None else "" for p in self._products]
        with self._lock.write():
            self._vectors = swap.vectors
            self._class_stats = swap.class_stats
            self._versions = versions
            self._version_counts = Counter({version: swap.count})
            self._embedding_version = version
            self._generation = seq
            # Before a reader can see the new version: the engine's vectors are the old one's.
            self._engine_current = False
        if self._engine is not None:
            self._engine_stale("a reindex swapped every vector")
        self._schedule_ann()
