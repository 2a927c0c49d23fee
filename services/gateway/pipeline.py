"""One arm's search pipeline: intent, retrieval and ranking inside the caller's deadline.

The query is embedded once per search (:func:`embed_query`) and the vector handed to intent
and retrieval. Intent and ranking are optional hops (:meth:`ArmPipeline._optional`): when
one fails or is late the arm goes on with what is at hand and ``degraded`` says so.
Retrieval is not optional: without it there is nothing to show, so its failure is the
caller's error (passed through when it describes the request, else UNAVAILABLE or
DEADLINE_EXCEEDED).

A failed optional hop is also classified for the guard rails: it counts against the arm
(``ArmRun.model_failures``) when the arm's own model failed, not when the caller's own
deadline, shorter than the suite's, cut it short.

**Intent beside the embedding.** When an arm classifies with a fine-tuned classifier (the
registry serves a version, or the arm pins one), the classifier reads the query's text, not
its vector: the gateway then asks intent when the search starts (:class:`PendingIntent`, a
gRPC future), without the vector, and the two hops run at once; the ``intent`` timing is
the call's whole time, overlapping ``embed``. Should intent fall back to its prototypes, it
embeds the query itself. With the prototypes alone (no classifier yet) intent needs the
vector and is asked after the embedding.

**Personalised search** (``SHOPSENSE_PERSONALIZE`` or the arm's ``pipeline.personalize``):
the shopper's profile is asked of the recommendation service when the search starts
(:class:`PendingProfile`, a gRPC future under its own share of the deadline), so it arrives
while the query is embedded, classified and retrieved, and ranking gets it as one more
feature. When it fails or is late, or ranking cannot use it, the search goes on
unpersonalised and ``degraded.personalization`` says so; that is not the arm's models'
failure (the guard rails do not count it).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import grpc
import numpy as np
import structlog
from shopsense.common.v1 import common_pb2
from shopsense.intent.v1 import intent_service_pb2, intent_service_pb2_grpc
from shopsense.ranking.v1 import ranking_service_pb2, ranking_service_pb2_grpc
from shopsense.recommend.v1 import recommend_service_pb2, recommend_service_pb2_grpc
from shopsense.retrieval.v1 import retrieval_service_pb2, retrieval_service_pb2_grpc
from shopsense.search.v1 import search_service_pb2 as pb

from shared.contracts.common import embedding_to_proto
from shared.contracts.search import Ranked
from shared.errors import DeadlineExceeded, ShopsenseError, Unavailable
from shared.experiments.assignment import Arm
from shared.models.kinds import CROSS_ENCODER, INTENT_CLASSIFIER
from shared.models.protocols import TextEncoder
from shared.rpc.clients import open_channel, remaining
from shared.rpc.status import error_from_status
from shared.settings import GatewaySettings

QUERY_MAX_TOKENS = 32
_log = structlog.get_logger("shopsense.gateway")
T = TypeVar("T")

# Status codes from retrieval that describe the caller's request, passed through as they are.
_CALLER_ERRORS = {
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.NOT_FOUND,
}


@dataclass
class Hops:
    """Stubs of the services the gateway calls."""

    intent: intent_service_pb2_grpc.IntentServiceStub
    retrieval: retrieval_service_pb2_grpc.RetrievalServiceStub
    ranking: ranking_service_pb2_grpc.RankingServiceStub
    # The shoppers' profiles for personalised search (None: never personalised).
    recommend: recommend_service_pb2_grpc.RecommendServiceStub | None = None

    @classmethod
    def connect(cls, settings: GatewaySettings) -> Hops:
        return cls(
            intent=intent_service_pb2_grpc.IntentServiceStub(open_channel(settings.intent_target)),
            retrieval=retrieval_service_pb2_grpc.RetrievalServiceStub(
                open_channel(settings.retrieval_target)
            ),
            ranking=ranking_service_pb2_grpc.RankingServiceStub(
                open_channel(settings.ranking_target)
            ),
            recommend=recommend_service_pb2_grpc.RecommendServiceStub(
                open_channel(settings.recommend_target)
            ),
        )


@dataclass
class Clock:
    """The caller's deadline as an absolute time, and the time each hop took.

    ``short``: the caller set a deadline shorter than the suite's own
    (``SHOPSENSE_SEARCH_DEADLINE_S``), so a hop it cuts short is not the hop's fault."""

    deadline: float
    short: bool = False
    timings: dict[str, float] = field(default_factory=dict)

    @classmethod
    def start(cls, context: grpc.ServicerContext | None, default_s: float, started: float) -> Clock:
        left = remaining(context, default_s)
        return cls(started + left, short=left < default_s)

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def budget(self, share: float, floor: float = 0.005) -> float:
        return max(floor, self.left() * share)

    def record(self, hop: str, started: float) -> None:
        self.timings[hop] = round((time.monotonic() - started) * 1e3, 3)


