"""SearchService: intent, hybrid retrieval and ranking inside the caller's deadline.

The query is embedded once here and the vector handed to intent and retrieval. Intent and
ranking are optional hops: when one fails or is late the answer is built from what is at
hand and ``degraded`` says so. Retrieval is not optional: without it there is nothing to
show, so its failure is the caller's UNAVAILABLE (or DEADLINE_EXCEEDED).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import grpc
import numpy as np
import structlog
from shopsense.common.v1 import common_pb2
from shopsense.intent.v1 import intent_service_pb2, intent_service_pb2_grpc
from shopsense.ranking.v1 import ranking_service_pb2, ranking_service_pb2_grpc
from shopsense.retrieval.v1 import retrieval_service_pb2, retrieval_service_pb2_grpc
from shopsense.search.v1 import search_service_pb2 as pb
from shopsense.search.v1 import search_service_pb2_grpc

from services.gateway.paging import PageTokens, request_fingerprint
from services.gateway.versions import ModelVersions
from shared.experiments.assignment import NO_EXPERIMENT, Experiment, assign
from shared.experiments.attribution import Attribution, AttributionSigner
from shared.models.protocols import TextEncoder
from shared.models.triton_client import text_encoder_from_settings
from shared.rpc.clients import open_channel, remaining
from shared.rpc.convert import count_or_default, embedding_to_proto, validate_query
from shared.rpc.errors import (
    DeadlineExceeded,
    InvalidArgument,
    ShopsenseError,
    Unavailable,
    from_status,
)
from shared.rpc.interceptors import current_request_id
from shared.rpc.server import ServerHandle, build_server, serve_when_ready
from shared.settings import Settings

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["SearchService"].full_name
DEFAULT_PAGE_SIZE = 20
MAX_PAGE_SIZE = 100
MAX_RESULTS = 1000
MAX_ID_CHARS = 128
QUERY_MAX_TOKENS = 32
TIMINGS_KEY = "x-shopsense-timings"
_log = structlog.get_logger("shopsense.gateway")

# Status codes from retrieval that describe the caller's request, passed through as they are.
_CALLER_ERRORS = {
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.NOT_FOUND,
}


@dataclass
class Downstream:
    """Stubs of the services the gateway calls."""

    intent: intent_service_pb2_grpc.IntentServiceStub
    retrieval: retrieval_service_pb2_grpc.RetrievalServiceStub
    ranking: ranking_service_pb2_grpc.RankingServiceStub

    @classmethod
    def connect(cls, settings: Settings) -> Downstream:
        return cls(
            intent=intent_service_pb2_grpc.IntentServiceStub(open_channel(settings.intent_target)),
            retrieval=retrieval_service_pb2_grpc.RetrievalServiceStub(
                open_channel(settings.retrieval_target)
            ),
            ranking=ranking_service_pb2_grpc.RankingServiceStub(
                open_channel(settings.ranking_target)
            ),
        )


@dataclass
class _Clock:
    """The caller's deadline as an absolute time, and the time each hop took."""

    deadline: float
    timings: dict[str, float] = field(default_factory=dict)

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def budget(self, share: float, floor: float = 0.005) -> float:
        return max(floor, self.left() * share)

    def record(self, hop: str, started: float) -> None:
        self.timings[hop] = round((time.monotonic() - started) * 1e3, 3)


