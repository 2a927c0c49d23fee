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
from shared.contracts.common import (
    count_or_default,
    embedding_to_proto,
    validate_query,
    validate_shopper,
)
from shared.errors import (
    DeadlineExceeded,
    InvalidArgument,
    ShopsenseError,
    Unavailable,
)
from shared.experiments.assignment import (
    CONTROL,
    INTERLEAVING,
    NO_EXPERIMENT,
    Arm,
    Experiment,
    assign_arm,
)
from shared.experiments.attribution import Attribution, AttributionSigner
from shared.experiments.exploration import explores, shuffle_top
from shared.experiments.guardrails import ArmHealth, Limits
from shared.experiments.interleaving import TEAM_A, TEAM_B, seed_for, team_draft
from shared.models.protocols import TextEncoder
from shared.models.triton_client import text_encoder_client
from shared.rpc.clients import open_channel, remaining
from shared.rpc.interceptors import current_request_id
from shared.rpc.server import ServerHandle, build_service, serve_when_ready
from shared.rpc.status import error_from_status
from shared.settings import GatewaySettings

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
    def connect(cls, settings: GatewaySettings) -> Downstream:
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


# (product id, score, score parts) in result order.
_Ranked = tuple[str, float, list]
# The arm name in responses and tokens when two arms are interleaved.
INTERLEAVED = "interleaved"


@dataclass
class _ArmRun:
    """What one arm's pipeline produced for a request."""

    intent: common_pb2.Intent | None = None
    candidates: list[retrieval_service_pb2.Candidate] = field(default_factory=list)
    order: list[_Ranked] = field(default_factory=list)
    versions: pb.ModelVersions = field(default_factory=pb.ModelVersions)
    degraded: pb.Degraded = field(default_factory=pb.Degraded)


@dataclass
class _Served:
    """Which experiment and arm a search was served by (for the guard rails)."""

    experiment: str = ""
    arm: str = ""
    control: str = ""  # the experiment's first arm; "" when interleaving


def _same_retrieval(a: Arm, b: Arm) -> bool:
    """Whether two arms get the same intent and candidates (they may rank differently)."""
    return (
        a.pinned("intent_classifier") == b.pinned("intent_classifier")
        and a.pipeline.fusion_weights == b.pipeline.fusion_weights
    )


def _by_id(order: list[_Ranked]) -> dict[str, _Ranked]:
    return {row[0]: row for row in order}


