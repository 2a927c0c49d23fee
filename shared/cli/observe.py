"""`shopsense observe [QUERY]`: one Search through the running suite, then what an operator
would see of it: each service's and Triton's /metrics (the lines about calls, latency and
the product's own counters) and the Search's trace, span by span.

The trace comes to the command itself: it listens for OTLP/gRPC on
``SHOPSENSE_OTLP_ENDPOINT`` (default 127.0.0.1:4317, the standard OTLP port) for as long
as it runs, and keeps the spans that carry its search's request id. So the suite must
export there: start it with ``SHOPSENSE_OTLP_ENDPOINT=127.0.0.1:4317 make run``. Without
that (or with a real collector already on the port) the metrics are printed and the
command says why no trace came, exiting 1. The services batch their spans (OpenTelemetry's
BatchSpanProcessor sends every 5 s), hence ``--wait``.
"""

from __future__ import annotations

import argparse
import threading
import time
import urllib.request
import uuid
from collections.abc import Sequence
from concurrent import futures
from dataclasses import dataclass

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.common.v1 import common_pb2 as otel_common
from rich.console import Console
from shopsense.common.v1 import common_pb2
from shopsense.search.v1 import search_service_pb2 as pb
from shopsense.search.v1 import search_service_pb2_grpc

from shared.rpc.clients import open_channel
from shared.rpc.interceptors import REQUEST_ID_KEY
from shared.rpc.tracing import REQUEST_ID_ATTRIBUTE
from shared.settings import ClientSettings

# The hops one Search must show, by the service attribute on their server spans.
HOPS = ("gateway", "intent", "retrieval", "ranking")
# The /metrics lines printed: calls by code, latency counts and sums, the product's own.
SHOWN = (
    "grpc_server_handled_total",
    "grpc_server_handling_seconds_count",
    "grpc_server_handling_seconds_sum",
    "shopsense_",
    "nv_inference_count",
    "nv_inference_request_success",
    "nv_inference_request_failure",
    "nv_inference_request_duration_us",
)
_KINDS = {1: "internal", 2: "server", 3: "client", 4: "producer", 5: "consumer"}


@dataclass(frozen=True)
class Span:
    """One received span, as printed."""

    trace_id: str
    span_id: str
    parent_id: str
    name: str
    kind: str
    service: str
    start_ns: int
    end_ns: int
    error: bool
    attributes: dict[str, str]

    @property
    def ms(self) -> float:
        return (self.end_ns - self.start_ns) / 1e6


def _value(value: otel_common.AnyValue) -> str:
    kind = value.WhichOneof("value")
    return str(getattr(value, kind)) if kind else ""


class SpanReceiver(trace_service_pb2_grpc.TraceServiceServicer):
    """A minimal OTLP/gRPC trace receiver that keeps every span it is sent, in memory."""

    def __init__(self) -> None:
        self._spans: list[Span] = []
        self._lock = threading.Lock()

    def Export(
        self, request: trace_service_pb2.ExportTraceServiceRequest, context: grpc.ServicerContext
    ) -> trace_service_pb2.ExportTraceServiceResponse:
        received = []
        for resource_spans in request.resource_spans:
            resource = {a.key: _value(a.value) for a in resource_spans.resource.attributes}
            for scope in resource_spans.scope_spans:
                for span in scope.spans:
                    attributes = {a.key: _value(a.value) for a in span.attributes}
                    received.append(
                        Span(
                            trace_id=span.trace_id.hex(),
                            span_id=span.span_id.hex(),
                            parent_id=span.parent_span_id.hex(),
                            name=span.name,
                            kind=_KINDS.get(span.kind, "?"),
                            # Server spans name their service; a client span's is
                            # its process's ("shopsense-gateway").
                            service=attributes.get("shopsense.service")
                            or resource.get("service.name", "?").removeprefix("shopsense-"),
                            start_ns=span.start_time_unix_nano,
                            end_ns=span.end_time_unix_nano,
                            error=span.status.code == 2,
                            attributes=attributes,
                        )
                    )
        with self._lock:
            self._spans.extend(received)
        return trace_service_pb2.ExportTraceServiceResponse()

    def trace_of(self, request_id: str) -> list[Span]:
        """Every span of the trace whose spans carry ``request_id``, by start time."""
        with self._lock:
            spans = list(self._spans)
        traces = {s.trace_id for s in spans if s.attributes.get(REQUEST_ID_ATTRIBUTE) == request_id}
        return sorted((s for s in spans if s.trace_id in traces), key=lambda s: s.start_ns)


def start_receiver(address: str) -> tuple[grpc.Server, SpanReceiver] | None:
    """The receiver listening on ``address``; None when the port is taken."""
    receiver = SpanReceiver()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(receiver, server)
    try:
        if server.add_insecure_port(address) == 0:
            return None
    except RuntimeError:
        return None
    server.start()
    return server, receiver