class SearchServicer(search_service_pb2_grpc.SearchServiceServicer):
    def __init__(
        self,
        settings: Settings,
        encoder: TextEncoder,
        downstream: Downstream,
        signer: AttributionSigner,
        experiment: Experiment = NO_EXPERIMENT,
        model_versions: ModelVersions | None = None,
    ) -> None:
        self._settings = settings
        self._encoder = encoder
        self._down = downstream
        self._models = model_versions
        self._signer = signer
        self._experiment = experiment
        self._pages = PageTokens(settings.token_secret)

    def Search(self, request: pb.SearchRequest, context: grpc.ServicerContext) -> pb.SearchResponse:
        started = time.monotonic()
        clock = _Clock(started + remaining(context, self._settings.search_deadline_s))
        query = validate_query(request.query)
        user, session = request.user.user_id, request.user.session_id
        if not user.strip() and not session.strip():
            raise InvalidArgument("user: user_id or session_id is required")
        for name, value in (("user.user_id", user), ("user.session_id", session)):
            if len(value) > MAX_ID_CHARS:
                raise InvalidArgument(f"{name}: longer than {MAX_ID_CHARS} characters")
        page_size = count_or_default(
            request.page_size, "page_size", DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE
        )
        fingerprint = request_fingerprint(request)
        offset = self._pages.decode(request.page_token, fingerprint) if request.page_token else 0
        if offset >= MAX_RESULTS:
            raise InvalidArgument(f"page_token: offset {offset} is past the last result")
        options = request.options
        arm = assign(self._experiment, user, session)
        structlog.contextvars.bind_contextvars(arm=arm)
        degraded = pb.Degraded()
        versions = pb.ModelVersions()
        serving = self._models.serving if self._models else {}
        index_version = self._models.text_encoder if self._models else ""

        # 1. Embed once; intent and retrieval share the vector.
        embedding: common_pb2.Embedding | None = None
        if options.retrieval_mode != common_pb2.RETRIEVAL_MODE_LEXICAL:
            t = time.monotonic()
            try:
                vector: np.ndarray = self._encoder.embed(
                    [query], max_length=QUERY_MAX_TOKENS, version=index_version or None
                )[0]
                versions.text_encoder = index_version or self._encoder.version()
                embedding = embedding_to_proto(vector, versions.text_encoder)
            except ShopsenseError as exc:
                _log.warning("embedding_failed", error=exc.message)
                degraded.dense = True
            clock.record("embed", t)

        # 2. Intent (optional hop).
        intent: common_pb2.Intent | None = None
        if not options.skip_intent:
            t = time.monotonic()
            try:
                reply = self._down.intent.Classify(
                    intent_service_pb2.ClassifyRequest(
                        query=query,
                        query_embedding=embedding,
                        model_version=serving.get("intent_classifier", ""),
                    ),
                    timeout=clock.budget(self._settings.intent_budget),
                )
                intent = reply.intent
                versions.intent = intent.model_version
            except grpc.RpcError as exc:
                _log.warning("intent_degraded", code=exc.code().name, error=exc.details())
                degraded.intent = True
            clock.record("intent", t)

        # 3. Retrieval (required hop).
        t = time.monotonic()
        k = max(self._settings.candidates, min(MAX_RESULTS, offset + page_size))
        try:
            retrieved = self._down.retrieval.Retrieve(
                retrieval_service_pb2.RetrieveRequest(
                    query=query,
                    intent=intent,
                    filters=request.filters,
                    k=k,
                    query_embedding=embedding,
                    mode=options.retrieval_mode,
                ),
                timeout=max(0.005, clock.left() - 0.002),
            )
        except grpc.RpcError as exc:
            code = exc.code()
            if code in _CALLER_ERRORS:
                raise from_status(code, exc.details()) from exc
            if code == grpc.StatusCode.DEADLINE_EXCEEDED:
                raise DeadlineExceeded("retrieval did not answer within the deadline") from exc
            raise Unavailable(f"retrieval service unavailable: {exc.details()}") from exc
        clock.record("retrieval", t)
        if retrieved.dense_skipped:
            degraded.dense = True
        if retrieved.embedding_version:
            versions.text_encoder = retrieved.embedding_version
            if self._models is not None:
                self._models.saw_index_version(retrieved.embedding_version)
        candidates = list(retrieved.candidates)

        # 4. Ranking (optional hop).
        ranked: list[ranking_service_pb2.RankedItem] | None = None
        if candidates and not options.skip_ranking:
            t = time.monotonic()
            try:
                reply = self._down.ranking.Rank(
                    ranking_service_pb2.RankRequest(
                        query=query,
                        user=request.user,
                        intent=intent,
                        candidates=candidates,
                        explain_top=offset + page_size,
                        model_version=serving.get("cross_encoder", ""),
                    ),
                    timeout=clock.budget(self._settings.ranking_budget),
                )
                ranked = list(reply.items)
                versions.ranking = reply.model_version
            except grpc.RpcError as exc:
                _log.warning("ranking_degraded", code=exc.code().name, error=exc.details())
                degraded.ranking = True
            clock.record("ranking", t)

        response = self._assemble(candidates, ranked, intent, offset, page_size)
        response.degraded.CopyFrom(degraded)
        response.model_versions.CopyFrom(versions)
        response.experiment_arm = arm
        response.request_id = current_request_id()
        response.attribution_token = self._signer.encode(
            Attribution(
                request_id=response.request_id,
                arm=arm,
                model_versions={
                    "intent": versions.intent,
                    "text_encoder": versions.text_encoder,
                    "ranking": versions.ranking,
                },
            )
        )
        if offset + page_size < response.total_size:
            response.next_page_token = self._pages.encode(offset + page_size, fingerprint)
        clock.record("total", started)
        context.set_trailing_metadata(
            ((TIMINGS_KEY, ",".join(f"{k}={v}" for k, v in clock.timings.items())),)
        )
        return response

    @staticmethod
    def _assemble(
        candidates: list[retrieval_service_pb2.Candidate],
        ranked: list[ranking_service_pb2.RankedItem] | None,
        intent: common_pb2.Intent | None,
        offset: int,
        page_size: int,
    ) -> pb.SearchResponse:
        by_id = {c.product.product_id: c for c in candidates}
        if ranked is not None:
            order = [(item.product_id, item.score, list(item.parts)) for item in ranked]
        else:
            order = [(c.product.product_id, c.fused_score, []) for c in candidates]
        order = order[:MAX_RESULTS]
        intent_classes = {c.product_class for c in intent.classes} if intent else set()
        response = pb.SearchResponse(total_size=len(order))
        if intent is not None:
            response.intent.CopyFrom(intent)
        for position, (pid, score, parts) in enumerate(
            order[offset : offset + page_size], start=offset + 1
        ):
            c = by_id[pid]
            response.results.append(
                pb.SearchResult(
                    product_id=pid,
                    title=c.product.title,
                    price=c.product.price,
                    score=score,
                    product_class=c.product.product_class,
                    position=position,
                    explanation=pb.Explanation(
                        sources=c.sources,
                        lexical_rank=c.lexical_rank,
                        dense_rank=c.dense_rank,
                        intent_match=c.product.product_class in intent_classes,
                        score_parts=[
                            pb.ScoreComponent(
                                feature=p.feature,
                                value=p.value,
                                weight=p.weight,
                                contribution=p.contribution,
                            )
                            for p in parts
                        ],
                    ),
                )
            )
        return response


def create_server(
    settings: Settings,
    encoder: TextEncoder | None = None,
    downstream: Downstream | None = None,
) -> ServerHandle:
    if encoder is None:
        encoder = text_encoder_from_settings(settings)
    model_versions = ModelVersions(
        settings.trainer_target, settings.retrieval_target, settings.intent_refresh_s
    )
    servicer = SearchServicer(
        settings,
        encoder,
        downstream or Downstream.connect(settings),
        AttributionSigner(settings.token_secret),
        model_versions=model_versions,
    )
    handle = build_server(
        "gateway",
        lambda s: search_service_pb2_grpc.add_SearchServiceServicer_to_server(servicer, s),
        [SERVICE_NAME],
        settings.gateway_listen,
        settings.grpc_workers,
    )
    model_versions.start()
    handle.on_stop(model_versions.stop)
    serve_when_ready(handle, lambda: encoder.embed(["warm up"], max_length=8))
    return handle
