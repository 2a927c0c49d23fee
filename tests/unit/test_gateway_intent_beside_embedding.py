"""An arm that classifies with a fine-tuned classifier asks intent when the search starts,
without the query's vector, so that intent and the embedding run at once; with the
prototypes alone, intent is asked after the embedding, with the vector. The unit is the
gateway's SearchServicer; fakes stand in for the services it calls."""

from __future__ import annotations

import grpc
import numpy as np
import pytest
from shopsense.common.v1 import common_pb2
from shopsense.intent.v1 import intent_service_pb2
from shopsense.search.v1 import search_service_pb2 as spb

from services.gateway.pipeline import Hops
from services.gateway.server import SearchServicer
from shared.experiments.assignment import Arm, Experiment
from shared.experiments.attribution import AttributionSigner
from shared.settings import GatewaySettings
from tests.unit.test_gateway_guard_rails import Context, Future, Retrieval, RpcError
from tests.unit.test_personal_gateway import _Ranking

pytestmark = pytest.mark.unit


class _Encoder:
    def __init__(self, events: list[str]) -> None:
        self._events = events

    def embed(self, texts: list[str], **_: object) -> np.ndarray:
        self._events.append("embed")
        return np.full((len(texts), 384), 1 / np.sqrt(384), dtype=np.float32)

    def version(self) -> str:
        return "1"


class _Classify:
    """IntentService.Classify, called blocking or as a future; records each request."""

    def __init__(self, events: list[str], error: Exception | None) -> None:
        self.requests: list[intent_service_pb2.ClassifyRequest] = []
        self._events = events
        self._error = error

    def _answer(self, request: intent_service_pb2.ClassifyRequest) -> object:
        self.requests.append(request)
        version = request.model_version
        return self._error or intent_service_pb2.ClassifyResponse(
            intent=common_pb2.Intent(
                classes=[common_pb2.IntentClass(product_class="Sofas", probability=0.9)],
                model_version=f"intent_classifier/{version}" if version else "prototypes-g1",
            )
        )

    def __call__(self, request: intent_service_pb2.ClassifyRequest, timeout: float):
        self._events.append("classify")
        answer = self._answer(request)
        if isinstance(answer, Exception):
            raise answer
        return answer

    def future(self, request: intent_service_pb2.ClassifyRequest, timeout: float) -> Future:
        assert 0 < timeout <= 2.0
        self._events.append("classify started")
        return Future(self._answer(request))


class _Intent:
    def __init__(self, events: list[str], error: Exception | None = None) -> None:
        self.Classify = _Classify(events, error)


def _servicer(
    models: dict[str, str], error: Exception | None = None
) -> tuple[SearchServicer, _Intent, list[str]]:
    settings = GatewaySettings.load(
        {}, explore_rate=0.0, token_secret="test", search_deadline_s=2.0
    )
    events: list[str] = []
    intent = _Intent(events, error)
    servicer = SearchServicer(
        settings,
        _Encoder(events),
        Hops(intent=intent, retrieval=Retrieval(), ranking=_Ranking()),
        AttributionSigner("test"),
        experiment=Experiment(name="one", salt="one", arms=(Arm("only", 1.0, models=models),)),
    )
    return servicer, intent, events


def _search(servicer: SearchServicer, **options: object) -> spb.SearchResponse:
    request = spb.SearchRequest(
        query="grey sofa",
        user=common_pb2.UserContext(session_id="s-1"),
        options=spb.SearchOptions(**options),
    )
    context = Context(None)
    reply = servicer.Search(request, context)  # type: ignore[arg-type]
    return reply


def test_a_fine_tuned_classifier_is_asked_before_the_embedding_without_the_vector() -> None:
    servicer, intent, events = _servicer({"intent_classifier": "2"})
    reply = _search(servicer)
    assert events == ["classify started", "embed"]
    [request] = intent.Classify.requests
    assert request.query == "grey sofa" and request.model_version == "2"
    assert not request.HasField("query_embedding")
    assert reply.model_versions.intent == "intent_classifier/2"
    assert reply.intent.classes[0].product_class == "Sofas"
    assert not reply.degraded.intent


def test_the_prototypes_are_asked_after_the_embedding_with_the_vector() -> None:
    servicer, intent, events = _servicer({})
    reply = _search(servicer)
    assert events == ["embed", "classify"]
    [request] = intent.Classify.requests
    assert request.HasField("query_embedding") and len(request.query_embedding.values) == 384
    assert reply.model_versions.intent == "prototypes-g1"


def test_an_early_intent_call_that_fails_degrades_the_search_and_it_is_answered() -> None:
    down = RpcError(grpc.StatusCode.UNAVAILABLE, "intent_classifier: inference failed")
    servicer, _, events = _servicer({"intent_classifier": "2"}, error=down)
    reply = _search(servicer)
    assert events == ["classify started", "embed"]
    assert reply.degraded.intent and not reply.model_versions.intent
    assert [r.product_id for r in reply.results][:1] == ["p0"]


def test_a_search_that_skips_intent_asks_nothing() -> None:
    servicer, intent, events = _servicer({"intent_classifier": "2"})
    _search(servicer, skip_intent=True)
    assert events == ["embed"] and intent.Classify.requests == []
