"""What ``CatalogIndex.upsert`` takes and gives: the call's checks, each product's outcome,
and the products prepared before the index takes a lock.

Everything costly (validating, copying, normalising vectors, analysing text) happens in
``prepare_upsert``, outside the index's locks; the index then only assigns rows, writes
and applies.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from shared.data.catalog import Product
from shared.errors import InvalidArgument
from shared.search.text import analyze
from shared.search.vectors import vector_error


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
class PreparedProduct:
    """A validated product ready to apply: everything costly computed outside the locks."""

    product: Product
    vector: np.ndarray
    terms: list[str]
    version: str
    row: int = -1
    # The reindex target version's vector (None: not given or invalid; caught up later).
    staged: np.ndarray | None = None


@dataclass(slots=True)
class UpsertBatch:
    """An upsert call, checked: its version (stripped), its staging version ("" if none),
    one outcome per product (None until the index decides created or updated), the valid
    products by id (the last occurrence of an id wins) and each id's first position."""

    version: str
    staged_version: str
    outcomes: list[UpsertOutcome | None]
    prepared: dict[str, PreparedProduct]
    first_index: dict[str, int]


def clean_product(p: Product) -> Product:
    """A private copy with lower-case attribute names, so callers cannot mutate our state."""
    return dataclasses.replace(
        p,
        product_id=p.product_id.strip(),
        attributes={str(k).strip().casefold(): str(v) for k, v in p.attributes.items()},
    )


def product_error(p: object, vec: np.ndarray, dim: int) -> str | None:
    """The first invalid field of a product and its embedding, as ``"field: reason"``."""
    if not isinstance(p, Product):
        return f"product: must be a Product (got {type(p).__name__})"
    return p.validation_error() or vector_error(vec, dim)


def prepare_upsert(
    products: Sequence[Product],
    embeddings: np.ndarray,
    embedding_version: str,
    staging_embeddings: tuple[str, np.ndarray] | None,
    dim: int,
) -> UpsertBatch:
    """Check an upsert call and prepare its valid products (see ``CatalogIndex.upsert``).

    An invalid product gets its "invalid" outcome here; valid vectors are normalised to
    unit length; a staged vector that is invalid is dropped (the reindex catches that
    product up itself). Raises ``InvalidArgument`` if the call itself is malformed.
    """
    if not isinstance(embedding_version, str) or not embedding_version.strip():
        raise InvalidArgument("embedding_version: must be non-empty")
    embedding_version = embedding_version.strip()
    if len(embeddings) != len(products):
        raise InvalidArgument(
            f"embeddings: expected one per product ({len(products)}), got {len(embeddings)}"
        )
    staged_version, staged_vectors = "", None
    if staging_embeddings is not None:
        staged_version, staged_vectors = staging_embeddings
        staged_version = str(staged_version).strip()
        if not staged_version or len(staged_vectors) != len(products):
            raise InvalidArgument(
                "staging_embeddings: expected a version and one vector per product "
                f"({len(products)}), got {staged_version!r} and {len(staged_vectors)}"
            )
    outcomes: list[UpsertOutcome | None] = [None] * len(products)
    prepared: dict[str, PreparedProduct] = {}  # last occurrence wins
    first_index: dict[str, int] = {}
    for i, (p, raw) in enumerate(zip(products, embeddings, strict=True)):
        vec = np.asarray(raw, dtype=np.float32)
        error = product_error(p, vec, dim)
        if error is not None:
            pid = p.product_id if isinstance(p, Product) else ""
            outcomes[i] = UpsertOutcome(str(pid), "invalid", error)
            continue
        clean = clean_product(p)
        vec = vec / np.float32(np.linalg.norm(vec))
        staged = None
        if staged_vectors is not None:
            staged = np.asarray(staged_vectors[i], dtype=np.float32)
            if vector_error(staged, dim) is None:
                staged = staged / np.float32(np.linalg.norm(staged))
            else:
                staged = None  # the reindex catches this product up itself
        prepared[clean.product_id] = PreparedProduct(
            clean, vec, analyze(clean.lexical_text()), embedding_version, staged=staged
        )
        first_index.setdefault(clean.product_id, i)
    return UpsertBatch(embedding_version, staged_version, outcomes, prepared, first_index)
