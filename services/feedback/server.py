"""FeedbackService: validates each event of a batch, stores the valid ones, replies after commit.

Events name products the catalog holds (asked of retrieval, see ``catalog.CatalogCheck``);
when retrieval cannot be reached they are stored unchecked rather than refused.

Per-event problems never fail the call: the event is REJECTED with a message naming the field
and the rest of the batch is stored. Only problems with the batch itself (empty, too large)
fail the call, and then nothing is stored.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal

import grpc
import sqlalchemy.exc
import structlog
from shopsense.feedback.v1 import feedback_service_pb2 as pb
from shopsense.feedback.v1 import feedback_service_pb2_grpc as pb_grpc

from services.feedback.catalog import CatalogCheck
from shared.contracts.common import validate_shopper
from shared.data.currencies import CURRENCIES, NOT_CURRENCIES
from shared.errors import InvalidArgument, ResourceExhausted, Unavailable
from shared.experiments.attribution import Attribution, AttributionSigner
from shared.rpc.server import ServerHandle, build_service
from shared.settings import DEV_TOKEN_SECRET, FeedbackSettings
from shared.storage.database import create_db_engine
from shared.storage.feedback import (
    MAX_ID_CHARS,
    MICROS_PER_UNIT,
    FeedbackEvent,
    FeedbackStore,
    ValidEvent,
)

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["FeedbackService"].full_name
MAX_EVENTS_PER_CALL = 10_000
MAX_FUTURE_SKEW = timedelta(minutes=5)
DEFAULT_WINDOW = timedelta(days=7)
# Larger amounts would overflow the 64-bit micros column; no real purchase comes close.
MAX_AMOUNT = Decimal(1_000_000_000_000)

_TYPE_NAMES: dict[int, str] = {
    pb.EVENT_TYPE_IMPRESSION: "impression",
    pb.EVENT_TYPE_CLICK: "click",
    pb.EVENT_TYPE_ADD_TO_CART: "add_to_cart",
    pb.EVENT_TYPE_PURCHASE: "purchase",
}
# Timestamps datetime can represent (0001-01-01 .. 9999-12-31 UTC), in Unix seconds.
_MIN_SECONDS = int(
    (datetime.min.replace(tzinfo=UTC) - datetime(1970, 1, 1, tzinfo=UTC)).total_seconds()
)
_MAX_SECONDS = int(
    (datetime.max.replace(tzinfo=UTC) - datetime(1970, 1, 1, tzinfo=UTC)).total_seconds()
)

# The shape, checked first so that a lower-case code is told so; then the codes themselves.
_CURRENCY = re.compile("[A-Z]{3}")

Clock = Callable[[], datetime]
_log = structlog.get_logger("shopsense.feedback")


def utc_now() -> datetime:
    """The default clock: aware UTC, so timestamps compare without guessing a zone."""
    return datetime.now(UTC)


def _check_text(name: str, value: str, *, required: bool) -> None:
    if required and not value:
        raise InvalidArgument(f"{name}: required")
    if required and not value.strip():
        # An id of spaces names nothing (and no catalog product); the client lost the real one.
        raise InvalidArgument(f"{name}: must not be whitespace only")
    if len(value) > MAX_ID_CHARS:
        raise InvalidArgument(f"{name}: longer than {MAX_ID_CHARS} characters")
    if "\x00" in value:
        # PostgreSQL text cannot hold NUL; one such value would fail the whole batch.
        raise InvalidArgument(f"{name}: must not contain NUL characters")


def _duration(value: timedelta) -> str:
    seconds = value.total_seconds()
    if seconds % 86400 == 0:
        return f"{int(seconds // 86400)} days"
    return f"{seconds:g} s"


def _amount_micros(amount: float) -> int:
    if not math.isfinite(amount):
        raise InvalidArgument("amount: must be a finite number")
    # str() gives the shortest decimal that round-trips, so 129.99 stays 129.99.
    exact = Decimal(str(amount))
    if exact <= 0:
        raise InvalidArgument("amount: must be > 0")
    if exact > MAX_AMOUNT:
        raise InvalidArgument(f"amount: larger than {MAX_AMOUNT}")
    micros = int((exact * MICROS_PER_UNIT).to_integral_value(rounding=ROUND_HALF_EVEN))
    if micros == 0:
        raise InvalidArgument("amount: must be at least 0.000001")
    return micros


def validate_event(
    event: pb.Event,
    signer: AttributionSigner,
    now: datetime,
    verified_tokens: dict[str, Attribution] | None = None,
    window: timedelta = DEFAULT_WINDOW,
) -> ValidEvent:
    """The event in storage terms, or InvalidArgument naming the first offending field.

    The rules are the ones the proto's comments state; ``now`` (UTC) bounds the timestamp and
    becomes ``received_at``. ``verified_tokens`` remembers tokens already verified in this call:
    a page's impressions and clicks share one token, and verifying it (HMAC + JSON) is most of
    the per-event cost.
    """
    _check_text("event_id", event.event_id, required=True)

    if event.type == pb.EVENT_TYPE_UNSPECIFIED:
        raise InvalidArgument("type: required (not EVENT_TYPE_UNSPECIFIED)")
    type_name = _TYPE_NAMES.get(event.type)
    if type_name is None:
        # proto3 enums are open: a newer client's value arrives as a bare number.
        raise InvalidArgument(f"type: unknown event type {event.type}")

    if not event.HasField("timestamp"):
        raise InvalidArgument("timestamp: required")
    ts = event.timestamp
    if not (_MIN_SECONDS <= ts.seconds <= _MAX_SECONDS) or not (0 <= ts.nanos < 1_000_000_000):
        raise InvalidArgument("timestamp: out of range")
    occurred_at = ts.ToDatetime(tzinfo=UTC)
    if occurred_at > now + MAX_FUTURE_SKEW:
        raise InvalidArgument("timestamp: more than 5 minutes in the future")
    if occurred_at < now - window:
        raise InvalidArgument(
            f"timestamp: more than {_duration(window)} in the past (the attribution window)"
        )

    validate_shopper(event.user_id, event.session_id)  # the gateway's rule
    _check_text("user_id", event.user_id, required=False)
    _check_text("session_id", event.session_id, required=False)
    _check_text("product_id", event.product_id, required=True)

    if event.type == pb.EVENT_TYPE_IMPRESSION and event.position < 1:
        raise InvalidArgument("position: required (>= 1) for impressions")
    if event.position < 0:
        raise InvalidArgument("position: must be >= 0")

    amount_micros = _amount_micros(event.amount) if event.amount != 0.0 else None
    if event.type == pb.EVENT_TYPE_PURCHASE and amount_micros is None:
        raise InvalidArgument("amount: required (> 0) for purchases")
    if event.currency:
        currency = event.currency
        if not _CURRENCY.fullmatch(currency):
            raise InvalidArgument(
                f"currency: {currency!r} is not a 3-letter upper-case ISO 4217 code"
            )
        if currency in NOT_CURRENCIES:
            raise InvalidArgument(
                f"currency: {currency!r} is an ISO 4217 code but not a currency (a precious "
                "metal, fund, unit of account or testing code)"
            )
        if currency not in CURRENCIES:
            raise InvalidArgument(f"currency: {currency!r} is not an ISO 4217 currency code")
    elif event.type == pb.EVENT_TYPE_PURCHASE:
        raise InvalidArgument("currency: required for purchases")

    if event.quantity < 0:
        raise InvalidArgument("quantity: must be >= 0")

    request_id = arm = experiment = team = query = explored = None
    if event.attribution_token:
        token = event.attribution_token
        attribution = verified_tokens.get(token) if verified_tokens is not None else None
        if attribution is None:
            attribution = signer.decode(token, "attribution_token")
            if verified_tokens is not None:
                verified_tokens[token] = attribution
        issued = datetime.fromtimestamp(attribution.issued_at, UTC)
        if issued > occurred_at + MAX_FUTURE_SKEW:
            raise InvalidArgument("attribution_token: issued after the event it is attached to")
        if occurred_at - issued > window:
            raise InvalidArgument(
                f"attribution_token: expired (issued more than {_duration(window)} before "
                "the event)"
            )
        request_id, arm = attribution.request_id, attribution.arm
        experiment = attribution.experiment or None
        team = attribution.team_at(event.position) or None if event.position else None
        query = attribution.query or None
        explored = attribution.explored or None

    return ValidEvent(
        event_id=event.event_id,
        type=type_name,
        occurred_at=occurred_at,
        received_at=now,
        product_id=event.product_id,
        user_id=event.user_id or None,
        session_id=event.session_id or None,
        attribution_token=event.attribution_token or None,
        request_id=request_id,
        arm=arm,
        experiment=experiment,
        team=team,
        query=query,
        explored=explored,
        position=event.position or None,
        amount_micros=amount_micros,
        currency=event.currency or None,
        quantity=event.quantity or 1,
    )


class FeedbackServicer(pb_grpc.FeedbackServiceServicer):
    """The RPCs over a store, a token signer and a clock (all passed in, so tests fake them)."""

    def __init__(
        self,
        store: FeedbackStore,
        signer: AttributionSigner,
        clock: Clock = utc_now,
        window: timedelta = DEFAULT_WINDOW,
        catalog: CatalogCheck | None = None,
    ) -> None:
        self._store = store
        self._signer = signer
        self._clock = clock
        self._window = window
        self._catalog = catalog

    def _record(self, events, field: str = "events") -> tuple[list[pb.EventResult], int, int]:
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
                checked = validate_event(event, self._signer, now, verified_tokens, self._window)
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
            _log.warning("database_unavailable", error=str(exc.orig or exc))
            raise Unavailable("database: unavailable, nothing was stored; retry") from exc
        for position, is_new in zip(valid_positions, stored, strict=True):
            results[position].status = (
                pb.EVENT_STATUS_ACCEPTED if is_new else pb.EVENT_STATUS_DUPLICATE
            )
        accepted = sum(stored)
        return results, accepted, len(stored) - accepted

    def RecordEvents(
        self, request: pb.RecordEventsRequest, context: grpc.ServicerContext | None
    ) -> pb.RecordEventsResponse:
        results, accepted, duplicates = self._record(request.events)
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
        validate_shopper(request.user_id, request.session_id)  # the gateway's rule
        _check_text("user_id", request.user_id, required=False)
        _check_text("session_id", request.session_id, required=False)
        return request.user_id, request.session_id

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
        return pb.DeleteShopperEventsResponse(deleted=deleted)


_TYPE_ENUMS = {name: value for value, name in _TYPE_NAMES.items()}


def event_message(row: FeedbackEvent) -> pb.Event:
    """A stored event as the client sent it (amounts back in currency units)."""
    message = pb.Event(
        event_id=row.event_id,
        type=_TYPE_ENUMS[row.type],
        user_id=row.user_id or "",
        session_id=row.session_id or "",
        product_id=row.product_id,
        attribution_token=row.attribution_token or "",
        position=row.position or 0,
        amount=float(row.amount) if row.amount is not None else 0.0,
        currency=row.currency or "",
        quantity=row.quantity,
    )
    message.timestamp.FromDatetime(row.occurred_at)
    return message


def create_server(settings: FeedbackSettings, store: FeedbackStore | None = None) -> ServerHandle:
    """Start the feedback server on ``settings.listen`` (port 0 picks a free one).

    Builds the store from ``settings.feedback_db_url`` unless one is given, and reports
    SERVING only once the database answers.
    """
    if settings.token_secret == DEV_TOKEN_SECRET:
        _log.warning("dev_token_secret", hint="set SHOPSENSE_TOKEN_SECRET outside development")
    owns_engine = store is None
    if store is None:
        store = FeedbackStore(create_db_engine(settings.feedback_db_url))
    servicer = FeedbackServicer(
        store,
        AttributionSigner(settings.token_secret),
        window=timedelta(seconds=settings.attribution_window_s),
        catalog=CatalogCheck(settings.retrieval_target),
    )
    handle = build_service(
        settings,
        lambda server: pb_grpc.add_FeedbackServiceServicer_to_server(servicer, server),
        [SERVICE_NAME],
    )
    if owns_engine:
        handle.on_stop(store.engine.dispose)
    try:
        store.ping()
    except Exception:
        handle.stop(0)
        raise
    handle.mark_serving()
    return handle