def print_trace(spans: Sequence[Span], console: Console) -> None:
    """The spans as a tree: each under its parent, with service, kind and duration."""
    children: dict[str, list[Span]] = {}
    ids = {s.span_id for s in spans}
    for span in spans:
        children.setdefault(span.parent_id if span.parent_id in ids else "", []).append(span)
    first = spans[0].start_ns

    def show(span: Span, depth: int) -> None:
        flag = " [red]ERROR[/red]" if span.error else ""
        console.print(
            f"{'  ' * depth}{span.service:<9} {span.kind:<6} {span.name}  "
            f"+{(span.start_ns - first) / 1e6:.1f} ms, {span.ms:.1f} ms{flag}",
            highlight=False,
        )
        for child in children.get(span.span_id, []):
            show(child, depth + 1)

    for root in children.get("", []):
        show(root, 0)


def metric_lines(text: str) -> list[str]:
    """The printed lines of one /metrics text: the families in SHOWN, health probes and
    zero-valued product counters left out."""
    lines = []
    for line in text.splitlines():
        if line.startswith("#") or not line.startswith(SHOWN):
            continue
        if "grpc.health.v1.Health" in line or "_created" in line.split("{")[0]:
            continue
        if line.startswith("shopsense_") and line.rsplit(" ", 1)[-1] in ("0.0", "0"):
            continue
        if "_bucket" in line.split("{")[0]:
            continue
        lines.append(line)
    return lines


def scrape(target: str, timeout_s: float = 5.0) -> str:
    with urllib.request.urlopen(f"http://{target}/metrics", timeout=timeout_s) as reply:
        return reply.read().decode()


def cmd_observe(args: argparse.Namespace, console: Console) -> int:
    settings = ClientSettings.load()
    listening = start_receiver(settings.otlp_endpoint)
    if listening is None:
        console.print(
            f"[yellow]{settings.otlp_endpoint} is taken (a collector?): no trace here; "
            "SHOPSENSE_OTLP_ENDPOINT picks another address[/yellow]"
        )
    request_id = f"observe-{uuid.uuid4().hex[:16]}"
    stub = search_service_pb2_grpc.SearchServiceStub(
        open_channel(args.target or settings.gateway_target)
    )
    started = time.perf_counter()
    try:
        reply = stub.Search(
            pb.SearchRequest(query=args.query, user=common_pb2.UserContext(session_id="observe")),
            timeout=10,
            metadata=((REQUEST_ID_KEY, request_id),),
        )
    except grpc.RpcError as exc:
        console.print(f"[red]search failed: {exc.code().name}: {exc.details()}[/red]")
        return 1
    console.print(
        f'Search "{args.query}": {reply.total_size} results in '
        f"{(time.perf_counter() - started) * 1e3:.0f} ms, request id {request_id}\n"
    )
    ok = True
    console.print("[bold]metrics[/bold] (/metrics of each service and of Triton)")
    for item in settings.metrics_targets.split(","):
        name, _, target = item.partition("=")
        try:
            lines = metric_lines(scrape(target))
        except OSError as exc:
            console.print(f"  {name} ({target}): [red]unreachable: {exc}[/red]")
            ok = False
            continue
        console.print(f"[bold]{name}[/bold] http://{target}/metrics", highlight=False)
        for line in lines:
            console.print(f"  {line}", highlight=False, soft_wrap=True)
    if listening is None:
        return 1
    server, receiver = listening
    try:
        spans = _wait_for_trace(receiver, request_id, args.wait)
    finally:
        server.stop(0)
    console.print(f"\n[bold]trace[/bold] of request {request_id}")
    if not spans:
        console.print(
            f"[red]no span arrived in {args.wait:g} s[/red]: the suite exports traces only "
            f"when started with SHOPSENSE_OTLP_ENDPOINT={settings.otlp_endpoint} "
            "(e.g. `SHOPSENSE_OTLP_ENDPOINT=127.0.0.1:4317 make run`)"
        )
        return 1
    traces = {s.trace_id for s in spans}
    console.print(f"trace id {', '.join(sorted(traces))}: {len(spans)} spans", highlight=False)
    print_trace(spans, console)
    missing = [hop for hop in HOPS if not _served(spans, hop)]
    if missing:
        console.print(f"[red]no server span from {', '.join(missing)}[/red]")
        ok = False
    return 0 if ok and len(traces) == 1 else 1


def _served(spans: Sequence[Span], hop: str) -> bool:
    return any(s.kind == "server" and s.service == hop for s in spans)


def _wait_for_trace(receiver: SpanReceiver, request_id: str, wait_s: float) -> list[Span]:
    """The trace once every hop's server span is in (or what came within ``wait_s``)."""
    deadline = time.monotonic() + wait_s
    spans = receiver.trace_of(request_id)
    while time.monotonic() < deadline and not all(_served(spans, hop) for hop in HOPS):
        time.sleep(0.2)
        spans = receiver.trace_of(request_id)
    return spans


def add_parser(sub: argparse._SubParsersAction, console: Console) -> None:
    observe = sub.add_parser(
        "observe",
        help="one Search, then the suite's /metrics and the Search's trace (the suite "
        "exporting to SHOPSENSE_OTLP_ENDPOINT)",
    )
    observe.add_argument("query", nargs="?", default="leather sofa")
    observe.add_argument("--target", help="the gateway, host:port (default: its setting)")
    observe.add_argument(
        "--wait", type=float, default=15.0, help="seconds to wait for the trace (default 15)"
    )
    observe.set_defaults(func=lambda args: cmd_observe(args, console))
