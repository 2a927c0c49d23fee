"""Metrics and traces of the search path, read as an operator reads them: each service's
/metrics over HTTP after real searches (real servers on port 0, a real Triton, real
weights), and one Search's spans through an in-memory exporter as one trace."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from shopsense.common.v1 import common_pb2
from shopsense.feedback.v1 import feedback_service_pb2 as fpb
from shopsense.feedback.v1 import feedback_service_pb2_grpc
from shopsense.search.v1 import search_service_pb2 as spb
from shopsense.search.v1 import search_service_pb2_grpc

from shared.data.synthetic import generate_store
from shared.models.triton_client import TextEncoderClient
from shared.rpc import tracing
from shared.rpc.interceptors import REQUEST_ID_KEY
from tests.integration.conftest import Stack
from tests.support import Samples, metric
from tests.support import scrape as scrape_port

pytestmark = pytest.mark.integration

STORE = generate_store(n_products=200, n_queries=10, seed=5)
SEARCH = {"grpc_service": "shopsense.search.v1.SearchService", "grpc_method": "Search"}


@pytest.fixture(scope="module")
def spans() -> Iterator[InMemorySpanExporter]:
    """Tracing on for the servers and channels this module builds, into memory."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.install(provider)
    try:
        yield exporter
    finally:
        tracing.install(None)
        provider.shutdown()


@pytest.fixture(scope="module")
def stack(spans, start_stack, triton_server, tokenizer) -> Stack:
    encoder = TextEncoderClient(triton_server.grpc_url, tokenizer)
    stack = start_stack(
        ["retrieval", "ranking", "intent", "feedback", "gateway"],
        triton_url=triton_server.grpc_url,
        settings={"refresh_s": 0.5, "token_secret": "test-secret"},
        using={service: {"encoder": encoder} for service in ("retrieval", "intent", "gateway")},
    )
    stack.load_catalog(STORE.products)
    return stack


def scrape(stack: Stack, service: str) -> Samples:
    """The service's /metrics over HTTP: sample name and labels -> value."""
    port = stack.handles[service].metrics_port
    assert port, f"{service} serves no /metrics"
    return scrape_port(port)


def _search(stack: Stack, query: str, request_id: str = "") -> spb.SearchResponse:
    stub = stack.stub("gateway", search_service_pb2_grpc.SearchServiceStub)
    metadata = ((REQUEST_ID_KEY, request_id),) if request_id else None
    return stub.Search(
        spb.SearchRequest(query=query, user=common_pb2.UserContext(session_id="s-obs")),
        timeout=10,
        metadata=metadata,
    )


def test_searches_show_on_every_hops_metrics(stack: Stack):
    before = {service: scrape(stack, service) for service in ("gateway", "intent", "ranking")}
    for query in ("sofa", "blue rug", "desk lamp"):
        assert _search(stack, query).results
    after = {service: scrape(stack, service) for service in ("gateway", "intent", "ranking")}

    def grew(service: str, name: str, **labels: str) -> float:
        return metric(after[service], name, **labels) - metric(before[service], name, **labels)

    assert grew("gateway", "grpc_server_started_total", grpc_type="unary", **SEARCH) == 3
    assert grew("gateway", "grpc_server_handled_total", grpc_code="OK", **SEARCH) == 3
    assert grew("gateway", "grpc_server_handling_seconds_count", **SEARCH) == 3
    assert grew("gateway", "grpc_server_msg_received_total", **SEARCH) == 3
    assert grew("gateway", "grpc_server_msg_sent_total", **SEARCH) == 3
    # The latency histogram's buckets hold the three, the last (+Inf) all of them.
    assert grew("gateway", "grpc_server_handling_seconds_bucket", le="+Inf", **SEARCH) == 3
    assert grew("gateway", "shopsense_search_arm_seconds_count", experiment="", arm="control") == 3
    # Each hop counts its own calls, in its own registry: the gateway's Search is not there.
    assert grew("intent", "grpc_server_handled_total", grpc_method="Classify", grpc_code="OK") == 3
    assert grew("ranking", "grpc_server_handled_total", grpc_method="Rank", grpc_code="OK") == 3
    assert metric(after["intent"], "grpc_server_handled_total", **SEARCH) == 0


def test_a_bad_request_counts_as_invalid_argument_and_the_gateway_keeps_serving(stack: Stack):
    before = scrape(stack, "gateway")
    with pytest.raises(grpc.RpcError) as err:
        _search(stack, "   ")
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert _search(stack, "sofa").results
    after = scrape(stack, "gateway")
    for code, count in (("INVALID_ARGUMENT", 1), ("OK", 1)):
        grown = metric(after, "grpc_server_handled_total", grpc_code=code, **SEARCH) - metric(
            before, "grpc_server_handled_total", grpc_code=code, **SEARCH
        )
        assert grown == count, code


def test_a_search_degraded_by_a_missing_hop_is_counted_by_cause(stack: Stack, start_stack):
    # A second gateway whose ranking is nowhere: every search degrades by "ranking".
    lone = start_stack(
        ["gateway"],
        triton_url=stack.settings["gateway"].triton_url,
        settings={"refresh_s": 0.5, "token_secret": "test-secret"},
        only={
            "gateway": {
                "retrieval_target": stack.address("retrieval"),
                "intent_target": stack.address("intent"),
            }
        },
    )
    before = scrape(lone, "gateway")
    reply = _search(lone, "sofa")
    assert reply.degraded.ranking and reply.results
    after = scrape(lone, "gateway")
    grown = metric(after, "shopsense_search_degradations_total", cause="ranking") - metric(
        before, "shopsense_search_degradations_total", cause="ranking"
    )
    assert grown == 1
    assert (
        metric(after, "shopsense_searches_degraded_total")
        - metric(before, "shopsense_searches_degraded_total")
        == 1
    )
    assert (
        metric(after, "shopsense_search_arm_errors_total", hop="ranking")
        - metric(before, "shopsense_search_arm_errors_total", hop="ranking")
        == 1
    )


