"""RankingService: the feature scorer orders every candidate; the fine-tuned cross-encoder
(on Triton) rescores the top ``rerank_depth`` and is blended in (shared/ranking/rerank.py).
The head is cut to what fits the caller's remaining deadline at the version's measured
seconds per pair (``DepthForDeadline``): a caller with 100 ms gets the deepest rerank that
answers within them rather than a timeout; ``reranked`` says how deep it went. Pairs are cut
to ``SHOPSENSE_PAIR_MAX_TOKENS``.

Until a cross-encoder version is published the features rank alone. A background thread
notices when Triton starts serving one, so the search path never asks Triton in vain.

With a shopper profile (personalised search) each candidate also gets the ``personal``
feature (shared/ranking/personal.py) before the cross-encoder picks its head; the catalog's
vectors it needs are followed from retrieval (``catalog.py``) once the first profile comes.
"""

from __future__ import annotations

import threading
import time

import grpc
import structlog
from shopsense.ranking.v1 import ranking_service_pb2, ranking_service_pb2_grpc

from services.ranking.catalog import CatalogVectors
from shared.contracts.common import (
    product_from_proto,
    validate_query,
    validate_version,
)
from shared.contracts.intent import intent_pairs
from shared.contracts.ranking import add_ranked_items, rank_inputs
from shared.errors import FailedPrecondition, InvalidArgument, Unavailable
from shared.models.tokenization import Tokenizer
from shared.models.triton_client import CrossEncoderClient
from shared.ranking.features import FeatureScorer, Scored
from shared.ranking.personal import add_personal, checked_profile, likeness
from shared.ranking.rerank import MAX_DEPTH, DepthForDeadline, ranking_version, rerank_head
from shared.rpc.clients import remaining
from shared.rpc.privacy import bind_query
from shared.rpc.server import ServerHandle, build_service
from shared.rpc.tls import TlsFiles
from shared.settings import RankingSettings

# Time kept back from the caller's deadline to answer with the features when Triton is late
# (scoring 100 candidates' features and the reply take about 3 ms).
ANSWER_MARGIN_S = 0.01
SERVICE_NAME = ranking_service_pb2.DESCRIPTOR.services_by_name["RankingService"].full_name
_log = structlog.get_logger("shopsense.ranking")


class CrossEncoderWatch:
    """Whether Triton serves a cross-encoder, refreshed in the background."""

    def __init__(self, client: CrossEncoderClient, interval_s: float) -> None:
        self.client = client
        self.available = False
        self._interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="cross-encoder-watch", daemon=True)

    def start(self) -> None:
        self.available = self.client.is_ready()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _loop(self) -> None:
        while not self._stop.wait(self._interval_s):
            available = self.client.is_ready()
            if available != self.available:
                _log.info("cross_encoder_availability", available=available)
            self.available = available


