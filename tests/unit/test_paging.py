import base64
import hashlib
import hmac
import json

import pytest
from shopsense.common.v1 import common_pb2
from shopsense.search.v1 import search_service_pb2 as pb

from services.gateway.paging import PageTokens, request_fingerprint
from shared.errors import InvalidArgument

pytestmark = pytest.mark.unit


def _request(query="sofa", **kw):
    return pb.SearchRequest(query=query, user=common_pb2.UserContext(session_id="s"), **kw)


def test_token_round_trips_with_the_same_page_size():
    tokens = PageTokens("k")
    fp = request_fingerprint(_request(page_size=10))
    assert tokens.decode(tokens.encode(40, fp, 10), fp, 10) == 40


def test_fingerprint_does_not_depend_on_the_page_size_or_token():
    # It seeds exploration and interleaving, which must not change with the page size.
    assert request_fingerprint(_request(page_size=10)) == request_fingerprint(
        _request(page_size=50, page_token="x")
    )


@pytest.mark.parametrize(("issued", "used"), [(10, 20), (20, 10), (5, 100)])
def test_token_used_with_another_page_size_is_refused(issued, used):
    tokens = PageTokens("k")
    fp = request_fingerprint(_request())
    token = tokens.encode(issued, fp, issued)
    with pytest.raises(InvalidArgument, match=r"^page_token: .*page_size") as raised:
        tokens.decode(token, fp, used)
    assert f"page_size {issued}" in str(raised.value) and str(used) in str(raised.value)


def test_token_for_another_query_or_filter_is_refused():
    tokens = PageTokens("k")
    token = tokens.encode(20, request_fingerprint(_request()), 20)
    other = request_fingerprint(_request(filters=common_pb2.Filters(product_classes=["Sofas"])))
    with pytest.raises(InvalidArgument, match="page_token: belongs to a different request"):
        tokens.decode(token, other, 20)


def test_token_issued_before_page_sizes_were_bound_still_pages():
    # A gateway of the previous release signed {"o", "f"} only; its tokens keep working.
    key = hashlib.sha256(b"page:k").digest()
    fp = request_fingerprint(_request())
    body = json.dumps({"o": 20, "f": fp}, separators=(",", ":")).encode()
    mac = hmac.new(key, body, hashlib.sha256).digest()[:12]
    token = base64.urlsafe_b64encode(mac + body).decode().rstrip("=")
    assert PageTokens("k").decode(token, fp, 20) == 20


@pytest.mark.parametrize("token", ["", "abc", "!!!", "A" * 40])
def test_malformed_or_forged_tokens_are_refused(token):
    tokens = PageTokens("k")
    with pytest.raises(InvalidArgument, match="page_token: malformed"):
        tokens.decode(token, request_fingerprint(_request()), 20)
    forged = PageTokens("other-key").encode(20, request_fingerprint(_request()), 20)
    with pytest.raises(InvalidArgument, match="page_token: malformed"):
        tokens.decode(forged, request_fingerprint(_request()), 20)
