"""FeedbackService: validates each event of a batch, stores the valid ones, replies after commit.

Events name products the catalog holds (asked of retrieval, see ``catalog.CatalogCheck``);
when retrieval cannot be reached they are stored unchecked rather than refused.

Per-event problems never fail the call: the event is REJECTED with a message naming the field
and the rest of the batch is stored. Only problems with the batch itself (empty, too large)
fail the call, and then nothing is stored.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import grpc
import sqlalchemy.exc
import structlog
from shopsense.feedback.v1 import feedback_service_pb2 as pb
from shopsense.feedback.v1 import feedback_service_pb2_grpc as pb_grpc
from shopsense.recommend.v1 import recommend_service_pb2, recommend_service_pb2_grpc

from services.feedback.catalog import CatalogCheck
from shared.contracts.feedback import (
    DEFAULT_WINDOW,
    checked_shopper_ids,
    event_message,
    validate_event,
)
from shared.errors import InvalidArgument, ResourceExhausted, Unavailable
from shared.experiments.attribution import Attribution, AttributionSigner, token_keys
from shared.rpc import metrics
from shared.rpc.clients import open_channel
from shared.rpc.privacy import bind_shopper
from shared.rpc.server import ServerHandle, build_service, check_production
from shared.settings import FeedbackSettings
from shared.storage.database import create_db_engine
from shared.storage.feedback import FeedbackStore, ValidEvent

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["FeedbackService"].full_name
MAX_EVENTS_PER_CALL = 10_000
Clock = Callable[[], datetime]
_log = structlog.get_logger("shopsense.feedback")
_EVENTS = metrics.counter(
    "feedback",
    "shopsense_feedback_events",
    "Feedback events by outcome: accepted (stored), duplicate (its event id was stored "
    "before), rejected (invalid; the rest of its batch is stored).",
    ("outcome",),
)
_REJECTIONS = metrics.counter(
    "feedback",
    "shopsense_feedback_rejections",
    "Rejected feedback events by the field the rejection names (reason).",
    ("reason",),
)
for _outcome in ("accepted", "duplicate", "rejected"):
    _EVENTS.labels(_outcome)
# A rejection's reason: the field its message starts with ("product_id: ... is not in the
# catalog" -> product_id); a bounded set, unlike the messages.
_REASON = re.compile(r"^([a-z_]+)")


def _count(results: list[pb.EventResult], accepted: int, duplicates: int) -> None:
    """Count a stored batch's events by outcome, and its rejections by reason."""
    rejected = [r for r in results if r.status == pb.EVENT_STATUS_REJECTED]
    _EVENTS.labels("accepted").inc(accepted)
    _EVENTS.labels("duplicate").inc(duplicates)
    _EVENTS.labels("rejected").inc(len(rejected))
    for result in rejected:
        found = _REASON.match(result.error)
        _REJECTIONS.labels(found.group(1) if found else "other").inc()


def utc_now() -> datetime:
    """The default clock: aware UTC, so timestamps compare without guessing a zone."""
    return datetime.now(UTC)


