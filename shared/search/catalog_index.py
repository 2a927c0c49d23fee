"""The catalog index: products, BM25, embeddings and filter postings behind one API.

SQLite (WAL mode, via SQLModel) is the source of truth, so a restart reloads products and
their embeddings without re-embedding; everything in memory (BM25 postings, the vector
matrix, class and attribute row sets, class centroids) is derived from it and updated
incrementally on every upsert and delete.

Concurrency: writers (upsert, delete) are serialised by a mutex held across the database
transaction and the in-memory update; the in-memory update itself happens under the write
side of a readers-writer lock, in chunks of ``APPLY_CHUNK`` products, so ``retrieve``
calls from several threads run concurrently with each other, wait at most one chunk for a
writer, and never see a half-updated product.

Retrieval (``retrieve``), hybrid mode:

1. The filter mask is computed from the row sets (no scan of products in Python).
2. BM25 takes its top ``lexical_k`` and the dense index its top ``dense_k`` under the mask.
3. Reciprocal rank fusion: ``rrf(d) = sum_s w_s / (rrf_k + rank_s(d))``.
4. Intent boost: ``boost(d) = intent_weight * p(class(d)) / (rrf_k + 1)`` where
   ``p(class(d))`` is the intent probability of the product's class (0 if absent). With
   ``intent_weight = 1`` a certain intent is worth exactly one extra first place in one
   source; the default 0.5 is half of that.
5. Candidates are sorted by ``fused_score + intent_boost`` (``Candidate.score``).

"lexical" and "dense" modes use one source and no boost (evaluation baselines). Hybrid
mode without a query vector falls back to lexical (with the intent boost) and says so in
``RetrievalResult.fallback``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import threading
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, Self

import numpy as np
from sqlalchemy import Engine, event
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import registry
from sqlmodel import Field, SQLModel, create_engine, delete, select

from shared.data.catalog import Product
from shared.rpc.errors import FailedPrecondition, InvalidArgument, Unavailable
from shared.search.bm25 import BM25Index
from shared.search.filters import FilterPostings, Filters, normalize_value
from shared.search.fusion import reciprocal_rank_fusion_arrays
from shared.search.text import analyze
from shared.search.vectors import VectorIndex

Mode = Literal["hybrid", "lexical", "dense"]
MODES: tuple[str, ...] = ("hybrid", "lexical", "dense")
MAX_PRODUCT_ID_LENGTH = 128
# Products applied to memory per write-lock hold: bounds how long a reader can wait.
APPLY_CHUNK = 512
_SQL_IN_CHUNK = 500


class _CatalogModel(SQLModel, registry=registry()):
    """Own metadata, so this table never collides with another component's models."""


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


@dataclass(slots=True, frozen=True)
class UpsertOutcome:
    """What happened to one product of an upsert call; ``error`` names the field."""

    product_id: str
    status: Literal["created", "updated", "invalid"]
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.status != "invalid"


@dataclass(slots=True)
class Candidate:
    """One retrieved product with the evidence a ranker needs.

    Ranks are 1-based within each source's list; a source that did not return the
    product leaves its rank None (and its score None, except ``dense_score``, which is
    the query-product cosine for every candidate whenever a query vector was given). ``fused_score`` is the RRF score only;
    the candidates are ordered by ``score = fused_score + intent_boost``.
    The ``product`` is shared with the index: treat it as read-only.
    """

    product: Product
    fused_score: float
    lexical_score: float | None
    lexical_rank: int | None
    dense_score: float | None
    dense_rank: int | None
    sources: list[str]
    intent_boost: float = 0.0

    @property
    def score(self) -> float:
        return self.fused_score + self.intent_boost


@dataclass(slots=True)
class RetrievalResult:
    """Candidates, best first, with the mode actually used.

    ``fallback`` is None when ``mode == requested_mode``, otherwise the reason (e.g. hybrid
    without a query vector ran lexical only). ``generation`` is the catalog generation the
    candidates were read at.
    """

    candidates: list[Candidate]
    mode: str
    requested_mode: str
    fallback: str | None = None
    generation: int = 0


