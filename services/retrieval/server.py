"""RetrievalService: hybrid candidates over the catalog index, and catalog upkeep.

Queries arrive with their embedding (the gateway embeds once per search); products are
embedded here through Triton when they are upserted. The index lives in a SQLite file so a
restart reloads it without re-embedding.

Text encoder versions: the index holds ONE version (``CatalogIndex.embedding_version``) and
every embedding made here uses it, through one Triton client per version (cached). A query
embedding of another version (the gateway raced a reindex swap) is not an error: the query
is re-embedded with the index's version, which the response names. ``ReindexCatalog``
re-embeds the catalog with a new version in the index's background thread; meanwhile
upserts embed with both versions, so the new index is complete when it is swapped in.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator

import grpc
import numpy as np
import structlog
from shopsense.retrieval.v1 import retrieval_service_pb2 as pb
from shopsense.retrieval.v1 import retrieval_service_pb2_grpc

from shared.contracts.common import (
    check_count,
    count_or_default,
    embedding_from_proto,
    product_from_proto,
    product_to_proto,
    validate_query,
    validate_version,
)
from shared.contracts.intent import intent_pairs
from shared.contracts.retrieval import (
    MODES,
    UPSERT_STATUS,
    exported_pages,
    filters_from_proto,
    reindex_status_to_proto,
)
from shared.data.catalog import Product
from shared.errors import FailedPrecondition, InvalidArgument, Unavailable
from shared.models.protocols import TextEncoder
from shared.models.triton_client import TextEncoderClient, text_encoder_client
from shared.ranking.features import intent_boost_for
from shared.rpc import metrics
from shared.rpc.privacy import bind_query
from shared.rpc.server import ServerHandle, build_service, check_production, serve_when_ready
from shared.rpc.tls import TlsFiles
from shared.search.catalog_index import CatalogIndex, EmbeddingVersionMismatch
from shared.search.milvus import MilvusEngine
from shared.search.reindex import ReindexStatus
from shared.search.retrieval import RetrieveOptions
from shared.settings import RetrievalSettings

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["RetrievalService"].full_name
DEFAULT_K = 200
MAX_K = 1000
MAX_UPSERT_MESSAGE = 1000
MAX_DELETE = 10_000
MAX_GET = 1000
WIRE_CACHE_SIZE = 100_000
MAX_VALUES = 1000  # attribute values per attribute in GetCatalogStats
DEFAULT_EXPORT_PAGE = 500
MAX_EXPORT_PAGE = 5000
EMBED_BATCH = 32
# Products per reindex step (embedded in Triton requests of REINDEX_EMBED_BATCH, then
# written to the staging table in one transaction).
REINDEX_BATCH = 128
REINDEX_EMBED_BATCH = 64
# A reindex swap between reading the index's version and searching costs one more try.
_VERSION_TRIES = 3
PRODUCT_MAX_TOKENS = 64
QUERY_MAX_TOKENS = 32
_log = structlog.get_logger("shopsense.retrieval")
EncoderFactory = Callable[[str], TextEncoder]


def _same_client_for_version(encoder: TextEncoder) -> EncoderFactory:
    """Clients of ``encoder``'s Triton model pinned to a version (for a servicer built
    without a factory); any other encoder (a test's fake) serves every version itself."""
    if not isinstance(encoder, TextEncoderClient):
        return lambda version: encoder
    return lambda version: TextEncoderClient(
        encoder.url,
        encoder.tokenizer,
        model_name=encoder.model_name,
        model_version=version,
        timeout_s=encoder.timeout_s,
        tls=encoder.tls,
    )


class RetrievalServicer(retrieval_service_pb2_grpc.RetrievalServiceServicer):
    def __init__(
        self,
        index: CatalogIndex,
        encoder: TextEncoder,
        encoder_for_version: EncoderFactory | None = None,
    ) -> None:
        """``encoder`` embeds for an index without a version yet (Triton's newest or the
        pinned setting); ``encoder_for_version(v)`` makes the client for version ``v``."""
        self._index = index
        self._encoder = encoder
        self._make_encoder = encoder_for_version or _same_client_for_version(encoder)
        self._encoders: dict[str, TextEncoder] = {}
        self._encoders_lock = threading.Lock()
        # Upserts are serialised: each embeds and writes a batch; retrieves go on meanwhile.
        self._write_lock = threading.Lock()
        # Serialised product messages of recent candidates: building a message field by
        # field is most of a 200-candidate answer's cost. An entry is valid while the index
        # still holds the same Product object (an upsert replaces the object).
        self._wire: dict[str, tuple[Product, bytes]] = {}

    def encoder_for(self, version: str) -> TextEncoder:
        """The cached encoder of ``version`` ("" means the default encoder)."""
        if not version:
            return self._encoder
        with self._encoders_lock:
            encoder = self._encoders.get(version)
            if encoder is None:
                encoder = self._encoders[version] = self._make_encoder(version)
            return encoder

    def close(self) -> None:
        """Close the per-version Triton clients this servicer made."""
        with self._encoders_lock:
            encoders, self._encoders = list(self._encoders.values()), {}
        for encoder in encoders:
            close = getattr(encoder, "close", None)
            if close is not None and encoder is not self._encoder:
                close()

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
        bind_query(request.query)
        query = validate_query(request.query)
        k = count_or_default(request.k, "k", DEFAULT_K, MAX_K)
        mode = MODES.get(request.mode)
        if mode is None:
            raise InvalidArgument(f"mode: unknown retrieval mode {request.mode}")
        filters = filters_from_proto(request.filters, self._index.attribute_names())
        given: np.ndarray | None = None
        given_version = ""
        if mode != "lexical" and request.HasField("query_embedding"):
            given = embedding_from_proto(request.query_embedding)
            given_version = request.query_embedding.model_version
        for attempt in range(_VERSION_TRIES):
            index_version = self._index.embedding_version
            vector: np.ndarray | None = None
            vector_version: str | None = None  # None: unknown, not checked
            if mode != "lexical":
                if given is not None and (
                    not given_version or not index_version or given_version == index_version
                ):
                    vector, vector_version = given, given_version or None
                else:
                    if given is not None:
                        _log.info(
                            "query_reembedded",
                            given_version=given_version,
                            index_version=index_version,
                        )
                    vector = self._embed_query(query, index_version, mode)
                    vector_version = index_version or None
            try:
                options = RetrieveOptions(
                    filters=filters,
                    intent=intent_pairs(request.intent if request.HasField("intent") else None),
                    intent_boost=intent_boost_for(request.intent.model_version),
                    k=k,
                    mode=mode,
                    lexical_k=max(k, DEFAULT_K),
                    dense_k=max(k, DEFAULT_K),
                    query_version=vector_version,
                    source_weights=(
                        {"lexical": request.fusion.lexical, "dense": request.fusion.dense}
                        if request.HasField("fusion")
                        else None
                    ),
                )
                result = self._index.retrieve(query, vector, options)
                break
            except EmbeddingVersionMismatch as exc:
                # A reindex swapped between embedding and searching: embed again.
                _log.info(
                    "query_version_raced_swap",
                    query_version=vector_version,
                    index_version=exc.index_version,
                )
                if attempt == _VERSION_TRIES - 1:
                    raise Unavailable(
                        "retrieval: the index's text_encoder version kept changing; retry"
                    ) from exc
        response = pb.RetrieveResponse(
            embedding_version=result.embedding_version,
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

    def _embed_query(self, query: str, version: str, mode: str) -> np.ndarray | None:
        """The query's embedding with ``version``; None (lexical fallback) if Triton is
        down, except in dense mode."""
        try:
            return self.encoder_for(version).embed([query], max_length=QUERY_MAX_TOKENS)[0]
        except Unavailable:
            if mode == "dense":
                raise
            return None

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

    def _embed_products(self, texts: list[str], version: str) -> tuple[np.ndarray, str]:
        """Embeddings of product texts with ``version`` ("" = the default encoder), and
        the version that made them."""
        encoder = self.encoder_for(version)
        vectors = encoder.embed(texts, max_length=PRODUCT_MAX_TOKENS, batch_size=EMBED_BATCH)
        return vectors, version or encoder.version()

    def _upsert(self, products: list[Product]) -> list[pb.ItemResult]:
        texts = [p.embedding_text() for p in products]
        for attempt in range(_VERSION_TRIES):
            index_version = self._index.embedding_version
            staging_version = self._index.staging_version
            vectors, version = self._embed_products(texts, index_version)
            staging: tuple[str, np.ndarray] | None = None
            if staging_version == version:
                staging = (version, vectors)
            elif staging_version:
                # A reindex runs: embed with its version too, so the new index has these
                # products when it is swapped in. If that fails the reindex catches them up
                # itself (or fails on the same Triton error).
                try:
                    staging = (staging_version, self._embed_products(texts, staging_version)[0])
                except Unavailable as exc:
                    _log.warning(
                        "upsert_staging_embed_failed", version=staging_version, error=str(exc)
                    )
            try:
                with self._write_lock:
                    outcomes = self._index.upsert(
                        products, vectors, version, staging_embeddings=staging
                    )
                break
            except EmbeddingVersionMismatch as exc:
                _log.info(
                    "upsert_version_raced_swap", version=version, index_version=exc.index_version
                )
                if attempt == _VERSION_TRIES - 1:
                    raise Unavailable(
                        "retrieval: the index's text_encoder version kept changing; retry"
                    ) from exc
        return [
            pb.ItemResult(
                product_id=p.product_id,
                status=UPSERT_STATUS[o.status],
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
            embedding_version=self._index.embedding_version,
            reindex=self._reindex_status(),
        )

    def ExportCatalog(
        self, request: pb.ExportCatalogRequest, context: grpc.ServicerContext
    ) -> Iterator[pb.ExportCatalogResponse]:
        page_size = count_or_default(
            request.page_size, "page_size", DEFAULT_EXPORT_PAGE, MAX_EXPORT_PAGE
        )
        snapshot = self._index.snapshot(with_vectors=request.include_embeddings)
        return exported_pages(snapshot, page_size)

    # -- reindex --------------------------------------------------------------------------
    def _reindex_status(self) -> pb.ReindexStatus:
        return reindex_status_to_proto(self._index.reindex_status(), self._index.embedding_version)

    def ReindexCatalog(
        self, request: pb.ReindexCatalogRequest, context: grpc.ServicerContext
    ) -> pb.ReindexCatalogResponse:
        version = validate_version(
            request.text_encoder_version, "text_encoder_version", required=True
        )
        current = self._index.reindex_status()
        if current.state == "running" and current.target_version != version:
            raise FailedPrecondition(
                f"text_encoder_version: a reindex to version {current.target_version!r} is "
                f"running; wait for it or cancel it before asking for {version!r}"
            )
        encoder = self.encoder_for(version)
        if version != self._index.embedding_version and current.state != "running":
            # Check Triton serves the version before starting, so a typo fails here.
            try:
                probe = encoder.embed(["reindex probe"], max_length=8)
            except Unavailable as exc:
                raise FailedPrecondition(
                    f"text_encoder_version: version {version!r} of the text encoder is not "
                    f"served by Triton ({exc.message})"
                ) from exc
            if probe.shape[-1] != self._index.dim:
                raise FailedPrecondition(
                    f"text_encoder_version: version {version!r} embeds in "
                    f"{probe.shape[-1]} dimensions; the index has {self._index.dim}"
                )

        def embed(texts: list[str]) -> np.ndarray:
            return encoder.embed(
                texts, max_length=PRODUCT_MAX_TOKENS, batch_size=REINDEX_EMBED_BATCH
            )

        def finished(status: ReindexStatus) -> None:
            seconds = (status.finished_at - status.started_at).total_seconds()  # type: ignore[operator]
            _log.info(
                "reindex_finished",
                state=status.state,
                target_version=status.target_version,
                embedded=status.embedded,
                total=status.total,
                seconds=round(seconds, 3),
                error=status.error or None,
            )

        status = self._index.start_reindex(
            version, embed, batch_size=REINDEX_BATCH, on_finish=finished
        )
        _log.info(
            "reindex_requested",
            target_version=version,
            state=status.state,
            total=status.total,
            message=status.message or None,
        )
        return pb.ReindexCatalogResponse(status=self._reindex_status())

    def GetReindexStatus(
        self, request: pb.GetReindexStatusRequest, context: grpc.ServicerContext
    ) -> pb.GetReindexStatusResponse:
        return pb.GetReindexStatusResponse(status=self._reindex_status())

    def CancelReindex(
        self, request: pb.CancelReindexRequest, context: grpc.ServicerContext
    ) -> pb.CancelReindexResponse:
        status = self._index.cancel_reindex()
        _log.info("reindex_cancel", state=status.state, target_version=status.target_version)
        return pb.CancelReindexResponse(status=self._reindex_status())


def _watch_reindex(index: CatalogIndex) -> None:
    """The reindex's progress as gauges, read from the index when /metrics is scraped (the
    last index opened in this process: one in a deployment)."""
    gauges = (
        (
            "shopsense_reindex_products_embedded",
            "Products the current or last reindex embedded.",
            lambda: index.reindex_status().embedded,
        ),
        (
            "shopsense_reindex_products_total",
            "Products the current or last reindex must embed.",
            lambda: index.reindex_status().total,
        ),
        (
            "shopsense_reindex_running",
            "1 while a reindex runs, else 0.",
            lambda: float(index.reindex_status().state == "running"),
        ),
    )
    for name, doc, read in gauges:
        metrics.gauge("retrieval", name, doc).set_function(read)


def create_server(
    settings: RetrievalSettings,
    index: CatalogIndex | None = None,
    encoder: TextEncoder | None = None,
    encoder_for_version: EncoderFactory | None = None,
) -> ServerHandle:
    """The retrieval server on ``settings.listen``, SERVING once Triton answers.

    ``encoder`` embeds for an index without a version yet (default: the settings' text
    encoder); ``encoder_for_version(v)`` makes the Triton client of version ``v`` (default:
    a ``TextEncoderClient`` of ``settings.triton_url`` pinned to ``v``, or a client like
    ``encoder`` when one is given).
    """
    check_production(settings, [SERVICE_NAME], databases=index is None)
    if encoder is None:
        tls = TlsFiles.from_settings(settings)
        encoder = text_encoder_client(settings.triton_url, settings.text_encoder_version, tls)
        if encoder_for_version is None:
            tokenizer = encoder.tokenizer

            def encoder_for_version(version: str) -> TextEncoder:
                return TextEncoderClient(
                    settings.triton_url, tokenizer, model_version=version, tls=tls
                )

    if index is None:
        engine = None
        if settings.backend == "milvus":
            engine = MilvusEngine(
                settings.milvus_uri,
                collection=settings.milvus_collection,
                token=settings.milvus_token,
            )
        index = CatalogIndex.open(
            settings.catalog_db_url, engine=engine, ann_threshold=settings.ann_threshold
        )
    # Other replicas' upserts, deletes and reindex swaps, from the catalog's change log.
    index.start_following(
        settings.follow_s,
        lambda exc: _log.warning("catalog_follow_failed", error=f"{exc.__class__.__name__}: {exc}"),
    )
    servicer = RetrievalServicer(index, encoder, encoder_for_version)
    _watch_reindex(index)
    handle = build_service(
        settings,
        lambda s: retrieval_service_pb2_grpc.add_RetrievalServiceServicer_to_server(servicer, s),
        [SERVICE_NAME],
    )
    handle.on_stop(index.close)
    handle.on_stop(servicer.close)
    serve_when_ready(
        handle,
        lambda: servicer.encoder_for(index.embedding_version).embed(["warm up"], max_length=8),
    )
    return handle
