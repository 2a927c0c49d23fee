"""``make bench-feedback`` (``python -m shared.bench.feedback``): events/s through gRPC.

Starts the feedback service in its own process over a temporary SQLite file (or
``--db-url``) and measures three passes of realistic events (signed tokens, a quarter of
them purchases): ``--events`` in RecordEvents batches from ``--threads`` client threads;
the same again (all duplicates); then ``--streamed`` new events over one StreamEvents
stream of ``--batch``-event chunks, the table growing all the while. Every answer waits
for a durable commit, so this measures the whole path a storefront pays for. At the end
the database is counted: the figures stand only if every accepted event is there.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

from shopsense.feedback.v1 import feedback_service_pb2 as pb
from shopsense.feedback.v1 import feedback_service_pb2_grpc as pb_grpc

from shared.contracts.common import timestamp_or_none
from shared.experiments.attribution import Attribution, AttributionSigner
from shared.models.triton_server import free_port
from shared.rpc.clients import open_channel
from shared.rpc.logging import configure_logging
from shared.runtime.suite import is_serving
from shared.storage.database import create_db_engine
from shared.storage.feedback import FeedbackStore


def build_requests(
    events: int, batch: int, signer: AttributionSigner, prefix: str = "bench"
) -> list[pb.RecordEventsRequest]:
    """Realistic events: every one carries a signed token as the gateway makes them (its
    search's query, the versions; one search in 20 explored; 20 events a search), a
    quarter are purchases."""
    timestamp = timestamp_or_none(datetime.now(UTC))
    versions = {"intent": "intent_classifier/1", "ranking": "cross_encoder/2"}
    tokens = [
        signer.encode(
            Attribution(
                f"{prefix}-request-{n}",
                "control",
                versions,
                query=f"mid century modern walnut sideboard {n}",
                explored=n % 20 == 0,
            )
        )
        for n in range(max(1, events // 20))
    ]
    all_events = []
    for i in range(events):
        token = tokens[(i // 20) % len(tokens)]
        kind = (pb.EVENT_TYPE_IMPRESSION, pb.EVENT_TYPE_CLICK, pb.EVENT_TYPE_ADD_TO_CART)[i % 3]
        purchase = i % 4 == 3
        all_events.append(
            pb.Event(
                event_id=f"{prefix}-{i:09d}",
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


def stream_all(address: str, requests: list[pb.RecordEventsRequest]) -> tuple[float, int]:
    """Seconds to stream every batch as one chunk and get every answer; events accepted."""
    channel = open_channel(address)
    stub = pb_grpc.FeedbackServiceStub(channel)
    chunks = (
        pb.StreamEventsRequest(sequence=n + 1, events=request.events)
        for n, request in enumerate(requests)
    )
    started = time.perf_counter()
    accepted = sum(answer.accepted for answer in stub.StreamEvents(chunks, timeout=600))
    seconds = time.perf_counter() - started
    channel.close()
    return seconds, accepted


def _report(label: str, events: int, seconds: float, latencies: list[float]) -> None:
    ordered = sorted(latencies)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    print(
        f"{label:<10} {events / seconds:>10,.0f} events/s   "
        f"per call p50 {statistics.median(ordered) * 1e3:.1f} ms, p99 {p99 * 1e3:.1f} ms"
    )


def start_service(
    db_url: str, secret: str, log: Path, address: str = ""
) -> tuple[subprocess.Popen[bytes], str]:
    """``python -m services.feedback`` in its own process, as it runs in production (a
    client in the same process would share its interpreter lock), on ``address`` (default:
    a free port); the process and its address once SERVING. Its log is appended to ``log``.
    """
    address = address or f"127.0.0.1:{free_port()}"
    env = {
        **os.environ,
        "SHOPSENSE_FEEDBACK_LISTEN": address,
        "SHOPSENSE_FEEDBACK_DB_URL": db_url,
        "SHOPSENSE_TOKEN_SECRET": secret,
        "SHOPSENSE_LOG_LEVEL": "warning",
        # No catalog to ask: its check is a set lookup once warm, and the bench's ids are
        # made up.
        "SHOPSENSE_RETRIEVAL_TARGET": "127.0.0.1:9",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "services.feedback"],
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 60
    while not is_serving(address):
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise SystemExit(f"the feedback service did not start: see {log}")
        time.sleep(0.1)
    return process, address


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000, help="events per pass")
    parser.add_argument("--batch", type=int, default=1_000, help="events per call (<= 10000)")
    parser.add_argument("--threads", type=int, default=1, help="concurrent client threads")
    parser.add_argument("--streamed", type=int, default=300_000, help="events of the stream")
    parser.add_argument("--db-url", default="", help="default: a temporary SQLite file")
    args = parser.parse_args(argv)
    from shared.bench.machine import machine

    print(machine().line())
    configure_logging("warning", "feedback-bench")
    secret = "bench-secret"
    signer = AttributionSigner(secret)
    with tempfile.TemporaryDirectory(prefix="feedback-bench-") as tmp:
        db_url = args.db_url or f"sqlite:///{Path(tmp) / 'feedback.db'}"
        requests = build_requests(args.events, args.batch, signer)
        stream = build_requests(args.streamed, args.batch, signer, "stream")
        process, address = start_service(db_url, secret, Path(tmp) / "feedback.log")
        try:
            print(
                f"feedback bench: {db_url.split('://')[0]}, the service in its own process, "
                f"{args.batch} events a call or chunk, {args.threads} client thread(s)"
            )
            seconds, latencies, accepted = send_all(address, requests, args.threads)
            if accepted != args.events:
                raise SystemExit(f"expected {args.events} accepted, got {accepted}")
            _report("batches", args.events, seconds, latencies)
            seconds, latencies, accepted = send_all(address, requests, args.threads)
            if accepted != 0:
                raise SystemExit(f"expected only duplicates on resend, got {accepted} accepted")
            _report("duplicate", args.events, seconds, latencies)
            seconds, accepted = stream_all(address, stream)
            if accepted != args.streamed:
                raise SystemExit(f"expected {args.streamed} accepted on the stream, got {accepted}")
            print(
                f"{'stream':<10} {args.streamed / seconds:>10,.0f} events/s   "
                f"({args.streamed:,} events, the table growing to {args.events + args.streamed:,})"
            )
        finally:
            process.terminate()
            process.wait(timeout=30)
        store = FeedbackStore(create_db_engine(db_url))
        stored = store.count()
        store.engine.dispose()
        sent = args.events + args.streamed
        if stored != sent:
            raise SystemExit(f"lost events: {stored:,} stored of {sent:,} accepted")
        print(f"stored     {stored:>10,} events in the database: every accepted event (none lost)")


if __name__ == "__main__":
    main()
