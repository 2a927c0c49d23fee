"""``python -m services.feedback.bench --events 20000 --batch 500``: events/s through gRPC.

Starts the feedback server in-process on port 0 over a temporary SQLite file (or ``--db-url``),
sends the events in batches from ``--threads`` client threads, then sends them again (all
duplicates), and prints the throughput and per-call latency of each pass. Every call waits
for a durable commit, so this measures the whole path a storefront pays for.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

from google.protobuf.timestamp_pb2 import Timestamp
from shopsense.feedback.v1 import feedback_service_pb2 as pb
from shopsense.feedback.v1 import feedback_service_pb2_grpc as pb_grpc

from services.feedback.server import create_server
from shared.experiments.attribution import Attribution, AttributionSigner
from shared.rpc.clients import open_channel
from shared.rpc.logging import configure_logging
from shared.settings import Settings


def build_requests(
    events: int, batch: int, signer: AttributionSigner
) -> list[pb.RecordEventsRequest]:
    """Realistic events: every one carries a signed token, a quarter are purchases."""
    timestamp = Timestamp()
    timestamp.FromDatetime(datetime.now(UTC))
    token = signer.encode(Attribution(request_id="bench-request", arm="control"))
    all_events = []
    for i in range(events):
        kind = (pb.EVENT_TYPE_IMPRESSION, pb.EVENT_TYPE_CLICK, pb.EVENT_TYPE_ADD_TO_CART)[i % 3]
        purchase = i % 4 == 3
        all_events.append(
            pb.Event(
                event_id=f"bench-{i:09d}",
                type=pb.EVENT_TYPE_PURCHASE if purchase else kind,
                timestamp=timestamp,
                user_id=f"user-{i % 997}",
                session_id=f"session-{i % 4099}",
                product_id=f"product-{i % 5003}",
                attribution_token=token,
                position=i % 20 + 1,
                amount=49.95 if purchase else 0.0,
                currency="USD" if purchase else "",
            )
        )
    return [
        pb.RecordEventsRequest(events=all_events[start : start + batch])
        for start in range(0, events, batch)
    ]


def send_all(
    address: str, requests: list[pb.RecordEventsRequest], threads: int
) -> tuple[float, list[float], int]:
    """Seconds for all calls, each call's latency, and events accepted."""
    latencies: list[float] = []
    accepted = [0]
    lock = threading.Lock()

    def work(share: list[pb.RecordEventsRequest]) -> None:
        channel = open_channel(address)
        stub = pb_grpc.FeedbackServiceStub(channel)
        for request in share:
            started = time.perf_counter()
            response = stub.RecordEvents(request, timeout=120)
            elapsed = time.perf_counter() - started
            with lock:
                latencies.append(elapsed)
                accepted[0] += response.accepted
        channel.close()

    workers = [
        threading.Thread(target=work, args=(requests[index::threads],)) for index in range(threads)
    ]
    started = time.perf_counter()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return time.perf_counter() - started, latencies, accepted[0]


def _report(label: str, events: int, seconds: float, latencies: list[float]) -> None:
    ordered = sorted(latencies)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    print(
        f"{label:<10} {events / seconds:>10,.0f} events/s   "
        f"per call p50 {statistics.median(ordered) * 1e3:.1f} ms, p99 {p99 * 1e3:.1f} ms"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=500, help="events per call (<= 10000)")
    parser.add_argument("--threads", type=int, default=1, help="concurrent client threads")
    parser.add_argument("--db-url", default="", help="default: a temporary SQLite file")
    args = parser.parse_args(argv)

    configure_logging("warning", "feedback-bench")
    secret = "bench-secret"
    with tempfile.TemporaryDirectory(prefix="feedback-bench-") as tmp:
        db_url = args.db_url or f"sqlite:///{Path(tmp) / 'feedback.db'}"
        settings = replace(
            Settings(), feedback_listen="127.0.0.1:0", feedback_db_url=db_url, token_secret=secret
        )
        requests = build_requests(args.events, args.batch, AttributionSigner(secret))
        handle = create_server(settings)
        try:
            print(
                f"feedback bench: {args.events} events, {args.batch} per call, "
                f"{args.threads} thread(s), {db_url.split('://')[0]}"
            )
            seconds, latencies, accepted = send_all(handle.address, requests, args.threads)
            if accepted != args.events:
                raise SystemExit(f"expected {args.events} accepted, got {accepted}")
            _report("new", args.events, seconds, latencies)
            seconds, latencies, accepted = send_all(handle.address, requests, args.threads)
            if accepted != 0:
                raise SystemExit(f"expected only duplicates on resend, got {accepted} accepted")
            _report("duplicate", args.events, seconds, latencies)
        finally:
            handle.stop(0)


if __name__ == "__main__":
    main()
