"""The search path with every service a real gRPC server on port 0, a real Triton, real
MiniLM weights and a real catalog file; bad input on every RPC; degradation."""

from __future__ import annotations

import time

import grpc
import pytest
from shopsense.common.v1 import common_pb2
from shopsense.intent.v1 import intent_service_pb2, intent_service_pb2_grpc
from shopsense.ranking.v1 import ranking_service_pb2, ranking_service_pb2_grpc
from shopsense.retrieval.v1 import retrieval_service_pb2 as rpb
from shopsense.retrieval.v1 import retrieval_service_pb2_grpc
from shopsense.search.v1 import search_service_pb2 as spb
from shopsense.search.v1 import search_service_pb2_grpc

from services.gateway.server import TIMINGS_KEY
from shared.contracts.search import NO_CACHE
from shared.data.synthetic import generate_store
from shared.experiments.attribution import AttributionSigner
from shared.models.triton_client import TextEncoderClient
from shared.rpc.server import build_server
from tests.integration.conftest import Stack
from tests.support import wait_until

pytestmark = pytest.mark.integration


STORE = generate_store(n_products=400, n_queries=20, seed=3)


@pytest.fixture(scope="module")
def stack(start_stack, triton_server, tokenizer) -> Stack:
    encoder = TextEncoderClient(triton_server.grpc_url, tokenizer)
    stack = start_stack(
        ["retrieval", "ranking", "intent", "gateway"],
        triton_url=triton_server.grpc_url,
        settings={"refresh_s": 0.5, "token_secret": "test-secret"},
        using={service: {"encoder": encoder} for service in ("retrieval", "intent", "gateway")},
    )
    # Intent's prototypes follow the catalog on a timer: until they do, two searches a
    # moment apart could be boosted by two generations (pages then overlap).
    stack.load_catalog(STORE.products)
    return stack


def _search(stack: Stack) -> search_service_pb2_grpc.SearchServiceStub:
    return stack.stub("gateway", search_service_pb2_grpc.SearchServiceStub)


def _retrieval(stack: Stack) -> retrieval_service_pb2_grpc.RetrievalServiceStub:
    return stack.stub("retrieval", retrieval_service_pb2_grpc.RetrievalServiceStub)


# A fresh search: the gateway's result cache is neither read nor written.
FRESH = (NO_CACHE,)


def _request(query: str = "sofa", **kw) -> spb.SearchRequest:
    kw.setdefault("user", common_pb2.UserContext(session_id="s-1"))
    return spb.SearchRequest(query=query, **kw)


def test_search_returns_ranked_explained_results_with_a_valid_token(stack: Stack):
    sofa = next(p for p in STORE.products if p.product_class == "Sofas")
    reply = _search(stack).Search(_request(sofa.title), timeout=10)
    assert reply.results, "no results"
    assert sofa.product_id in [r.product_id for r in reply.results[:5]]
    top = reply.results[0]
    assert top.position == 1 and top.explanation.sources
    assert top.explanation.score_parts
    assert top.score == pytest.approx(sum(p.contribution for p in top.explanation.score_parts))
    scores = [r.score for r in reply.results]
    assert scores == sorted(scores, reverse=True)
    assert not (reply.degraded.intent or reply.degraded.ranking or reply.degraded.dense)
    assert reply.intent.classes and reply.intent.model_version.startswith("prototypes-g")
    assert reply.model_versions.text_encoder == "1"
    decoded = AttributionSigner("test-secret").decode(reply.attribution_token)
    assert decoded.request_id == reply.request_id
    assert decoded.arm == reply.experiment_arm == "control"
    assert decoded.model_versions["ranking"] == reply.model_versions.ranking


