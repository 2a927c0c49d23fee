"""Recommendations from outside, as a storefront asks for them: every placement through the
gateway of the suite `make run` starts, for a known shopper, an anonymous session and a
product added a moment ago; the list's token credited in feedback."""

from __future__ import annotations

import sqlite3
import uuid

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from shopsense.common.v1 import common_pb2
from shopsense.feedback.v1 import feedback_service_pb2 as fpb
from shopsense.feedback.v1 import feedback_service_pb2_grpc
from shopsense.recommend.v1 import recommend_service_pb2 as pb
from shopsense.recommend.v1 import recommend_service_pb2_grpc
from shopsense.retrieval.v1 import retrieval_service_pb2 as retrieval_pb
from shopsense.retrieval.v1 import retrieval_service_pb2_grpc

from shared.data.catalog import Product
from shared.runtime.catalog import upsert_products
from shared.runtime.suite import Suite
from tests.support import wait_until

pytestmark = pytest.mark.system


def _gateway(suite: Suite) -> recommend_service_pb2_grpc.RecommendServiceStub:
    return recommend_service_pb2_grpc.RecommendServiceStub(
        grpc.insecure_channel(suite.address("gateway"))
    )


def _events_read(suite: Suite) -> int:
    stub = recommend_service_pb2_grpc.RecommendServiceStub(
        grpc.insecure_channel(suite.address("recommend"))
    )
    return stub.GetRecommenderStats(pb.GetRecommenderStatsRequest(), timeout=5).events_read


def _record(suite: Suite, events: list[fpb.Event]) -> fpb.RecordEventsResponse:
    before = _events_read(suite)
    stub = feedback_service_pb2_grpc.FeedbackServiceStub(
        grpc.insecure_channel(suite.address("feedback"))
    )
    reply = stub.RecordEvents(fpb.RecordEventsRequest(events=events), timeout=10)
    clicks = sum(e.type != fpb.EVENT_TYPE_IMPRESSION for e in events)
    wait_until(lambda: _events_read(suite) >= before + min(clicks, reply.accepted), "events read")
    return reply


def _event(kind: int, product: str, user: str = "", session: str = "", token: str = ""):
    now = Timestamp()
    now.GetCurrentTime()
    event = fpb.Event(
        event_id=str(uuid.uuid4()),
        type=kind,
        timestamp=now,
        user_id=user,
        session_id=session,
        product_id=product,
        attribution_token=token,
        position=1 if kind == fpb.EVENT_TYPE_IMPRESSION else 0,
    )
    if kind == fpb.EVENT_TYPE_PURCHASE:
        event.amount, event.currency = 99.0, "USD"
    return event


def test_every_placement_from_outside(suite: Suite) -> None:
    from shared.data.synthetic import generate_store

    products = generate_store(n_products=suite.demo_products, seed=7).products
    first, second, third = (p.product_id for p in products[:3])
    buys = [
        _event(fpb.EVENT_TYPE_PURCHASE, pid, user=f"sys-buyer-{n}", session=f"sys-b{n}")
        for n in range(3)
        for pid in (first, second)
    ]
    buys.append(_event(fpb.EVENT_TYPE_PURCHASE, third, user="sys-buyer-0", session="sys-b9"))
    assert _record(suite, buys).accepted == len(buys)
    stub = _gateway(suite)
    known = common_pb2.UserContext(user_id="sys-buyer-0")
    anonymous = common_pb2.UserContext(session_id=f"anon-{uuid.uuid4()}")

    together = stub.Recommend(
        pb.RecommendRequest(
            placement=pb.PLACEMENT_FREQUENTLY_BOUGHT_TOGETHER,
            user=anonymous,
            context_product_ids=[first],
        ),
        timeout=10,
    )
    assert together.items[0].product_id == second
    assert together.items[0].reason.kind == pb.REASON_KIND_BOUGHT_TOGETHER

    similar = stub.Recommend(
        pb.RecommendRequest(
            placement=pb.PLACEMENT_SIMILAR_ITEMS, user=anonymous, context_product_ids=[first]
        ),
        timeout=10,
    )
    assert len(similar.items) == 10 and first not in [i.product_id for i in similar.items]
    assert all(i.reason.text for i in similar.items)

    again = stub.Recommend(
        pb.RecommendRequest(placement=pb.PLACEMENT_BUY_AGAIN, user=known), timeout=10
    )
    assert {i.product_id for i in again.items} == {first, second, third}

    for_you = stub.Recommend(
        pb.RecommendRequest(
            placement=pb.PLACEMENT_RECOMMENDED_FOR_YOU, user=known, exclude_purchased=True
        ),
        timeout=10,
    )
    assert for_you.items and not {first, second, third} & {i.product_id for i in for_you.items}

    trending = stub.Recommend(
        pb.RecommendRequest(placement=pb.PLACEMENT_TRENDING, user=anonymous), timeout=10
    )
    assert {i.product_id for i in trending.items[:2]} == {first, second}

    cold = stub.Recommend(
        pb.RecommendRequest(placement=pb.PLACEMENT_RECOMMENDED_FOR_YOU, user=anonymous),
        timeout=10,
    )
    assert cold.fallback == pb.FALLBACK_TRENDING and cold.items