class _ReadWriteLock:
    """Many readers or one writer; a waiting writer blocks new readers (no starvation).

    Not reentrant: code holding it must not call a public method that takes it again.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._readers = 0
        self._writer = False
        self._writers_waiting = 0

    @contextmanager
    def read(self) -> Iterator[None]:
        with self._cond:
            while self._writer or self._writers_waiting:
                self._cond.wait()
            self._readers += 1
        try:
            yield
        finally:
            with self._cond:
                self._readers -= 1
                if self._readers == 0:
                    self._cond.notify_all()

    @contextmanager
    def write(self) -> Iterator[None]:
        with self._cond:
            self._writers_waiting += 1
            while self._writer or self._readers:
                self._cond.wait()
            self._writers_waiting -= 1
            self._writer = True
        try:
            yield
        finally:
            with self._cond:
                self._writer = False
                self._cond.notify_all()


@dataclass(slots=True)
class _Prepared:
    """A validated product ready to apply: everything costly computed outside the locks."""

    product: Product
    vector: np.ndarray
    terms: list[str]
    version: str
    row: int = -1


@dataclass(slots=True)
class _ClassStats:
    name: str
    count: int = 0
    total: np.ndarray = field(default_factory=lambda: np.zeros(0))


def _clean_product(p: Product) -> Product:
    """A private copy with lower-case attribute names, so callers cannot mutate our state."""
    return dataclasses.replace(
        p,
        product_id=p.product_id.strip(),
        attributes={str(k).strip().casefold(): str(v) for k, v in p.attributes.items()},
    )


def _product_error(p: object, vec: np.ndarray, dim: int) -> str | None:
    """The first invalid field of a product and its embedding, as ``"field: reason"``."""
    if not isinstance(p, Product):
        return f"product: must be a Product (got {type(p).__name__})"
    if not isinstance(p.product_id, str) or not p.product_id.strip():
        return "product_id: must be non-empty"
    if len(p.product_id.strip()) > MAX_PRODUCT_ID_LENGTH:
        return f"product_id: must be at most {MAX_PRODUCT_ID_LENGTH} characters"
    if not isinstance(p.title, str) or not p.title.strip():
        return "title: must be non-empty"
    for name in ("price", "rating"):
        value = getattr(p, name)
        if isinstance(value, bool) or not isinstance(value, int | float):
            return f"{name}: must be a number (got {value!r})"
        if not math.isfinite(value):
            return f"{name}: must be finite (got {value})"
    if p.price < 0:
        return f"price: must be >= 0 (got {p.price})"
    if not 0 <= p.rating <= 5:
        return f"rating: must be between 0 and 5 (got {p.rating})"
    if not isinstance(p.review_count, int) or p.review_count < 0:
        return f"review_count: must be an integer >= 0 (got {p.review_count!r})"
    if not isinstance(p.attributes, dict):
        return "attributes: must be a mapping of name to value"
    if vec.shape != (dim,):
        return f"embedding: must have {dim} dimensions (got shape {tuple(vec.shape)})"
    if not np.isfinite(vec).all():
        return "embedding: must be finite (found NaN or infinity)"
    if not float(np.dot(vec, vec)) > 0:
        return "embedding: must not be all zeros"
    return None


class CatalogIndex:
    """Products plus their lexical, dense and filter indexes; persisted in SQLite.

    Create with ``CatalogIndex.open(path)``; close with ``close()`` (or use ``with``).
    """

    def __init__(
        self,
        engine: Engine,
        dim: int = 384,
        *,
        intent_weight: float = 0.5,
        lexical_weight: float = 1.0,
        dense_weight: float = 1.0,
        bm25_k1: float = 1.2,
        bm25_b: float = 0.75,
    ) -> None:
        """Use ``open``; this constructor takes an already-created SQLAlchemy engine."""
        if intent_weight < 0 or lexical_weight < 0 or dense_weight < 0:
            raise ValueError("intent_weight, lexical_weight and dense_weight must be >= 0")
        self.dim = dim
        self.intent_weight = float(intent_weight)
        self.source_weights = {"lexical": float(lexical_weight), "dense": float(dense_weight)}
        self._engine = engine
        self._lock = _ReadWriteLock()
        self._write_mutex = threading.Lock()
        self._bm25 = BM25Index(k1=bm25_k1, b=bm25_b)
        self._vectors = VectorIndex(dim)
        self._postings = FilterPostings()
        self._products: list[Product | None] = []  # by row
        self._class_keys: list[str] = []  # normalised class by row ("" if none)
        self._versions: list[str] = []  # embedding version by row
        self._row_of: dict[str, int] = {}
        self._free_rows: list[int] = []
        self._class_stats: dict[str, _ClassStats] = {}
        self._version_counts: Counter[str] = Counter()
        self._generation = 0

    # ------------------------------------------------------------------ lifecycle
    @classmethod
    def open(cls, path: Path, dim: int = 384, **options: float) -> Self:
        """Open (creating if needed) the catalog stored at ``path`` and load it into memory.

        ``options`` are the constructor's keyword parameters (``intent_weight``, ...).
        Raises ``FailedPrecondition`` if the stored embeddings have another dimension.
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
        index = cls(engine, dim, **options)
        try:
            index._load()
        except BaseException:
            engine.dispose()
            raise
        return index

    def close(self) -> None:
        """Release the database connections (in-memory state stays readable)."""
        self._engine.dispose()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _load(self) -> None:
        t = ProductRecord
        with self._engine.connect() as conn:
            records = conn.execute(
                select(t.row, t.data, t.embedding, t.embedding_dim, t.embedding_version).order_by(
                    t.row
                )
            ).all()
        if not records:
            return
        dims = {r.embedding_dim for r in records}
        if dims != {self.dim}:
            raise FailedPrecondition(
                f"dim: the stored catalog has {sorted(dims)}-dimensional embeddings, "
                f"opened with dim={self.dim}"
            )
        rows = [r.row for r in records]
        vectors = np.frombuffer(b"".join(r.embedding for r in records), dtype="<f4")
        vectors = vectors.reshape(len(records), self.dim).astype(np.float32)
        prepared = []
        for r, vec in zip(records, vectors, strict=True):
            product = Product(**json.loads(r.data))
            prepared.append(
                _Prepared(product, vec, analyze(product.lexical_text()), r.embedding_version, r.row)
            )
        with self._lock.write():
            self._ensure_rows(max(rows))
            self._bm25.add_many(rows, (p.terms for p in prepared))
            self._vectors.set_many(np.asarray(rows), vectors)
            for p in prepared:
                self._index_product(p, with_text=False)
            used = set(rows)
            self._free_rows = [r for r in range(max(rows), -1, -1) if r not in used]
            self._generation += 1

    # ------------------------------------------------------------ in-memory state
    def _ensure_rows(self, row: int) -> None:
        grow = row + 1 - len(self._products)
        if grow > 0:
            self._products.extend([None] * grow)
            self._class_keys.extend([""] * grow)
            self._versions.extend([""] * grow)

    def _index_product(self, p: _Prepared, *, with_text: bool = True) -> None:
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
        self, products: Sequence[Product], embeddings: np.ndarray, embedding_version: str
    ) -> list[UpsertOutcome]:
        """Create or replace products with their embeddings, in one transaction.

        Each product is validated on its own: an invalid one gets an outcome whose error
        names the field, and the valid ones are still stored. Embeddings are re-normalised
        to unit length. Within one call a repeated product_id is applied in order (the
        last one wins). Raises ``InvalidArgument`` if the call itself is malformed and
        ``Unavailable`` if the database write fails (then nothing changed).
        """
        if not isinstance(embedding_version, str) or not embedding_version.strip():
            raise InvalidArgument("embedding_version: must be non-empty")
        if len(embeddings) != len(products):
            raise InvalidArgument(
                f"embeddings: expected one per product ({len(products)}), got {len(embeddings)}"
            )
        outcomes: list[UpsertOutcome | None] = [None] * len(products)
        prepared: dict[str, _Prepared] = {}  # last occurrence wins
        first_index: dict[str, int] = {}
        for i, (p, raw) in enumerate(zip(products, embeddings, strict=True)):
            vec = np.asarray(raw, dtype=np.float32)
            error = _product_error(p, vec, self.dim)
            if error is not None:
                pid = p.product_id if isinstance(p, Product) else ""
                outcomes[i] = UpsertOutcome(str(pid), "invalid", error)
                continue
            clean = _clean_product(p)
            vec = vec / np.float32(np.linalg.norm(vec))
            prepared[clean.product_id] = _Prepared(
                clean, vec, analyze(clean.lexical_text()), embedding_version.strip()
            )
            first_index.setdefault(clean.product_id, i)
        if not prepared:
            return [o for o in outcomes if o is not None]

        with self._write_mutex:
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
            self._write_records(list(prepared.values()))
            self._free_rows = free
            items = list(prepared.values())
            for start in range(0, len(items), APPLY_CHUNK):
                with self._lock.write():
                    for prep in items[start : start + APPLY_CHUNK]:
                        # An update keeps its row; BM25 and the vector are replaced in place.
                        self._unindex_row(prep.row, keep_text=True)
                        self._index_product(prep)
                    self._generation += 1
        return [o for o in outcomes if o is not None]

    def _write_records(self, items: list[_Prepared]) -> None:
        now = datetime.now(UTC)
        params = [
            {
                "product_id": it.product.product_id,
                "row": it.row,
                "data": json.dumps(dataclasses.asdict(it.product), ensure_ascii=False),
                "embedding": it.vector.astype("<f4").tobytes(),
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
        try:
            with self._engine.begin() as conn:
                conn.execute(stmt, params)
        except SQLAlchemyError as exc:
            raise Unavailable(
                f"catalog database: upsert failed ({exc.__class__.__name__})"
            ) from exc

    def delete(self, ids: Sequence[str]) -> list[bool]:
        """Delete products by id, in one transaction; returns whether each one existed."""
        with self._write_mutex:
            found = [pid in self._row_of for pid in ids]
            doomed = sorted({pid for pid, ok in zip(ids, found, strict=True) if ok})
            if not doomed:
                return found
            try:
                with self._engine.begin() as conn:
                    for s in range(0, len(doomed), _SQL_IN_CHUNK):
                        chunk = doomed[s : s + _SQL_IN_CHUNK]
                        conn.execute(
                            delete(ProductRecord).where(ProductRecord.product_id.in_(chunk))
                        )
            except SQLAlchemyError as exc:
                raise Unavailable(
                    f"catalog database: delete failed ({exc.__class__.__name__})"
                ) from exc
            for start in range(0, len(doomed), APPLY_CHUNK):
                with self._lock.write():
                    for pid in doomed[start : start + APPLY_CHUNK]:
                        row = self._row_of[pid]
                        self._unindex_row(row)
                        self._free_rows.append(row)
                    self._generation += 1
            return found

    # -------------------------------------------------------------------- reading
    def __len__(self) -> int:
        return len(self._row_of)

    @property
    def generation(self) -> int:
        """Increments on every change, so caches and other components can tell."""
        return self._generation

    def get(self, ids: Sequence[str]) -> list[Product | None]:
        """Products by id (None where unknown); treat them as read-only."""
        with self._lock.read():
            rows = [self._row_of.get(pid) for pid in ids]
            return [self._products[r] if r is not None else None for r in rows]

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
        filters: Filters | None = None,
        intent: Sequence[tuple[str, float]] = (),
        k: int = 200,
        mode: str = "hybrid",
        lexical_k: int = 200,
        dense_k: int = 200,
        rrf_k: int = 60,
        intent_boost: float | None = None,
    ) -> RetrievalResult:
        """Candidates for a query: BM25 and dense top lists under the filters, fused by RRF,
        boosted by intent (hybrid only), best first. See the module docstring for formulas.

        ``intent_boost`` overrides the constructor's ``intent_weight`` for this call.
        Raises ``InvalidArgument`` naming the field for bad arguments or filters.
        """
        if mode not in MODES:
            raise InvalidArgument(f"mode: must be one of {', '.join(MODES)} (got {mode!r})")
        for name, value in (("k", k), ("lexical_k", lexical_k), ("dense_k", dense_k)):
            if not isinstance(value, int) or value < 1:
                raise InvalidArgument(f"{name}: must be an integer >= 1 (got {value!r})")
        if not isinstance(rrf_k, int) or rrf_k < 0:
            raise InvalidArgument(f"rrf_k: must be an integer >= 0 (got {rrf_k!r})")
        weight = self.intent_weight if intent_boost is None else float(intent_boost)
        if not math.isfinite(weight) or weight < 0:
            raise InvalidArgument(f"intent_boost: must be finite and >= 0 (got {intent_boost})")
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
        intent_p: dict[str, float] = {}
        for i, (cls, p) in enumerate(intent):
            if not math.isfinite(p) or not 0 <= p <= 1:
                raise InvalidArgument(f"intent[{i}]: probability must be in [0, 1] (got {p})")
            key = normalize_value(cls)
            intent_p[key] = max(intent_p.get(key, 0.0), float(p))
        filters = filters or Filters()
        terms = analyze(query_text) if mode != "dense" else []

        use_lexical = mode in ("hybrid", "lexical")
        use_dense = mode == "dense" or (mode == "hybrid" and qvec is not None)
        effective = mode if mode != "hybrid" or use_dense else "lexical"
        fallback = None if effective == mode else "no query vector: lexical retrieval only"
        boost_on = mode == "hybrid" and weight > 0 and bool(intent_p)

        with self._lock.read():
            filters.validate(self._postings.attribute_names())
            generation = self._generation
            mask = self._postings.mask(filters, len(self._products))
            lists: dict[str, np.ndarray] = {}
            source_scores: dict[str, np.ndarray] = {}
            if use_lexical:
                lists["lexical"], source_scores["lexical"] = self._bm25.search_terms(
                    terms, lexical_k, mask
                )
            if use_dense:
                lists["dense"], source_scores["dense"] = self._vectors.search(qvec, dense_k, mask)
            rows, fused, ranks = reciprocal_rank_fusion_arrays(
                lists, k=rrf_k, weights=self.source_weights
            )
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
        return RetrievalResult(candidates, effective, mode, fallback, generation)
