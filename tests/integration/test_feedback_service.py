"""The feedback service through a real channel, over a real SQLite file and PostgreSQL."""

from __future__ import annotations

import random
import sqlite3
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import grpc
import pytest
import sqlalchemy
from google.protobuf.timestamp_pb2 import Timestamp
from grpc_health.v1 import health_pb2, health_pb2_grpc
from shopsense.feedback.v1 import feedback_service_pb2 as pb
from shopsense.feedback.v1 import feedback_service_pb2_grpc as pb_grpc

from services.feedback.server import SERVICE_NAME
from shared.experiments.attribution import Attribution, AttributionSigner
from shared.rpc.clients import open_channel
from shared.rpc.server import ServerHandle
from shared.storage.database import create_db_engine
from shared.storage.feedback import FeedbackStore, ValidEvent
from tests.integration.conftest import Stack

pytestmark = pytest.mark.integration

SECRET = "integration-test-secret"
BACKENDS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgresql", id="postgresql", marks=pytest.mark.postgres),
]


@pytest.fixture(params=BACKENDS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty database of each backend (a new file, or a new PostgreSQL schema)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'state' / 'feedback.db'}"
    return str(request.getfixturevalue("postgres_url"))


@contextmanager
def running_server(
    start_stack: Callable[..., Stack], db_url: str, *, own_store: bool = True
) -> Iterator[ServerHandle]:
    """A server on a free port, with no retrieval to ask (events are stored unchecked);
    with ``own_store`` the engine is disposed afterwards."""
    store = FeedbackStore(create_db_engine(db_url)) if own_store else None
    try:
        with start_stack(
            ["feedback"],
            settings={"feedback_db_url": db_url, "token_secret": SECRET, "grpc_workers": 8},
            using={"feedback": {"store": store}},
        ) as stack:
            yield stack.handles["feedback"]
    finally:
        if store is not None:
            store.engine.dispose()


@contextmanager
def feedback_stub(handle: ServerHandle) -> Iterator[pb_grpc.FeedbackServiceStub]:
    channel = open_channel(handle.address)
    try:
        yield pb_grpc.FeedbackServiceStub(channel)
    finally:
        channel.close()


def count_rows(db_url: str) -> int:
    """Rows in the table, read over a connection of its own (not the server's)."""
    if db_url.startswith("sqlite:///"):
        with sqlite3.connect(db_url.removeprefix("sqlite:///")) as conn:
            return int(conn.execute("SELECT count(*) FROM feedback_events").fetchone()[0])
    engine = sqlalchemy.create_engine(db_url, poolclass=sqlalchemy.NullPool)
    with engine.connect() as conn:
        return int(conn.exec_driver_sql("SELECT count(*) FROM feedback_events").scalar_one())


def _now_ts() -> Timestamp:
    ts = Timestamp()
    ts.FromDatetime(datetime.now(UTC) - timedelta(seconds=5))
    return ts


def event(event_id: str, **overrides: object) -> pb.Event:
    fields: dict[str, object] = {
        "event_id": event_id,
        "type": pb.EVENT_TYPE_CLICK,
        "timestamp": _now_ts(),
        "session_id": "s-1",
        "product_id": "p-1",
    }
    fields.update(overrides)
    return pb.Event(**fields)  # type: ignore[arg-type]


def statuses(response: pb.RecordEventsResponse) -> list[int]:
    return [r.status for r in response.results]


ACCEPTED, DUPLICATE, REJECTED = (
    pb.EVENT_STATUS_ACCEPTED,
    pb.EVENT_STATUS_DUPLICATE,
    pb.EVENT_STATUS_REJECTED,
)


# --- store, on both backends ---------------------------------------------------------------


def _valid(event_id: str, **overrides: object) -> ValidEvent:
    now = datetime.now(UTC)
    fields: dict[str, object] = {
        "event_id": event_id,
        "type": "click",
        "occurred_at": now,
        "received_at": now,
        "product_id": "p-1",
        "user_id": "u-1",
    }
    fields.update(overrides)
    return ValidEvent(**fields)  # type: ignore[arg-type]


def test_store_records_each_id_once(db_url: str) -> None:
    store = FeedbackStore(create_db_engine(db_url))
    try:
        assert store.record([_valid("a"), _valid("b"), _valid("a")]) == [True, True, False]
        assert store.record([_valid("c"), _valid("b")]) == [True, False]
        assert store.record([]) == []
        assert store.count() == 3
        assert count_rows(db_url) == 3
    finally:
        store.engine.dispose()


