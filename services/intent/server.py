"""IntentService: zero-shot class prototypes (v1) over query embeddings.

Prototypes come from the retrieval service's class statistics (each class's mean product
embedding) blended with the embedding of the class name from the store's taxonomy. A
background thread refreshes them when the catalog's generation changes.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import grpc
import numpy as np
import structlog
from shopsense.common.v1 import common_pb2
from shopsense.intent.v1 import intent_service_pb2, intent_service_pb2_grpc
from shopsense.retrieval.v1 import retrieval_service_pb2, retrieval_service_pb2_grpc

from shared.intent.attributes import AttributeMatcher
from shared.intent.prototypes import Prototypes, build_prototypes, read_taxonomy
from shared.models.protocols import TextEncoder
from shared.models.triton_client import text_encoder_from_settings
from shared.rpc.clients import open_channel
from shared.rpc.convert import count_or_default, embedding_from_proto, validate_query
from shared.rpc.errors import FailedPrecondition, Unavailable
from shared.rpc.server import ServerHandle, build_server
from shared.settings import Settings

SERVICE_NAME = intent_service_pb2.DESCRIPTOR.services_by_name["IntentService"].full_name
DEFAULT_TOP_K = 5
MAX_TOP_K = 50
_log = structlog.get_logger("shopsense.intent")


@dataclass(frozen=True)
class CatalogStats:
    """What intent needs to know about the catalog."""

    generation: int
    centroids: dict[str, np.ndarray] = field(default_factory=dict)
    attribute_values: dict[str, dict[str, int]] = field(default_factory=dict)


def retrieval_stats_source(target: str, timeout_s: float = 10.0) -> Callable[[], CatalogStats]:
    """Reads class centroids from the retrieval service."""
    stub = retrieval_service_pb2_grpc.RetrievalServiceStub(open_channel(target))

    def fetch() -> CatalogStats:
        try:
            reply = stub.GetCatalogStats(
                retrieval_service_pb2.GetCatalogStatsRequest(
                    include_centroids=True, include_attribute_values=True
                ),
                timeout=timeout_s,
            )
        except grpc.RpcError as exc:
            raise Unavailable(f"retrieval service: {exc.details()}") from exc
        centroids = {
            c.product_class: np.asarray(c.centroid, dtype=np.float32)
            for c in reply.classes
            if c.product_class and len(c.centroid)
        }
        values = {
            a.name: dict(zip(a.values, a.counts, strict=True)) for a in reply.attribute_values
        }
        return CatalogStats(reply.generation, centroids, values)

    return fetch


class PrototypeIntentModel:
    """Holds the current prototypes and rebuilds them when the catalog changes."""

    def __init__(
        self,
        encoder: TextEncoder,
        taxonomy: Sequence[str],
        stats_source: Callable[[], CatalogStats] | None,
    ) -> None:
        self._encoder = encoder
        self._taxonomy = list(taxonomy)
        self._stats_source = stats_source
        self._name_vectors: dict[str, np.ndarray] = {}
        self._generation = -1
        self._lock = threading.Lock()
        self.prototypes = Prototypes([], np.zeros((0, 384), np.float32), "prototypes-empty")
        self.attributes = AttributeMatcher({})

    def _names(self, classes: Sequence[str]) -> None:
        missing = [c for c in classes if c not in self._name_vectors]
        if missing:
            vectors = self._encoder.embed(missing, max_length=16)
            self._name_vectors.update(zip(missing, vectors, strict=True))

    def refresh(self) -> bool:
        """Rebuild when the catalog generation moved. True when prototypes changed."""
        with self._lock:
            stats = self._stats_source() if self._stats_source is not None else CatalogStats(0)
            generation, centroids = stats.generation, stats.centroids
            if generation == self._generation and self.prototypes.classes:
                return False
            self.attributes = AttributeMatcher(stats.attribute_values)
            self._names([*self._taxonomy, *centroids])
            # Only classes the store sells (or lists in its taxonomy) are candidates.
            names = {c: self._name_vectors[c] for c in {*self._taxonomy, *centroids}}
            self.prototypes = build_prototypes(names, centroids, f"prototypes-g{generation}")
            self._generation = generation
            _log.info("prototypes_built", classes=len(names), generation=generation)
            return True


class IntentServicer(intent_service_pb2_grpc.IntentServiceServicer):
    def __init__(self, model: PrototypeIntentModel, encoder: TextEncoder) -> None:
        self._model = model
        self._encoder = encoder

    def Classify(
        self, request: intent_service_pb2.ClassifyRequest, context: grpc.ServicerContext
    ) -> intent_service_pb2.ClassifyResponse:
        query = validate_query(request.query)
        top_k = count_or_default(request.top_k, "top_k", DEFAULT_TOP_K, MAX_TOP_K)
        if request.HasField("query_embedding"):
            vector = embedding_from_proto(request.query_embedding)
        else:
            vector = self._encoder.embed([query], max_length=32)[0]
        prototypes = self._model.prototypes
        if not prototypes.classes:
            raise FailedPrecondition("intent: no classes known yet (empty catalog and taxonomy)")
        classes = prototypes.classify(vector, top_k)
        return intent_service_pb2.ClassifyResponse(
            intent=common_pb2.Intent(
                classes=[
                    common_pb2.IntentClass(product_class=c, probability=p) for c, p in classes
                ],
                attributes=self._model.attributes.match(query),
                model_version=prototypes.version,
            )
        )


def _refresh_loop(
    model: PrototypeIntentModel, handle: ServerHandle, interval_s: float, stop: threading.Event
) -> None:
    """Warm up (retrying until Triton and retrieval answer), go SERVING, then keep fresh."""
    serving = False
    while not stop.is_set():
        try:
            model.refresh()
            if not serving:
                handle.mark_serving()
                serving = True
        except Exception as exc:  # dependencies still starting: retry
            _log.warning("prototype_refresh_failed", error=str(exc))
            if not serving and model.prototypes.classes:
                handle.mark_serving()
                serving = True
        stop.wait(interval_s if serving else 1.0)


def create_server(
    settings: Settings,
    encoder: TextEncoder | None = None,
    stats_source: Callable[[], CatalogStats] | None = None,
) -> ServerHandle:
    if encoder is None:
        encoder = text_encoder_from_settings(settings)
    if stats_source is None:
        stats_source = retrieval_stats_source(settings.retrieval_target)
    model = PrototypeIntentModel(encoder, read_taxonomy(settings.taxonomy_path), stats_source)
    servicer = IntentServicer(model, encoder)
    handle = build_server(
        "intent",
        lambda s: intent_service_pb2_grpc.add_IntentServiceServicer_to_server(servicer, s),
        [SERVICE_NAME],
        settings.intent_listen,
        settings.grpc_workers,
    )
    stop = threading.Event()
    thread = threading.Thread(
        target=_refresh_loop,
        args=(model, handle, settings.intent_refresh_s, stop),
        name="intent-refresh",
        daemon=True,
    )
    thread.start()
    handle.on_stop(stop.set)
    return handle
