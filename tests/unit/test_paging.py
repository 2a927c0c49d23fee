import pytest
from shopsense.common.v1 import common_pb2
from shopsense.search.v1 import search_service_pb2 as pb

from services.gateway.paging import PageTokens, request_fingerprint
from shared.errors import InvalidArgument

pytestmark = pytest.mark.unit


def _request(query="sofa", **kw):
    return pb.SearchRequest(query=query, user=common_pb2.UserContext(session_id="s"), **kw)


def test_token_round_trips_and_ignores_page_size():
    tokens = PageTokens("k")
    fp = request_fingerprint(_request(page_size=10))
    assert fp == request_fingerprint(_request(page_size=50, page_token="x"))
    assert tokens.decode(tokens.encode(40, fp), fp) == 40


def test_token_for_another_query_or_filter_is_refused():
    tokens = PageTokens("k")
    token = tokens.encode(20, request_fingerprint(_request()))
    other = request_fingerprint(_request(filters=common_pb2.Filters(product_classes=["Sofas"])))
    with pytest.raises(InvalidArgument, match="page_token: belongs to a different request"):
        tokens.decode(token, other)


@pytest.mark.parametrize("token", ["", "abc", "!!!", "A" * 40])
def test_malformed_or_forged_tokens_are_refused(token):
    tokens = PageTokens("k")
    with pytest.raises(InvalidArgument, match="page_token: malformed"):
        tokens.decode(token, request_fingerprint(_request()))
    forged = PageTokens("other-key").encode(20, request_fingerprint(_request()))
    with pytest.raises(InvalidArgument, match="page_token: malformed"):
        tokens.decode(forged, request_fingerprint(_request()))
