"""The feedback service's per-event rules, one by one, against a fixed clock."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from shopsense.feedback.v1 import feedback_service_pb2 as pb

from services.feedback.server import FeedbackServicer
from shared.contracts.feedback import validate_event
from shared.errors import InvalidArgument, ResourceExhausted
from shared.experiments.attribution import Attribution, AttributionSigner
from shared.storage.feedback import ValidEvent

pytestmark = pytest.mark.unit

NOW = datetime(2025, 3, 1, 12, 0, 0, tzinfo=UTC)
SIGNER = AttributionSigner("unit-test-secret")


def _ts(moment: datetime) -> Timestamp:
    ts = Timestamp()
    ts.FromDatetime(moment)
    return ts


def make_event(**overrides: object) -> pb.Event:
    fields: dict[str, object] = {
        "event_id": "ev-1",
        "type": pb.EVENT_TYPE_CLICK,
        "timestamp": _ts(NOW - timedelta(seconds=30)),
        "user_id": "u-1",
        "product_id": "p-1",
    }
    fields.update(overrides)
    return pb.Event(**fields)  # type: ignore[arg-type]


def rejection(event: pb.Event) -> str:
    with pytest.raises(InvalidArgument) as info:
        validate_event(event, SIGNER, NOW)
    return info.value.message


def test_a_minimal_click_is_valid_and_normalised() -> None:
    valid = validate_event(make_event(), SIGNER, NOW)
    assert valid.event_id == "ev-1"
    assert valid.type == "click"
    assert valid.occurred_at == NOW - timedelta(seconds=30)
    assert valid.received_at == NOW
    assert valid.session_id is None
    assert valid.position is None
    assert valid.quantity == 1  # 0 means 1
    assert valid.request_id is None and valid.arm is None


@pytest.mark.parametrize("event_id", ["x", "e" * 128])
def test_event_id_of_1_to_128_characters_is_valid(event_id: str) -> None:
    assert validate_event(make_event(event_id=event_id), SIGNER, NOW).event_id == event_id


def test_event_id_is_required() -> None:
    assert rejection(make_event(event_id="")) == "event_id: required"


def test_event_id_longer_than_128_is_rejected() -> None:
    assert rejection(make_event(event_id="e" * 129)).startswith("event_id: longer than 128")


def test_nul_characters_are_rejected() -> None:
    assert rejection(make_event(product_id="p\x00")).startswith("product_id: must not contain NUL")


def test_type_unspecified_is_rejected() -> None:
    assert rejection(make_event(type=pb.EVENT_TYPE_UNSPECIFIED)).startswith("type: required")


def test_unknown_type_number_is_rejected() -> None:
    # What a newer client's enum value looks like after parsing: an open enum keeps the number.
    event = pb.Event.FromString(make_event(type=9).SerializeToString())  # type: ignore[arg-type]
    assert event.type == 9
    assert rejection(event) == "type: unknown event type 9"


def test_timestamp_is_required() -> None:
    event = make_event()
    event.ClearField("timestamp")
    assert rejection(event) == "timestamp: required"


def test_timestamp_up_to_5_minutes_ahead_is_valid() -> None:
    event = make_event(timestamp=_ts(NOW + timedelta(minutes=5)))
    assert validate_event(event, SIGNER, NOW).occurred_at == NOW + timedelta(minutes=5)


def test_timestamp_more_than_5_minutes_ahead_is_rejected() -> None:
    event = make_event(timestamp=_ts(NOW + timedelta(minutes=5, seconds=1)))
    assert rejection(event) == "timestamp: more than 5 minutes in the future"


def test_timestamp_out_of_datetime_range_is_rejected() -> None:
    event = make_event(timestamp=Timestamp(seconds=-(10**12)))
    assert rejection(event) == "timestamp: out of range"


def test_user_or_session_is_required() -> None:
    assert rejection(make_event(user_id="")).startswith("user_id: at least one of")
    valid = validate_event(make_event(user_id="", session_id="s-1"), SIGNER, NOW)
    assert valid.user_id is None and valid.session_id == "s-1"


@pytest.mark.parametrize("blank", [" ", "\t\n", "\u3000"])
def test_whitespace_only_event_id_and_product_id_are_rejected(blank: str) -> None:
    assert rejection(make_event(event_id=blank)).startswith("event_id: must not be whitespace")
    assert rejection(make_event(product_id=blank)).startswith("product_id: must not be whitespace")


@pytest.mark.parametrize(
    ("user_id", "session_id"), [(" ", ""), ("", "\t"), ("  ", "\n "), ("\u3000", "")]
)
def test_whitespace_only_user_and_session_count_as_absent(user_id: str, session_id: str) -> None:
    # As in the gateway: no shopper is named, so the pair is missing.
    event = make_event(user_id=user_id, session_id=session_id)
    assert rejection(event).startswith("user_id: at least one of user_id and session_id")


def test_a_given_user_or_session_id_must_not_be_whitespace_only() -> None:
    # One id names the shopper; a blank other one is a client bug, not "absent".
    assert rejection(make_event(user_id=" ", session_id="s-1")).startswith(
        "user_id: must not be whitespace"
    )
    assert rejection(make_event(user_id="u-1", session_id=" ")).startswith(
        "session_id: must not be whitespace"
    )


def test_product_id_is_required_and_at_most_128() -> None:
    assert rejection(make_event(product_id="")) == "product_id: required"
    assert rejection(make_event(product_id="p" * 129)).startswith("product_id: longer than 128")


def test_impression_needs_position_of_at_least_1() -> None:
    assert rejection(make_event(type=pb.EVENT_TYPE_IMPRESSION)).startswith("position: required")
    valid = validate_event(make_event(type=pb.EVENT_TYPE_IMPRESSION, position=1), SIGNER, NOW)
    assert valid.type == "impression" and valid.position == 1


def test_negative_position_is_rejected() -> None:
    assert rejection(make_event(position=-1)) == "position: must be >= 0"


def test_purchase_needs_positive_amount_and_currency() -> None:
    purchase = {"type": pb.EVENT_TYPE_PURCHASE, "amount": 129.99, "currency": "USD"}
    valid = validate_event(make_event(**purchase), SIGNER, NOW)
    assert valid.amount_micros == 129_990_000  # exact: no float rounding
    assert valid.currency == "USD"
    assert rejection(make_event(**{**purchase, "amount": 0.0})).startswith("amount: required")
    assert rejection(make_event(**{**purchase, "amount": -5.0})) == "amount: must be > 0"
    assert rejection(make_event(**{**purchase, "amount": float("nan")})).startswith("amount:")
    assert rejection(make_event(**{**purchase, "amount": float("inf")})).startswith("amount:")
    assert rejection(make_event(**{**purchase, "currency": ""})).startswith("currency: required")


@pytest.mark.parametrize("currency", ["usd", "US", "USDD", "U$D", "ÜSD"])
def test_currency_must_be_3_upper_case_letters(currency: str) -> None:
    event = make_event(type=pb.EVENT_TYPE_PURCHASE, amount=10.0, currency=currency)
    assert rejection(event).startswith("currency:")


def _purchase(currency: str) -> pb.Event:
    return make_event(type=pb.EVENT_TYPE_PURCHASE, amount=10.0, currency=currency)


@pytest.mark.parametrize("currency", ["NUL", "XYZ", "AAA", "ABC", "QQQ", "EEK", "HRK", "VEF"])
def test_currency_must_be_an_iso_4217_code(currency: str) -> None:
    # Shape alone let these through; EEK, HRK and VEF were real once, replaced since.
    assert rejection(_purchase(currency)) == (
        f"currency: {currency!r} is not an ISO 4217 currency code"
    )


@pytest.mark.parametrize("code", ["XXX", "XTS", "XAU", "XAG", "XDR", "XBA", "BOV", "USN", "CLF"])
def test_iso_codes_that_are_no_currency_are_rejected_naming_what_they_are(code: str) -> None:
    # No currency, testing, precious metals, units of account and funds: no one pays in them.
    assert rejection(_purchase(code)).startswith(f"currency: {code!r} is an ISO 4217 code but ")


@pytest.mark.parametrize(
    "currency", ["USD", "EUR", "JPY", "GBP", "CHF", "XAF", "XOF", "XCD", "XPF", "ZWG", "VES"]
)
def test_real_currencies_are_valid_x_codes_included(currency: str) -> None:
    assert validate_event(_purchase(currency), SIGNER, NOW).currency == currency


def test_quantity_must_not_be_negative() -> None:
    assert rejection(make_event(quantity=-1)) == "quantity: must be >= 0"
    assert validate_event(make_event(quantity=3), SIGNER, NOW).quantity == 3


ISSUED = int((NOW - timedelta(minutes=10)).timestamp())


def test_attribution_token_is_decoded() -> None:
    token = SIGNER.encode(Attribution(request_id="req-7", arm="treatment", issued_at=ISSUED))
    valid = validate_event(make_event(attribution_token=token), SIGNER, NOW)
    assert (valid.attribution_token, valid.request_id, valid.arm) == (token, "req-7", "treatment")
    assert valid.experiment is None and valid.team is None
    assert valid.query is None and valid.explored is None


def test_the_token_carries_the_query_and_the_exploration_flag_to_storage() -> None:
    query = "canapé d'angle en cuir " + "é" * 489  # 512 characters, two bytes each mostly
    token = SIGNER.encode(
        Attribution("req-9", "control", {}, ISSUED, query=query, explored=True, teams="a" * 100)
    )
    assert len(token) <= 4096
    valid = validate_event(make_event(attribution_token=token), SIGNER, NOW)
    assert (valid.query, valid.explored) == (query, True)


def test_the_token_names_the_experiment_and_the_interleaved_team_of_the_position() -> None:
    token = SIGNER.encode(
        Attribution("req-8", "interleaved", {}, ISSUED, "ce-2-vs-1", "abba", offset=20)
    )
    valid = validate_event(make_event(attribution_token=token, position=23), SIGNER, NOW)
    assert (valid.experiment, valid.team) == ("ce-2-vs-1", "b")
    unplaced = validate_event(make_event(attribution_token=token), SIGNER, NOW)
    assert (unplaced.experiment, unplaced.team) == ("ce-2-vs-1", None)


@pytest.mark.parametrize(
    ("issued", "occurred", "message"),
    [
        (NOW - timedelta(days=8), NOW - timedelta(minutes=1), "attribution_token: expired"),
        (NOW, NOW - timedelta(hours=1), "attribution_token: issued after the event"),
        (NOW - timedelta(days=9), NOW - timedelta(days=8), "timestamp: more than 7 days in"),
    ],
)
def test_expired_tokens_and_stale_events_are_rejected(
    issued: datetime, occurred: datetime, message: str
) -> None:
    token = SIGNER.encode(Attribution("req-9", "control", {}, int(issued.timestamp())))
    event = make_event(attribution_token=token, timestamp=_ts(occurred))
    assert rejection(event).startswith(message)
    if "after" not in message:  # a store with a longer window takes the late event
        assert validate_event(event, SIGNER, NOW, window=timedelta(days=30)).request_id == "req-9"


def test_forged_token_is_rejected_with_the_signers_message() -> None:
    forged = AttributionSigner("another-secret").encode(Attribution("req-7", "treatment"))
    assert rejection(make_event(attribution_token=forged)).startswith(
        "attribution_token: signature mismatch"
    )


def test_altered_token_is_rejected() -> None:
    token = SIGNER.encode(Attribution(request_id="req-7", arm="control", issued_at=ISSUED))
    head, payload, signature = token.rsplit(".", 2)
    flipped = payload[:-1] + ("A" if payload[-1] != "A" else "B")
    altered = f"{head}.{flipped}.{signature}"
    assert rejection(make_event(attribution_token=altered)).startswith("attribution_token:")


def test_malformed_token_is_rejected() -> None:
    assert rejection(make_event(attribution_token="not-a-token")).startswith(
        "attribution_token: malformed"
    )


class FakeStore:
    """Keeps ids in a set; the real store's semantics without a database."""

    def __init__(self) -> None:
        self.ids: set[str] = set()
        self.calls = 0

    def record(self, events: Sequence[ValidEvent]) -> list[bool]:
        self.calls += 1
        result = []
        for event in events:
            result.append(event.event_id not in self.ids)
            self.ids.add(event.event_id)
        return result


