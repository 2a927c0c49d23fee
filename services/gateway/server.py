"""SearchService: the public search API. A search is validated, routed to the shopper's
experiment arms (``routing``), run through each arm's pipeline of intent, retrieval and
ranking inside the caller's deadline (``pipeline``), arranged (interleaving, exploration),
paged and signed.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import grpc
import structlog
from shopsense.common.v1 import common_pb2
from shopsense.recommend.v1 import recommend_service_pb2_grpc
from shopsense.search.v1 import search_service_pb2 as pb
from shopsense.search.v1 import search_service_pb2_grpc

from services.gateway.cache import ResultCache, search_key
from services.gateway.metrics import SearchMetrics
from services.gateway.paging import PageTokens, request_fingerprint
from services.gateway.pipeline import (
    ArmPipeline,
    ArmRun,
    Clock,
    Hops,
    PendingProfile,
    Query,
    embed_query,
    personalizes,
)
from services.gateway.recommend import SERVICE_NAME as RECOMMEND_SERVICE_NAME
from services.gateway.recommend import RecommendGatewayServicer
from services.gateway.routing import GuardRail, Route, arrange, attribution, route
from services.gateway.versions import ModelVersions
from shared.contracts.common import checked_shopper, count_or_default, validate_query
from shared.contracts.search import NO_CACHE, results_page
from shared.errors import DeadlineExceeded, InvalidArgument, Unavailable
from shared.experiments.assignment import NO_EXPERIMENT, Experiment
from shared.experiments.attribution import AttributionSigner, token_keys
from shared.experiments.guardrails import Limits
from shared.models.protocols import TextEncoder
from shared.models.triton_client import text_encoder_client
from shared.rpc.clients import open_channel
from shared.rpc.interceptors import current_request_id
from shared.rpc.privacy import bind_shopper
from shared.rpc.server import ServerHandle, build_service, serve_when_ready
from shared.rpc.tls import TlsFiles
from shared.settings import GatewaySettings

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["SearchService"].full_name
DEFAULT_PAGE_SIZE = 20
MAX_PAGE_SIZE = 100
MAX_RESULTS = 1000
TIMINGS_KEY = "x-shopsense-timings"


@dataclass(frozen=True)
class Page:
    """A checked search request: who asks what, and which page."""

    query: str
    user: str
    session: str
    page_size: int
    offset: int
    fingerprint: str

    @property
    def shopper(self) -> str:
        return self.user or self.session


class SearchServicer(search_service_pb2_grpc.SearchServiceServicer):
    def __init__(
        self,
        settings: GatewaySettings,
        encoder: TextEncoder,
        hops: Hops,
        signer: AttributionSigner,
        experiment: Experiment = NO_EXPERIMENT,
        model_versions: ModelVersions | None = None,
    ) -> None:
        """``experiment`` serves when no ``model_versions`` names a running one."""
        self._settings = settings
        self._encoder = encoder
        self._models = model_versions
        self._signer = signer
        self._experiment = experiment
        self._pages = PageTokens(settings.token_keys)
        self._pipeline = ArmPipeline(
            hops,
            settings.intent_budget,
            settings.ranking_budget,
            model_versions.saw_index_version if model_versions else lambda version: None,
            personalize=settings.personalize == "on",
        )
        self._hops = hops
        self._metrics = SearchMetrics()
        self._cache = ResultCache(settings.result_cache_entries, settings.result_cache_ttl_s)
        self.guard_rail = GuardRail(
            Limits(
                max_error_rate=settings.guard_max_error_rate,
                max_p99_ms=settings.guard_max_p99_ms,
                min_searches=settings.guard_min_searches,
            ),
            model_versions.stop_experiment if model_versions else None,
        )

    def Search(self, request: pb.SearchRequest, context: grpc.ServicerContext) -> pb.SearchResponse:
        started = time.monotonic()
        bind_shopper(request.user.user_id, request.user.session_id, request.query)
        clock = Clock.start(context, self._settings.search_deadline_s, started)
        page = self._page(request)
        where = route(self.running(), page.user, page.session)
        structlog.contextvars.bind_contextvars(arm=where.arm_name, experiment=where.experiment_name)
        try:
            fresh = NO_CACHE in (context.invocation_metadata() or ())
            runs = self._run_arms(where, request, page, clock, fresh)
        except (Unavailable, DeadlineExceeded):
            self._metrics.failed(where, "retrieval")
            raise
        order, teams, explored = arrange(
            where,
            runs,
            page.shopper,
            page.fingerprint,
            self._settings.explore_rate,
            self._settings.explore_depth,
            MAX_RESULTS,
        )
        candidates = {c.product.product_id: c for run in runs for c in run.candidates}
        response = results_page(
            candidates, order[:MAX_RESULTS], runs[0].intent, page.offset, page.page_size
        )
        for run in runs:  # degraded when any arm's hop was
            response.degraded.MergeFrom(run.degraded)
        response.model_versions.CopyFrom(runs[0].versions)
        response.experiment_arm = where.arm_name
        response.request_id = current_request_id()
        response.attribution_token = self._signer.encode(
            attribution(
                where,
                runs,
                response.request_id,
                page.query,
                teams[page.offset : page.offset + page.page_size],
                page.offset,
                explored,
            )
        )
        end = page.offset + page.page_size
        if end < response.total_size:
            response.next_page_token = self._pages.encode(end, page.fingerprint, page.page_size)
        clock.record("total", started)
        context.set_trailing_metadata(
            ((TIMINGS_KEY, ",".join(f"{k}={v}" for k, v in clock.timings.items())),)
        )
        seconds = time.monotonic() - started
        self._metrics.answered(where, seconds, response.degraded, runs)
        if self.guard_rail.record(where, seconds, runs) is not None:
            self._metrics.guard_rail_stopped()
        return response

    def _page(self, request: pb.SearchRequest) -> Page:
        """The request checked, naming the field of the first problem."""
        query = validate_query(request.query)
        user, session = checked_shopper(request.user)  # feedback applies the rule to events too
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
        return Page(query, user, session, page_size, offset, fingerprint)

    def running(self) -> Experiment | None:
        """The running experiment (the trainer's, re-read in the background)."""
        running = self._models.experiment if self._models else None
        return running or self._experiment

    def _run_arms(
        self, where: Route, request: pb.SearchRequest, page: Page, clock: Clock, fresh: bool
    ) -> list[ArmRun]:
        """Embed once, then run each arm (interleaved arms that differ only in ranking share
        one intent call and one retrieval); or the runs of the same search kept by the
        result cache (``cache``) unless the caller asks for a ``fresh`` search."""
        profile = self._ask_profile(where, request, clock)
        index_version = self._models.text_encoder if self._models else ""
        serving = dict(self._models.serving) if self._models else {}
        k = max(self._settings.candidates, min(MAX_RESULTS, page.offset + page.page_size))
        explain_top = page.offset + page.page_size
        key = None
        if profile is None and self._models is not None and self._cache.entries > 0 and not fresh:
            started = time.monotonic()
            key = search_key(
                where, request, page.query, k, explain_top, serving, index_version,
                self._models.catalog_generation,
            )  # fmt: skip
            kept = self._cache.get(key)
            clock.record("cache", started)
            if kept is not None:
                return kept
        else:
            self._cache.skipped()
        # Arms whose classifier reads the text ask intent now, beside the embedding.
        intents = {
            index: pending
            for index, arm in enumerate(where.arms)
            if where.shares_retrieval(index) is None
            and (pending := self._pipeline.start_intent(arm, page.query, request, serving, clock))
        }
        embedding, embedded_with = None, ""
        dense = request.options.retrieval_mode != common_pb2.RETRIEVAL_MODE_LEXICAL
        if dense:
            embedding, embedded_with = embed_query(self._encoder, page.query, index_version, clock)
        query = Query(
            text=page.query,
            request=request,
            embedding=embedding,
            serving=serving,
            k=k,
            explain_top=explain_top,
            profile=profile,
            intents=intents,
        )
        runs: list[ArmRun] = []
        for index, arm in enumerate(where.arms):
            shared = where.shares_retrieval(index)
            run = self._pipeline.run(
                arm,
                query,
                clock,
                "_b" if index else "",
                None if shared is None else runs[shared],
                index,
            )
            run.versions.text_encoder = run.versions.text_encoder or embedded_with
            run.degraded.dense = run.degraded.dense or (dense and embedding is None)
            runs.append(run)
        if key is not None:
            self._cache.put(key, runs)
        return runs

    def _ask_profile(
        self, where: Route, request: pb.SearchRequest, clock: Clock
    ) -> PendingProfile | None:
        """Start fetching the shopper's profile when an arm of this search personalises
        (it then arrives while the other hops run)."""
        wanted = any(personalizes(arm, self._pipeline.personalize) for arm in where.arms)
        if not wanted or self._hops.recommend is None or request.options.skip_ranking:
            return None
        return PendingProfile(
            self._hops.recommend, request.user, clock.budget(self._settings.profile_budget)
        )


def create_server(
    settings: GatewaySettings,
    encoder: TextEncoder | None = None,
    hops: Hops | None = None,
) -> ServerHandle:
    keys = token_keys(settings)
    if encoder is None:
        encoder = text_encoder_client(
            settings.triton_url, settings.text_encoder_version, TlsFiles.from_settings(settings)
        )
    model_versions = ModelVersions(
        settings.trainer_target, settings.retrieval_target, settings.refresh_s
    )
    servicer = SearchServicer(
        settings,
        encoder,
        hops or Hops.connect(settings),
        AttributionSigner(keys),
        model_versions=model_versions,
    )
    recommend_channel = open_channel(settings.recommend_target)
    recommender = RecommendGatewayServicer(
        recommend_service_pb2_grpc.RecommendServiceStub(recommend_channel),
        AttributionSigner(keys),
        servicer.running,
        settings.search_deadline_s,
    )

    def register(server: grpc.Server) -> None:
        search_service_pb2_grpc.add_SearchServiceServicer_to_server(servicer, server)
        recommend_service_pb2_grpc.add_RecommendServiceServicer_to_server(recommender, server)

    try:
        handle = build_service(settings, register, [SERVICE_NAME, RECOMMEND_SERVICE_NAME])
    except BaseException:
        recommend_channel.close()
        raise
    handle.on_stop(recommend_channel.close)
    model_versions.start()
    handle.on_stop(model_versions.stop)
    serve_when_ready(handle, lambda: encoder.embed(["warm up"], max_length=8))
    return handle
