"""RecommendService (the recommendation service): answers placements from the recommender,
which a background loop keeps current: the catalog snapshot when retrieval's generation
changes, and the feedback store's new events.

The ``sequence`` source asks Triton's ``sequence_recommender`` (``sequence.py``): the
catalog's item embeddings per served version, the shopper vector per request.

The service is SERVING once the catalog is loaded and every stored event has been read
(the shopper states and aggregates are rebuilt from the store on start; nothing else is
kept). When the feedback store cannot be read later, the answers go on from what was
read, and the loop retries.
"""

from __future__ import annotations

import threading
from dataclasses import replace
from datetime import UTC, datetime

import grpc
import structlog
from shopsense.recommend.v1 import recommend_service_pb2 as pb
from shopsense.recommend.v1 import recommend_service_pb2_grpc as pb_grpc

from services.recommend.blend import BlendLearner
from services.recommend.sequence import SequenceModels
from services.recommend.sources import CatalogSource, FeedbackSource
from shared.contracts.common import set_timestamps
from shared.contracts.feedback import checked_shopper_ids
from shared.contracts.recommend import query_from_request, response_from_answer
from shared.models.triton_client import SequenceRecommenderClient
from shared.recommendation.recommender import Recommender, RecommenderOptions
from shared.rpc.interceptors import current_request_id
from shared.rpc.privacy import bind_shopper
from shared.rpc.server import ServerHandle, build_service, check_production, serve_when_ready
from shared.rpc.tls import TlsFiles
from shared.settings import RecommendSettings
from shared.storage.database import create_db_engine
from shared.storage.feedback import FeedbackStore

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["RecommendService"].full_name
_log = structlog.get_logger("shopsense.recommend")


class RecommendServicer(pb_grpc.RecommendServiceServicer):
    def __init__(
        self,
        recommender: Recommender,
        sequence: SequenceModels | None = None,
        blend: BlendLearner | None = None,
    ) -> None:
        self._recommender = recommender
        self._sequence = sequence
        self._blend = blend

    def Recommend(
        self, request: pb.RecommendRequest, context: grpc.ServicerContext
    ) -> pb.RecommendResponse:
        bind_shopper(request.user.user_id, request.user.session_id)
        query = query_from_request(request, self._recommender.attribute_names())
        degraded = False
        if self._sequence is not None:
            weights = self._recommender.weights(query.placement)
            query, degraded = self._sequence.prepare(query, weights)
        answer = self._recommender.recommend(query)
        if degraded:
            answer = replace(answer, sequence_degraded=True)
        response = response_from_answer(answer, request.placement)
        response.request_id = current_request_id()
        if self._blend is not None:
            self._blend.record(response.request_id, query.placement, response)
        return response

    def GetRecommenderStats(
        self, request: pb.GetRecommenderStatsRequest, context: grpc.ServicerContext
    ) -> pb.GetRecommenderStatsResponse:
        stats = self._recommender.stats()
        response = pb.GetRecommenderStatsResponse(
            products=int(stats["products"] or 0),
            events_read=int(stats["events_read"] or 0),
            shoppers=int(stats["shoppers"] or 0),
            pairs=int(stats["pairs"] or 0),
            catalog_generation=int(stats["catalog_generation"] or 0),
            blends=self._blend.messages() if self._blend is not None else [],
        )
        if stats["newest_event"] is not None:
            newest = datetime.fromtimestamp(float(stats["newest_event"]), UTC)
            set_timestamps(response, newest_event=newest)
        return response

    def ForgetShopper(
        self, request: pb.ForgetShopperRequest, context: grpc.ServicerContext
    ) -> pb.ForgetShopperResponse:
        bind_shopper(request.user_id, request.session_id)
        user_id, session_id = checked_shopper_ids(request.user_id, request.session_id)
        forgotten = self._recommender.forget(user_id, session_id)
        _log.info("shopper_forgotten", states=forgotten)
        return pb.ForgetShopperResponse(forgotten=forgotten)

    # -- personalised search: the shopper's profile vector (internal, for the gateway) ---
    def GetShopperProfile(
        self, request: pb.GetShopperProfileRequest, context: grpc.ServicerContext
    ) -> pb.GetShopperProfileResponse:
        """Computed from the shopper's state when asked (nothing stored: ForgetShopper
        removes it with the state); an unknown shopper's is empty."""
        from shared.contracts.common import embedding_to_proto

        bind_shopper(request.user_id, request.session_id)
        user_id, session_id = checked_shopper_ids(request.user_id, request.session_id)
        profile = self._recommender.profile(user_id, session_id)
        if profile.vector is None:
            return pb.GetShopperProfileResponse()
        return pb.GetShopperProfileResponse(
            profile=embedding_to_proto(profile.vector, profile.version),
            interactions=profile.steps,
        )