def _click(event_id: str, **overrides: object) -> fpb.Event:
    ts = Timestamp()
    ts.FromDatetime(datetime.now(UTC) - timedelta(seconds=5))
    fields: dict[str, object] = {
        "event_id": event_id,
        "type": fpb.EVENT_TYPE_CLICK,
        "timestamp": ts,
        "session_id": "s-obs",
        "product_id": STORE.products[0].product_id,
    }
    fields.update(overrides)
    return fpb.Event(**fields)  # type: ignore[arg-type]


def test_feedback_counts_accepted_duplicate_and_rejected_by_reason(stack: Stack):
    stub = stack.stub("feedback", feedback_service_pb2_grpc.FeedbackServiceStub)
    before = scrape(stack, "feedback")
    first = f"obs-{uuid.uuid4().hex}"
    events = [_click(first), _click(first + "-b"), _click("obs-unknown", product_id="no-such")]
    reply = stub.RecordEvents(fpb.RecordEventsRequest(events=events), timeout=10)
    assert (reply.accepted, reply.duplicates, reply.rejected) == (2, 0, 1)
    assert reply.results[2].error.startswith("product_id:")
    again = stub.RecordEvents(fpb.RecordEventsRequest(events=[_click(first)]), timeout=10)
    assert again.duplicates == 1
    after = scrape(stack, "feedback")

    def grew(name: str, **labels: str) -> float:
        return metric(after, name, **labels) - metric(before, name, **labels)

    assert grew("shopsense_feedback_events_total", outcome="accepted") == 2
    assert grew("shopsense_feedback_events_total", outcome="duplicate") == 1
    assert grew("shopsense_feedback_events_total", outcome="rejected") == 1
    assert grew("shopsense_feedback_rejections_total", reason="product_id") == 1


def test_one_search_is_one_trace_through_gateway_intent_retrieval_and_ranking(
    stack: Stack, spans: InMemorySpanExporter
):
    spans.clear()
    request_id = f"trace-{uuid.uuid4().hex[:12]}"
    assert _search(stack, "leather sofa", request_id).request_id == request_id
    mine = [
        s
        for s in spans.get_finished_spans()
        if s.attributes.get(tracing.REQUEST_ID_ATTRIBUTE) == request_id
    ]
    servers = {
        s.attributes[tracing.SERVICE_ATTRIBUTE]: s for s in mine if s.kind == SpanKind.SERVER
    }
    assert set(servers) >= {"gateway", "intent", "retrieval", "ranking"}, [s.name for s in mine]
    assert len({s.context.trace_id for s in mine}) == 1
    assert servers["gateway"].name == "/shopsense.search.v1.SearchService/Search"
    assert servers["gateway"].parent is None or not servers["gateway"].parent.is_valid
    # Each hop's server span is the child of the gateway's client span for that call, and
    # that one of the gateway's server span.
    clients = {s.context.span_id: s for s in mine if s.kind == SpanKind.CLIENT}
    for hop, method in (
        ("intent", "/shopsense.intent.v1.IntentService/Classify"),
        ("retrieval", "/shopsense.retrieval.v1.RetrievalService/Retrieve"),
        ("ranking", "/shopsense.ranking.v1.RankingService/Rank"),
    ):
        server = servers[hop]
        assert server.name == method
        caller = clients[server.parent.span_id]
        assert caller.name == method
        assert caller.parent.span_id == servers["gateway"].context.span_id


def test_a_searchs_triton_inferences_are_spans_of_its_trace(
    stack: Stack, spans: InMemorySpanExporter
):
    """tritonclient is not instrumented: each inference gets a CLIENT span of its own, so
    the query's embedding shows in the trace instead of a gap."""
    spans.clear()
    request_id = f"triton-{uuid.uuid4().hex[:12]}"
    _search(stack, "walnut coffee table", request_id)
    mine = [
        s
        for s in spans.get_finished_spans()
        if s.attributes.get(tracing.REQUEST_ID_ATTRIBUTE) == request_id
    ]
    by_id = {s.context.span_id: s for s in mine}
    inferences = [s for s in mine if s.name.startswith("triton ")]
    assert inferences, [s.name for s in mine]
    embedding = next(s for s in inferences if s.name == "triton text_encoder infer")
    assert embedding.kind == SpanKind.CLIENT
    assert embedding.attributes["shopsense.model"] == "text_encoder"
    assert str(embedding.attributes["shopsense.model_version"]).isdigit()
    assert embedding.attributes["shopsense.rows"] == 1
    assert embedding.end_time > embedding.start_time
    # Inside the search's trace, under the server span of the service that embedded it.
    assert len({s.context.trace_id for s in mine}) == 1
    parent = by_id[embedding.parent.span_id]
    assert parent.kind == SpanKind.SERVER
    assert parent.attributes[tracing.SERVICE_ATTRIBUTE] in {"gateway", "retrieval", "intent"}