class RankingServicer(ranking_service_pb2_grpc.RankingServiceServicer):
    def __init__(
        self,
        scorer: FeatureScorer | None,
        cross_encoder: CrossEncoderClient | None,
        watch: CrossEncoderWatch | None,
        default_depth: int,
        weight: float,
        vectors: CatalogVectors | None = None,
        personal_weight: float = 0.0,
        pair_max_tokens: int = 64,
    ) -> None:
        self._scorer = scorer
        self._pair_max_tokens = pair_max_tokens
        self._depths = DepthForDeadline()
        self._cross_encoder = cross_encoder
        self._watch = watch
        self._default_depth = default_depth
        self._weight = weight
        self._vectors = vectors
        self._personal_weight = personal_weight

    def Rank(
        self, request: ranking_service_pb2.RankRequest, context: grpc.ServicerContext
    ) -> ranking_service_pb2.RankResponse:
        bind_query(request.query)
        query = validate_query(request.query)
        inputs = rank_inputs(request.candidates)
        if request.explain_top < 0:
            raise InvalidArgument(f"explain_top: must be >= 0, got {request.explain_top}")
        if request.rerank_depth < -1 or request.rerank_depth > MAX_DEPTH:
            raise InvalidArgument(
                f"rerank_depth: must be -1 (off), 0 (default) or 1..{MAX_DEPTH}, "
                f"got {request.rerank_depth}"
            )
        version = validate_version(request.model_version, "model_version")
        explain = request.explain_top or len(request.candidates)
        intent_message = request.intent if request.HasField("intent") else None
        scorer = self._scorer or FeatureScorer.for_intent(
            intent_message.model_version if intent_message else ""
        )
        ranked = scorer.score(
            inputs,
            dict(intent_pairs(intent_message)),
            dict(intent_message.attributes) if intent_message else None,
        )
        ranked, personalized = self._personalize(request, ranked)
        depth = self._default_depth if request.rerank_depth == 0 else request.rerank_depth
        served, skipped = "", False
        wanted = bool(version) or (self._watch is not None and self._watch.available)
        if not wanted:
            depth = 0
        left = remaining(context, 5.0) - ANSWER_MARGIN_S
        depth = self._depths.depth(version, min(depth, len(ranked)), left)
        if depth > 0 and self._cross_encoder is not None:
            head = ranked[:depth]
            texts = {c.product.product_id: c for c in request.candidates}
            docs = [product_from_proto(texts[s.product_id].product).embedding_text() for s in head]
            started = time.monotonic()
            try:
                output = self._cross_encoder.score(
                    query,
                    docs,
                    version=version,
                    max_length=self._pair_max_tokens,
                    timeout_s=max(0.01, left),
                )
            except Unavailable as error:
                client = self._cross_encoder
                if version and not client.is_ready(version) and client.is_ready():
                    raise FailedPrecondition(
                        f"model_version: cross_encoder version {version} is not loaded"
                    ) from error
                _log.warning("cross_encoder_failed", error=str(error))
                skipped = True
            else:
                self._depths.observe(version, len(docs), time.monotonic() - started)
                ranked = rerank_head(ranked, output.scores, self._weight)
                served = output.version
        response = ranking_service_pb2.RankResponse(
            model_version=ranking_version(served, scorer.version),
            cross_encoder_skipped=skipped,
            reranked=min(depth, len(ranked)) if served else 0,
            personalized=personalized,
        )
        add_ranked_items(response.items, ranked, explain)
        return response

    def _personalize(
        self, request: ranking_service_pb2.RankRequest, ranked: list[Scored]
    ) -> tuple[list[Scored], bool]:
        """The feature ranking with the ``personal`` feature when the request carries a
        profile ranking can use; else as it is."""
        profile = request.shopper_profile
        vector = checked_profile(profile.values, profile.model_version, "shopper_profile")
        if vector is None or self._vectors is None:
            return ranked, False
        self._vectors.want()
        held = self._vectors.current
        if held.version != profile.model_version or not held.rows:
            if held.rows:
                _log.info(
                    "profile_version_differs", profile=profile.model_version, held=held.version
                )
            return ranked, False
        if len(vector) != held.dimension:
            raise InvalidArgument(
                f"shopper_profile.values: {len(vector)} values, the catalog's "
                f"{held.version} vectors have {held.dimension}"
            )
        ids = [s.product_id for s in ranked]
        values = dict(zip(ids, likeness(held.cosines(vector, ids)), strict=True))
        return add_personal(ranked, values, self._personal_weight), True


def create_server(
    settings: RankingSettings,
    scorer: FeatureScorer | None = None,
    cross_encoder: CrossEncoderClient | None = None,
    watch_interval_s: float = 2.0,
) -> ServerHandle:
    from shared.ranking.rerank import DEFAULT_WEIGHT

    if cross_encoder is None:
        cross_encoder = CrossEncoderClient(
            settings.triton_url, Tokenizer(), tls=TlsFiles.from_settings(settings)
        )
    watch = CrossEncoderWatch(cross_encoder, watch_interval_s)
    vectors = CatalogVectors(settings.retrieval_target, settings.refresh_s)
    servicer = RankingServicer(
        scorer,
        cross_encoder,
        watch,
        settings.rerank_depth,
        DEFAULT_WEIGHT,
        vectors,
        settings.personal_weight,
        settings.pair_max_tokens,
    )
    handle = build_service(
        settings,
        lambda s: ranking_service_pb2_grpc.add_RankingServiceServicer_to_server(servicer, s),
        [SERVICE_NAME],
    )
    watch.start()
    handle.on_stop(watch.stop)
    handle.on_stop(vectors.stop)
    handle.mark_serving()  # the features need no warm-up; the cross-encoder joins when ready
    return handle
