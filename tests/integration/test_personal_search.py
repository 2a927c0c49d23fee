"""Personalised search with real parts: retrieval (a real Triton, real MiniLM vectors, a
real catalog file), the feedback service and its SQLite file, the recommendation service
reading it and serving shoppers' profiles, ranking holding the catalog's vectors, and the
gateway personalising (SHOPSENSE_PERSONALIZE=on) in front."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import grpc
import numpy as np
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from shopsense.common.v1 import common_pb2
from shopsense.feedback.v1 import feedback_service_pb2 as fpb
from shopsense.feedback.v1 import feedback_service_pb2_grpc
from shopsense.recommend.v1 import recommend_service_pb2 as pb
from shopsense.recommend.v1 import recommend_service_pb2_grpc
from shopsense.retrieval.v1 import retrieval_service_pb2_grpc
from shopsense.search.v1 import search_service_pb2 as spb
from shopsense.search.v1 import search_service_pb2_grpc

from shared.contracts.retrieval import export_catalog
from shared.data.catalog import Product
from shared.models.triton_client import TextEncoderClient
from shared.recommendation.shoppers import PROFILE_KIND_WEIGHTS
from tests.integration.conftest import NOWHERE, Stack, settings_of
from tests.support import wait_until

pytestmark = pytest.mark.integration

TABLES = [
    Product("t-glass", "Glass coffee table with chrome legs", product_class="Coffee Tables"),
    Product("t-oak", "Oak wood coffee table", product_class="Coffee Tables"),
    Product("t-walnut", "Walnut wood coffee table", product_class="Coffee Tables"),
    Product("t-pine", "Pine wood coffee table", product_class="Coffee Tables"),
]
GLASS = [
    Product("g-vase", "Clear glass vase", product_class="Vases"),
    Product("g-lamp", "Glass and chrome pendant lamp", product_class="Lamps"),
    Product("g-shelf", "Tempered glass wall shelf with chrome brackets", product_class="Shelves"),
]
# The glass products' classmates: the profile is what sets the shopper's products apart
# from their classes (vectors less their class's mean), glass and chrome rather than these.
OTHERS = [
    Product("c-vase", "Glazed ceramic vase", product_class="Vases"),
    Product("b-lamp", "Brass table lamp with linen shade", product_class="Lamps"),
    Product("w-shelf", "Wooden wall shelf", product_class="Shelves"),
    Product("rug", "Wool area rug", product_class="Rugs"),
    Product("jute-rug", "Jute area rug", product_class="Rugs"),
]
CATALOG = [*TABLES, *GLASS, *OTHERS]


def _event(event_id: str, product: str, user: str, kind: int) -> fpb.Event:
    stamp = Timestamp()
    stamp.FromDatetime(datetime.now(UTC) - timedelta(minutes=5))
    event = fpb.Event(
        event_id=event_id, type=kind, timestamp=stamp, user_id=user, product_id=product
    )
    if kind == fpb.EVENT_TYPE_PURCHASE:
        event.amount, event.currency = 20.0, "EUR"
    return event


def _recommend(stack: Stack) -> recommend_service_pb2_grpc.RecommendServiceStub:
    return stack.stub("recommend", recommend_service_pb2_grpc.RecommendServiceStub)


def _profile(stack: Stack, **ids: str) -> pb.GetShopperProfileResponse:
    return _recommend(stack).GetShopperProfile(pb.GetShopperProfileRequest(**ids), timeout=5)


@pytest.fixture(scope="module")
def stack(start_stack, triton_server, tokenizer) -> Stack:
    encoder = TextEncoderClient(triton_server.grpc_url, tokenizer)
    stack = start_stack(
        ["retrieval", "ranking", "recommend", "feedback", "gateway"],
        triton_url=triton_server.grpc_url,
        settings={"refresh_s": 0.2, "token_secret": "test-secret"},
        only={"gateway": {"personalize": "on"}},
        using={service: {"encoder": encoder} for service in ("retrieval", "gateway")},
    )
    stack.load_catalog(CATALOG)
    stats = pb.GetRecommenderStatsRequest()
    wait_until(
        lambda: _recommend(stack).GetRecommenderStats(stats, timeout=5).products == len(CATALOG),
        "the recommender's catalog",
    )
    # A shopper who likes glass and chrome: bought the shelf, carted the lamp, viewed the vase.
    events = [
        _event("gf-1", "g-shelf", "glassfan", fpb.EVENT_TYPE_PURCHASE),
        _event("gf-2", "g-lamp", "glassfan", fpb.EVENT_TYPE_ADD_TO_CART),
        _event("gf-3", "g-vase", "glassfan", fpb.EVENT_TYPE_CLICK),
    ]
    feedback = stack.stub("feedback", feedback_service_pb2_grpc.FeedbackServiceStub)
    reply = feedback.RecordEvents(fpb.RecordEventsRequest(events=events), timeout=10)
    assert reply.accepted == len(events), reply
    wait_until(lambda: _profile(stack, user_id="glassfan").interactions == 3, "the profile")
    return stack


def test_the_recommendation_service_serves_the_profile_from_the_feedback_store(
    stack: Stack,
) -> None:
    reply = _profile(stack, user_id="glassfan")
    assert reply.profile.model_version == "1" and reply.interactions == 3
    # The kind-weighted mean of the three products' taste vectors, normalised: with no
    # attribute values in this catalog, each product's vector less the mean of its class's
    # vectors, normalised.
    retrieval = stack.stub("retrieval", retrieval_service_pb2_grpc.RetrievalServiceStub)
    catalog = export_catalog(retrieval)
    assert catalog.vectors is not None
    vector = {p.product_id: catalog.vectors[i] for i, p in enumerate(catalog.products)}

    def centred(product: Product) -> np.ndarray:
        mates = [vector[p.product_id] for p in CATALOG if p.product_class == product.product_class]
        row = vector[product.product_id] - np.mean(mates, axis=0)
        return row / np.linalg.norm(row)

    weights = {"g-shelf": PROFILE_KIND_WEIGHTS[2], "g-lamp": PROFILE_KIND_WEIGHTS[1]}
    weights["g-vase"] = PROFILE_KIND_WEIGHTS[0]
    by_id = {p.product_id: p for p in CATALOG}
    mean = sum(w * centred(by_id[pid]) for pid, w in weights.items())
    expected = mean / np.linalg.norm(mean)
    assert np.asarray(reply.profile.values) == pytest.approx(expected, abs=2e-3)


def test_an_unknown_shopper_has_an_empty_profile_and_bad_ids_are_named(stack: Stack) -> None:
    reply = _profile(stack, user_id="nobody", session_id="nowhere")
    assert list(reply.profile.values) == [] and reply.interactions == 0
    for ids, field in (({}, "user_id"), ({"session_id": "x" * 129}, "session_id")):
        with pytest.raises(grpc.RpcError) as caught:
            _profile(stack, **ids)
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert caught.value.details().startswith(field), caught.value.details()


def _search(stack: Stack, user: str) -> spb.SearchResponse:
    stub = stack.stub("gateway", search_service_pb2_grpc.SearchServiceStub)
    return stub.Search(
        spb.SearchRequest(
            query="coffee table",
            user=common_pb2.UserContext(user_id=user),
            options=spb.SearchOptions(skip_intent=True),
        ),
        timeout=10,
    )


def _parts(result: spb.SearchResult) -> dict[str, spb.ScoreComponent]:
    return {p.feature: p for p in result.explanation.score_parts}


def test_search_is_personalised_by_the_profile_with_an_explained_feature(stack: Stack) -> None:
    # Ranking loads the catalog's vectors on the first profile: until then, unpersonalised.
    wait_until(
        lambda: not _search(stack, "glassfan").degraded.personalization,
        "ranking holds the catalog's vectors",
        timeout=30,
    )
    mine = _search(stack, "glassfan")
    tables = [r for r in mine.results if r.product_id.startswith("t-")]
    assert tables[0].product_id == "t-glass"
    likeness = {r.product_id: _parts(r)["personal"].value for r in mine.results}
    # Scaled over the list: 1 for the product most like the profile (one of glass), 0 for
    # the least; the glass table leads the tables, each centred on the tables' mean.
    assert max(likeness, key=likeness.get) in {"t-glass", *(p.product_id for p in GLASS)}
    assert (max(likeness.values()), min(likeness.values())) == pytest.approx((1.0, 0.0))
    assert likeness["t-glass"] == max(likeness[t.product_id] for t in TABLES)
    personal = _parts(tables[0])["personal"]
    assert personal.weight == pytest.approx(0.2)  # SHOPSENSE_PERSONAL_WEIGHT's default
    assert personal.contribution == pytest.approx(0.2 * personal.value)
    for result in mine.results:
        assert result.score == pytest.approx(sum(p.contribution for p in _parts(result).values()))
    # A shopper without history: no feature, no degradation, the unpersonalised ranking.
    cold = _search(stack, "first-visit")
    assert not cold.degraded.personalization
    assert all("personal" not in _parts(r) for r in cold.results)
    glass = {r.product_id: r.score for r in mine.results}["t-glass"]
    unpersonalised = {r.product_id: r.score for r in cold.results}["t-glass"]
    assert glass == pytest.approx(unpersonalised + personal.contribution)


def test_without_the_recommendation_service_search_goes_on_unpersonalised(
    stack: Stack, start_stack, triton_server
) -> None:
    own = settings_of(stack, "gateway", recommend_target=NOWHERE)
    with start_stack(["gateway"], triton_url=triton_server.grpc_url, only={"gateway": own}) as away:
        reply = _search(away, "glassfan")
    assert reply.results and reply.degraded.personalization
    assert not reply.degraded.ranking
    assert all("personal" not in _parts(r) for r in reply.results)


def test_erasure_removes_the_profile_and_its_personalisation(stack: Stack) -> None:
    feedback = stack.stub("feedback", feedback_service_pb2_grpc.FeedbackServiceStub)
    deleted = feedback.DeleteShopperEvents(fpb.ShopperRequest(user_id="glassfan"), timeout=10)
    assert deleted.deleted == 3
    reply = _profile(stack, user_id="glassfan")
    assert list(reply.profile.values) == [] and reply.interactions == 0
    after = _search(stack, "glassfan")
    assert all("personal" not in _parts(r) for r in after.results)