def test_a_product_added_now_has_recommendations_now(suite: Suite) -> None:
    from shared.data.synthetic import generate_store

    products = generate_store(n_products=suite.demo_products, seed=7).products
    sibling = products[10]
    new = Product(
        product_id=f"new-{uuid.uuid4().hex[:8]}",
        title=sibling.title + " (new edition)",
        product_class=sibling.product_class,
        attributes=dict(sibling.attributes),
        price=sibling.price,
    )
    upsert_products(suite.address("retrieval"), [new], progress=False)
    retrieval = retrieval_service_pb2_grpc.RetrievalServiceStub(
        grpc.insecure_channel(suite.address("retrieval"))
    )

    def similar(pid: str) -> list[str]:
        reply = _gateway(suite).Recommend(
            pb.RecommendRequest(
                placement=pb.PLACEMENT_SIMILAR_ITEMS,
                user=common_pb2.UserContext(session_id="page"),
                context_product_ids=[pid],
            ),
            timeout=10,
        )
        return [i.product_id for i in reply.items]

    try:
        wait_until(lambda: new.product_id in similar(sibling.product_id)[:3], "the new product")
        assert sibling.product_id in similar(new.product_id)[:3]
    finally:  # the other system tests count the demo store's products
        retrieval.DeleteProducts(
            retrieval_pb.DeleteProductsRequest(product_ids=[new.product_id]), timeout=10
        )


def test_feedback_credits_the_recommendation_list(suite: Suite) -> None:
    session = f"rec-{uuid.uuid4()}"
    reply = _gateway(suite).Recommend(
        pb.RecommendRequest(
            placement=pb.PLACEMENT_TRENDING, user=common_pb2.UserContext(session_id=session)
        ),
        timeout=10,
    )
    shown = reply.items[0].product_id
    token = reply.attribution_token
    result = _record(
        suite,
        [
            _event(fpb.EVENT_TYPE_IMPRESSION, shown, session=session, token=token),
            _event(fpb.EVENT_TYPE_CLICK, shown, session=session, token=token),
        ],
    )
    assert result.accepted == 2
    with sqlite3.connect(suite.state / "feedback.db") as db:
        rows = db.execute(
            "SELECT type, placement, request_id, arm FROM feedback_events WHERE session_id = ?",
            (session,),
        ).fetchall()
    assert sorted(rows) == [
        ("click", "trending", reply.request_id, "control"),
        ("impression", "trending", reply.request_id, "control"),
    ]


def test_cli_shows_recommendations(suite: Suite, capsys, monkeypatch) -> None:
    from shared.cli.main import main

    monkeypatch.setenv("SHOPSENSE_GATEWAY_TARGET", suite.address("gateway"))
    assert main(["recs", "get", "trending", "--page-size", "3"]) == 0
    out = capsys.readouterr().out
    assert "trending" in out and "Popular" in out