def test_pages_do_not_overlap_and_token_is_bound_to_the_request(stack: Stack):
    stub = _search(stack)
    first = stub.Search(_request("table", page_size=5), timeout=10)
    second = stub.Search(
        _request("table", page_size=5, page_token=first.next_page_token), timeout=10
    )
    assert [r.position for r in second.results] == [6, 7, 8, 9, 10]
    assert not {r.product_id for r in first.results} & {r.product_id for r in second.results}
    with pytest.raises(grpc.RpcError) as err:
        stub.Search(_request("lamp", page_size=5, page_token=first.next_page_token), timeout=10)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "page_token" in err.value.details()


def test_a_token_used_with_another_page_size_is_refused(stack: Stack):
    stub = _search(stack)
    first = stub.Search(_request("table", page_size=5), timeout=10)
    for page_size in (10, 3, 0):  # 0 is the default, 20: also another size
        with pytest.raises(grpc.RpcError) as err:
            stub.Search(
                _request("table", page_size=page_size, page_token=first.next_page_token),
                timeout=10,
            )
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, page_size
        details = err.value.details()
        assert details.startswith("page_token") and "page_size" in details, details
    # The same size still continues where the last page ended, over several pages.
    whole = stub.Search(_request("table", page_size=15), timeout=10)
    second = stub.Search(
        _request("table", page_size=5, page_token=first.next_page_token), timeout=10
    )
    third = stub.Search(
        _request("table", page_size=5, page_token=second.next_page_token), timeout=10
    )
    assert [r.position for r in third.results] == [11, 12, 13, 14, 15]
    assert [r.product_id for page in (first, second, third) for r in page.results] == [
        r.product_id for r in whole.results
    ]


def test_page_size_zero_means_the_documented_default_of_twenty(stack: Stack):
    reply = _search(stack).Search(_request("chair", page_size=0), timeout=10)
    assert len(reply.results) == 20 and reply.next_page_token
    # 0 and 20 are the same size: a token from either continues with the other.
    for page_size in (0, 20):
        following = _search(stack).Search(
            _request("chair", page_size=page_size, page_token=reply.next_page_token), timeout=10
        )
        assert [r.position for r in following.results] == list(range(21, 41))


def test_filters_restrict_results(stack: Stack):
    filters = common_pb2.Filters(
        product_classes=["Sofas"], price=common_pb2.PriceRange(min=100.0, max=5000.0)
    )
    reply = _search(stack).Search(_request("comfortable seating", filters=filters), timeout=10)
    assert reply.results
    for r in reply.results:
        assert r.product_class == "Sofas" and 100.0 <= r.price <= 5000.0


@pytest.mark.parametrize(
    ("request_kwargs", "field"),
    [
        ({"query": ""}, "query"),
        ({"query": "   \t "}, "query"),
        ({"query": "x" * 10_000}, "query"),
        ({"query": "\u200b"}, "query"),  # zero-width space
        ({"query": "\ufeff\u200e\u200f\u2060"}, "query"),  # BOM, LRM, RLM, word joiner
        ({"query": " \x00\x1b\u200b "}, "query"),  # control characters too
        ({"page_size": -1}, "page_size"),
        ({"page_size": 1_000_000}, "page_size"),
        ({"page_token": "not-a-token"}, "page_token"),
        ({"user": common_pb2.UserContext()}, "user"),
        (
            {
                "filters": common_pb2.Filters(
                    attributes=[common_pb2.AttributeFilter(name="shape", values=["round"])]
                )
            },
            "filters.attributes",
        ),
        (
            {"filters": common_pb2.Filters(price=common_pb2.PriceRange(min=50, max=10))},
            "filters.price.max",
        ),
    ],
)
def test_bad_search_input_gets_invalid_argument_naming_the_field(
    stack: Stack, request_kwargs, field
):
    kwargs = {"query": "sofa", "user": common_pb2.UserContext(session_id="s")} | request_kwargs
    with pytest.raises(grpc.RpcError) as err:
        _search(stack).Search(spb.SearchRequest(**kwargs), timeout=10)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert err.value.details().startswith(field), err.value.details()
    assert _search(stack).Search(_request("sofa"), timeout=10).results  # still serving