def _servicer(store: FakeStore) -> FeedbackServicer:
    return FeedbackServicer(store, SIGNER, clock=lambda: NOW)  # type: ignore[arg-type]


def test_empty_batch_is_invalid_argument() -> None:
    with pytest.raises(InvalidArgument, match=r"^events: at least one event is required$"):
        _servicer(FakeStore()).RecordEvents(pb.RecordEventsRequest(), None)


def test_batch_over_the_limit_is_resource_exhausted_and_stores_nothing() -> None:
    store = FakeStore()
    request = pb.RecordEventsRequest(events=[make_event(event_id=f"e{i}") for i in range(10_001)])
    with pytest.raises(ResourceExhausted) as info:
        _servicer(store).RecordEvents(request, None)
    assert info.value.message == (
        "events: 10001 events in one call exceeds the limit of 10000; "
        "nothing was stored, split the batch"
    )
    assert store.calls == 0


def test_results_follow_the_order_sent_with_counts() -> None:
    store = FakeStore()
    store.ids.add("old")
    request = pb.RecordEventsRequest(
        events=[
            make_event(event_id="new"),
            make_event(event_id="bad", product_id=""),
            make_event(event_id="old"),
            make_event(event_id="new"),
        ]
    )
    response = _servicer(store).RecordEvents(request, None)
    assert [(r.event_id, r.status, r.error) for r in response.results] == [
        ("new", pb.EVENT_STATUS_ACCEPTED, ""),
        ("bad", pb.EVENT_STATUS_REJECTED, "product_id: required"),
        ("old", pb.EVENT_STATUS_DUPLICATE, ""),
        ("new", pb.EVENT_STATUS_DUPLICATE, ""),
    ]
    assert (response.accepted, response.duplicates, response.rejected) == (1, 2, 1)


