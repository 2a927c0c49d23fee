"""The retrieval contract (shopsense.retrieval.v1): request filters and modes to the
index's, and the index's reindex status, upsert outcomes and catalog snapshots back to
messages."""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np
from shopsense.common.v1 import common_pb2
from shopsense.retrieval.v1 import retrieval_service_pb2 as pb
from shopsense.retrieval.v1 import retrieval_service_pb2_grpc

from shared.contracts.common import (
    check_count,
    product_from_proto,
    product_to_proto,
    set_timestamps,
)
from shared.data.catalog import Product
from shared.errors import InvalidArgument
from shared.intent.prototypes import CatalogStats
from shared.search.catalog_index import CatalogSnapshot
from shared.search.filters import Filters
from shared.search.reindex import ReindexStatus

# Products per message when a client reads the whole catalog.
EXPORT_PAGE = 2000
MODES = {
    common_pb2.RETRIEVAL_MODE_UNSPECIFIED: "hybrid",
    common_pb2.RETRIEVAL_MODE_HYBRID: "hybrid",
    common_pb2.RETRIEVAL_MODE_LEXICAL: "lexical",
    common_pb2.RETRIEVAL_MODE_DENSE: "dense",
}
UPSERT_STATUS = {
    "created": pb.ITEM_STATUS_CREATED,
    "updated": pb.ITEM_STATUS_UPDATED,
    "invalid": pb.ITEM_STATUS_INVALID,
}
REINDEX_STATE = {
    "idle": pb.REINDEX_STATE_IDLE,
    "running": pb.REINDEX_STATE_RUNNING,
    "done": pb.REINDEX_STATE_DONE,
    "failed": pb.REINDEX_STATE_FAILED,
    "cancelled": pb.REINDEX_STATE_CANCELLED,
}


def reindex_status_to_proto(status: ReindexStatus, index_version: str) -> pb.ReindexStatus:
    """The index's reindex status as the contract's message."""
    message = pb.ReindexStatus(
        state=REINDEX_STATE[status.state],
        target_version=status.target_version,
        source_version=status.source_version,
        products_embedded=status.embedded,
        products_total=status.total,
        error=status.error,
        index_version=index_version,
        message=status.message,
    )
    set_timestamps(message, started_at=status.started_at, finished_at=status.finished_at)
    return message


def filters_from_proto(message: common_pb2.Filters, known_attributes: set[str]) -> Filters:
    """Contract filters to the index's, with errors that name the request's fields."""
    check_count(message.product_classes, "filters.product_classes", 50)
    check_count(message.attributes, "filters.attributes", 20)
    price_min = message.price.min if message.price.HasField("min") else None
    price_max = message.price.max if message.price.HasField("max") else None
    for name, value in (("min", price_min), ("max", price_max)):
        if value is not None and (not math.isfinite(value) or value < 0):
            raise InvalidArgument(
                f"filters.price.{name}: must be a finite number >= 0, got {value}"
            )
    if price_min is not None and price_max is not None and price_max < price_min:
        raise InvalidArgument(
            f"filters.price.max: must be >= filters.price.min (got min={price_min}, max={price_max})"
        )
    attributes: dict[str, list[str]] = {}
    for i, a in enumerate(message.attributes):
        if not a.name.strip():
            raise InvalidArgument(f"filters.attributes[{i}].name: required")
        if not a.values:
            raise InvalidArgument(f"filters.attributes[{i}].values: at least one value required")
        check_count(a.values, f"filters.attributes[{i}].values", 50)
        attributes.setdefault(a.name.strip().lower(), []).extend(a.values)
    filters = Filters(
        classes=list(message.product_classes),
        price_min=price_min,
        price_max=price_max,
        attributes=attributes,
    )
    filters.validate(known_attributes)
    return filters


def catalog_stats_from_proto(reply: pb.GetCatalogStatsResponse) -> CatalogStats:
    """The class centroids and attribute values a GetCatalogStats answer carries."""
    centroids = {
        c.product_class: np.asarray(c.centroid, dtype=np.float32)
        for c in reply.classes
        if c.product_class and len(c.centroid)
    }
    values = {a.name: dict(zip(a.values, a.counts, strict=True)) for a in reply.attribute_values}
    return CatalogStats(reply.generation, centroids, values, reply.embedding_version)


def exported_pages(snapshot: CatalogSnapshot, page_size: int) -> Iterator[pb.ExportCatalogResponse]:
    """An ExportCatalog stream: ``snapshot``'s products, ``page_size`` a message, each with
    its embedding when the snapshot has vectors. An empty snapshot is one message without
    products, so that the caller still learns the generation."""
    total = len(snapshot)
    for start in range(0, max(total, 1), page_size):
        end = min(start + page_size, total)
        # One tolist per page: the floats go to the messages without a Python loop over them.
        rows = snapshot.vectors[start:end].tolist() if snapshot.vectors is not None else None
        yield pb.ExportCatalogResponse(
            products=[
                pb.ExportedProduct(
                    product=product_to_proto(product),
                    embedding=rows[i] if rows is not None else (),
                )
                for i, product in enumerate(snapshot.products[start:end])
            ],
            catalog_generation=snapshot.generation,
            embedding_version=snapshot.embedding_version,
            total_size=total,
        )


@dataclass(frozen=True)
class CatalogExport:
    """A catalog read back from ``ExportCatalog``: products in id order, their vectors
    (None when not asked or the catalog has none), the generation and encoder version."""

    products: list[Product]
    vectors: np.ndarray | None
    generation: int
    version: str


def catalog_from_export(pages: Iterable[pb.ExportCatalogResponse]) -> CatalogExport:
    """The streamed pages of one ``ExportCatalog`` call as one ``CatalogExport``."""
    products: list[Product] = []
    rows: list[np.ndarray] = []
    generation, version = -1, ""
    for page in pages:
        generation, version = page.catalog_generation, page.embedding_version
        for exported in page.products:
            products.append(product_from_proto(exported.product))
            rows.append(np.asarray(exported.embedding, dtype=np.float32))
    vectors = None
    if rows and len(rows[0]) and all(len(row) == len(rows[0]) for row in rows):
        vectors = np.stack(rows)
    return CatalogExport(products, vectors, generation, version)


def export_catalog(
    stub: retrieval_service_pb2_grpc.RetrievalServiceStub, timeout_s: float = 60.0
) -> CatalogExport:
    """The whole catalog with its vectors through ``ExportCatalog`` (the recommender, the
    recommendations' evaluation and benchmark read it so)."""
    return catalog_from_export(
        stub.ExportCatalog(
            pb.ExportCatalogRequest(include_embeddings=True, page_size=EXPORT_PAGE),
            timeout=timeout_s,
        )
    )
