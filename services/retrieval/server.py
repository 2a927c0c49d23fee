"""RetrievalService: hybrid candidates over the catalog index, and catalog upkeep.

Queries arrive with their embedding (the gateway embeds once per search); products are
embedded here through Triton when they are upserted. The index lives in a SQLite file so a
restart reloads it without re-embedding.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator

import grpc
import numpy as np
import structlog
from shopsense.common.v1 import common_pb2
from shopsense.retrieval.v1 import retrieval_service_pb2 as pb
from shopsense.retrieval.v1 import retrieval_service_pb2_grpc

from shared.data.catalog import Product
from shared.models.protocols import TextEncoder
from shared.models.triton_client import text_encoder_from_settings
from shared.rpc.convert import (
    check_count,
    count_or_default,
    embedding_from_proto,
    intent_pairs,
    product_from_proto,
    product_to_proto,
    validate_query,
)
from shared.rpc.errors import FailedPrecondition, InvalidArgument, Unavailable
from shared.rpc.server import ServerHandle, build_server, serve_when_ready
from shared.search.catalog_index import CatalogIndex
from shared.search.filters import Filters
from shared.settings import Settings

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["RetrievalService"].full_name
DEFAULT_K = 200
MAX_K = 1000
MAX_UPSERT_MESSAGE = 1000
MAX_DELETE = 10_000
MAX_GET = 1000
WIRE_CACHE_SIZE = 100_000
MAX_VALUES = 1000  # attribute values per attribute in GetCatalogStats
EMBED_BATCH = 32
PRODUCT_MAX_TOKENS = 64
QUERY_MAX_TOKENS = 32
_MODES = {
    common_pb2.RETRIEVAL_MODE_UNSPECIFIED: "hybrid",
    common_pb2.RETRIEVAL_MODE_HYBRID: "hybrid",
    common_pb2.RETRIEVAL_MODE_LEXICAL: "lexical",
    common_pb2.RETRIEVAL_MODE_DENSE: "dense",
}
_UPSERT_STATUS = {
    "created": pb.ITEM_STATUS_CREATED,
    "updated": pb.ITEM_STATUS_UPDATED,
    "invalid": pb.ITEM_STATUS_INVALID,
}
_log = structlog.get_logger("shopsense.retrieval")


def current_embedding_version(index: CatalogIndex) -> str:
    """The text_encoder version most of the catalog is embedded with ("" when empty)."""
    versions = index.embedding_versions()
    return max(versions, key=versions.__getitem__) if versions else ""


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


class RetrievalServicer(retrieval_service_pb2_grpc.RetrievalServiceServicer):
    def __init__(self, index: CatalogIndex, encoder: TextEncoder) -> None:
        self._index = index
        self._encoder = encoder
        # Upserts are serialised: each embeds and writes a batch; retrieves go on meanwhile.
        self._write_lock = threading.Lock()
        # Serialised product messages of recent candidates: building a message field by
        # field is most of a 200-candidate answer's cost. An entry is valid while the index
        # still holds the same Product object (an upsert replaces the object).
        self._wire: dict[str, tuple[Product, bytes]] = {}

    def _product_bytes(self, product: Product) -> bytes:
        cached = self._wire.get(product.product_id)
        if cached is not None and cached[0] is product:
            return cached[1]
        if len(self._wire) >= WIRE_CACHE_SIZE:
            self._wire.clear()
        wire = product_to_proto(product, with_description=False).SerializeToString()
        self._wire[product.product_id] = (product, wire)
        return wire

    # -- search -------------------------------------------------------------------------
    def Retrieve(
        self, request: pb.RetrieveRequest, context: grpc.ServicerContext
    ) -> pb.RetrieveResponse:
        query = validate_query(request.query)
        k = count_or_default(request.k, "k", DEFAULT_K, MAX_K)
        mode = _MODES.get(request.mode)
        if mode is None:
            raise InvalidArgument(f"mode: unknown retrieval mode {request.mode}")
        filters = filters_from_proto(request.filters, self._index.attribute_names())
        index_version = current_embedding_version(self._index)
        vector: np.ndarray | None = None
        if mode != "lexical":
            if request.HasField("query_embedding"):
                vector = embedding_from_proto(request.query_embedding)
                given = request.query_embedding.model_version
                if given and index_version and given != index_version:
                    raise FailedPrecondition(
                        f"query_embedding.model_version: {given!r} does not match the index's "
                        f"text_encoder version {index_version!r}"
                    )
            else:
                try:
                    vector = self._encoder.embed([query], max_length=QUERY_MAX_TOKENS)[0]
                except Unavailable:
                    if mode == "dense":
                        raise
        result = self._index.retrieve(
            query,
            vector,
            filters,
            intent=intent_pairs(request.intent if request.HasField("intent") else None),
            k=k,
            mode=mode,
            lexical_k=max(k, DEFAULT_K),
            dense_k=max(k, DEFAULT_K),
        )
        response = pb.RetrieveResponse(
            embedding_version=index_version,
            dense_skipped=result.fallback is not None,
            catalog_generation=result.generation,
        )
        for c in result.candidates:
            candidate = response.candidates.add(
                fused_score=c.score,
                lexical_score=c.lexical_score or 0.0,
                lexical_rank=c.lexical_rank or 0,
                dense_score=c.dense_score or 0.0,
                dense_rank=c.dense_rank or 0,
                sources=c.sources,
                intent_boost=c.intent_boost,
            )
            candidate.product.MergeFromString(self._product_bytes(c.product))
        return response

    # -- catalog upkeep -------------------------------------------------------------------
    def UpsertProducts(
        self, request_iterator: Iterator[pb.UpsertProductsRequest], context: grpc.ServicerContext
    ) -> pb.UpsertProductsResponse:
        results: list[pb.ItemResult] = []
        pending: list[Product] = []
        for i, message in enumerate(request_iterator):
            if len(message.products) > MAX_UPSERT_MESSAGE:
                raise InvalidArgument(
                    f"products: message {i} holds {len(message.products)} products; "
                    f"the limit is {MAX_UPSERT_MESSAGE} per stream message"
                )
            pending.extend(product_from_proto(p) for p in message.products)
            while len(pending) >= EMBED_BATCH * 4:
                results.extend(self._upsert(pending[: EMBED_BATCH * 4]))
                del pending[: EMBED_BATCH * 4]
        if pending:
            results.extend(self._upsert(pending))
        return pb.UpsertProductsResponse(results=results, catalog_size=len(self._index))

    def _upsert(self, products: list[Product]) -> list[pb.ItemResult]:
        texts = [p.embedding_text() for p in products]
        vectors = self._encoder.embed(texts, max_length=PRODUCT_MAX_TOKENS, batch_size=EMBED_BATCH)
        with self._write_lock:
            outcomes = self._index.upsert(products, vectors, self._encoder.version())
        return [
            pb.ItemResult(
                product_id=p.product_id,
                status=_UPSERT_STATUS[o.status],
                error=o.error or "",
            )
            for p, o in zip(products, outcomes, strict=True)
        ]

    def DeleteProducts(
        self, request: pb.DeleteProductsRequest, context: grpc.ServicerContext
    ) -> pb.DeleteProductsResponse:
        check_count(request.product_ids, "product_ids", MAX_DELETE, minimum=1)
        with self._write_lock:
            found = self._index.delete(list(request.product_ids))
        return pb.DeleteProductsResponse(
            results=[
                pb.ItemResult(
                    product_id=pid,
                    status=pb.ITEM_STATUS_DELETED if ok else pb.ITEM_STATUS_NOT_FOUND,
                )
                for pid, ok in zip(request.product_ids, found, strict=True)
            ]
        )

    def GetProducts(
        self, request: pb.GetProductsRequest, context: grpc.ServicerContext
    ) -> pb.GetProductsResponse:
        check_count(request.product_ids, "product_ids", MAX_GET, minimum=1)
        products = self._index.get(list(request.product_ids))
        return pb.GetProductsResponse(
            products=[product_to_proto(p) for p in products if p is not None],
            missing_ids=[
                pid for pid, p in zip(request.product_ids, products, strict=True) if p is None
            ],
        )

    def GetCatalogStats(
        self, request: pb.GetCatalogStatsRequest, context: grpc.ServicerContext
    ) -> pb.GetCatalogStatsResponse:
        generation = self._index.generation
        counts = self._index.classes()
        centroids = self._index.class_centroids() if request.include_centroids else {}
        attribute_values = (
            self._index.attribute_values() if request.include_attribute_values else {}
        )
        return pb.GetCatalogStatsResponse(
            product_count=len(self._index),
            classes=[
                pb.ClassStats(
                    product_class=name,
                    product_count=count,
                    centroid=centroids[name][1].tolist() if name in centroids else [],
                )
                for name, count in sorted(counts.items())
            ],
            attribute_names=sorted(self._index.attribute_names()),
            attribute_values=[
                pb.AttributeValues(
                    name=name,
                    values=[v for v, _ in top],
                    counts=[c for _, c in top],
                )
                for name, values in sorted(attribute_values.items())
                for top in [sorted(values.items(), key=lambda vc: (-vc[1], vc[0]))[:MAX_VALUES]]
            ],
            generation=generation,
            embedding_version=current_embedding_version(self._index),
        )


def create_server(
    settings: Settings,
    index: CatalogIndex | None = None,
    encoder: TextEncoder | None = None,
) -> ServerHandle:
    if encoder is None:
        encoder = text_encoder_from_settings(settings)
    if index is None:
        index = CatalogIndex.open(settings.catalog_db)
    servicer = RetrievalServicer(index, encoder)
    handle = build_server(
        "retrieval",
        lambda s: retrieval_service_pb2_grpc.add_RetrievalServiceServicer_to_server(servicer, s),
        [SERVICE_NAME],
        settings.retrieval_listen,
        settings.grpc_workers,
    )
    handle.on_stop(index.close)
    serve_when_ready(handle, lambda: encoder.embed(["warm up"], max_length=8))
    return handle
