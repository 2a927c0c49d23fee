"""IntentService: the fine-tuned ``intent_classifier`` on Triton once a version is
published; zero-shot class prototypes over query embeddings until then (and as the
fallback when the classifier fails).

Prototypes come from the retrieval service's class statistics (each class's mean product
embedding) blended with the embedding of the class name from the store's taxonomy, both
with the catalog's own text_encoder version. A background thread refreshes them when the
catalog's generation changes, and notices when Triton starts serving a classifier.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence

import grpc
import numpy as np
import structlog
from shopsense.intent.v1 import intent_service_pb2, intent_service_pb2_grpc
from shopsense.retrieval.v1 import retrieval_service_pb2, retrieval_service_pb2_grpc

from shared.contracts.common import (
    count_or_default,
    embedding_from_proto,
    validate_query,
    validate_version,
)
from shared.contracts.intent import intent_message
from shared.contracts.retrieval import catalog_stats_from_proto
from shared.errors import FailedPrecondition, Unavailable
from shared.intent.attributes import AttributeMatcher
from shared.intent.prototypes import CatalogStats, Prototypes, build_prototypes, read_taxonomy
from shared.models.protocols import TextEncoder
from shared.models.tokenization import Tokenizer
from shared.models.triton_client import IntentClassifierClient, text_encoder_client
from shared.rpc.clients import open_channel, remaining
from shared.rpc.privacy import bind_query
from shared.rpc.server import ServerHandle, build_service
from shared.rpc.tls import TlsFiles
from shared.settings import IntentSettings

SERVICE_NAME = intent_service_pb2.DESCRIPTOR.services_by_name["IntentService"].full_name
DEFAULT_TOP_K = 5
MAX_TOP_K = 50
QUERY_MAX_TOKENS = 32
ANSWER_MARGIN_S = 0.02  # kept from the deadline to answer with the prototypes
_log = structlog.get_logger("shopsense.intent")


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
        return catalog_stats_from_proto(reply)

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
        self._name_vectors: dict[tuple[str, str], np.ndarray] = {}
        self._generation = -1
        self.embedding_version = ""  # the catalog's text_encoder version
        self._lock = threading.Lock()
        self.prototypes = Prototypes([], np.zeros((0, 384), np.float32), "prototypes-empty")
        self.attributes = AttributeMatcher({})

    def _names(self, classes: Sequence[str], version: str) -> None:
        """Embed class names with the catalog's encoder version (cached per version)."""
        missing = [c for c in classes if (version, c) not in self._name_vectors]
        if missing:
            vectors = self._encoder.embed(missing, max_length=16, version=version or None)
            self._name_vectors.update(
                ((version, c), v) for c, v in zip(missing, vectors, strict=True)
            )

    def refresh(self) -> bool:
        """Rebuild when the catalog generation moved. True when prototypes changed."""
        with self._lock:
            stats = self._stats_source() if self._stats_source is not None else CatalogStats(0)
            generation, centroids = stats.generation, stats.centroids
            if generation == self._generation and self.prototypes.classes:
                return False
            version = stats.embedding_version
            self.attributes = AttributeMatcher(stats.attribute_values)
            self._names([*self._taxonomy, *centroids], version)
            # Only classes the store sells (or lists in its taxonomy) are candidates.
            names = {c: self._name_vectors[(version, c)] for c in {*self._taxonomy, *centroids}}
            self.prototypes = build_prototypes(names, centroids, f"prototypes-g{generation}")
            self._generation = generation
            self.embedding_version = version
            _log.info(
                "prototypes_built", classes=len(names), generation=generation, version=version
            )
            return True


