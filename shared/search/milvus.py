"""Retrieval's second backend: the lexical and dense searches run inside Milvus.

``CatalogIndex.open(..., engine=MilvusEngine(uri))`` keeps the catalog store (SQLite or
PostgreSQL) as the source of truth and the products, filter postings and vectors in
memory as before, but asks Milvus for the two ranked lists a retrieve fuses:

* BM25 through Milvus's own BM25 function over a text field holding the products'
  analysed terms (``shared.search.text.analyze``, joined by spaces, split again by the
  whitespace tokenizer), so a query meets the same terms as in the in-process index;
* the dense top list from the vector field's index: FLAT below ``IVF_THRESHOLD``
  products, above it IVF_FLAT (``nlist`` about 4 sqrt(n)) on milvus-lite, which has no
  graph index, and HNSW on a Milvus server;
* the filters as a scalar expression evaluated by the engine before ranking: the class
  and the (attribute, value) pairs as 64-bit hashes of their folded keys (so a filter
  never puts a shopper's string into an expression), the price as a number.

Fusion (RRF), the intent boost and the candidates' evidence stay in ``CatalogIndex``, so
both backends rank alike and the ranker gets each source's rank and score.

One collection serves at a time; the state collection (``<name>_state``) names it with the
catalog generation it holds. ``build`` writes a whole catalog into a new collection and
``switch`` makes it the served one (then drops the old one), so a rebuild never serves
half a catalog. ``uri`` is a milvus-lite file (embedded: this process's own, one process
at a time) or a server's ``http(s)://`` address, whose collection every replica shares.
"""

from __future__ import annotations

import hashlib
import math
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from shared.data.catalog import Product
from shared.errors import FailedPrecondition, Unavailable
from shared.search.filters import Filters, fold_spelling, normalize_value

# Products written per insert call: bounded by Milvus's message size (a 384-float vector
# plus a product's terms is a few KiB).
WRITE_BATCH = 2_000
# Below this many products the dense field gets an exact (FLAT) index.
IVF_THRESHOLD = 100_000
# Milvus's limit on one search's limit (topk).
MAX_TOP_K = 16_384
# The text field's limit, in bytes (VARCHAR's maximum).
MAX_TEXT_BYTES = 65_535
# Attribute pairs kept per product (the ARRAY field's capacity).
MAX_ATTRIBUTES = 1_024
_STATE_KEY = 0


def key_hash(key: str) -> int:
    """A signed 64-bit hash of a folded class or attribute key (never 0: 0 means none)."""
    value = int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "big")
    value -= 1 << 63
    return value or 1


def class_key(product_class: str) -> int:
    """The class field of a product of ``product_class`` (0: no class)."""
    return key_hash("c\x00" + normalize_value(product_class)) if product_class else 0


def attribute_key(name: str, value: str) -> int:
    """The hash of an (attribute, value) pair, spelling-folded as the filters match."""
    return key_hash(f"a\x00{fold_spelling(name)}\x00{fold_spelling(value)}")


def product_attribute_keys(product: Product) -> list[int]:
    """The product's (attribute, value) hashes, as ``FilterPostings`` indexes them."""
    keys = {
        attribute_key(name, str(value))
        for name, value in product.attributes.items()
        if value is not None and str(value).strip()
    }
    return sorted(keys)[:MAX_ATTRIBUTES]


def filter_expression(filters: Filters) -> str:
    """The Milvus boolean expression of ``filters`` ("" when nothing is restricted).

    Values OR within a class list and within one attribute (both spellings of its name are
    one), attributes AND, and the price bounds are inclusive, as ``FilterPostings.mask``.
    Only integers and finite floats reach the expression.
    """
    parts = []
    if filters.classes:
        keys = sorted({class_key(c) for c in filters.classes if str(c).strip()})
        parts.append(f"cls in {keys}")
    wanted: dict[str, set[int]] = {}
    for name, values in filters.attributes.items():
        folded = fold_spelling(name)
        wanted.setdefault(folded, set()).update(attribute_key(name, v) for v in values)
    for _, keys in sorted(wanted.items()):
        parts.append(f"array_contains_any(attrs, {sorted(keys)})")
    if filters.price_min is not None:
        parts.append(f"price >= {float(filters.price_min)!r}")
    if filters.price_max is not None:
        parts.append(f"price <= {float(filters.price_max)!r}")
    return " and ".join(parts)


def lexical_field(terms: Sequence[str]) -> str:
    """The text field of a product with these analysed terms, cut at a term boundary to
    the field's limit."""
    text = " ".join(terms)
    if len(text.encode()) <= MAX_TEXT_BYTES:
        return text
    cut = text.encode()[:MAX_TEXT_BYTES].decode(errors="ignore")
    return cut[: cut.rfind(" ")] if " " in cut else cut


@dataclass(slots=True, frozen=True)
class EngineState:
    """What the state collection says: the served collection and what it holds."""

    collection: str
    generation: int
    version: str
    count: int