class PendingProfile:
    """The shopper's profile, asked for when the search starts and read (once) when an arm
    ranks: the profile, or None (the shopper has none, or it failed: ``failed``)."""

    def __init__(
        self, stub: recommend_service_pb2_grpc.RecommendServiceStub, user: Any, timeout: float
    ) -> None:
        self._future = stub.GetShopperProfile.future(
            recommend_service_pb2.GetShopperProfileRequest(
                user_id=user.user_id, session_id=user.session_id
            ),
            timeout=timeout,
        )
        self._read = False
        self._profile: common_pb2.Embedding | None = None
        self.failed = False

    def result(self) -> common_pb2.Embedding | None:
        if not self._read:
            self._read = True
            try:
                reply = self._future.result()
            except grpc.RpcError as exc:
                _log.warning("profile_degraded", code=exc.code().name, error=exc.details())
                self.failed = True
            else:
                self._profile = reply.profile if reply.profile.values else None
        return self._profile


class PendingIntent:
    """An arm's Classify call started before the query is embedded (its classifier reads the
    text); ``started`` is when, for the hop's timing."""

    def __init__(
        self,
        stub: intent_service_pb2_grpc.IntentServiceStub,
        request: intent_service_pb2.ClassifyRequest,
        timeout: float,
    ) -> None:
        self.started = time.monotonic()
        self._future = stub.Classify.future(request, timeout=timeout)

    def result(self) -> intent_service_pb2.ClassifyResponse:
        """The reply; the call's grpc.RpcError when it failed."""
        return self._future.result()


def intent_version(arm: Arm, serving: dict[str, str]) -> str:
    """The intent classifier version ``arm`` classifies with: its pin, else the registry's
    serving version; "" when none (intent's prototypes)."""
    return arm.pinned(INTENT_CLASSIFIER) or serving.get(INTENT_CLASSIFIER, "")


def personalizes(arm: Arm, default: bool) -> bool:
    """Whether ``arm`` personalises search: its pipeline setting, else the gateway's."""
    return default if arm.pipeline.personalize is None else arm.pipeline.personalize


@dataclass(frozen=True)
class Query:
    """What every arm of one search shares."""

    text: str
    request: pb.SearchRequest
    # The query's vector (None: lexical mode or the encoder failed).
    embedding: common_pb2.Embedding | None
    # Model kind -> the registry's serving version ("" when unknown).
    serving: dict[str, str]
    # Candidates to ask retrieval for, and how many results ranking must explain.
    k: int
    explain_top: int
    # The shopper's profile on its way (None: no arm of this search personalises).
    profile: PendingProfile | None = None
    # Arm index -> its intent call started beside the embedding (see PendingIntent).
    intents: dict[int, PendingIntent] = field(default_factory=dict)


