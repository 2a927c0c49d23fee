"""One rule for the shopper's ids, asked of the gateway and of feedback, real servers on port 0.

Whether a (user_id, session_id) pair names a shopper must not depend on the service asked: a
search the gateway accepts yields a token whose events feedback must accept, and a shopper
feedback refuses to export must not be one the gateway searches for. No Triton here: the
gateway and retrieval (over an empty catalog file) embed with a constant fake encoder.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from shopsense.common.v1 import common_pb2
from shopsense.feedback.v1 import feedback_service_pb2 as fpb
from shopsense.feedback.v1 import feedback_service_pb2_grpc as fpb_grpc
from shopsense.search.v1 import search_service_pb2 as spb
from shopsense.search.v1 import search_service_pb2_grpc

from tests.integration.conftest import NOWHERE
from tests.support import ConstantEncoder

pytestmark = pytest.mark.integration


@dataclass
class Services:
    search: search_service_pb2_grpc.SearchServiceStub
    feedback: fpb_grpc.FeedbackServiceStub


@pytest.fixture(scope="module")
def services(start_stack) -> Services:
    encoder = ConstantEncoder()
    stack = start_stack(
        ["retrieval", "feedback", "gateway"],
        settings={"token_secret": "shopper-ids-secret"},
        # Feedback asks no catalog (the empty one would refuse every product): stored unchecked.
        only={"feedback": {"retrieval_target": NOWHERE}},
        using={
            "retrieval": {"encoder": encoder, "encoder_for_version": lambda v: encoder},
            "gateway": {"encoder": encoder},
        },
    )
    return Services(
        stack.stub("gateway", search_service_pb2_grpc.SearchServiceStub),
        stack.stub("feedback", fpb_grpc.FeedbackServiceStub),
    )


# (user_id, session_id, the field the refusal names; None: the shopper is accepted)
CASES = [
    ("u-1", "", None),
    ("", "s-1", None),
    ("u-1", "s-1", None),
    ("", "", "user_id"),
    (" ", "", "user_id"),
    ("", "\t", "user_id"),
    ("  ", "\n ", "user_id"),
    ("\u3000", "", "user_id"),  # an ideographic space is whitespace too
    ("  ", "s-1", "user_id"),  # present, so it must name someone
    ("u-1", " \t", "session_id"),
]


def _event(event_id: str, user_id: str, session_id: str) -> fpb.Event:
    stamp = Timestamp()
    stamp.FromDatetime(datetime.now(UTC) - timedelta(seconds=5))
    return fpb.Event(
        event_id=event_id,
        type=fpb.EVENT_TYPE_CLICK,
        timestamp=stamp,
        user_id=user_id,
        session_id=session_id,
        product_id="p-1",
    )


@pytest.mark.parametrize(("user_id", "session_id", "field"), CASES)
def test_the_gateway_and_feedback_accept_and_refuse_the_same_shoppers(
    services: Services, user_id: str, session_id: str, field: str | None
) -> None:
    user = common_pb2.UserContext(user_id=user_id, session_id=session_id)
    shopper = fpb.ShopperRequest(user_id=user_id, session_id=session_id)
    event_id = f"e-{user_id!r}-{session_id!r}"
    recorded = services.feedback.RecordEvents(
        fpb.RecordEventsRequest(events=[_event(event_id, user_id, session_id)]), timeout=30
    ).results[0]
    if field is None:
        reply = services.search.Search(spb.SearchRequest(query="sofa", user=user), timeout=30)
        assert reply.attribution_token  # a search was served
        assert recorded.status == fpb.EVENT_STATUS_ACCEPTED, recorded.error
        exported = services.feedback.ExportShopperEvents(shopper, timeout=30)
        assert event_id in {e.event_id for e in exported}
        assert services.feedback.DeleteShopperEvents(shopper, timeout=30).deleted >= 1
        return
    assert recorded.status == fpb.EVENT_STATUS_REJECTED, fpb.EventStatus.Name(recorded.status)
    assert recorded.error.startswith(f"{field}: "), recorded.error
    for call in (
        lambda: list(services.feedback.ExportShopperEvents(shopper, timeout=30)),
        lambda: services.feedback.DeleteShopperEvents(shopper, timeout=30),
    ):
        with pytest.raises(grpc.RpcError) as refused:
            call()
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert refused.value.details().startswith(f"{field}: "), refused.value.details()
    with pytest.raises(grpc.RpcError) as searched:
        services.search.Search(spb.SearchRequest(query="sofa", user=user), timeout=30)
    assert searched.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert searched.value.details().startswith(f"user.{field}: "), searched.value.details()
