"""`shopsense import online-retail`: the UCI Online Retail store into a running suite, as
a store moving onto shopsense would bring its catalog and its past orders.

Catalog: every product of the files (``shared/data/online_retail.py``), upserted through
retrieval (also products first sold after ``until``: a store lists a product before it
sells). Orders: each purchased product of an invoice is one PURCHASE event through the
feedback service, as a backfill (past timestamps accepted): ``event_id``
``or-<invoice>-<stock code>`` (so a second import stores nothing twice), the customer as
``user_id`` (none for a guest), the invoice as ``session_id`` (one anonymous session per
guest invoice), amount = quantity x unit price in GBP. Only invoices before ``until``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from google.protobuf.timestamp_pb2 import Timestamp
from shopsense.feedback.v1 import feedback_service_pb2 as fpb
from shopsense.feedback.v1 import feedback_service_pb2_grpc
from shopsense.recommend.v1 import recommend_service_pb2 as rpb
from shopsense.recommend.v1 import recommend_service_pb2_grpc

from shared.data.online_retail import OnlineRetail, RetailLine
from shared.rpc.clients import open_channel
from shared.runtime.catalog import upsert_products
from shared.runtime.progress import CountProgress

BATCH = 10_000
CURRENCY = "GBP"


@dataclass(frozen=True)
class ImportSummary:
    products: int
    rejected_products: int
    events: int
    accepted: int
    duplicates: int
    rejected: int
    seconds: float


def session_of(line: RetailLine) -> str:
    """The session id an order line is imported with: its invoice."""
    return f"invoice-{line.invoice}"


def purchase_event(line: RetailLine) -> fpb.Event:
    stamp = Timestamp()
    stamp.FromDatetime(line.at)
    return fpb.Event(
        event_id=f"or-{line.invoice}-{line.product_id}",
        type=fpb.EVENT_TYPE_PURCHASE,
        timestamp=stamp,
        user_id=line.customer_id,
        session_id=session_of(line),
        product_id=line.product_id,
        amount=round(line.quantity * line.unit_price, 2) or 0.01,
        currency=CURRENCY,
        quantity=line.quantity,
    )


def import_store(
    store: OnlineRetail,
    retrieval_target: str,
    feedback_target: str,
    until: datetime | None = None,
    say: Callable[[str], None] = print,
) -> ImportSummary:
    """Upsert the catalog, then record the orders before ``until`` (all when None)."""
    started = time.monotonic()
    reply = upsert_products(retrieval_target, store.products)
    rejected_products = sum(1 for r in reply.results if r.error)
    lines = [line for line in store.lines if until is None or line.at < until]
    stub = feedback_service_pb2_grpc.FeedbackServiceStub(open_channel(feedback_target))
    accepted = duplicates = rejected = 0
    with CountProgress(len(lines), "importing orders", "events") as bar:
        for start in range(0, len(lines), BATCH):
            batch: Sequence[RetailLine] = lines[start : start + BATCH]
            result = stub.RecordEvents(
                fpb.RecordEventsRequest(
                    events=[purchase_event(line) for line in batch], backfill=True
                ),
                timeout=300,
            )
            accepted += result.accepted
            duplicates += result.duplicates
            rejected += result.rejected
            for problem in [r for r in result.results if r.error][:3]:
                say(f"rejected {problem.event_id}: {problem.error}")
            bar.advance(len(batch))
    return ImportSummary(
        products=len(store.products) - rejected_products,
        rejected_products=rejected_products,
        events=len(lines),
        accepted=accepted,
        duplicates=duplicates,
        rejected=rejected,
        seconds=time.monotonic() - started,
    )


def wait_for_recommender(
    recommend_target: str, events: int, timeout_s: float = 600.0
) -> rpb.GetRecommenderStatsResponse:
    """Block until the recommendation service has read at least ``events`` events."""
    stub = recommend_service_pb2_grpc.RecommendServiceStub(open_channel(recommend_target))
    deadline = time.monotonic() + timeout_s
    while True:
        stats = stub.GetRecommenderStats(rpb.GetRecommenderStatsRequest(), timeout=10)
        if stats.events_read >= events:
            return stats
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"the recommender read {stats.events_read} of {events} events in {timeout_s:.0f} s"
            )
        time.sleep(1.0)
