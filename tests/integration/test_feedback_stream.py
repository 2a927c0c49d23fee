"""The feedback stream and the shopper's privacy RPCs, through real servers on port 0: the
stream answers each chunk after its commit, kill -9 in the middle of a stream loses no
acknowledged event and the client's retry adds the rest without duplicates, a shopper's
events are exported and deleted on request.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from shopsense.feedback.v1 import feedback_service_pb2 as pb
from shopsense.feedback.v1 import feedback_service_pb2_grpc as pb_grpc

from shared.bench.feedback import start_service
from shared.data.synthetic import generate_store
from shared.experiments.attribution import Attribution, AttributionSigner
from shared.models.triton_server import free_port
from shared.runtime.catalog import upsert_products

pytestmark = pytest.mark.integration
SECRET = "stream-secret"
CHUNK = 500


def _events(count: int, prefix: str, token: str = "", **fields: object) -> list[pb.Event]:
    stamp = Timestamp()
    stamp.FromDatetime(datetime.now(UTC) - timedelta(seconds=5))
    return [
        pb.Event(
            event_id=f"{prefix}-{i:06d}",
            type=pb.EVENT_TYPE_CLICK if i % 5 else pb.EVENT_TYPE_IMPRESSION,
            timestamp=stamp,
            user_id=str(fields.get("user_id", f"user-{i % 50}")),
            session_id=str(fields.get("session_id", f"session-{i % 70}")),
            product_id=f"product-{i % 300}",
            attribution_token=token,
            position=i % 20 + 1,
        )
        for i in range(count)
    ]


def _chunks(events: list[pb.Event], first: int = 0) -> list[pb.StreamEventsRequest]:
    return [
        pb.StreamEventsRequest(sequence=first + n + 1, events=events[start : start + CHUNK])
        for n, start in enumerate(range(0, len(events), CHUNK))
    ]


@pytest.fixture
def server(start_stack, tmp_path: Path) -> Iterator[str]:
    """A feedback service with no retrieval to ask (events are stored unchecked)."""
    with start_stack(["feedback"], state=tmp_path, settings={"token_secret": SECRET}) as stack:
        yield stack.address("feedback")


def test_the_stream_answers_every_chunk_in_order_with_its_rejections(server: str) -> None:
    token = AttributionSigner(SECRET).encode(Attribution("req-1", "treatment", {}, 0, "exp-1"))
    events = _events(1_200, "s", token)
    events[7].product_id = ""  # rejected, naming the field
    forged = AttributionSigner("forger").encode(Attribution("req-1", "treatment"))
    events[900].attribution_token = forged
    stub = pb_grpc.FeedbackServiceStub(grpc.insecure_channel(server))
    answers = list(stub.StreamEvents(iter(_chunks(events)), timeout=60))
    assert [a.sequence for a in answers] == [1, 2, 3]
    assert sum(a.accepted for a in answers) == 1_198
    assert [(r.event_id, r.error.split(":")[0]) for a in answers for r in a.rejections] == [
        ("s-000007", "product_id"),
        ("s-000900", "attribution_token"),
    ]
    again = list(stub.StreamEvents(iter(_chunks(events)), timeout=60))
    assert sum(a.duplicates for a in again) == 1_198 and sum(a.accepted for a in again) == 0
    with pytest.raises(grpc.RpcError) as empty:
        list(stub.StreamEvents(iter([pb.StreamEventsRequest(sequence=9)]), timeout=10))
    assert empty.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "events (chunk 9): at least one event" in empty.value.details()


def test_a_chunk_with_a_non_ascii_token_is_answered_and_the_stream_carries_on(
    server: str,
) -> None:
    token = AttributionSigner(SECRET).encode(Attribution("req-2", "control"))
    head, payload, _ = token.rsplit(".", 2)
    first = _events(10, "a", token)
    first[3].attribution_token = "v1.\u00e9.x"
    first[6].attribution_token = f"{head}.{payload}.\u00e9"
    chunks = [
        pb.StreamEventsRequest(sequence=1, events=first),
        pb.StreamEventsRequest(sequence=2, events=_events(10, "b", token)),
    ]
    stub = pb_grpc.FeedbackServiceStub(grpc.insecure_channel(server))
    answers = list(stub.StreamEvents(iter(chunks), timeout=30))
    assert [(a.sequence, a.accepted, a.rejected) for a in answers] == [(1, 8, 2), (2, 10, 0)]
    assert [(r.event_id, r.error.split(":")[0]) for r in answers[0].rejections] == [
        ("a-000003", "attribution_token"),
        ("a-000006", "attribution_token"),
    ]
    exported = stub.ExportShopperEvents(pb.ShopperRequest(user_id="user-1"), timeout=30)
    assert {e.event_id for e in exported} == {"a-000001", "b-000001"}


def test_a_shoppers_events_are_exported_and_deleted_on_request(server: str) -> None:
    stub = pb_grpc.FeedbackServiceStub(grpc.insecure_channel(server))
    mine = _events(30, "mine", user_id="alice", session_id="alice-session")
    purchase = mine[3]
    purchase.type, purchase.amount, purchase.currency = pb.EVENT_TYPE_PURCHASE, 129.99, "EUR"
    purchase.quantity = 2
    anonymous = _events(10, "anon", user_id="", session_id="alice-session")
    others = _events(20, "other", user_id="bob", session_id="bob-session")
    stub.RecordEvents(pb.RecordEventsRequest(events=mine + anonymous + others), timeout=30)

    exported = list(stub.ExportShopperEvents(pb.ShopperRequest(user_id="alice"), timeout=30))
    assert {e.event_id for e in exported} == {e.event_id for e in mine}
    assert next(e for e in exported if e.event_id == purchase.event_id) == purchase
    by_session = stub.ExportShopperEvents(pb.ShopperRequest(session_id="alice-session"))
    assert len(list(by_session)) == 40

    deleted = stub.DeleteShopperEvents(
        pb.ShopperRequest(user_id="alice", session_id="alice-session"), timeout=30
    )
    assert deleted.deleted == 40
    assert not list(stub.ExportShopperEvents(pb.ShopperRequest(user_id="alice"), timeout=30))
    assert len(list(stub.ExportShopperEvents(pb.ShopperRequest(user_id="bob")))) == 20
    with pytest.raises(grpc.RpcError) as nobody:
        stub.DeleteShopperEvents(pb.ShopperRequest(), timeout=10)
    assert nobody.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert nobody.value.details().startswith("user_id: at least one of")


def _start_process(address: str, db: Path, log: Path) -> subprocess.Popen[bytes]:
    return start_service(f"sqlite:///{db}", SECRET, log, address)[0]


def _stored_ids(db: Path) -> set[str]:
    with sqlite3.connect(db) as conn:
        return {row[0] for row in conn.execute("SELECT event_id FROM feedback_events")}


def test_kill_9_mid_stream_loses_no_acknowledged_event_and_the_retry_adds_no_duplicate(
    tmp_path: Path,
) -> None:
    address = f"127.0.0.1:{free_port()}"
    db = tmp_path / "feedback.db"
    events = _events(40_000, "k")
    chunks = _chunks(events)
    process = _start_process(address, db, tmp_path / "feedback.log")
    acknowledged: list[int] = []
    killed = threading.Event()
    channel = grpc.insecure_channel(address)
    try:
        stub = pb_grpc.FeedbackServiceStub(channel)
        with pytest.raises(grpc.RpcError) as broken:
            for answer in stub.StreamEvents(iter(chunks), timeout=120):
                acknowledged.append(answer.sequence)
                if len(acknowledged) == 20 and not killed.is_set():
                    os.kill(process.pid, signal.SIGKILL)  # in the middle of the stream
                    killed.set()
        assert broken.value.code() == grpc.StatusCode.UNAVAILABLE
        process.wait(timeout=30)
    finally:
        channel.close()
        if process.poll() is None:
            process.kill()
    assert acknowledged == list(range(1, len(acknowledged) + 1)) and len(acknowledged) < 80
    acked_ids = {e.event_id for c in chunks[: len(acknowledged)] for e in c.events}
    stored = _stored_ids(db)
    assert acked_ids <= stored, f"{len(acked_ids - stored)} acknowledged events lost"

    # The client retries every chunk it has no answer for, on a restarted service.
    process = _start_process(address, db, tmp_path / "feedback.log")
    try:
        stub = pb_grpc.FeedbackServiceStub(grpc.insecure_channel(address))
        retry = list(stub.StreamEvents(iter(chunks[len(acknowledged) :]), timeout=120))
    finally:
        process.terminate()
        process.wait(timeout=30)
    committed_unanswered = len(stored) - len(acked_ids)
    assert sum(a.duplicates for a in retry) == committed_unanswered
    assert sum(a.accepted for a in retry) == len(events) - len(stored)
    final = _stored_ids(db)
    assert final == {e.event_id for e in events}
    print(
        f"kill -9 after {len(acknowledged)} answered chunks: {len(acked_ids)} acknowledged, "
        f"{len(stored)} stored at the kill ({committed_unanswered} committed but unanswered), "
        f"retry stored {len(events) - len(stored)} more; {len(final)} of {len(events)} in "
        "the database, no duplicate"
    )


def test_events_for_products_not_in_the_catalog_are_rejected(
    start_stack, triton_server, tmp_path: Path
) -> None:
    store = generate_store(n_products=30, n_queries=5, seed=2)
    with start_stack(
        ["retrieval", "feedback"],
        triton_url=triton_server.grpc_url,
        state=tmp_path,
        settings={"token_secret": SECRET},
    ) as stack:
        upsert_products(stack.address("retrieval"), store.products, progress=False)
        events = _events(4, "c")
        events[0].product_id = store.products[0].product_id
        events[1].product_id = store.products[1].product_id
        events[2].product_id = "not-a-product"
        events[3].product_id = store.products[0].product_id
        stub = stack.stub("feedback", pb_grpc.FeedbackServiceStub)
        for _ in range(2):  # the second time from the service's memory
            reply = stub.RecordEvents(pb.RecordEventsRequest(events=events), timeout=30)
            assert reply.rejected == 1
            assert reply.results[2].error == "product_id: 'not-a-product' is not in the catalog"
        assert reply.duplicates == 3