def test_invisible_characters_inside_a_query_do_not_change_the_answer(stack: Stack):
    stub = _search(stack)
    plain = stub.Search(_request("grey sofa"), timeout=10)
    hidden = stub.Search(_request("\ufeffgrey\u200b sofa\u200e"), timeout=10)
    assert plain.results
    assert [r.product_id for r in hidden.results] == [r.product_id for r in plain.results]


def test_bad_input_on_the_internal_rpcs(stack: Stack):
    retrieval = _retrieval(stack)
    intent = intent_service_pb2_grpc.IntentServiceStub(stack.channel("intent"))
    ranking = ranking_service_pb2_grpc.RankingServiceStub(stack.channel("ranking"))
    cases = [
        (lambda: retrieval.Retrieve(rpb.RetrieveRequest(query=" "), timeout=5), "query"),
        (lambda: retrieval.Retrieve(rpb.RetrieveRequest(query="\u200b"), timeout=5), "query"),
        (lambda: retrieval.Retrieve(rpb.RetrieveRequest(query="a", k=-3), timeout=5), "k"),
        (
            lambda: retrieval.Retrieve(
                rpb.RetrieveRequest(
                    query="a", query_embedding=common_pb2.Embedding(values=[0.1] * 3)
                ),
                timeout=5,
            ),
            "query_embedding",
        ),
        (lambda: retrieval.DeleteProducts(rpb.DeleteProductsRequest(), timeout=5), "product_ids"),
        (lambda: retrieval.GetProducts(rpb.GetProductsRequest(), timeout=5), "product_ids"),
        (lambda: intent.Classify(intent_service_pb2.ClassifyRequest(query=""), timeout=5), "query"),
        (
            lambda: intent.Classify(intent_service_pb2.ClassifyRequest(query="\ufeff"), timeout=5),
            "query",
        ),
        (
            lambda: intent.Classify(
                intent_service_pb2.ClassifyRequest(query="a", top_k=500), timeout=5
            ),
            "top_k",
        ),
        (
            lambda: ranking.Rank(ranking_service_pb2.RankRequest(query="sofa"), timeout=5),
            "candidates",
        ),
        # str.isdigit accepts these digits; int() refuses "²" and reads "٣" as 3.
        (
            lambda: intent.Classify(
                intent_service_pb2.ClassifyRequest(query="sofa", model_version="²"), timeout=5
            ),
            "model_version",
        ),
        (
            lambda: ranking.Rank(
                ranking_service_pb2.RankRequest(
                    query="sofa",
                    candidates=[
                        rpb.Candidate(
                            product=common_pb2.Product(product_id="p-1", title="Grey Sofa")
                        )
                    ],
                    model_version="٣",
                ),
                timeout=5,
            ),
            "model_version",
        ),
    ]
    for call, field in cases:
        with pytest.raises(grpc.RpcError) as err:
            call()
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, field
        assert err.value.details().startswith(field), err.value.details()


def test_upsert_rejects_invalid_products_and_keeps_the_valid_ones(stack: Stack):
    products = [
        common_pb2.Product(
            product_id="ok-1",
            title="Walnut Coffee Table",
            product_class="Coffee & Cocktail Tables",
            price=199,
        ),
        common_pb2.Product(product_id="bad-1", title="", price=10),
        common_pb2.Product(product_id="bad-2", title="Negative", price=-5),
    ]
    reply = _retrieval(stack).UpsertProducts(
        iter([rpb.UpsertProductsRequest(products=products)]), timeout=30
    )
    status = {r.product_id: (r.status, r.error) for r in reply.results}
    assert status["ok-1"][0] == rpb.ITEM_STATUS_CREATED
    assert status["bad-1"][0] == rpb.ITEM_STATUS_INVALID and "title" in status["bad-1"][1]
    assert status["bad-2"][0] == rpb.ITEM_STATUS_INVALID and "price" in status["bad-2"][1]
    got = _retrieval(stack).GetProducts(
        rpb.GetProductsRequest(product_ids=["ok-1", "bad-1"]), timeout=5
    )
    assert [p.product_id for p in got.products] == ["ok-1"] and list(got.missing_ids) == ["bad-1"]
    deleted = _retrieval(stack).DeleteProducts(
        rpb.DeleteProductsRequest(product_ids=["ok-1", "nope"]), timeout=5
    )
    assert [r.status for r in deleted.results] == [
        rpb.ITEM_STATUS_DELETED,
        rpb.ITEM_STATUS_NOT_FOUND,
    ]