class Refresher:
    """Keeps the recommender current: catalog by generation, then new events."""

    def __init__(
        self,
        recommender: Recommender,
        catalog: CatalogSource,
        feedback: FeedbackSource,
        interval_s: float,
        sequence: SequenceModels | None = None,
    ) -> None:
        self._recommender = recommender
        self._sequence = sequence
        self._catalog = catalog
        self._feedback = feedback
        self._interval_s = interval_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.synced = threading.Event()

    def sync(self) -> None:
        """One round: reload the catalog if it changed, ingest what the store has new."""
        generation = self._catalog.generation()
        if generation != self._recommender.catalog_generation:
            snapshot = self._catalog.snapshot()
            self._recommender.set_catalog(
                snapshot.products, snapshot.vectors, snapshot.generation, snapshot.version
            )
            if self._sequence is not None:
                ids = [p.product_id for p in snapshot.products]
                self._sequence.set_catalog(ids, snapshot.vectors)
            _log.info("catalog_loaded", products=len(snapshot.products), generation=generation)
        taken = 0
        for page in self._feedback.read():
            taken += self._recommender.ingest(page)
        if taken:
            _log.info("events_read", events=taken, total=self._recommender.events_read)
        self.synced.set()
        if self._sequence is not None:
            # After the catalog and events: a Triton without a sequence model (or down)
            # only leaves the sequence source empty.
            self._sequence.sync()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="recommend-refresh", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.sync()
            except Exception as exc:  # a dependency down: answer from what is held, retry
                _log.warning("refresh_failed", error=str(exc))
            self._stop.wait(self._interval_s)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)


def create_server(settings: RecommendSettings) -> ServerHandle:
    """Start the recommendation server on ``settings.listen`` (port 0 picks a free one);
    SERVING once the catalog and the stored events are read."""
    check_production(settings, [SERVICE_NAME])
    recommender = Recommender(RecommenderOptions.from_settings(settings))
    store = FeedbackStore(create_db_engine(settings.feedback_db_url))
    catalog = CatalogSource(settings.retrieval_target)
    sequence = None
    if settings.triton_url:
        sequence = SequenceModels(
            SequenceRecommenderClient(
                settings.triton_url,
                timeout_s=settings.sequence_timeout_s,
                tls=TlsFiles.from_settings(settings),
            ),
            recommender,
            settings.sequence_events,
            settings.sequence_timeout_s,
        )
    refresher = Refresher(recommender, catalog, FeedbackSource(store), settings.refresh_s, sequence)
    blend = None
    if settings.blend_learning == "on":
        blend = BlendLearner(
            recommender, store.engine, settings.blend_interval_s, settings.blend_min_clicks
        )
    servicer = RecommendServicer(recommender, sequence, blend)
    try:
        handle = build_service(
            settings,
            lambda server: pb_grpc.add_RecommendServiceServicer_to_server(servicer, server),
            [SERVICE_NAME],
        )
    except BaseException:
        catalog.close()
        store.engine.dispose()
        raise
    handle.on_stop(refresher.stop)
    if blend is not None:
        handle.on_stop(blend.stop)
    handle.on_stop(store.engine.dispose)
    handle.on_stop(catalog.close)
    if sequence is not None:
        handle.on_stop(sequence.close)
    refresher.start()
    if blend is not None:
        blend.start()

    def ready() -> None:
        if not refresher.synced.wait(timeout=1.0):
            raise RuntimeError("catalog and feedback events not read yet")

    serve_when_ready(handle, ready, retry_s=0.2)
    return handle
