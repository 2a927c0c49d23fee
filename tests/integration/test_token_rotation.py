"""A token key rotation through real servers (port 0, a real feedback database file): a
gateway still on the old key and one already rotated (new key first, old second) both mint
tokens; feedback with both keys accepts both tokens, feedback with the old key dropped
refuses the old one (INVALID_ARGUMENT's message, on the event) and keeps the new one. Page
tokens of the old gateway go on paging at the rotated one.

No Triton: retrieval and the gateways embed with a constant fake encoder.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from shopsense.common.v1 import common_pb2
from shopsense.feedback.v1 import feedback_service_pb2 as fpb
from shopsense.feedback.v1 import feedback_service_pb2_grpc as fpb_grpc
from shopsense.search.v1 import search_service_pb2 as spb
from shopsense.search.v1 import search_service_pb2_grpc as spb_grpc

from services.feedback.server import create_server as create_feedback
from services.gateway.server import create_server as create_gateway
from shared.rpc.server import ServerHandle
from shared.settings import FeedbackSettings, GatewaySettings, TokenKeys
from tests.integration.conftest import NOWHERE, Stack, settings_of
from tests.support import SMALL_STORE, ConstantEncoder

pytestmark = pytest.mark.integration

OLD = TokenKeys.parse("k1:" + "1" * 40)
BOTH = TokenKeys.parse("k2:" + "2" * 40 + ",k1:" + "1" * 40)
NEW = TokenKeys.parse("k2:" + "2" * 40)


ENCODER = ConstantEncoder()


@pytest.fixture(scope="module")
def stack(start_stack) -> Stack:
    """Retrieval, a gateway on the old key, feedback on both keys."""
    stack = start_stack(
        ["retrieval", "feedback", "gateway"],
        settings={"token_keys": OLD},
        only={"feedback": {"retrieval_target": NOWHERE, "token_keys": BOTH}},
        using={
            "retrieval": {"encoder": ENCODER, "encoder_for_version": lambda v: ENCODER},
            "gateway": {"encoder": ENCODER},
        },
    )
    stack.load_catalog(SMALL_STORE.products[:30])
    return stack


@pytest.fixture(scope="module")
def rotated(stack: Stack) -> Iterator[dict[str, ServerHandle]]:
    """The same services with the rotation further on: a gateway on both keys, feedback
    with the old key dropped (the same database)."""
    gateway = create_gateway(
        GatewaySettings.load(**settings_of(stack, "gateway", token_keys=BOTH)), encoder=ENCODER
    )
    feedback = create_feedback(
        FeedbackSettings.load(**settings_of(stack, "feedback", token_keys=NEW))
    )
    yield {"gateway": gateway, "feedback": feedback}
    for handle in (gateway, feedback):
        handle.stop(0.5)


def _search(address: str, page_token: str = "") -> spb.SearchResponse:
    with grpc.insecure_channel(address) as channel:
        return spb_grpc.SearchServiceStub(channel).Search(
            spb.SearchRequest(
                query="sofa",
                user=common_pb2.UserContext(session_id="rotation"),
                page_size=5,
                page_token=page_token,
            ),
            timeout=30,
        )


def _record(address: str, tokens: dict[str, str]) -> dict[str, str]:
    """Event id -> "" when accepted, else the rejection's message."""
    stamp = Timestamp()
    stamp.FromDatetime(datetime.now(UTC) - timedelta(seconds=2))
    events = [
        fpb.Event(
            event_id=event_id,
            type=fpb.EVENT_TYPE_CLICK,
            timestamp=stamp,
            session_id="rotation",
            product_id="p-1",
            attribution_token=token,
        )
        for event_id, token in tokens.items()
    ]
    with grpc.insecure_channel(address) as channel:
        reply = fpb_grpc.FeedbackServiceStub(channel).RecordEvents(
            fpb.RecordEventsRequest(events=events), timeout=30
        )
    return {r.event_id: r.error for r in reply.results}


def test_tokens_of_both_keys_verify_during_a_rotation_and_old_ones_fail_after(
    stack: Stack, rotated: dict[str, ServerHandle]
) -> None:
    old = _search(stack.address("gateway"))
    new = _search(rotated["gateway"].address)
    assert old.attribution_token.startswith("v2.k1.")
    assert new.attribution_token.startswith("v2.k2.")
    # Feedback on both keys: both accepted.
    both = _record(
        stack.address("feedback"),
        {"during-old": old.attribution_token, "during-new": new.attribution_token},
    )
    assert both == {"during-old": "", "during-new": ""}
    # The old key dropped: its token is refused like a forged one, the new one is kept.
    after = _record(
        rotated["feedback"].address,
        {"after-old": old.attribution_token, "after-new": new.attribution_token},
    )
    assert after["after-new"] == ""
    assert after["after-old"].startswith("attribution_token: signature mismatch")
    # A shopper paging across the rotation: the old gateway's page token still pages.
    assert old.next_page_token.startswith("k1.")
    second = _search(rotated["gateway"].address, old.next_page_token)
    assert second.results and {r.product_id for r in second.results}.isdisjoint(
        r.product_id for r in old.results
    )