class _SlowRanking(ranking_service_pb2_grpc.RankingServiceServicer):
    """A ranking service that answers too late: the gateway is the unit under test."""

    def Rank(self, request, context):
        time.sleep(3.0)
        return ranking_service_pb2.RankResponse()


def test_an_updated_product_is_served_with_its_new_fields(stack: Stack):
    retrieval = _retrieval(stack)

    def upsert(title: str, price: float) -> None:
        product = common_pb2.Product(
            product_id="upd-1", title=title, product_class="Bookcases", price=price
        )
        reply = retrieval.UpsertProducts(
            iter([rpb.UpsertProductsRequest(products=[product])]), timeout=30
        )
        assert not reply.results[0].error

    def found() -> tuple[str, float]:
        reply = retrieval.Retrieve(rpb.RetrieveRequest(query="zebrawood bookcase", k=5), timeout=5)
        hit = next(c.product for c in reply.candidates if c.product.product_id == "upd-1")
        return hit.title, hit.price

    upsert("Zebrawood Bookcase", 120.0)
    assert found() == ("Zebrawood Bookcase", 120.0)
    upsert("Zebrawood Bookcase with Doors", 180.0)
    assert found() == ("Zebrawood Bookcase with Doors", 180.0)
    retrieval.DeleteProducts(rpb.DeleteProductsRequest(product_ids=["upd-1"]), timeout=5)


def _hops(call: grpc.Call) -> set[str]:
    """The hops a search's timings trailer names."""
    timings = dict(call.trailing_metadata())[TIMINGS_KEY]
    return {part.partition("=")[0] for part in timings.split(",")}


def test_a_repeated_search_is_answered_from_the_result_cache_until_the_catalog_changes(
    stack: Stack,
):
    stub, retrieval = _search(stack), _retrieval(stack)
    first, call = stub.Search.with_call(_request("teak cabinet"), timeout=10)
    assert {"embed", "intent", "retrieval", "ranking"} <= _hops(call)
    again, call = stub.Search.with_call(_request("teak cabinet"), timeout=10)
    assert "cache" in _hops(call) and not _hops(call) & {"embed", "intent", "retrieval"}
    assert again.results == first.results and again.request_id != first.request_id
    assert AttributionSigner("test-secret").decode(again.attribution_token).request_id == (
        again.request_id
    )
    # Another page of the same search reads deeper: its own entry.
    _, call = stub.Search.with_call(_request("teak cabinet", page_size=50), timeout=10)
    assert "retrieval" in _hops(call)
    # A caller may ask for a fresh search.
    _, call = stub.Search.with_call(_request("teak cabinet"), timeout=10, metadata=FRESH)
    assert "retrieval" in _hops(call)

    # A catalog change is seen at the gateway's next refresh (0.5 s here).
    product = common_pb2.Product(
        product_id="teak-1", title="Teak Cabinet", product_class="Cabinets", price=99.0
    )
    reply = retrieval.UpsertProducts(
        iter([rpb.UpsertProductsRequest(products=[product])]), timeout=30
    )
    assert not reply.results[0].error

    def shows_new_product() -> bool:
        reply = stub.Search(_request("teak cabinet"), timeout=10)
        return any(r.product_id == "teak-1" for r in reply.results)

    wait_until(shows_new_product, "the new product in the cached search", timeout=10)
    retrieval.DeleteProducts(rpb.DeleteProductsRequest(product_ids=["teak-1"]), timeout=5)
    wait_until(
        lambda: not shows_new_product(), "the deleted product gone from the search", timeout=10
    )