def test_a_backfill_takes_old_timestamps_but_no_tokens() -> None:
    old = make_event(timestamp=_ts(datetime(2010, 12, 1, 8, 26, tzinfo=UTC)))
    assert "in the past" in rejection(old)
    valid = validate_event(old, SIGNER, NOW, backfill=True)
    assert valid.occurred_at == datetime(2010, 12, 1, 8, 26, tzinfo=UTC)
    token = SIGNER.encode(
        Attribution(request_id="r", arm="control", issued_at=int(NOW.timestamp()))
    )
    with pytest.raises(InvalidArgument, match=r"^attribution_token: not allowed in a backfill"):
        validate_event(make_event(attribution_token=token), SIGNER, NOW, backfill=True)
    ahead = make_event(timestamp=_ts(NOW + timedelta(hours=1)))
    with pytest.raises(InvalidArgument, match=r"^timestamp: more than 5 minutes in the future"):
        validate_event(ahead, SIGNER, NOW, backfill=True)


def test_a_recommendation_token_stores_its_placement() -> None:
    token = SIGNER.encode(
        Attribution(
            request_id="r-9",
            arm="control",
            issued_at=int(NOW.timestamp()) - 60,
            placement="frequently_bought_together",
        )
    )
    valid = validate_event(make_event(attribution_token=token), SIGNER, NOW)
    assert valid.placement == "frequently_bought_together" and valid.request_id == "r-9"
    search = SIGNER.encode(
        Attribution(request_id="r-1", arm="control", issued_at=int(NOW.timestamp()) - 60)
    )
    assert validate_event(make_event(attribution_token=search), SIGNER, NOW).placement is None