class IntentServicer(intent_service_pb2_grpc.IntentServiceServicer):
    def __init__(
        self,
        model: PrototypeIntentModel,
        encoder: TextEncoder,
        classifier: IntentClassifierClient | None = None,
    ) -> None:
        self._model = model
        self._encoder = encoder
        self._classifier = classifier
        # Set by the refresh loop: whether Triton serves a classifier version.
        self.classifier_available = False

    def _classify_fine_tuned(
        self, query: str, version: str, top_k: int, context: grpc.ServicerContext
    ) -> tuple[list[tuple[str, float]], str] | None:
        """Top classes from the fine-tuned classifier, or None to fall back to prototypes."""
        assert self._classifier is not None
        try:
            output = self._classifier.classify(
                [query],
                version=version,
                max_length=QUERY_MAX_TOKENS,
                timeout_s=max(0.01, remaining(context, 5.0) - ANSWER_MARGIN_S),
            )
        except Unavailable as error:
            if version and not self._classifier.is_ready(version) and self._classifier.is_ready():
                raise FailedPrecondition(
                    f"model_version: intent_classifier version {version} is not loaded"
                ) from error
            _log.warning("intent_classifier_failed", error=str(error))
            return None
        probabilities = output.probabilities[0]
        top = np.argsort(-probabilities, kind="stable")[:top_k]
        classes = [(output.labels[i], float(probabilities[i])) for i in top]
        return classes, f"intent_classifier/{output.version}"

    def Classify(
        self, request: intent_service_pb2.ClassifyRequest, context: grpc.ServicerContext
    ) -> intent_service_pb2.ClassifyResponse:
        bind_query(request.query)
        query = validate_query(request.query)
        top_k = count_or_default(request.top_k, "top_k", DEFAULT_TOP_K, MAX_TOP_K)
        version = validate_version(request.model_version, "model_version")
        if request.HasField("query_embedding"):
            embedding_from_proto(request.query_embedding)  # validated even when unused
        answer = None
        if self._classifier is not None and (version or self.classifier_available):
            answer = self._classify_fine_tuned(query, version, top_k, context)
        if answer is None:
            answer = self._classify_prototypes(request, query, top_k)
        classes, model_version = answer
        return intent_service_pb2.ClassifyResponse(
            intent=intent_message(classes, self._model.attributes.match(query), model_version)
        )

    def _classify_prototypes(
        self, request: intent_service_pb2.ClassifyRequest, query: str, top_k: int
    ) -> tuple[list[tuple[str, float]], str]:
        prototypes = self._model.prototypes
        if not prototypes.classes:
            raise FailedPrecondition("intent: no classes known yet (empty catalog and taxonomy)")
        given = request.query_embedding.model_version if request.HasField("query_embedding") else ""
        catalog_version = self._model.embedding_version
        if request.HasField("query_embedding") and (
            not given or not catalog_version or given == catalog_version
        ):
            vector = embedding_from_proto(request.query_embedding)
        else:  # no embedding, or one from another encoder version than the prototypes'
            vector = self._encoder.embed(
                [query], max_length=QUERY_MAX_TOKENS, version=catalog_version or None
            )[0]
        return prototypes.classify(vector, top_k), prototypes.version


def _refresh_loop(
    model: PrototypeIntentModel,
    servicer: IntentServicer,
    classifier: IntentClassifierClient | None,
    handle: ServerHandle,
    interval_s: float,
    stop: threading.Event,
) -> None:
    """Warm up (retrying until Triton and retrieval answer), go SERVING, then keep fresh."""
    serving = False
    while not stop.is_set():
        if classifier is not None:
            available = classifier.is_ready()
            if available != servicer.classifier_available:
                _log.info("intent_classifier_availability", available=available)
            servicer.classifier_available = available
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
    settings: IntentSettings,
    encoder: TextEncoder | None = None,
    stats_source: Callable[[], CatalogStats] | None = None,
    classifier: IntentClassifierClient | None = None,
) -> ServerHandle:
    tls = TlsFiles.from_settings(settings)
    if encoder is None:
        encoder = text_encoder_client(settings.triton_url, settings.text_encoder_version, tls)
    if stats_source is None:
        stats_source = retrieval_stats_source(settings.retrieval_target)
    if classifier is None:
        classifier = IntentClassifierClient(settings.triton_url, Tokenizer(), tls=tls)
    model = PrototypeIntentModel(encoder, read_taxonomy(settings.taxonomy_path), stats_source)
    servicer = IntentServicer(model, encoder, classifier)
    handle = build_service(
        settings,
        lambda s: intent_service_pb2_grpc.add_IntentServiceServicer_to_server(servicer, s),
        [SERVICE_NAME],
    )
    stop = threading.Event()
    thread = threading.Thread(
        target=_refresh_loop,
        args=(model, servicer, classifier, handle, settings.refresh_s, stop),
        name="intent-refresh",
        daemon=True,
    )
    thread.start()
    handle.on_stop(stop.set)
    return handle