def test_late_ranking_is_skipped_within_the_callers_deadline(
    stack: Stack, start_stack, triton_server
):
    slow = build_server(
        "slow-ranking",
        lambda s: ranking_service_pb2_grpc.add_RankingServiceServicer_to_server(_SlowRanking(), s),
        ["shopsense.ranking.v1.RankingService"],
    )
    try:
        with start_stack(
            ["gateway"],
            triton_url=triton_server.grpc_url,
            only={
                "gateway": {
                    "retrieval_target": stack.address("retrieval"),
                    "intent_target": stack.address("intent"),
                    "ranking_target": slow.address,
                }
            },
        ) as late:
            started = time.monotonic()
            reply = _search(late).Search(_request("sofa"), timeout=1.0)
            elapsed = time.monotonic() - started
            assert reply.degraded.ranking and reply.results
            assert elapsed < 1.0
    finally:
        slow.stop(0)


def test_an_oversized_request_is_refused_and_the_gateway_keeps_serving(stack: Stack):
    """The public API takes search and recommendation requests, not bulk uploads: its limit is 2 MiB
    (SHOPSENSE_GATEWAY_MAX_MESSAGE_BYTES), not the 32 MiB every server once accepted."""
    assert stack.settings["gateway"].max_message_bytes == 2 * 1024 * 1024
    huge = _request("sofa", filters=common_pb2.Filters(product_classes=["x" * (20 * 1024 * 1024)]))
    with pytest.raises(grpc.RpcError) as err:
        _search(stack).Search(huge, timeout=30)
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert _search(stack).Search(_request("sofa"), timeout=10).results  # still serving


def test_a_deadline_shorter_than_retrieval_gets_deadline_exceeded(stack: Stack):
    with pytest.raises(grpc.RpcError) as err:
        _search(stack).Search(_request("sofa"), timeout=0.001, metadata=FRESH)
    assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert _search(stack).Search(_request("sofa"), timeout=10).results  # still serving


def test_request_id_from_the_caller_is_kept_and_logged(stack: Stack):
    import structlog
    from structlog.testing import capture_logs

    with capture_logs(processors=[structlog.contextvars.merge_contextvars]) as logs:
        reply = _search(stack).Search(
            _request("sofa"),
            timeout=10,
            metadata=(("x-request-id", "storefront-req-42"), NO_CACHE),
        )
    assert reply.request_id == "storefront-req-42"
    hops = {e.get("service") for e in logs if e.get("request_id") == "storefront-req-42"}
    assert {"gateway", "retrieval", "ranking", "intent"} <= hops, logs


def test_gateway_degrades_when_intent_or_ranking_is_down_and_fails_without_retrieval(stack: Stack):
    """Runs last in this module: it stops the servers. A search the result cache kept
    before is still answered whole."""
    stub = _search(stack)
    kept = stub.Search(_request("grey sofa"), timeout=10)
    stack.handles["ranking"].stop(0)
    reply = stub.Search(_request("sofa"), timeout=10, metadata=FRESH)
    assert reply.degraded.ranking and not reply.degraded.intent
    assert reply.results and not reply.results[0].explanation.score_parts
    fused = [r.score for r in reply.results]
    assert fused == sorted(fused, reverse=True)  # retrieval order
    again = stub.Search(_request("grey sofa"), timeout=10)
    assert not again.degraded.ranking and again.results == kept.results

    stack.handles["intent"].stop(0)
    reply = stub.Search(_request("sofa"), timeout=10, metadata=FRESH)
    assert reply.degraded.intent and reply.degraded.ranking and reply.results

    stack.handles["retrieval"].stop(0)
    with pytest.raises(grpc.RpcError) as err:
        stub.Search(_request("sofa"), timeout=10, metadata=FRESH)
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "retrieval" in err.value.details()
