"""The rules of ``shared.rpc.auth`` without a server: each RPC's scope, who is refused
what and with which code, the keys file's checks, the token bucket, and what production
mode requires of each service."""

from __future__ import annotations

import json

import grpc
import pytest

from shared.rpc.auth import (
    ALL,
    ALL_SCOPES,
    ANONYMOUS,
    INTERNAL,
    KEY,
    MAIN,
    OPERATOR,
    SERVICE,
    ApiKey,
    KeyLimiter,
    Limits,
    Principal,
    TokenBucket,
    bearer_of,
    hash_key,
    parse_keys,
    refusal,
    scope_of,
)
from shared.rpc.server import production_problems

pytestmark = pytest.mark.unit
SEARCH = "/shopsense.search.v1.SearchService/Search"
RECOMMEND = "/shopsense.recommend.v1.RecommendService/Recommend"
EXPORT = "/shopsense.retrieval.v1.RetrievalService/ExportCatalog"
RETRIEVE = "/shopsense.retrieval.v1.RetrievalService/Retrieve"


def test_every_rpc_has_the_scope_the_issue_names() -> None:
    assert scope_of(SEARCH, "gateway") == "search"
    assert scope_of(RECOMMEND, "gateway") == "recommend"
    # The recommend service's Recommend is the gateway's hop, not a storefront call.
    assert scope_of(RECOMMEND, "recommend") == INTERNAL
    assert scope_of("/shopsense.feedback.v1.FeedbackService/StreamEvents") == "feedback"
    assert scope_of("/shopsense.feedback.v1.FeedbackService/DeleteShopperEvents") == "privacy"
    assert scope_of("/shopsense.recommend.v1.RecommendService/ForgetShopper") == "privacy"
    assert scope_of(EXPORT) == "catalog"
    assert scope_of("/shopsense.retrieval.v1.RetrievalService/CancelReindex") == "catalog"
    assert scope_of(RETRIEVE) == INTERNAL
    assert scope_of("/shopsense.trainer.v1.TrainerService/PublishVersion") == "models"
    assert scope_of("/shopsense.experiments.v1.ExperimentService/StartExperiment") == "experiments"
    assert scope_of("/shopsense.intent.v1.IntentService/Classify") == INTERNAL
    assert scope_of("/grpc.health.v1.Health/Check") is None
    assert scope_of("/some.Unknown/Method") == INTERNAL


def _key(*scopes: str) -> Principal:
    return Principal(KEY, "web", frozenset(scopes), ApiKey("web", "0" * 64, frozenset(scopes)))


def test_refusals_name_what_is_missing_with_the_right_code() -> None:
    denied, unauthenticated = grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.UNAUTHENTICATED
    keys = {"keys_required": True, "tls": True}
    missing = refusal(SEARCH, "search", Principal(ANONYMOUS), **keys)
    assert missing is not None and missing.code == unauthenticated
    unknown = refusal(SEARCH, "search", Principal(ANONYMOUS), unknown_key=True, **keys)
    assert unknown is not None and unknown.message == "authorization: unknown API key"
    wrong = refusal(SEARCH, "search", _key("feedback"), **keys)
    assert wrong is not None and wrong.code == denied and "needs scope 'search'" in wrong.message
    assert refusal(SEARCH, "search", _key("search"), **keys) is None
    # A storefront key may not call an internal RPC; a service may call anything.
    assert refusal(RETRIEVE, INTERNAL, _key("search"), **keys) is not None
    service = Principal(SERVICE, "shopsense-gateway", ALL_SCOPES)
    assert refusal(EXPORT, "catalog", service, role=MAIN, **keys) is None
    # The operator listener split.
    on_main = refusal(EXPORT, "catalog", _key("catalog"), role=MAIN, operator_variable="X", **keys)
    assert on_main is not None and on_main.code == denied and "(X)" in on_main.message
    assert refusal(EXPORT, "catalog", _key("catalog"), role=OPERATOR, **keys) is None
    assert refusal(SEARCH, "search", _key("search"), role=OPERATOR, **keys) is not None
    # Health is open to everyone, everywhere.
    assert refusal("/grpc.health.v1.Health/Check", None, Principal(ANONYMOUS), **keys) is None