def test_interactions_are_read_after_a_cursor_in_received_order(db_url: str) -> None:
    store = FeedbackStore(create_db_engine(db_url))
    base = datetime(2026, 1, 1, tzinfo=UTC)
    try:
        store.record(
            [
                _valid("b", received_at=base, type="purchase"),
                _valid("a", received_at=base),  # same time: ordered by id
                _valid("imp", received_at=base, type="impression", position=1),
                _valid("c", received_at=base + timedelta(seconds=1), type="add_to_cart"),
            ]
        )
        first = store.interactions_after(None, 2)
        assert [row.event_id for row in first] == ["a", "b"]  # impressions are not read
        rest = store.interactions_after((first[-1].received_at, first[-1].event_id), 10)
        assert [(row.event_id, row.type) for row in rest] == [("c", "add_to_cart")]
        assert rest[0].received_at == base + timedelta(seconds=1)
        assert store.interactions_after((rest[-1].received_at, "c"), 10) == []
    finally:
        store.engine.dispose()


def _open_store(url: str) -> None:
    FeedbackStore(create_db_engine(url)).engine.dispose()


def test_services_opening_a_new_database_together_all_start(tmp_path: Path) -> None:
    """Feedback, the recommender and the trainer open one new database at the same moment
    when the suite starts: the one that loses the race to create a table must not fail."""
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    for round_ in range(3):
        url = f"sqlite:///{tmp_path / f'race-{round_}.db'}"
        with context.Pool(4) as pool:
            pool.map(_open_store, [url] * 4)  # raises here if any of them failed
        store = FeedbackStore(create_db_engine(url))
        try:
            assert store.count() == 0
        finally:
            store.engine.dispose()


def test_sqlite_commits_are_durable(tmp_path: Path) -> None:
    engine = create_db_engine(f"sqlite:///{tmp_path / 'new' / 'folder' / 'feedback.db'}")
    try:
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar_one() == "wal"
            assert conn.exec_driver_sql("PRAGMA synchronous").scalar_one() == 2  # FULL
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar_one() > 0
    finally:
        engine.dispose()


