"""The feedback contract (shopsense.feedback.v1): an event as a storefront sends it, checked
field by field into what the feedback store keeps (``ValidEvent``), and a stored event back
as the message a shopper's export returns.

The rules are the ones the proto's comments state; each refusal is an InvalidArgument that
names the field, so the service can reject that event alone and store the rest.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal

from shopsense.feedback.v1 import feedback_service_pb2 as pb

from shared.contracts.common import set_timestamps, validate_shopper
from shared.data.currencies import CURRENCIES, NOT_CURRENCIES
from shared.errors import InvalidArgument
from shared.experiments.attribution import Attribution, AttributionSigner
from shared.storage.feedback import MAX_ID_CHARS, MICROS_PER_UNIT, FeedbackEvent, ValidEvent

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


def check_id(name: str, value: str, *, required: bool) -> None:
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


def checked_shopper_ids(user_id: str, session_id: str) -> tuple[str, str]:
    """The ids of a request about one shopper's stored data (export, erasure, forgetting):
    the gateway's rule, then each id's checks."""
    validate_shopper(user_id, session_id)
    check_id("user_id", user_id, required=False)
    check_id("session_id", session_id, required=False)
    return user_id, session_id


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
    backfill: bool = False,
) -> ValidEvent:
    """The event in storage terms, or InvalidArgument naming the first offending field.

    The rules are the ones the proto's comments state; ``now`` (UTC) bounds the timestamp and
    becomes ``received_at``. ``backfill`` (a store's past orders imported) lifts the
    window's limit on the timestamp's age and refuses attribution tokens. ``verified_tokens`` remembers tokens already verified in this call:
    a page's impressions and clicks share one token, and verifying it (HMAC + JSON) is most of
    the per-event cost.
    """
    check_id("event_id", event.event_id, required=True)

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
    if occurred_at < now - window and not backfill:
        raise InvalidArgument(
            f"timestamp: more than {_duration(window)} in the past (the attribution window)"
        )

    validate_shopper(event.user_id, event.session_id)  # the gateway's rule
    check_id("user_id", event.user_id, required=False)
    check_id("session_id", event.session_id, required=False)
    check_id("product_id", event.product_id, required=True)

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

    request_id = arm = experiment = team = query = explored = placement = None
    if event.attribution_token and backfill:
        raise InvalidArgument(
            "attribution_token: not allowed in a backfill (imported history has none)"
        )
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
        placement = attribution.placement or None

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
        placement=placement,
    )


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
    set_timestamps(message, timestamp=row.occurred_at)
    return message