@dataclass
class ArmRun:
    """What one arm's pipeline produced for a search."""

    intent: common_pb2.Intent | None = None
    candidates: list[retrieval_service_pb2.Candidate] = field(default_factory=list)
    order: list[Ranked] = field(default_factory=list)
    versions: pb.ModelVersions = field(default_factory=pb.ModelVersions)
    degraded: pb.Degraded = field(default_factory=pb.Degraded)
    # The optional hops whose failure counts against the arm (guard rails).
    model_failures: list[str] = field(default_factory=list)


def embed_query(
    encoder: TextEncoder, query: str, index_version: str, clock: Clock
) -> tuple[common_pb2.Embedding | None, str]:
    """The query's embedding with the catalog index's encoder version (every arm's: a
    text_encoder pin is always the index's version) and the version that made it;
    ``(None, "")`` when the encoder fails (retrieval then runs lexical only)."""
    started = time.monotonic()
    try:
        vector: np.ndarray = encoder.embed(
            [query], max_length=QUERY_MAX_TOKENS, version=index_version or None
        )[0]
        version = index_version or encoder.version()
        return embedding_to_proto(vector, version), version
    except ShopsenseError as exc:
        _log.warning("embedding_failed", error=exc.message)
        return None, ""
    finally:
        clock.record("embed", started)


