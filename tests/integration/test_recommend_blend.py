"""The learned blend with real parts: retrieval, the recommendation service (blend learning
on), the feedback service and the gateway on port 0 over one feedback database file.

SYNTHETIC shoppers on a product page see FREQUENTLY_BOUGHT_TOGETHER and click, below the
top, the item whose text is most like the product (the `content` source's best), never the
one bought with it. The service logs its pages, reads their impressions and clicks, and learns to
weigh `content` up and `co_purchase` down; the answers then carry the learned weights.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from shopsense.common.v1 import common_pb2
from shopsense.feedback.v1 import feedback_service_pb2 as fpb
from shopsense.feedback.v1 import feedback_service_pb2_grpc
from shopsense.recommend.v1 import recommend_service_pb2 as pb
from shopsense.recommend.v1 import recommend_service_pb2_grpc

from shared.contracts.recommend import FREQUENTLY_BOUGHT_TOGETHER
from shared.models.triton_client import TextEncoderClient
from shared.recommendation.recommender import DEFAULT_WEIGHTS
from tests.integration.conftest import Stack
from tests.support import HOME_CATALOG, wait_until

pytestmark = pytest.mark.integration

SECRET = "blend-secret"
PAGES, MIN_CLICKS = 40, 30


def _now() -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(datetime.now(UTC))
    return stamp


def _stats(stack: Stack) -> pb.GetRecommenderStatsResponse:
    stub = stack.stub("recommend", recommend_service_pb2_grpc.RecommendServiceStub)
    return stub.GetRecommenderStats(pb.GetRecommenderStatsRequest(), timeout=5)


def _send(stack: Stack, events: list[fpb.Event]) -> None:
    stub = stack.stub("feedback", feedback_service_pb2_grpc.FeedbackServiceStub)
    reply = stub.RecordEvents(fpb.RecordEventsRequest(events=events), timeout=10)
    assert reply.rejected == 0, reply


@pytest.fixture(scope="module")
def stack(start_stack, triton_server, tokenizer) -> Stack:
    encoder = TextEncoderClient(triton_server.grpc_url, tokenizer)
    stack = start_stack(
        ["retrieval", "recommend", "feedback", "gateway"],
        triton_url=triton_server.grpc_url,
        settings={
            "refresh_s": 0.2,
            "token_secret": SECRET,
            "blend_learning": "on",
            "blend_interval_s": 0.5,
            "blend_min_clicks": MIN_CLICKS,
        },
        using={service: {"encoder": encoder} for service in ("retrieval", "gateway")},
    )
    stack.load_catalog(HOME_CATALOG)
    wait_until(lambda: _stats(stack).products == len(HOME_CATALOG), "the recommender's catalog")
    # Teapots are bought with the red mug: co_purchase puts it first beside the teapot.
    _send(
        stack,
        [
            fpb.Event(
                event_id=f"buy-{n}-{product}",
                type=fpb.EVENT_TYPE_PURCHASE,
                timestamp=_now(),
                user_id=f"buyer-{n}",
                product_id=product,
                amount=10.0,
                currency="EUR",
            )
            for n in range(3)
            for product in ("teapot", "mug-red")
        ],
    )
    wait_until(lambda: _stats(stack).events_read >= 6, "the purchases read")
    return stack


def _page(stack: Stack, session: str) -> pb.RecommendResponse:
    stub = stack.stub("gateway", recommend_service_pb2_grpc.RecommendServiceStub)
    return stub.Recommend(
        pb.RecommendRequest(
            placement=pb.PLACEMENT_FREQUENTLY_BOUGHT_TOGETHER,
            user=common_pb2.UserContext(session_id=session),
            context_product_ids=["teapot"],
            page_size=5,
        ),
        timeout=10,
    )


def _event(
    session: str, kind: int, item: pb.RecommendedItem, page: pb.RecommendResponse
) -> fpb.Event:
    """The shopper's impression or click of ``item`` on ``page``, credited to the page."""
    return fpb.Event(
        event_id=f"{session}-{kind}-{item.position}",
        type=kind,
        timestamp=_now(),
        session_id=session,
        product_id=item.product_id,
        attribution_token=page.attribution_token,
        position=item.position,
    )


def _value(item: pb.RecommendedItem, source: str) -> float:
    return next((p.value for p in item.score_parts if p.source == source), 0.0)


def _share(weights, source: str) -> float:
    return weights[source] / sum(weights.values())


def test_clicks_teach_the_blend_and_answers_use_it(stack: Stack) -> None:
    first = _page(stack, "look-0")
    assert first.items[0].product_id == "mug-red"  # bought with it, first by default
    default = DEFAULT_WEIGHTS[FREQUENTLY_BOUGHT_TOGETHER]
    for part in first.items[0].score_parts:
        assert part.weight == pytest.approx(default[part.source])
    for n in range(PAGES):
        session = f"look-{n}"
        page = _page(stack, session)
        below_top = list(page.items[1:])
        liked = max(below_top, key=lambda item: _value(item, "content"))
        events = [_event(session, fpb.EVENT_TYPE_IMPRESSION, item, page) for item in page.items]
        events.append(_event(session, fpb.EVENT_TYPE_CLICK, liked, page))
        _send(stack, events)

    def learned() -> pb.LearnedBlend | None:
        blends = {b.placement: b for b in _stats(stack).blends}
        blend = blends.get(FREQUENTLY_BOUGHT_TOGETHER)
        return blend if blend is not None and blend.used else None

    wait_until(lambda: learned() is not None, "the bought-together blend learned", timeout=60)
    blend = learned()
    assert blend.clicks >= MIN_CLICKS and blend.impressions >= 4 * blend.clicks
    assert blend.gain > 0  # the learned weights explain the clicks better
    weights = dict(blend.weights)
    assert _share(weights, "content") > _share(default, "content") + 0.1, weights
    assert _share(weights, "co_purchase") < _share(default, "co_purchase"), weights
    assert sum(weights.values()) == pytest.approx(sum(default.values()))
    # The answers now carry the learned weights in their score parts.
    after = _page(stack, "look-after")
    parts = {p.source: p.weight for p in after.items[0].score_parts}
    for source, weight in parts.items():
        assert weight == pytest.approx(weights[source], rel=1e-6), (source, parts, weights)