class SearchServicer(search_service_pb2_grpc.SearchServiceServicer):
    def __init__(
        self,
        settings: GatewaySettings,
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
        self._health = ArmHealth(
            Limits(
                max_error_rate=settings.guard_max_error_rate,
                max_p99_ms=settings.guard_max_p99_ms,
                min_searches=settings.guard_min_searches,
            )
        )

    def Search(self, request: pb.SearchRequest, context: grpc.ServicerContext) -> pb.SearchResponse:
        started = time.monotonic()
        served = _Served()
        failed = True
        try:
            response = self._search(request, context, started, served)
            failed = response.degraded.ranking or response.degraded.intent
            return response
        except InvalidArgument:
            failed = False  # the caller's mistake, not the arm's
            raise
        finally:
            if served.experiment:
                reason = self._health.record(
                    served.experiment,
                    served.arm,
                    time.monotonic() - started,
                    failed,
                    served.control,
                )
                if reason is not None and self._models is not None:
                    _log.warning("guard_rail", experiment=served.experiment, reason=reason)
                    self._models.stop_experiment(served.experiment, reason)

    def _search(
        self,
        request: pb.SearchRequest,
        context: grpc.ServicerContext,
        started: float,
        served: _Served,
    ) -> pb.SearchResponse:
        clock = _Clock(started + remaining(context, self._settings.search_deadline_s))
        query = validate_query(request.query)
        user, session = request.user.user_id, request.user.session_id
        validate_shopper(user, session, prefix="user.")  # feedback applies it to the events too
        for name, value in (("user.user_id", user), ("user.session_id", session)):
            if len(value) > MAX_ID_CHARS:
                raise InvalidArgument(f"{name}: longer than {MAX_ID_CHARS} characters")
        page_size = count_or_default(
            request.page_size, "page_size", DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE
        )
        fingerprint = request_fingerprint(request)
        offset = (
            self._pages.decode(request.page_token, fingerprint, page_size)
            if request.page_token
            else 0
        )
        if offset >= MAX_RESULTS:
            raise InvalidArgument(f"page_token: offset {offset} is past the last result")
        options = request.options
        experiment, arms = self._arms(user, session)
        arm_name = INTERLEAVED if len(arms) == 2 else arms[0].name
        experiment_name = experiment.name if experiment is not None else ""
        served.experiment, served.arm = experiment_name, arm_name
        if experiment is not None and len(arms) == 1:
            served.control = experiment.arms[0].name
        structlog.contextvars.bind_contextvars(arm=arm_name, experiment=experiment_name)
        serving = self._models.serving if self._models else {}
        index_version = self._models.text_encoder if self._models else ""

        # 1. Embed once; intent and retrieval share the vector (every arm's: a text_encoder
        # pin is always the index's version).
        embedding: common_pb2.Embedding | None = None
        embed_failed = False
        embedded_with = ""
        if options.retrieval_mode != common_pb2.RETRIEVAL_MODE_LEXICAL:
            t = time.monotonic()
            try:
                vector: np.ndarray = self._encoder.embed(
                    [query], max_length=QUERY_MAX_TOKENS, version=index_version or None
                )[0]
                embedded_with = index_version or self._encoder.version()
                embedding = embedding_to_proto(vector, embedded_with)
            except ShopsenseError as exc:
                _log.warning("embedding_failed", error=exc.message)
                embed_failed = True
            clock.record("embed", t)

        k = max(self._settings.candidates, min(MAX_RESULTS, offset + page_size))
        runs: list[_ArmRun] = []
        for arm, tag in zip(arms, ("", "_b"), strict=False):
            # Interleaved arms that differ only in ranking share one intent and retrieval.
            same = next(
                (r for a, r in zip(arms, runs, strict=False) if _same_retrieval(a, arm)), None
            )
            runs.append(
                self._run_arm(
                    arm, request, query, embedding, serving, k, offset + page_size, clock, tag, same
                )
            )
        for run in runs:
            run.versions.text_encoder = run.versions.text_encoder or embedded_with
            run.degraded.dense = run.degraded.dense or embed_failed
        first = runs[0]
        by_id = {c.product.product_id: c for run in runs for c in run.candidates}
        teams = ""
        if len(runs) == 2:
            assert experiment is not None
            merged, teams = team_draft(
                [pid for pid, _, _ in runs[0].order],
                [pid for pid, _, _ in runs[1].order],
                seed_for(experiment.salt, user or session, fingerprint),
                limit=MAX_RESULTS,
            )
            picked = {TEAM_A: _by_id(runs[0].order), TEAM_B: _by_id(runs[1].order)}
            order = [picked[team][pid] for pid, team in zip(merged, teams, strict=True)]
        else:
            order = first.order
        shopper = user or session
        explored = explores(self._settings.explore_rate, shopper, fingerprint)
        if explored:
            depth = self._settings.explore_depth
            order = shuffle_top(order, depth, shopper, fingerprint)
            if teams:
                teams = "".join(shuffle_top(teams, depth, shopper, fingerprint))
        response = self._assemble(by_id, order, first.intent, offset, page_size)
        response.degraded.CopyFrom(first.degraded)
        if len(runs) == 2:
            for name in ("intent", "ranking", "dense"):
                if getattr(runs[1].degraded, name):
                    setattr(response.degraded, name, True)
        response.model_versions.CopyFrom(first.versions)
        response.experiment_arm = arm_name
        response.request_id = current_request_id()
        versions = {
            "intent": first.versions.intent,
            "text_encoder": first.versions.text_encoder,
            "ranking": first.versions.ranking,
        }
        if len(runs) == 2:
            versions["intent_b"] = runs[1].versions.intent
            versions["ranking_b"] = runs[1].versions.ranking
        response.attribution_token = self._signer.encode(
            Attribution(
                request_id=response.request_id,
                arm=arm_name,
                model_versions=versions,
                experiment=experiment_name,
                teams=teams[offset : offset + page_size],
                offset=offset,
                query=query,
                explored=explored,
            )
        )
        if offset + page_size < response.total_size:
            response.next_page_token = self._pages.encode(
                offset + page_size, fingerprint, page_size
            )
        clock.record("total", started)
        context.set_trailing_metadata(
            ((TIMINGS_KEY, ",".join(f"{k}={v}" for k, v in clock.timings.items())),)
        )
        return response

    def _arms(self, user: str, session: str) -> tuple[Experiment | None, list[Arm]]:
        """The running experiment and the shopper's arms (two when interleaving);
        ``(None, [control])`` outside any experiment."""
        experiment = self._models.experiment if self._models else None
        experiment = experiment or self._experiment
        if experiment is NO_EXPERIMENT:
            return None, [CONTROL]
        arm = assign_arm(experiment, user, session)
        if arm is None:
            return None, [CONTROL]
        if experiment.type == INTERLEAVING:
            return experiment, list(experiment.arms)
        return experiment, [arm]

    def _run_arm(
        self,
        arm: Arm,
        request: pb.SearchRequest,
        query: str,
        embedding: common_pb2.Embedding | None,
        serving: dict[str, str],
        k: int,
        explain_top: int,
        clock: _Clock,
        tag: str,
        retrieved_by: _ArmRun | None = None,
    ) -> _ArmRun:
        """Intent, retrieval and ranking with the arm's versions and settings; with
        ``retrieved_by``, that run's intent and candidates are reused (same settings)."""
        options = request.options
        run = _ArmRun()
        if retrieved_by is not None:
            run.intent, run.candidates = retrieved_by.intent, retrieved_by.candidates
            run.versions.CopyFrom(retrieved_by.versions)
            run.versions.ranking = ""
            run.degraded.CopyFrom(retrieved_by.degraded)
            run.degraded.ranking = False
            self._rank_arm(arm, request, query, serving, explain_top, clock, tag, run)
            return run
        intent_version = arm.pinned("intent_classifier") or serving.get("intent_classifier", "")

        # 2. Intent (optional hop).
        if not options.skip_intent:
            t = time.monotonic()
            try:
                reply = self._down.intent.Classify(
                    intent_service_pb2.ClassifyRequest(
                        query=query, query_embedding=embedding, model_version=intent_version
                    ),
                    timeout=clock.budget(self._settings.intent_budget),
                )
                run.intent = reply.intent
                run.versions.intent = reply.intent.model_version
            except grpc.RpcError as exc:
                _log.warning("intent_degraded", code=exc.code().name, error=exc.details())
                run.degraded.intent = True
            clock.record("intent" + tag, t)

        # 3. Retrieval (required hop).
        t = time.monotonic()
        weights = arm.pipeline.fusion_weights
        try:
            retrieved = self._down.retrieval.Retrieve(
                retrieval_service_pb2.RetrieveRequest(
                    query=query,
                    intent=run.intent,
                    filters=request.filters,
                    k=k,
                    query_embedding=embedding,
                    mode=options.retrieval_mode,
                    fusion=(
                        retrieval_service_pb2.FusionWeights(
                            lexical=weights["lexical"], dense=weights["dense"]
                        )
                        if weights
                        else None
                    ),
                ),
                timeout=max(0.005, clock.left() - 0.002),
            )
        except grpc.RpcError as exc:
            code = exc.code()
            if code in _CALLER_ERRORS:
                raise error_from_status(code, exc.details()) from exc
            if code == grpc.StatusCode.DEADLINE_EXCEEDED:
                raise DeadlineExceeded("retrieval did not answer within the deadline") from exc
            raise Unavailable(f"retrieval service unavailable: {exc.details()}") from exc
        clock.record("retrieval" + tag, t)
        if retrieved.dense_skipped:
            run.degraded.dense = True
        if retrieved.embedding_version:
            run.versions.text_encoder = retrieved.embedding_version
            if self._models is not None:
                self._models.saw_index_version(retrieved.embedding_version)
        run.candidates = list(retrieved.candidates)
        self._rank_arm(arm, request, query, serving, explain_top, clock, tag, run)
        return run

    def _rank_arm(
        self,
        arm: Arm,
        request: pb.SearchRequest,
        query: str,
        serving: dict[str, str],
        explain_top: int,
        clock: _Clock,
        tag: str,
        run: _ArmRun,
    ) -> None:
        """Rank ``run``'s candidates with the arm's cross-encoder and depth into its order."""
        ranking_version = arm.pinned("cross_encoder") or serving.get("cross_encoder", "")
        # 4. Ranking (optional hop).
        ranked: list[ranking_service_pb2.RankedItem] | None = None
        if run.candidates and not request.options.skip_ranking:
            t = time.monotonic()
            try:
                reply = self._down.ranking.Rank(
                    ranking_service_pb2.RankRequest(
                        query=query,
                        user=request.user,
                        intent=run.intent,
                        candidates=run.candidates,
                        explain_top=explain_top,
                        model_version=ranking_version,
                        rerank_depth=arm.pipeline.rerank_depth,
                    ),
                    timeout=clock.budget(self._settings.ranking_budget),
                )
                ranked = list(reply.items)
                run.versions.ranking = reply.model_version
            except grpc.RpcError as exc:
                _log.warning("ranking_degraded", code=exc.code().name, error=exc.details())
                run.degraded.ranking = True
            clock.record("ranking" + tag, t)
        if ranked is not None:
            run.order = [(item.product_id, item.score, list(item.parts)) for item in ranked]
        else:
            run.order = [(c.product.product_id, c.fused_score, []) for c in run.candidates]
        if arm.pipeline.reverse_ranking:
            run.order.reverse()

    @staticmethod
    def _assemble(
        by_id: dict[str, retrieval_service_pb2.Candidate],
        order: list[_Ranked],
        intent: common_pb2.Intent | None,
        offset: int,
        page_size: int,
    ) -> pb.SearchResponse:
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
    settings: GatewaySettings,
    encoder: TextEncoder | None = None,
    downstream: Downstream | None = None,
) -> ServerHandle:
    if encoder is None:
        encoder = text_encoder_client(settings.triton_url, settings.text_encoder_version)
    model_versions = ModelVersions(
        settings.trainer_target, settings.retrieval_target, settings.refresh_s
    )
    servicer = SearchServicer(
        settings,
        encoder,
        downstream or Downstream.connect(settings),
        AttributionSigner(settings.token_secret),
        model_versions=model_versions,
    )
    handle = build_service(
        settings,
        lambda s: search_service_pb2_grpc.add_SearchServiceServicer_to_server(servicer, s),
        [SERVICE_NAME],
    )
    model_versions.start()
    handle.on_stop(model_versions.stop)
    serve_when_ready(handle, lambda: encoder.embed(["warm up"], max_length=8))
    return handle