def test_without_keys_the_embedded_default_allows_all_and_tls_keeps_internal_rpcs_internal() -> (
    None
):
    anonymous = Principal(ANONYMOUS)
    for scope in ALL_SCOPES:
        assert refusal("/x/Y", scope, anonymous, role=ALL) is None
    internal = refusal(RETRIEVE, INTERNAL, anonymous, tls=True)
    assert internal is not None and internal.code == grpc.StatusCode.PERMISSION_DENIED
    assert refusal(SEARCH, "search", anonymous, tls=True) is None


def test_the_bearer_header() -> None:
    assert bearer_of([("authorization", "Bearer abc")]) == "abc"
    assert bearer_of([("authorization", "Basic abc")]) == ""
    assert bearer_of([("x-request-id", "1")]) is None


def _entry(**fields: object) -> str:
    entry = {"id": "web", "sha256": hash_key("k"), "scopes": ["search"], **fields}
    return json.dumps({"keys": [entry]})


def test_the_keys_file_holds_hashes_and_its_errors_name_the_entry_and_field() -> None:
    keys = parse_keys(_entry(rate_per_s=5, burst=10))
    assert keys[hash_key("k")].scopes == {"search"}
    assert keys[hash_key("k")].rate_per_s == 5.0
    with pytest.raises(ValueError, match=r"key 'web'.scopes: unknown scope 'admin'"):
        parse_keys(_entry(scopes=["admin"]))
    with pytest.raises(ValueError, match=r"key 'web'.sha256: expected 64 hex digits"):
        parse_keys(_entry(sha256="k"))
    with pytest.raises(ValueError, match=r"key 'web'.burst: expected a number >= 1"):
        parse_keys(_entry(burst=0))
    with pytest.raises(ValueError, match=r"keys\[0\].id"):
        parse_keys(json.dumps({"keys": [{"sha256": hash_key("k"), "scopes": []}]}))


def test_the_token_bucket_allows_its_burst_then_its_rate() -> None:
    bucket = TokenBucket(rate=10.0, burst=3)
    assert [bucket.take(0.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.take(0.0) == pytest.approx(0.1)
    assert bucket.take(0.05) == pytest.approx(0.05)
    assert bucket.take(0.1) == 0.0


def test_a_key_entry_overrides_the_default_limits_and_streams_are_released_once() -> None:
    now = [0.0]
    limiter = KeyLimiter(Limits(rate_per_s=1.0, burst=1, max_streams=2), clock=lambda: now[0])
    loose = ApiKey("loose", "1" * 64, frozenset(), rate_per_s=0.0)  # 0: unlimited
    tight = ApiKey("tight", "2" * 64, frozenset(), max_streams=1)
    assert all(limiter.take(loose) == 0 for _ in range(100))
    assert limiter.take(tight) == 0 and limiter.take(tight) == pytest.approx(1.0)
    release = limiter.open_stream(tight)
    assert release is not None and limiter.open_stream(tight) is None
    release()
    release()  # idempotent: the count does not go below zero
    assert limiter.open_stream(tight) is not None


def test_production_requires_what_each_service_serves() -> None:
    from shopsense.intent.v1 import intent_service_pb2  # noqa: F401  (registers the service)
    from shopsense.retrieval.v1 import retrieval_service_pb2  # noqa: F401
    from shopsense.search.v1 import search_service_pb2  # noqa: F401

    intent = production_problems(
        "intent", ["shopsense.intent.v1.IntentService"], tls=False, keys=False, operator=False
    )
    assert len(intent) == 1 and "SHOPSENSE_TLS_CERT" in intent[0]
    retrieval = production_problems(
        "retrieval",
        ["shopsense.retrieval.v1.RetrievalService"],
        tls=True,
        keys=False,
        operator=False,
    )
    assert any("SHOPSENSE_API_KEYS_FILE" in p for p in retrieval)
    assert any("SHOPSENSE_RETRIEVAL_OPERATOR_LISTEN" in p for p in retrieval)
    assert (
        production_problems(
            "retrieval",
            ["shopsense.retrieval.v1.RetrievalService"],
            tls=True,
            keys=True,
            operator=True,
        )
        == []
    )
