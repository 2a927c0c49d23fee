"""`make bench-rpc`: what one gRPC hop of the suite costs, layer by layer (issue 14, item 2:
where the suite-to-floor ratio goes).

Every case is a real server on a free loopback port and a real client in this process,
with a servicer that answers a fixed reply at once (the work of the hop is not measured,
only its cost). Measured at 1 client (p50 and p99 per call) and 8 clients (calls/s):

- ``grpc bare``: grpc.server and an insecure channel, no interceptor: the transport and
  the thread hand-off, the floor of any hop;
- ``shopsense server``: the same servicer behind ``build_server``: the shared interceptor
  (request id, one JSON log line rendered and written, the RPC metrics), authentication
  (embedded: no keys), reflection and health registered;
- ``shopsense server + channel``: and the client's ``open_channel`` (request id
  interceptor), as the gateway calls a hop;
- ``... + 100 candidates``: the same stack answering Retrieve with 100 candidates (the
  gateway's default k) of the synthetic store, so the reply's size shows;
- and in process, no RPC: serialising and parsing that reply once;
- **after an idle gap**: ``grpc bare`` and ``shopsense server + channel`` again at 1 client,
  each call after the caller slept 2, 10 and 30 ms, as every hop of a search at one client
  is (the services wait between searches), beside a plain hand-off between two threads of
  this process after the same gaps: what a hop costs when the processes are cold.

Figures are on this machine, printed first; compare ratios within one run.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import threading
import time
from collections.abc import Callable, Iterator
from concurrent import futures
from contextlib import contextmanager
from pathlib import Path
from typing import TextIO

import grpc
import structlog
from rich.console import Console
from rich.table import Table
from shopsense.intent.v1 import intent_service_pb2, intent_service_pb2_grpc
from shopsense.retrieval.v1 import retrieval_service_pb2, retrieval_service_pb2_grpc

from shared.bench import load
from shared.bench.machine import machine
from shared.contracts.common import product_to_proto
from shared.data.synthetic import generate_store
from shared.rpc.clients import ClientSecurity, open_channel
from shared.rpc.logging import configure_logging
from shared.rpc.server import build_server

console = Console(width=160)
INTENT = intent_service_pb2.DESCRIPTOR.services_by_name["IntentService"].full_name
RETRIEVAL = retrieval_service_pb2.DESCRIPTOR.services_by_name["RetrievalService"].full_name


class _Intent(intent_service_pb2_grpc.IntentServiceServicer):
    """Answers every Classify with one class at once."""

    reply = intent_service_pb2.ClassifyResponse()

    def Classify(self, request, context):  # type: ignore[no-untyped-def]
        return self.reply


class _Retrieval(retrieval_service_pb2_grpc.RetrievalServiceServicer):
    """Answers every Retrieve with the same ``candidates`` at once."""

    def __init__(self, reply: retrieval_service_pb2.RetrieveResponse) -> None:
        self.reply = reply

    def Retrieve(self, request, context):  # type: ignore[no-untyped-def]
        return self.reply


def candidates_reply(k: int = 100) -> retrieval_service_pb2.RetrieveResponse:
    """A Retrieve reply of ``k`` candidates of the synthetic store, as retrieval sends them
    (products without descriptions, both sources' scores)."""
    products = generate_store(n_products=k, n_queries=1, seed=3).products
    reply = retrieval_service_pb2.RetrieveResponse(embedding_version="1")
    for rank, product in enumerate(products, 1):
        reply.candidates.add(
            product=product_to_proto(product, with_description=False),
            fused_score=1.0 / (60 + rank),
            lexical_score=10.0 - rank / 10,
            lexical_rank=rank,
            dense_score=0.5,
            dense_rank=rank,
            sources=["lexical", "dense"],
        )
    return reply


def closed_loop(call: Callable[[], object], clients: int, seconds: float) -> dict[str, float]:
    """``shared.bench.load.closed_loop`` of ``call``, in µs (a hop takes well under a ms)."""
    figures = load.closed_loop(lambda _: call(), [None], clients, seconds)
    return {
        "calls": figures["requests"],
        "p50_us": figures["p50_ms"] * 1e3,
        "p99_us": figures["p99_ms"] * 1e3,
        "per_second": figures["per_s"],
    }


@contextmanager
def _bare_server(register: Callable[[grpc.Server], None]) -> Iterator[str]:
    """A plain grpc.Server with ``register``'s servicer, no interceptor: its address."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=16))
    register(server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        server.stop(0)


@contextmanager
def _shopsense_server(
    name: str, register: Callable[[grpc.Server], None], service: str
) -> Iterator[str]:
    """``build_server`` with ``register``'s servicer, SERVING: its address."""
    handle = build_server(name, register, [service])
    handle.mark_serving()
    try:
        yield handle.address
    finally:
        handle.stop(0)


def measure(seconds: float, log: TextIO) -> dict[str, dict[str, dict[str, float]]]:
    """Every case at 1 and 8 clients: ``{case: {"1": figures, "8": figures}}``. The
    services log one JSON line per call; here they are rendered and written to ``log``
    (the logging configuration before the call is put back after it)."""
    before = structlog.get_config()
    configure_logging("info", "bench", stream=log)
    try:
        return _measure(seconds)
    finally:
        structlog.configure(**before)
        structlog.contextvars.clear_contextvars()


def _measure(seconds: float) -> dict[str, dict[str, dict[str, float]]]:
    intent_request = intent_service_pb2.ClassifyRequest(query="grey velvet sofa")
    retrieve_request = retrieval_service_pb2.RetrieveRequest(query="grey velvet sofa", k=100)
    reply = candidates_reply()

    def add_intent(server: grpc.Server) -> None:
        intent_service_pb2_grpc.add_IntentServiceServicer_to_server(_Intent(), server)

    def add_retrieval(server: grpc.Server) -> None:
        retrieval_service_pb2_grpc.add_RetrievalServiceServicer_to_server(_Retrieval(reply), server)

    results: dict[str, dict[str, dict[str, float]]] = {}

    def run(case: str, call: Callable[[], object]) -> None:
        call()  # connect and warm up
        closed_loop(call, 1, min(0.5, seconds))
        results[case] = {str(n): closed_loop(call, n, seconds) for n in (1, 8)}

    def classify(channel: grpc.Channel) -> Callable[[], object]:
        stub = intent_service_pb2_grpc.IntentServiceStub(channel)
        return lambda: stub.Classify(intent_request, timeout=10)

    with _bare_server(add_intent) as address, grpc.insecure_channel(address) as channel:
        run("grpc bare", classify(channel))
    with _shopsense_server("intent", add_intent, INTENT) as address:
        with grpc.insecure_channel(address) as channel:
            run("shopsense server", classify(channel))
        with open_channel(address, ClientSecurity()) as channel:
            run("shopsense server + channel", classify(channel))
    with (
        _shopsense_server("retrieval", add_retrieval, RETRIEVAL) as address,
        open_channel(address, ClientSecurity()) as channel,
    ):
        retrieval = retrieval_service_pb2_grpc.RetrievalServiceStub(channel)
        run(
            "shopsense server + channel + 100 candidates",
            lambda: retrieval.Retrieve(retrieve_request, timeout=10),
        )

    parse = retrieval_service_pb2.RetrieveResponse.FromString
    in_process = closed_loop(lambda: parse(reply.SerializeToString()), 1, seconds)
    results["100 candidates serialised and parsed, in process"] = {"1": in_process}

    calls = max(5, int(seconds * 100))
    with _bare_server(add_intent) as address, grpc.insecure_channel(address) as channel:
        call = classify(channel)
        call()
        for gap_ms in IDLE_GAPS_MS:
            results[f"grpc bare, after {gap_ms} ms idle"] = {"1": after_idle(call, gap_ms, calls)}
    with (
        _shopsense_server("intent", add_intent, INTENT) as address,
        open_channel(address, ClientSecurity()) as channel,
    ):
        call = classify(channel)
        call()
        for gap_ms in IDLE_GAPS_MS:
            results[f"shopsense server + channel, after {gap_ms} ms idle"] = {
                "1": after_idle(call, gap_ms, calls)
            }
    with thread_echo() as hand_off:
        for gap_ms in (0, *IDLE_GAPS_MS):
            results[f"hand-off between two threads, after {gap_ms} ms idle"] = {
                "1": after_idle(hand_off, gap_ms, calls)
            }
    return results


IDLE_GAPS_MS = (2, 10, 30)


def after_idle(call: Callable[[], object], gap_ms: float, calls: int) -> dict[str, float]:
    """``calls`` calls, each after sleeping ``gap_ms``: p50 and p99 in µs (the sleeps are
    not counted)."""
    took = []
    for _ in range(calls):
        if gap_ms:
            time.sleep(gap_ms / 1e3)
        started = time.perf_counter()
        call()
        took.append((time.perf_counter() - started) * 1e6)
    return {
        "calls": calls,
        "p50_us": load.percentile(took, 0.5),
        "p99_us": load.percentile(took, 0.99),
    }


@contextmanager
def thread_echo() -> Iterator[Callable[[], object]]:
    """A thread that echoes what it is handed: a call hands it an item and waits for it
    back (two wake-ups, no socket)."""
    there: queue.SimpleQueue[object] = queue.SimpleQueue()
    back: queue.SimpleQueue[object] = queue.SimpleQueue()

    def echo() -> None:
        while (item := there.get()) is not None:
            back.put(item)

    thread = threading.Thread(target=echo, name="echo", daemon=True)
    thread.start()

    def hand_off() -> object:
        there.put(1)
        return back.get()

    try:
        yield hand_off
    finally:
        there.put(None)
        thread.join(timeout=5)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="duration of each run")
    parser.add_argument("--json", metavar="OUT", default="", help="also write the figures")
    args = parser.parse_args(argv)
    here = machine()
    console.print(here.line())
    with open(os.devnull, "w") as nowhere:
        results = measure(args.seconds, nowhere)
    bare = results["grpc bare"]["1"]["p50_us"]
    table = Table(title=f"One gRPC hop, layer by layer, {args.seconds:g} s a run")
    for column in ("case", "1 client p50 µs", "p99 µs", "p50 / bare", "8 clients calls/s"):
        table.add_column(column, justify="left" if column == "case" else "right")
    for case, figures in results.items():
        one, eight = figures["1"], figures.get("8")
        table.add_row(
            case,
            f"{one['p50_us']:.0f}",
            f"{one['p99_us']:.0f}",
            f"{one['p50_us'] / bare:.2f}x",
            f"{eight['per_second']:.0f}" if eight else "",
        )
    console.print(table)
    if args.json:
        Path(args.json).write_text(
            json.dumps({"machine": here.as_json(), "cases": results}, indent=2) + "\n"
        )
        console.print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