class ArmPipeline:
    """Intent, retrieval and ranking with an arm's versions and settings."""

    def __init__(
        self,
        hops: Hops,
        intent_budget: float,
        ranking_budget: float,
        saw_index_version: Callable[[str], None] = lambda version: None,
        personalize: bool = False,
    ) -> None:
        self._hops = hops
        self._intent_budget = intent_budget
        self._ranking_budget = ranking_budget
        # The default for arms that do not say (SHOPSENSE_PERSONALIZE).
        self.personalize = personalize
        # Told the catalog index's encoder version retrieval answered with.
        self._saw_index_version = saw_index_version

    def start_intent(
        self, arm: Arm, text: str, request: pb.SearchRequest, serving: dict[str, str], clock: Clock
    ) -> PendingIntent | None:
        """Ask intent now, without the query's vector, when ``arm`` classifies with a
        fine-tuned classifier (pinned, or the registry's serving version); else None (intent
        is skipped, or its prototypes need the vector)."""
        if request.options.skip_intent:
            return None
        version = intent_version(arm, serving)
        if not version:
            return None
        return PendingIntent(
            self._hops.intent,
            intent_service_pb2.ClassifyRequest(query=text, model_version=version),
            clock.budget(self._intent_budget),
        )

    def run(
        self,
        arm: Arm,
        query: Query,
        clock: Clock,
        tag: str = "",
        shared: ArmRun | None = None,
        index: int = 0,
    ) -> ArmRun:
        """The arm's results; with ``shared``, that run's intent and candidates are reused
        (arms that differ only in ranking). ``tag`` suffixes the hops' timing names;
        ``index`` is the arm's place in the route (its intent call may have started)."""
        run = ArmRun()
        if shared is not None:
            run.intent, run.candidates = shared.intent, shared.candidates
            run.versions.CopyFrom(shared.versions)
            run.versions.ranking = ""
            run.degraded.CopyFrom(shared.degraded)
            run.degraded.ranking = False
            run.degraded.personalization = False
            run.model_failures = [hop for hop in shared.model_failures if hop != "ranking"]
        else:
            self._classify(arm, query, clock, tag, run, query.intents.get(index))
            self._retrieve(arm, query, clock, tag, run)
        self._rank(arm, query, clock, tag, run)
        return run

    def _optional(
        self,
        hop: str,
        call: Callable[[], T],
        clock: Clock,
        tag: str,
        run: ArmRun,
        started: float | None = None,
    ) -> T | None:
        """Call an optional hop: its reply, or None with the run degraded (and the failure
        counted against the arm unless the caller's own short deadline cut it). ``started``:
        when the call began, if before this (its timing counts from then)."""
        started = time.monotonic() if started is None else started
        try:
            return call()
        except grpc.RpcError as exc:
            code = exc.code()
            _log.warning(f"{hop}_degraded", code=code.name, error=exc.details())
            setattr(run.degraded, hop, True)
            cut_by_caller = code == grpc.StatusCode.DEADLINE_EXCEEDED and clock.short
            if not cut_by_caller and code != grpc.StatusCode.CANCELLED:
                run.model_failures.append(hop)
            return None
        finally:
            clock.record(hop + tag, started)

    def _classify(
        self,
        arm: Arm,
        query: Query,
        clock: Clock,
        tag: str,
        run: ArmRun,
        pending: PendingIntent | None = None,
    ) -> None:
        if query.request.options.skip_intent:
            return
        if pending is not None:  # asked beside the embedding
            reply = self._optional("intent", pending.result, clock, tag, run, pending.started)
        else:
            version = intent_version(arm, query.serving)
            reply = self._optional(
                "intent",
                lambda: self._hops.intent.Classify(
                    intent_service_pb2.ClassifyRequest(
                        query=query.text, query_embedding=query.embedding, model_version=version
                    ),
                    timeout=clock.budget(self._intent_budget),
                ),
                clock,
                tag,
                run,
            )
        if reply is not None:
            run.intent = reply.intent
            run.versions.intent = reply.intent.model_version

    def _retrieve(self, arm: Arm, query: Query, clock: Clock, tag: str, run: ArmRun) -> None:
        started = time.monotonic()
        weights = arm.pipeline.fusion_weights
        try:
            retrieved = self._hops.retrieval.Retrieve(
                retrieval_service_pb2.RetrieveRequest(
                    query=query.text,
                    intent=run.intent,
                    filters=query.request.filters,
                    k=query.k,
                    query_embedding=query.embedding,
                    mode=query.request.options.retrieval_mode,
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
        clock.record("retrieval" + tag, started)
        if retrieved.dense_skipped:
            run.degraded.dense = True
        if retrieved.embedding_version:
            run.versions.text_encoder = retrieved.embedding_version
            self._saw_index_version(retrieved.embedding_version)
        run.candidates = list(retrieved.candidates)

    def _rank(self, arm: Arm, query: Query, clock: Clock, tag: str, run: ArmRun) -> None:
        """Order the run's candidates with the arm's cross-encoder and depth."""
        reply: Any = None
        if run.candidates and not query.request.options.skip_ranking:
            version = arm.pinned(CROSS_ENCODER) or query.serving.get(CROSS_ENCODER, "")
            profile = self._profile(arm, query, run)
            reply = self._optional(
                "ranking",
                lambda: self._hops.ranking.Rank(
                    ranking_service_pb2.RankRequest(
                        query=query.text,
                        user=query.request.user,
                        intent=run.intent,
                        candidates=run.candidates,
                        explain_top=query.explain_top,
                        model_version=version,
                        rerank_depth=arm.pipeline.rerank_depth,
                        shopper_profile=profile,
                    ),
                    timeout=clock.budget(self._ranking_budget),
                ),
                clock,
                tag,
                run,
            )
        if reply is not None:
            run.versions.ranking = reply.model_version
            if profile is not None and not reply.personalized:
                run.degraded.personalization = True
            # The parts as the reply holds them (a copy per item costs more than the rest).
            run.order = [(item.product_id, item.score, item.parts) for item in reply.items]
        else:
            run.order = [(c.product.product_id, c.fused_score, []) for c in run.candidates]
        if arm.pipeline.reverse_ranking:
            run.order.reverse()

    def _profile(self, arm: Arm, query: Query, run: ArmRun) -> common_pb2.Embedding | None:
        """The shopper's profile when ``arm`` personalises (None: it does not, the shopper
        has none, or it failed, which degrades the run)."""
        if query.profile is None or not personalizes(arm, self.personalize):
            return None
        profile = query.profile.result()
        if query.profile.failed:
            run.degraded.personalization = True
        return profile
