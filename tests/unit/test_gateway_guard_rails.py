"""The gateway's guard rails count only the failures of an arm's own models: not errors
that another service returns about the caller's request, not hops cut short by the
caller's own deadline. The unit is the gateway's SearchServicer; fakes stand in for the
services it calls (intent, retrieval, ranking) and for the text encoder."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc
import numpy as np
import pytest
from shopsense.common.v1 import common_pb2
from shopsense.intent.v1 import intent_service_pb2
from shopsense.ranking.v1 import ranking_service_pb2
from shopsense.retrieval.v1 import retrieval_service_pb2 as rpb
from shopsense.search.v1 import search_service_pb2 as spb

from services.gateway.pipeline import Hops
from services.gateway.server import SearchServicer
from shared.errors import ShopsenseError
from shared.experiments.assignment import Arm, Experiment, assign_arm
from shared.experiments.attribution import AttributionSigner
from shared.settings import GatewaySettings

pytestmark = pytest.mark.unit

EXPERIMENT = Experiment(
    name="ce-2",
    salt="ce-2",
    arms=(Arm("control", 0.5), Arm("treatment", 0.5, models={"cross_encoder": "2"})),
)
SEARCHES = 15  # an arm


class RpcError(grpc.RpcError):
    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        self._code, self._details = code, details

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details


class Future:
    """A gRPC future that has finished: ``result()`` answers the reply, or raises the error."""

    def __init__(self, answer: Any) -> None:
        self._answer = answer

    def result(self) -> Any:
        if isinstance(self._answer, Exception):
            raise self._answer
        return self._answer


class Context:
    """What the servicer asks of a call: the time left, and where the timings go."""

    def __init__(self, deadline_s: float | None) -> None:
        self._deadline_s = deadline_s

    def time_remaining(self) -> float | None:
        return self._deadline_s

    def set_trailing_metadata(self, metadata: object) -> None:
        pass

    def invocation_metadata(self) -> tuple:
        return ()


class Encoder:
    def embed(self, texts: list[str], **_: object) -> np.ndarray:
        return np.full((len(texts), 384), 1 / np.sqrt(384), dtype=np.float32)

    def version(self) -> str:
        return "1"


class Intent:
    def Classify(self, request: object, timeout: float) -> intent_service_pb2.ClassifyResponse:
        return intent_service_pb2.ClassifyResponse(
            intent=common_pb2.Intent(model_version="prototypes-g1")
        )


class Retrieval:
    """Refuses a request that names an attribute the catalog lacks, as retrieval does."""

    def Retrieve(self, request: rpb.RetrieveRequest, timeout: float) -> rpb.RetrieveResponse:
        if request.filters.attributes:
            raise RpcError(grpc.StatusCode.INVALID_ARGUMENT, "filters.attributes: unknown")
        return rpb.RetrieveResponse(
            candidates=[
                rpb.Candidate(
                    product=common_pb2.Product(product_id=f"p{i}", title=f"Sofa {i}"),
                    fused_score=1 / (i + 1),
                )
                for i in range(5)
            ],
            embedding_version="1",
        )


class Ranking:
    """The control's cross-encoder answers; the treatment's (version 2) does what
    ``treatment`` says with the time it was given."""

    def __init__(self, treatment: Callable[[float], None]) -> None:
        self._treatment = treatment

    def Rank(self, request: ranking_service_pb2.RankRequest, timeout: float):
        if request.model_version == "2":
            self._treatment(timeout)
        return ranking_service_pb2.RankResponse(
            items=[
                ranking_service_pb2.RankedItem(product_id=c.product.product_id, score=c.fused_score)
                for c in request.candidates
            ],
            model_version=f"cross_encoder/{request.model_version or '1'}",
        )


def _answers(timeout: float) -> None:
    pass


def _model_down(timeout: float) -> None:
    raise RpcError(grpc.StatusCode.UNAVAILABLE, "cross_encoder version 2: inference failed")


def _needs_100_ms(timeout: float) -> None:
    if timeout < 0.1:
        raise RpcError(grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded")


def _servicer(
    treatment: Callable[[float], None], ranking_budget: float = 0.5
) -> tuple[SearchServicer, list[str]]:
    settings = GatewaySettings.load(
        {},
        guard_min_searches=10,
        explore_rate=0.0,
        token_secret="test",
        search_deadline_s=2.0,
        ranking_budget=ranking_budget,
    )
    stopped: list[str] = []
    servicer = SearchServicer(
        settings,
        Encoder(),
        Hops(intent=Intent(), retrieval=Retrieval(), ranking=Ranking(treatment)),
        AttributionSigner("test"),
        experiment=EXPERIMENT,
    )
    servicer.guard_rail._stop = lambda experiment, reason: stopped.append(reason)
    return servicer, stopped


def _sessions() -> dict[str, list[str]]:
    """SEARCHES session ids of each arm."""
    by_arm: dict[str, list[str]] = {"control": [], "treatment": []}
    n = 0
    while min(len(v) for v in by_arm.values()) < SEARCHES:
        session = f"s-{n}"
        n += 1
        arm = assign_arm(EXPERIMENT, "", session)
        assert arm is not None
        if len(by_arm[arm.name]) < SEARCHES:
            by_arm[arm.name].append(session)
    return by_arm


def _search(
    servicer: SearchServicer, session: str, deadline_s: float | None = None, **fields: object
) -> spb.SearchResponse | ShopsenseError:
    request = spb.SearchRequest(
        query="grey sofa", user=common_pb2.UserContext(session_id=session), **fields
    )
    try:
        return servicer.Search(request, Context(deadline_s))  # type: ignore[arg-type]
    except ShopsenseError as error:
        return error


def test_errors_retrieval_returns_about_the_callers_request_do_not_count_against_an_arm():
    servicer, stopped = _servicer(_answers)
    sessions = _sessions()
    # The treatment's shoppers happen to send filters the catalog does not know.
    bad = common_pb2.Filters(attributes=[common_pb2.AttributeFilter(name="colr", values=["x"])])
    for control, treatment in zip(sessions["control"], sessions["treatment"], strict=True):
        assert isinstance(_search(servicer, control), spb.SearchResponse)
        refused = _search(servicer, treatment, filters=bad)
        assert isinstance(refused, ShopsenseError) and refused.message.startswith("filters.")
    assert stopped == []


def test_a_hop_cut_short_by_the_callers_own_deadline_does_not_count_against_an_arm():
    servicer, stopped = _servicer(_needs_100_ms)
    sessions = _sessions()
    for control, treatment in zip(sessions["control"], sessions["treatment"], strict=True):
        _search(servicer, control, deadline_s=0.05)
        reply = _search(servicer, treatment, deadline_s=0.05)  # the caller allows 50 ms
        assert isinstance(reply, spb.SearchResponse) and reply.degraded.ranking
    assert stopped == []


@pytest.mark.parametrize(
    ("treatment", "deadline_s"),
    [(_model_down, None), (_needs_100_ms, None), (_needs_100_ms, 3.0)],
    ids=["model-down", "too-slow-for-the-suites-deadline", "too-slow-for-a-longer-deadline"],
)
def test_failures_of_the_arms_own_model_trip_the_guard_rail_naming_the_arm(
    treatment: Callable[[float], None], deadline_s: float | None
):
    # Ranking gets 2% of the deadline: 40 ms of the suite's 2 s, 60 ms of 3 s; too little
    # for the treatment's model, which needs 100 ms.
    servicer, stopped = _servicer(treatment, ranking_budget=0.02)
    sessions = _sessions()
    for control, treatment_session in zip(sessions["control"], sessions["treatment"], strict=True):
        assert not _search(servicer, control, deadline_s).degraded.ranking
        assert _search(servicer, treatment_session, deadline_s).degraded.ranking
    assert len(stopped) == 1
    assert stopped[0].startswith("guard rail: arm treatment failed or degraded 100.0%")