def test_store_round_trips_every_field(db_url: str) -> None:
    occurred = datetime(2025, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
    original = _valid(
        "purchase-1",
        type="purchase",
        occurred_at=occurred,
        session_id="s-9",
        attribution_token="v1.x.y",
        request_id="req-1",
        arm="treatment",
        position=3,
        amount_micros=129_990_000,
        currency="EUR",
        quantity=2,
    )
    store = FeedbackStore(create_db_engine(db_url))
    try:
        store.record([original])
        row = store.get("purchase-1")
        assert row is not None
        assert row.occurred_at == occurred and row.occurred_at.tzinfo is not None
        assert row.amount == Decimal("129.99")
        assert (row.type, row.user_id, row.session_id, row.product_id) == (
            "purchase",
            "u-1",
            "s-9",
            "p-1",
        )
        assert (row.request_id, row.arm, row.position, row.currency, row.quantity) == (
            "req-1",
            "treatment",
            3,
            "EUR",
            2,
        )
        assert store.get("missing") is None
    finally:
        store.engine.dispose()


def test_store_concurrent_overlapping_batches_store_each_id_once(db_url: str) -> None:
    store = FeedbackStore(create_db_engine(db_url))
    threads, batch, stride = 8, 300, 100
    barrier = threading.Barrier(threads)
    stored: list[list[str]] = [[] for _ in range(threads)]

    def work(index: int) -> None:
        ids = [f"id-{i:05d}" for i in range(index * stride, index * stride + batch)]
        random.Random(index).shuffle(ids)  # different orders: must not deadlock
        barrier.wait()
        flags = store.record([_valid(i) for i in ids])
        stored[index] = [i for i, new in zip(ids, flags, strict=True) if new]

    try:
        workers = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(timeout=120)
        distinct = (threads - 1) * stride + batch
        winners = Counter(i for ids in stored for i in ids)
        assert len(winners) == distinct
        assert set(winners.values()) == {1}
        assert count_rows(db_url) == distinct
    finally:
        store.engine.dispose()


# --- the service through a channel, on both backends ---------------------------------------


def test_accepted_then_all_duplicate_on_resend(start_stack, db_url: str) -> None:
    batch = pb.RecordEventsRequest(events=[event(f"e{i}") for i in range(50)])
    with running_server(start_stack, db_url) as handle, feedback_stub(handle) as stub:
        first = stub.RecordEvents(batch, timeout=30)
        assert statuses(first) == [ACCEPTED] * 50
        assert (first.accepted, first.duplicates, first.rejected) == (50, 0, 0)
        assert count_rows(db_url) == 50

        again = stub.RecordEvents(batch, timeout=30)
        assert statuses(again) == [DUPLICATE] * 50
        assert (again.accepted, again.duplicates, again.rejected) == (0, 50, 0)
        assert count_rows(db_url) == 50


def test_mixed_batch_stores_the_valid_events(start_stack, db_url: str) -> None:
    batch = pb.RecordEventsRequest(
        events=[
            event("ok-1"),
            event("no-product", product_id=""),
            event("ok-2", type=pb.EVENT_TYPE_IMPRESSION, position=4),
            event("no-position", type=pb.EVENT_TYPE_IMPRESSION),
            event("ok-1"),
            event("buy", type=pb.EVENT_TYPE_PURCHASE, amount=19.9, currency="USD", user_id="u-7"),
        ]
    )
    with running_server(start_stack, db_url) as handle, feedback_stub(handle) as stub:
        response = stub.RecordEvents(batch, timeout=30)
    assert statuses(response) == [ACCEPTED, REJECTED, ACCEPTED, REJECTED, DUPLICATE, ACCEPTED]
    assert response.results[1].error == "product_id: required"
    assert response.results[3].error.startswith("position:")
    assert (response.accepted, response.duplicates, response.rejected) == (3, 1, 2)
    assert count_rows(db_url) == 3


def test_concurrent_overlapping_batches_store_each_id_once(start_stack, db_url: str) -> None:
    threads, batch, stride = 8, 200, 50
    barrier = threading.Barrier(threads)
    accepted: list[list[str]] = [[] for _ in range(threads)]
    errors: list[BaseException] = []
    with running_server(start_stack, db_url) as handle:

        def work(index: int) -> None:
            try:
                ids = [f"c{i:05d}" for i in range(index * stride, index * stride + batch)]
                random.Random(index).shuffle(ids)
                request = pb.RecordEventsRequest(events=[event(i) for i in ids])
                with feedback_stub(handle) as stub:
                    barrier.wait()
                    response = stub.RecordEvents(request, timeout=60)
                accepted[index] = [r.event_id for r in response.results if r.status == ACCEPTED]
            except BaseException as exc:  # surfaced below
                errors.append(exc)

        workers = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(timeout=120)
    assert errors == []
    distinct = (threads - 1) * stride + batch
    winners = Counter(i for ids in accepted for i in ids)
    assert len(winners) == distinct
    assert set(winners.values()) == {1}
    assert count_rows(db_url) == distinct


# --- the service, SQLite only -----------------------------------------------------------------


@pytest.fixture
def sqlite_path(tmp_path: Path) -> Path:
    return tmp_path / "state" / "feedback.db"


@pytest.fixture
def server(start_stack, sqlite_path: Path) -> Iterator[ServerHandle]:
    """Built entirely by the factory from settings, as ``python -m services.feedback`` does."""
    with running_server(start_stack, f"sqlite:///{sqlite_path}", own_store=False) as handle:
        yield handle


@pytest.fixture
def stub(server: ServerHandle) -> Iterator[pb_grpc.FeedbackServiceStub]:
    with feedback_stub(server) as feedback:
        yield feedback


def test_rows_are_in_the_database_file(
    stub: pb_grpc.FeedbackServiceStub, sqlite_path: Path
) -> None:
    stub.RecordEvents(
        pb.RecordEventsRequest(
            events=[
                event("keep", user_id="u-1", product_id="p-9"),
                event(
                    "drop", timestamp=Timestamp(seconds=int(datetime.now(UTC).timestamp()) + 3600)
                ),
            ]
        ),
        timeout=30,
    )
    # The reply came after the commit: a separate connection to the file sees the row.
    with sqlite3.connect(sqlite_path) as conn:
        rows = conn.execute("SELECT event_id, user_id, product_id FROM feedback_events").fetchall()
    assert rows == [("keep", "u-1", "p-9")]


def test_attribution_tokens_are_verified(
    stub: pb_grpc.FeedbackServiceStub, sqlite_path: Path
) -> None:
    token = AttributionSigner(SECRET).encode(Attribution(request_id="req-42", arm="treatment"))
    head, payload, signature = token.rsplit(".", 2)
    index = len(payload) // 2
    flipped = payload[:index] + ("A" if payload[index] != "A" else "B") + payload[index + 1 :]
    forged = AttributionSigner("not-our-secret").encode(Attribution("req-42", "treatment"))
    response = stub.RecordEvents(
        pb.RecordEventsRequest(
            events=[
                event("good", attribution_token=token),
                event("tampered", attribution_token=f"{head}.{flipped}.{signature}"),
                event("forged", attribution_token=forged),
                event("malformed", attribution_token="hello"),
            ]
        ),
        timeout=30,
    )
    assert statuses(response) == [ACCEPTED, REJECTED, REJECTED, REJECTED]
    assert response.results[1].error.startswith("attribution_token: signature mismatch")
    assert response.results[2].error.startswith("attribution_token: signature mismatch")
    assert response.results[3].error.startswith("attribution_token: malformed")
    with sqlite3.connect(sqlite_path) as conn:
        rows = conn.execute("SELECT event_id, request_id, arm FROM feedback_events").fetchall()
    assert rows == [("good", "req-42", "treatment")]


def test_a_non_ascii_token_rejects_its_event_alone_and_the_rest_is_stored(
    stub: pb_grpc.FeedbackServiceStub, sqlite_path: Path
) -> None:
    token = AttributionSigner(SECRET).encode(Attribution(request_id="req-7", arm="control"))
    head, payload, _ = token.rsplit(".", 2)
    response = stub.RecordEvents(
        pb.RecordEventsRequest(
            events=[
                event("ok-1", attribution_token=token),
                event("accent", attribution_token="v1.\u00e9.x"),
                event("ok-2"),
                event("bad-signature", attribution_token=f"{head}.{payload}.\u00e9"),
                event("ok-3", attribution_token=token, user_id="u-3"),
            ]
        ),
        timeout=30,
    )
    assert statuses(response) == [ACCEPTED, REJECTED, ACCEPTED, REJECTED, ACCEPTED]
    assert response.results[1].error.startswith("attribution_token: ")
    assert response.results[3].error.startswith("attribution_token: ")
    assert (response.accepted, response.duplicates, response.rejected) == (3, 0, 2)
    with sqlite3.connect(sqlite_path) as conn:
        rows = conn.execute("SELECT event_id FROM feedback_events ORDER BY event_id").fetchall()
    assert rows == [("ok-1",), ("ok-2",), ("ok-3",)]


def test_purchases_in_codes_that_are_no_currency_are_rejected(
    stub: pb_grpc.FeedbackServiceStub, sqlite_path: Path
) -> None:
    purchase = {"type": pb.EVENT_TYPE_PURCHASE, "amount": 25.0, "user_id": "u-5"}
    response = stub.RecordEvents(
        pb.RecordEventsRequest(
            events=[
                event("in-eur", currency="EUR", **purchase),
                event("in-nul", currency="NUL", **purchase),
                event("in-xof", currency="XOF", **purchase),
                event("in-xts", currency="XTS", **purchase),
            ]
        ),
        timeout=30,
    )
    assert statuses(response) == [ACCEPTED, REJECTED, ACCEPTED, REJECTED]
    assert response.results[1].error == "currency: 'NUL' is not an ISO 4217 currency code"
    assert response.results[3].error.startswith("currency: 'XTS' is an ISO 4217 code but ")
    with sqlite3.connect(sqlite_path) as conn:
        rows = conn.execute("SELECT event_id, currency FROM feedback_events").fetchall()
    assert sorted(rows) == [("in-eur", "EUR"), ("in-xof", "XOF")]


def test_unknown_event_type_is_rejected(stub: pb_grpc.FeedbackServiceStub) -> None:
    response = stub.RecordEvents(
        pb.RecordEventsRequest(events=[event("future", type=9)]), timeout=30
    )
    assert statuses(response) == [REJECTED]
    assert response.results[0].error == "type: unknown event type 9"


def test_empty_batch_is_invalid_argument(stub: pb_grpc.FeedbackServiceStub) -> None:
    with pytest.raises(grpc.RpcError) as info:
        stub.RecordEvents(pb.RecordEventsRequest(), timeout=30)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert info.value.details() == "events: at least one event is required"


def test_too_large_batch_is_refused_and_the_server_keeps_serving(
    stub: pb_grpc.FeedbackServiceStub, sqlite_path: Path
) -> None:
    timestamp = _now_ts()
    huge = pb.RecordEventsRequest(
        events=[
            pb.Event(
                event_id=f"h{i}",
                type=pb.EVENT_TYPE_CLICK,
                timestamp=timestamp,
                session_id="s",
                product_id="p",
            )
            for i in range(100_000)
        ]
    )
    with pytest.raises(grpc.RpcError) as info:
        stub.RecordEvents(huge, timeout=60)
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert info.value.details() == (
        "events: 100000 events in one call exceeds the limit of 10000; "
        "nothing was stored, split the batch"
    )
    assert count_rows(f"sqlite:///{sqlite_path}") == 0

    response = stub.RecordEvents(pb.RecordEventsRequest(events=[event("after")]), timeout=30)
    assert statuses(response) == [ACCEPTED]


def test_health_reports_serving(server: ServerHandle) -> None:
    channel = open_channel(server.address)
    try:
        health = health_pb2_grpc.HealthStub(channel)
        for service in ("", SERVICE_NAME):
            reply = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
    finally:
        channel.close()