@dataclass(slots=True, frozen=True)
class EngineRow:
    """One product as the engine stores it."""

    row: int
    product: Product
    terms: Sequence[str]
    vector: np.ndarray


class MilvusEngine:
    """The lexical and dense searches of a ``CatalogIndex`` in a Milvus collection.

    Thread-safe: the client is, and the served collection's name is read once per call.
    """

    name = "milvus"

    def __init__(
        self,
        uri: str | Path,
        *,
        collection: str = "shopsense_catalog",
        token: str = "",
        bm25_k1: float = 1.2,
        bm25_b: float = 0.75,
    ) -> None:
        from pymilvus import MilvusClient  # an optional dependency: imported when used

        self.uri = str(uri)
        self.shared = self.uri.startswith(("http://", "https://", "tcp://", "unix:"))
        self.base = collection
        self.bm25_params = {"bm25_k1": float(bm25_k1), "bm25_b": float(bm25_b)}
        if not self.shared:
            Path(self.uri).parent.mkdir(parents=True, exist_ok=True)
        try:
            self._client = MilvusClient(self.uri, token=token)
        except Exception as exc:
            raise Unavailable(f"milvus_uri: cannot open {self.uri} ({_reason(exc)})") from exc
        self._state_name = f"{collection}_state"
        self.dim = 0
        self.state: EngineState | None = None

    # ------------------------------------------------------------------ lifecycle
    def open(self, dim: int) -> EngineState | None:
        """Read which collection is served (None: none yet; ``build`` one)."""
        self.dim = dim
        self._ensure_state_collection()
        rows = self._client.query(
            self._state_name,
            ids=[_STATE_KEY],
            output_fields=["collection", "generation", "ver", "count"],
        )
        state = None
        if rows and self._client.has_collection(rows[0]["collection"]):
            r = rows[0]
            state = EngineState(r["collection"], int(r["generation"]), r["ver"], int(r["count"]))
            self._client.load_collection(state.collection)
        self.state = state
        return state

    def close(self) -> None:
        self._client.close()

    def _ensure_state_collection(self) -> None:
        from pymilvus import DataType, MilvusClient

        if self._client.has_collection(self._state_name):
            self._client.load_collection(self._state_name)
            return
        schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("key", DataType.INT64, is_primary=True)
        schema.add_field("collection", DataType.VARCHAR, max_length=256)
        schema.add_field("generation", DataType.INT64)
        schema.add_field("ver", DataType.VARCHAR, max_length=256)
        schema.add_field("count", DataType.INT64)
        schema.add_field("unused", DataType.FLOAT_VECTOR, dim=2)  # Milvus needs a vector field
        index = self._client.prepare_index_params()
        index.add_index("unused", index_type="FLAT", metric_type="L2")
        self._client.create_collection(
            self._state_name, schema=schema, index_params=index, consistency_level="Strong"
        )

    def _set_state(self, state: EngineState) -> None:
        self._client.upsert(
            self._state_name,
            [
                {
                    "key": _STATE_KEY,
                    "collection": state.collection,
                    "generation": state.generation,
                    "ver": state.version,
                    "count": state.count,
                    "unused": [0.0, 0.0],
                }
            ],
        )
        self.state = state

    # ------------------------------------------------------------------ building
    def index_type(self, count: int) -> tuple[str, dict[str, Any]]:
        """The dense field's index for a collection of ``count`` products."""
        if count < IVF_THRESHOLD:
            return "FLAT", {}
        if self.shared:
            return "HNSW", {"M": 16, "efConstruction": 200}
        return "IVF_FLAT", {"nlist": int(min(65_536, 4 * math.sqrt(count)))}

    def create(self, count: int) -> str:
        """A new, empty collection sized for ``count`` products (not served yet)."""
        from pymilvus import DataType, Function, FunctionType, MilvusClient

        name = f"{self.base}_{uuid.uuid4().hex[:12]}"
        schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("row", DataType.INT64, is_primary=True)
        schema.add_field(
            "text",
            DataType.VARCHAR,
            max_length=MAX_TEXT_BYTES,
            enable_analyzer=True,
            analyzer_params={"tokenizer": "whitespace"},
        )
        schema.add_field("sparse", DataType.SPARSE_FLOAT_VECTOR)
        schema.add_field("vec", DataType.FLOAT_VECTOR, dim=self.dim)
        schema.add_field("cls", DataType.INT64)
        schema.add_field("price", DataType.DOUBLE)
        schema.add_field(
            "attrs", DataType.ARRAY, element_type=DataType.INT64, max_capacity=MAX_ATTRIBUTES
        )
        schema.add_function(
            Function(
                name="bm25",
                function_type=FunctionType.BM25,
                input_field_names=["text"],
                output_field_names=["sparse"],
            )
        )
        index = self._client.prepare_index_params()
        index.add_index(
            "sparse",
            index_type="SPARSE_INVERTED_INDEX",
            metric_type="BM25",
            params=self.bm25_params,
        )
        kind, params = self.index_type(count)
        index.add_index("vec", index_type=kind, metric_type="IP", params=params)
        self._client.create_collection(
            name, schema=schema, index_params=index, consistency_level="Strong"
        )
        return name

    def build(self, rows: Iterable[EngineRow], count: int) -> str:
        """A new collection holding ``rows`` (``count`` of them), not served yet."""
        name = self.create(count)
        try:
            batch: list[EngineRow] = []
            for row in rows:
                batch.append(row)
                if len(batch) == WRITE_BATCH:
                    self._client.insert(name, self._records(batch))
                    batch = []
            if batch:
                self._client.insert(name, self._records(batch))
            self._client.load_collection(name)
        except BaseException:
            self.drop(name)
            raise
        return name

    def switch(self, name: str, generation: int, version: str, count: int) -> None:
        """Serve collection ``name`` (holding the catalog at ``generation``) from now on
        and drop the one served before."""
        old = self.state.collection if self.state else None
        self._set_state(EngineState(name, generation, version, count))
        if old and old != name:
            self.drop(old)

    def drop(self, name: str) -> None:
        try:
            if self._client.has_collection(name):
                self._client.drop_collection(name)
        except Exception:  # a leftover collection is harmless; the next build goes on
            pass

    # ------------------------------------------------------------------ writing
    def write(
        self,
        upserts: Sequence[EngineRow],
        deletes: Sequence[int],
        generation: int,
        version: str,
        count: int,
        *,
        collection: str | None = None,
    ) -> None:
        """Apply one catalog change to the served collection (or ``collection``) and
        record that it now holds the catalog at ``generation``, its vectors of text
        encoder ``version``, ``count`` products. Raises ``Unavailable`` when Milvus
        refuses."""
        name = collection or self._served()
        try:
            if deletes:
                self._client.delete(name, ids=[int(r) for r in deletes])
            for start in range(0, len(upserts), WRITE_BATCH):
                self._client.upsert(name, self._records(upserts[start : start + WRITE_BATCH]))
            if collection is None and self.state is not None:
                self._set_state(EngineState(name, generation, version, count))
        except Exception as exc:
            raise Unavailable(f"milvus: write failed ({_reason(exc)})") from exc

    def _records(self, rows: Sequence[EngineRow]) -> list[dict[str, Any]]:
        return [
            {
                "row": int(r.row),
                "text": lexical_field(r.terms),
                "vec": np.asarray(r.vector, dtype=np.float32),
                "cls": class_key(r.product.product_class),
                "price": float(r.product.price),
                "attrs": product_attribute_keys(r.product),
            }
            for r in rows
        ]

    # ------------------------------------------------------------------ searching
    def _served(self) -> str:
        state = self.state
        if state is None:
            raise FailedPrecondition("milvus: no collection is served yet")
        return state.collection

    def lexical(
        self, terms: Sequence[str], k: int, filters: Filters
    ) -> tuple[np.ndarray, np.ndarray]:
        """The BM25 top ``k`` rows and scores for analysed query ``terms`` under ``filters``."""
        if not terms:
            return _empty()
        return self._search([" ".join(terms)], "sparse", {"metric_type": "BM25"}, k, filters)

    def dense(self, qvec: np.ndarray, k: int, filters: Filters) -> tuple[np.ndarray, np.ndarray]:
        """The inner-product top ``k`` rows and scores for ``qvec`` under ``filters``."""
        params: dict[str, Any] = {"metric_type": "IP"}
        state = self.state
        if state is not None and state.count >= IVF_THRESHOLD:
            params["params"] = {"nprobe": 32, "ef": max(128, k)}
        return self._search([np.asarray(qvec, dtype=np.float32)], "vec", params, k, filters)

    def _search(
        self, data: list[Any], field: str, params: dict[str, Any], k: int, filters: Filters
    ) -> tuple[np.ndarray, np.ndarray]:
        try:
            hits = self._client.search(
                self._served(),
                data=data,
                anns_field=field,
                limit=min(k, MAX_TOP_K),
                filter=filter_expression(filters),
                search_params=params,
            )[0]
        except FailedPrecondition:
            raise
        except Exception as exc:
            raise Unavailable(f"milvus: search failed ({_reason(exc)})") from exc
        if not hits:
            return _empty()
        rows = np.fromiter((h["id"] for h in hits), dtype=np.int64, count=len(hits))
        scores = np.fromiter((h["distance"] for h in hits), dtype=np.float32, count=len(hits))
        # Equal scores in row order, as the in-process searches break ties.
        order = np.lexsort((rows, -scores))
        return rows[order], scores[order]


def _empty() -> tuple[np.ndarray, np.ndarray]:
    return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)


def _reason(exc: BaseException) -> str:
    message = getattr(exc, "message", None) or str(exc)
    return f"{exc.__class__.__name__}: {message}"[:300]