class FeedbackServicer(pb_grpc.FeedbackServiceServicer):
    """The RPCs over a store, a token signer and a clock (all passed in, so tests fake them)."""

    def __init__(
        self,
        store: FeedbackStore,
        signer: AttributionSigner,
        clock: Clock = utc_now,
        window: timedelta = DEFAULT_WINDOW,
        catalog: CatalogCheck | None = None,
        forget: Callable[[str, str], None] | None = None,
    ) -> None:
        self._store = store
        self._forget = forget
        self._signer = signer
        self._clock = clock
        self._window = window
        self._catalog = catalog

    def _record(
        self, events, field: str = "events", backfill: bool = False
    ) -> tuple[list[pb.EventResult], int, int]:
        """Check and store a batch; per-event results, accepted and duplicates.

        Returns after the commit. A problem with the batch itself (empty, too large, the
        database down) raises, and then nothing is stored.
        """
        count = len(events)
        if count == 0:
            raise InvalidArgument(f"{field}: at least one event is required")
        if count > MAX_EVENTS_PER_CALL:
            raise ResourceExhausted(
                f"{field}: {count} events in one call exceeds the limit of "
                f"{MAX_EVENTS_PER_CALL}; nothing was stored, split the batch"
            )
        now = self._clock()
        unknown = (
            self._catalog.unknown({e.product_id for e in events if e.product_id})
            if self._catalog is not None
            else None
        )
        results: list[pb.EventResult] = []
        valid: list[ValidEvent] = []
        valid_positions: list[int] = []
        verified_tokens: dict[str, Attribution] = {}  # this batch only: memory stays bounded
        for position, event in enumerate(events):
            try:
                checked = validate_event(
                    event, self._signer, now, verified_tokens, self._window, backfill
                )
                if unknown and checked.product_id in unknown:
                    raise InvalidArgument(
                        f"product_id: {checked.product_id!r} is not in the catalog"
                    )
                valid.append(checked)
                valid_positions.append(position)
                results.append(pb.EventResult(event_id=event.event_id))
            except InvalidArgument as exc:
                results.append(
                    pb.EventResult(
                        event_id=event.event_id,
                        status=pb.EVENT_STATUS_REJECTED,
                        error=exc.message,
                    )
                )
        try:
            stored = self._store.record(valid)
        except sqlalchemy.exc.OperationalError as exc:
            # Nothing was committed; the call is idempotent, so the client can retry as is.
            # The driver's own message only: SQLAlchemy's text would add the statement's
            # parameters, the shoppers' ids among them.
            _log.warning("database_unavailable", error=str(exc.orig or type(exc).__name__))
            raise Unavailable("database: unavailable, nothing was stored; retry") from exc
        for position, is_new in zip(valid_positions, stored, strict=True):
            results[position].status = (
                pb.EVENT_STATUS_ACCEPTED if is_new else pb.EVENT_STATUS_DUPLICATE
            )
        accepted = sum(stored)
        _count(results, accepted, len(stored) - accepted)
        return results, accepted, len(stored) - accepted

    def RecordEvents(
        self, request: pb.RecordEventsRequest, context: grpc.ServicerContext | None
    ) -> pb.RecordEventsResponse:
        results, accepted, duplicates = self._record(request.events, backfill=request.backfill)
        rejected = len(results) - accepted - duplicates
        _log.info("events_recorded", accepted=accepted, duplicates=duplicates, rejected=rejected)
        return pb.RecordEventsResponse(
            results=results, accepted=accepted, duplicates=duplicates, rejected=rejected
        )

    def StreamEvents(
        self, requests: Iterator[pb.StreamEventsRequest], context: grpc.ServicerContext
    ) -> Iterator[pb.StreamEventsResponse]:
        totals = [0, 0, 0]
        for request in requests:
            field = f"events (chunk {request.sequence})"
            results, accepted, duplicates = self._record(request.events, field)
            rejections = [r for r in results if r.status == pb.EVENT_STATUS_REJECTED]
            for index, value in enumerate((accepted, duplicates, len(rejections))):
                totals[index] += value
            yield pb.StreamEventsResponse(
                sequence=request.sequence,
                accepted=accepted,
                duplicates=duplicates,
                rejected=len(rejections),
                rejections=rejections,
            )
        _log.info(
            "event_stream_ended", accepted=totals[0], duplicates=totals[1], rejected=totals[2]
        )

    @staticmethod
    def _shopper(request: pb.ShopperRequest) -> tuple[str, str]:
        bind_shopper(request.user_id, request.session_id)
        return checked_shopper_ids(request.user_id, request.session_id)

    def ExportShopperEvents(
        self, request: pb.ShopperRequest, context: grpc.ServicerContext
    ) -> Iterator[pb.Event]:
        user_id, session_id = self._shopper(request)
        rows = self._store.shopper_events(user_id, session_id)
        _log.info("shopper_exported", events=len(rows))
        for row in rows:
            yield event_message(row)

    def DeleteShopperEvents(
        self, request: pb.ShopperRequest, context: grpc.ServicerContext
    ) -> pb.DeleteShopperEventsResponse:
        user_id, session_id = self._shopper(request)
        deleted = self._store.delete_shopper(user_id, session_id)
        _log.info("shopper_deleted", events=deleted)
        if self._forget is not None:
            # The recommender's state is derived from these events: it goes too. When the
            # recommender is down its state is gone anyway (rebuilt from the store on start).
            self._forget(user_id, session_id)
        return pb.DeleteShopperEventsResponse(deleted=deleted)


class RecommenderForget:
    """Tells the recommendation service at ``target`` to drop a shopper's state."""

    def __init__(self, target: str, timeout_s: float = 5.0) -> None:
        self._channel = open_channel(target)
        self._stub = recommend_service_pb2_grpc.RecommendServiceStub(self._channel)
        self._timeout_s = timeout_s

    def __call__(self, user_id: str, session_id: str) -> None:
        try:
            self._stub.ForgetShopper(
                recommend_service_pb2.ForgetShopperRequest(user_id=user_id, session_id=session_id),
                timeout=self._timeout_s,
            )
        except grpc.RpcError as exc:
            _log.warning("recommender_not_told", code=exc.code().name, error=exc.details())

    def close(self) -> None:
        self._channel.close()


def create_server(settings: FeedbackSettings, store: FeedbackStore | None = None) -> ServerHandle:
    """Start the feedback server on ``settings.listen`` (port 0 picks a free one).

    Builds the store from ``settings.feedback_db_url`` unless one is given, and reports
    SERVING only once the database answers.
    """
    keys = token_keys(settings)
    check_production(settings, [SERVICE_NAME], databases=store is None)
    owns_engine = store is None
    if store is None:
        store = FeedbackStore(create_db_engine(settings.feedback_db_url))
    forget = RecommenderForget(settings.recommend_target)
    servicer = FeedbackServicer(
        store,
        AttributionSigner(keys),
        window=timedelta(seconds=settings.attribution_window_s),
        catalog=CatalogCheck(settings.retrieval_target),
        forget=forget,
    )
    handle = build_service(
        settings,
        lambda server: pb_grpc.add_FeedbackServiceServicer_to_server(servicer, server),
        [SERVICE_NAME],
    )
    handle.on_stop(forget.close)
    if owns_engine:
        handle.on_stop(store.engine.dispose)
    try:
        store.ping()
    except Exception:
        handle.stop(0)
        raise
    handle.mark_serving()
    return handle
