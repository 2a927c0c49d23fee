"""Recommendations with real parts: retrieval (a real Triton, real MiniLM vectors, a real
catalog file), the feedback service and its SQLite file, the recommendation service
reading that file, and the gateway in front; every placement, every field's bad input, a
brand-new product and a shopper's erasure."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from shopsense.common.v1 import common_pb2
from shopsense.feedback.v1 import feedback_service_pb2 as fpb
from shopsense.feedback.v1 import feedback_service_pb2_grpc
from shopsense.recommend.v1 import recommend_service_pb2 as pb
from shopsense.recommend.v1 import recommend_service_pb2_grpc

from shared.data.catalog import Product
from shared.experiments.attribution import AttributionSigner
from shared.models.triton_client import TextEncoderClient
from shared.storage.database import create_db_engine
from shared.storage.feedback import FeedbackStore
from tests.integration.conftest import Stack
from tests.support import HOME_CATALOG, wait_until

pytestmark = pytest.mark.integration

SECRET = "test-secret"
CATALOG = HOME_CATALOG


def _event(event_id: str, product: str, user: str, session: str, kind: int, ago_s: float):
    stamp = Timestamp()
    stamp.FromDatetime(datetime.now(UTC) - timedelta(seconds=ago_s))
    event = fpb.Event(
        event_id=event_id,
        type=kind,
        timestamp=stamp,
        user_id=user,
        session_id=session,
        product_id=product,
    )
    if kind == fpb.EVENT_TYPE_PURCHASE:
        event.amount, event.currency = 10.0, "EUR"
    return event


# Four shoppers bought a mug with the teapot; two viewed the sofa then the cushion; the
# lamp is bought most (trending); alice bought mugs twice.
HISTORY = [
    *(
        e
        for n in range(4)
        for e in (
            _event(f"t{n}a", "mug-red", f"buyer{n}", f"b{n}", fpb.EVENT_TYPE_PURCHASE, 3600),
            _event(f"t{n}b", "teapot", f"buyer{n}", f"b{n}", fpb.EVENT_TYPE_PURCHASE, 3590),
        )
    ),
    *(
        e
        for n in range(2)
        for e in (
            _event(f"v{n}a", "sofa", "", f"browse{n}", fpb.EVENT_TYPE_CLICK, 3000),
            _event(f"v{n}b", "cushion", "", f"browse{n}", fpb.EVENT_TYPE_CLICK, 2990),
        )
    ),
    *(_event(f"l{n}", "lamp", f"lamp{n}", f"l{n}", fpb.EVENT_TYPE_PURCHASE, 600) for n in range(6)),
    _event("a1", "mug-blue", "alice", "alice-s1", fpb.EVENT_TYPE_PURCHASE, 7200),
    _event("a2", "mug-blue", "alice", "alice-s2", fpb.EVENT_TYPE_PURCHASE, 1800),
    _event("a3", "mug-red", "alice", "alice-s2", fpb.EVENT_TYPE_PURCHASE, 1790),
]


def _stats(stack: Stack) -> pb.GetRecommenderStatsResponse:
    stub = stack.stub("recommend", recommend_service_pb2_grpc.RecommendServiceStub)
    return stub.GetRecommenderStats(pb.GetRecommenderStatsRequest(), timeout=5)


def _record(stack: Stack, events: list[fpb.Event]) -> None:
    stub = stack.stub("feedback", feedback_service_pb2_grpc.FeedbackServiceStub)
    before = _stats(stack).events_read
    reply = stub.RecordEvents(fpb.RecordEventsRequest(events=events), timeout=10)
    assert reply.rejected == 0, reply
    wait_until(
        lambda: _stats(stack).events_read >= before + reply.accepted,
        "the recommender read the new events",
        timeout=30,
    )


@pytest.fixture(scope="module")
def stack(start_stack, triton_server, tokenizer) -> Stack:
    encoder = TextEncoderClient(triton_server.grpc_url, tokenizer)
    stack = start_stack(
        ["retrieval", "recommend", "feedback", "gateway"],
        triton_url=triton_server.grpc_url,
        settings={"refresh_s": 0.2, "token_secret": SECRET},
        using={service: {"encoder": encoder} for service in ("retrieval", "gateway")},
    )
    stack.load_catalog(CATALOG)
    wait_until(lambda: _stats(stack).products == len(CATALOG), "the recommender's catalog")
    _record(stack, HISTORY)
    return stack


def _recommend(stack: Stack, placement: int, **fields) -> pb.RecommendResponse:
    fields.setdefault("user", common_pb2.UserContext(session_id="page-1"))
    stub = stack.stub("gateway", recommend_service_pb2_grpc.RecommendServiceStub)
    return stub.Recommend(pb.RecommendRequest(placement=placement, **fields), timeout=10)


def _ids(reply: pb.RecommendResponse) -> list[str]:
    return [item.product_id for item in reply.items]


def test_bought_together_with_reason_parts_and_a_signed_token(stack: Stack) -> None:
    reply = _recommend(
        stack, pb.PLACEMENT_FREQUENTLY_BOUGHT_TOGETHER, context_product_ids=["teapot"]
    )
    top = reply.items[0]
    assert top.product_id == "mug-red"
    assert top.reason.kind == pb.REASON_KIND_BOUGHT_TOGETHER
    assert list(top.reason.product_ids) == ["teapot"]
    assert top.reason.text == "Bought together with Porcelain teapot with infuser"
    assert top.score == pytest.approx(sum(p.contribution for p in top.score_parts))
    assert "teapot" not in _ids(reply)
    assert [item.position for item in reply.items] == list(range(1, len(reply.items) + 1))
    assert reply.fallback == pb.FALLBACK_NONE and not reply.degraded.content
    token = AttributionSigner(SECRET).decode(reply.attribution_token)
    assert token.placement == "frequently_bought_together"
    assert token.request_id == reply.request_id and token.arm == reply.experiment_arm == "control"
    assert reply.model_versions["recommender"] == "blend-v1"


def test_similar_items_by_text_and_by_viewing_together(stack: Stack) -> None:
    mugs = _recommend(stack, pb.PLACEMENT_SIMILAR_ITEMS, context_product_ids=["mug-red"])
    assert _ids(mugs)[0] == "mug-blue"
    assert mugs.items[0].reason.kind == pb.REASON_KIND_SIMILAR
    sofa = _recommend(stack, pb.PLACEMENT_SIMILAR_ITEMS, context_product_ids=["sofa"])
    assert _ids(sofa)[0] == "cushion"


def test_a_product_added_today_is_recommended_today(stack: Stack) -> None:
    stack.load_catalog(
        [Product("mug-green", "Green ceramic coffee mug", product_class="Mugs", price=8.5)]
    )
    wait_until(lambda: _stats(stack).products == len(CATALOG) + 1, "the new product read")
    reply = _recommend(stack, pb.PLACEMENT_SIMILAR_ITEMS, context_product_ids=["mug-red"])
    assert "mug-green" in _ids(reply)[:2]
    # ...and its own page has recommendations, though nobody has seen it yet.
    own = _recommend(stack, pb.PLACEMENT_SIMILAR_ITEMS, context_product_ids=["mug-green"])
    assert _ids(own)[0] in {"mug-red", "mug-blue"}
    assert own.fallback == pb.FALLBACK_NONE


def test_known_shopper_buy_again_and_for_you(stack: Stack) -> None:
    shopper = common_pb2.UserContext(user_id="alice")
    again = _recommend(stack, pb.PLACEMENT_BUY_AGAIN, user=shopper)
    assert _ids(again) == ["mug-blue", "mug-red"]
    assert again.items[0].reason.kind == pb.REASON_KIND_BOUGHT_BEFORE
    for_you = _recommend(
        stack, pb.PLACEMENT_RECOMMENDED_FOR_YOU, user=shopper, exclude_purchased=True
    )
    assert _ids(for_you)[0] == "teapot"  # bought with the red mug she bought
    assert not {"mug-blue", "mug-red"} & set(_ids(for_you))


def test_an_anonymous_session_with_its_own_history(stack: Stack) -> None:
    reply = _recommend(
        stack,
        pb.PLACEMENT_RECOMMENDED_FOR_YOU,
        user=common_pb2.UserContext(session_id="anon-9"),
        history=[pb.HistoryEvent(product_id="sofa", type=pb.INTERACTION_TYPE_VIEW)],
    )
    assert _ids(reply)[0] == "cushion"
    assert reply.items[0].reason.kind == pb.REASON_KIND_BECAUSE_YOU_VIEWED


def test_trending_and_the_cold_shopper_fallback(stack: Stack) -> None:
    trending = _recommend(stack, pb.PLACEMENT_TRENDING)
    assert _ids(trending)[0] == "lamp"
    assert trending.items[0].reason.kind == pb.REASON_KIND_TRENDING
    cold = _recommend(
        stack, pb.PLACEMENT_RECOMMENDED_FOR_YOU, user=common_pb2.UserContext(user_id="new")
    )
    assert cold.fallback == pb.FALLBACK_TRENDING and _ids(cold)[0] == "lamp"
    unknown = _recommend(
        stack,
        pb.PLACEMENT_SIMILAR_ITEMS,
        context_product_ids=["deleted-1", "deleted-1", "mug-red"],
    )
    assert list(unknown.unknown_product_ids) == ["deleted-1"]
    assert unknown.fallback == pb.FALLBACK_NONE and "mug-blue" in _ids(unknown)


def test_a_ten_thousand_event_history_is_answered(stack: Stack) -> None:
    history = [pb.HistoryEvent(product_id="mug-red" if n % 2 else "teapot") for n in range(10_000)]
    reply = _recommend(
        stack, pb.PLACEMENT_RECOMMENDED_FOR_YOU, history=history, exclude_purchased=False
    )
    assert set(_ids(reply)[:2]) == {"mug-red", "teapot"}
    # The longest ids everywhere: the gateway takes the request (2 MiB limit), and ids the
    # catalog does not hold are listed once each.
    gone = [pb.HistoryEvent(product_id=f"{n:0128d}") for n in range(10_000)]
    reply = _recommend(stack, pb.PLACEMENT_RECOMMENDED_FOR_YOU, history=gone)
    assert len(reply.unknown_product_ids) == 10_000 and reply.fallback == pb.FALLBACK_TRENDING


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"placement": pb.PLACEMENT_UNSPECIFIED}, r"^placement: required"),
        ({"placement": 99}, r"^placement: unknown placement 99"),
        ({"user": common_pb2.UserContext()}, r"^user.user_id: at least one of"),
        ({"user": common_pb2.UserContext(user_id="x" * 129)}, r"^user.user_id: longer than"),
        ({"context_product_ids": [""]}, r"^context_product_ids\[0\]: required"),
        ({"context_product_ids": ["p"] * 101}, r"^context_product_ids: 101 ids exceeds"),
        (
            {"history": [pb.HistoryEvent(product_id="mug-red")] * 10_001},
            r"^history: 10001 events exceeds the limit of 10000",
        ),
        ({"history": [pb.HistoryEvent(product_id=" ")]}, r"^history\[0\].product_id: must not"),
        (
            {"history": [pb.HistoryEvent(product_id="mug-red", quantity=-1)]},
            r"^history\[0\].quantity: must be >= 0",
        ),
        ({"page_size": -1}, r"^page_size: must be between 1 and 100"),
        ({"page_size": 101}, r"^page_size: must be between 1 and 100"),
        (
            {
                "filters": common_pb2.Filters(
                    attributes=[common_pb2.AttributeFilter(name="colour", values=["red"])]
                )
            },
            r"^filters.attributes: unknown attribute 'colour'",
        ),
        (
            {"filters": common_pb2.Filters(price=common_pb2.PriceRange(min=5, max=1))},
            r"^filters.price.max: must be >= filters.price.min",
        ),
        ({"options": pb.RecommendOptions(sources=["magic"])}, r"^options.sources: unknown"),
        ({"options": pb.RecommendOptions(diversity=1.5)}, r"^options.diversity: must be between"),
        (
            {"options": pb.RecommendOptions(diversity=float("nan"))},
            r"^options.diversity: must be between",
        ),
    ],
)
def test_bad_input_is_invalid_argument_naming_the_field(stack: Stack, fields, message) -> None:
    fields = {"placement": pb.PLACEMENT_TRENDING, **fields}
    placement = fields.pop("placement")
    with pytest.raises(grpc.RpcError) as info:
        _recommend(stack, placement, **fields)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert re.search(message, info.value.details()), info.value.details()
    assert _ids(_recommend(stack, pb.PLACEMENT_TRENDING))  # still serving


def test_new_feedback_updates_the_shopper_at_once(stack: Stack) -> None:
    _record(stack, [_event("k1", "kettle", "carol", "carol-s", fpb.EVENT_TYPE_PURCHASE, 10)])
    reply = _recommend(stack, pb.PLACEMENT_BUY_AGAIN, user=common_pb2.UserContext(user_id="carol"))
    assert _ids(reply) == ["kettle"]


def test_erasure_removes_the_shopper_state(stack: Stack) -> None:
    _record(stack, [_event("e1", "rug", "erin", "erin-s", fpb.EVENT_TYPE_PURCHASE, 10)])
    shopper = common_pb2.UserContext(user_id="erin")
    assert _ids(_recommend(stack, pb.PLACEMENT_BUY_AGAIN, user=shopper)) == ["rug"]
    shoppers = _stats(stack).shoppers
    feedback = stack.stub("feedback", feedback_service_pb2_grpc.FeedbackServiceStub)
    deleted = feedback.DeleteShopperEvents(fpb.ShopperRequest(user_id="erin"), timeout=10)
    assert deleted.deleted == 1
    after = _recommend(stack, pb.PLACEMENT_BUY_AGAIN, user=shopper)
    assert after.fallback == pb.FALLBACK_TRENDING  # nothing of hers left
    assert _stats(stack).shoppers == shoppers - 1


def test_the_recommender_rebuilds_from_the_store_on_start(stack: Stack, start_stack) -> None:
    from tests.integration.conftest import settings_of

    with start_stack(["recommend"], only={"recommend": settings_of(stack, "recommend")}) as second:
        stored = FeedbackStore(create_db_engine(stack.settings["feedback"].feedback_db_url))
        try:
            assert _stats(second).events_read == stored.count()  # erased events not among them
        finally:
            stored.engine.dispose()
        stub = second.stub("recommend", recommend_service_pb2_grpc.RecommendServiceStub)
        again = stub.Recommend(
            pb.RecommendRequest(
                placement=pb.PLACEMENT_BUY_AGAIN, user=common_pb2.UserContext(user_id="alice")
            ),
            timeout=10,
        )
        assert [item.product_id for item in again.items] == ["mug-blue", "mug-red"]
        assert again.request_id and not again.attribution_token  # the gateway signs


def test_operator_rpcs_are_not_on_the_gateway(stack: Stack) -> None:
    stub = stack.stub("gateway", recommend_service_pb2_grpc.RecommendServiceStub)
    with pytest.raises(grpc.RpcError) as info:
        stub.GetRecommenderStats(pb.GetRecommenderStatsRequest(), timeout=5)
    assert info.value.code() == grpc.StatusCode.UNIMPLEMENTED
