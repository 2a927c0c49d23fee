"""No shopper id and no query in the logs: a search, a recommendation, a feedback click,
an export and an erasure through real servers (port 0, real database files), with the
services' own JSON logging (shared/rpc/logging.py) captured. The lines still say which
shopper they concern, by a keyed tag, the same in every service.

No Triton: retrieval and the gateway embed with a constant fake encoder, and intent is not
started (the gateway logs its hop as degraded: an error passed on must not leak either).
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import structlog
from google.protobuf.timestamp_pb2 import Timestamp
from shopsense.common.v1 import common_pb2
from shopsense.feedback.v1 import feedback_service_pb2 as fpb
from shopsense.feedback.v1 import feedback_service_pb2_grpc as fpb_grpc
from shopsense.recommend.v1 import recommend_service_pb2 as rpb
from shopsense.recommend.v1 import recommend_service_pb2_grpc as rpb_grpc
from shopsense.search.v1 import search_service_pb2 as spb
from shopsense.search.v1 import search_service_pb2_grpc as spb_grpc

from shared.rpc.logging import configure_logging
from shared.rpc.privacy import REDACTED, bind_shopper, shopper_tag
from tests.integration.conftest import NOWHERE
from tests.support import SMALL_STORE, ConstantEncoder

pytestmark = pytest.mark.integration

USER, SESSION = "user-qzxjv-private", "session-wkpfy-private"
QUERY = "velvet chesterfield mauvexq"
LOG_KEY = "log-privacy-test-key"


@pytest.fixture
def logs() -> Iterator[io.StringIO]:
    """The services' JSON lines, as serve_main configures them, into a buffer."""
    buffer = io.StringIO()
    configure_logging("debug", "test", log_key=LOG_KEY, stream=buffer)
    yield buffer
    structlog.reset_defaults()
    structlog.contextvars.clear_contextvars()


def _lines(buffer: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in buffer.getvalue().splitlines() if line.strip()]


def _click(token: str, product_id: str) -> fpb.Event:
    stamp = Timestamp()
    stamp.FromDatetime(datetime.now(UTC) - timedelta(seconds=2))
    return fpb.Event(
        event_id="privacy-click-1",
        type=fpb.EVENT_TYPE_CLICK,
        timestamp=stamp,
        user_id=USER,
        session_id=SESSION,
        product_id=product_id,
        position=1,
        attribution_token=token,
    )


def test_no_shopper_id_or_query_reaches_the_logs(start_stack, logs: io.StringIO) -> None:
    encoder = ConstantEncoder()
    stack = start_stack(
        ["retrieval", "ranking", "recommend", "feedback", "gateway"],
        settings={"token_secret": "log-privacy-secret", "refresh_s": 0.2},
        only={"feedback": {"retrieval_target": NOWHERE}},
        using={
            "retrieval": {"encoder": encoder, "encoder_for_version": lambda v: encoder},
            "gateway": {"encoder": encoder},
        },
    )
    stack.load_catalog(SMALL_STORE.products[:30])
    user = common_pb2.UserContext(user_id=USER, session_id=SESSION)
    search = stack.stub("gateway", spb_grpc.SearchServiceStub)
    reply = search.Search(spb.SearchRequest(query=QUERY, user=user, page_size=5), timeout=30)
    assert reply.results and reply.degraded.intent  # served, with intent's hop failed
    search.Search(
        spb.SearchRequest(query=QUERY, user=user, page_size=5, page_token=reply.next_page_token),
        timeout=30,
    )
    recommend = stack.stub("gateway", rpb_grpc.RecommendServiceStub)
    recommend.Recommend(
        rpb.RecommendRequest(placement=rpb.PLACEMENT_TRENDING, user=user), timeout=30
    )
    feedback = stack.stub("feedback", fpb_grpc.FeedbackServiceStub)
    recorded = feedback.RecordEvents(
        fpb.RecordEventsRequest(
            events=[_click(reply.attribution_token, reply.results[0].product_id)]
        ),
        timeout=30,
    )
    assert recorded.accepted == 1, recorded
    shopper = fpb.ShopperRequest(user_id=USER, session_id=SESSION)
    assert [e.event_id for e in feedback.ExportShopperEvents(shopper, timeout=30)] == [
        "privacy-click-1"
    ]
    assert feedback.DeleteShopperEvents(shopper, timeout=30).deleted == 1

    text = logs.getvalue()
    lines = _lines(logs)
    methods = {line.get("method") for line in lines}
    # The calls were logged (the test would pass on an empty log otherwise) ...
    assert {
        "/shopsense.search.v1.SearchService/Search",
        "/shopsense.recommend.v1.RecommendService/Recommend",
        "/shopsense.feedback.v1.FeedbackService/RecordEvents",
        "/shopsense.feedback.v1.FeedbackService/DeleteShopperEvents",
        "/shopsense.recommend.v1.RecommendService/ForgetShopper",
    } <= methods, sorted(str(m) for m in methods)
    assert any(line["event"] == "intent_degraded" for line in lines)
    # ... without the ids or the query, whole or in part.
    for secret in (USER, SESSION, QUERY, "qzxjv", "wkpfy", "mauvexq"):
        assert secret not in text, [line for line in text.splitlines() if secret in line]
    # Each service tags the shopper alike: the search and the erasure can be followed.
    tag = shopper_tag(USER, SESSION)
    assert len(tag) == 12 and tag not in (USER, SESSION)
    tagged = {(line["service"], line.get("method")) for line in lines if line.get("shopper") == tag}
    assert {
        ("gateway", "/shopsense.search.v1.SearchService/Search"),
        ("gateway", "/shopsense.recommend.v1.RecommendService/Recommend"),
        ("feedback", "/shopsense.feedback.v1.FeedbackService/DeleteShopperEvents"),
        ("recommend", "/shopsense.recommend.v1.RecommendService/ForgetShopper"),
    } <= tagged, tagged


def test_an_id_or_query_inside_a_message_is_redacted(logs: io.StringIO) -> None:
    structlog.contextvars.clear_contextvars()
    bind_shopper(USER, "", QUERY)
    log = structlog.get_logger("test")
    log.warning("hop_degraded", error=f"ranking said: no profile for {USER} ({QUERY!r})")
    try:
        raise ValueError(f"unexpected shopper {USER}")
    except ValueError:
        log.exception("boom")
    # Ids inside longer words are not touched: "user-qzxjv-private-x" is another shopper.
    log.info("other", note=f"{USER}-x and 17 events")
    structlog.contextvars.clear_contextvars()
    lines = _lines(logs)
    assert lines[0]["error"] == f"ranking said: no profile for {REDACTED} ('{REDACTED}')"
    assert USER not in str(lines[1]["exception"]) and REDACTED in str(lines[1]["exception"])
    assert lines[2]["note"] == f"{USER}-x and 17 events"
    assert all(line["shopper"] == shopper_tag(USER) for line in lines)
    assert all("_sensitive" not in line for line in lines)
