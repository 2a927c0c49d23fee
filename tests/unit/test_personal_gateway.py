"""The gateway personalises a search when its setting or the shopper's experiment arm says
so: it asks the recommendation service for the shopper's profile beside the other hops and
hands it to ranking; when the profile fails, the search goes on unpersonalised and says so.
The unit is the gateway's SearchServicer; fakes stand in for the services it calls."""

from __future__ import annotations

import grpc
import pytest
from shopsense.common.v1 import common_pb2
from shopsense.ranking.v1 import ranking_service_pb2
from shopsense.recommend.v1 import recommend_service_pb2 as pb
from shopsense.search.v1 import search_service_pb2 as spb

from services.gateway.pipeline import Hops
from services.gateway.server import SearchServicer
from shared.experiments.assignment import Arm, Experiment, Pipeline, assign_arm
from shared.experiments.attribution import AttributionSigner
from shared.settings import GatewaySettings
from tests.unit.test_gateway_guard_rails import (
    Context,
    Encoder,
    Future,
    Intent,
    Retrieval,
    RpcError,
)

pytestmark = pytest.mark.unit

PROFILE = common_pb2.Embedding(values=[0.6, 0.8], model_version="1")
EXPERIMENT = Experiment(
    name="personal",
    salt="personal",
    arms=(
        Arm("off", 0.4, pipeline=Pipeline(personalize=False)),
        Arm("on", 0.3, pipeline=Pipeline(personalize=True)),
        Arm("default", 0.3),
    ),
)


class _Profiles:
    """GetShopperProfile.future: the profile, or the error it is told to raise."""

    def __init__(self, reply: pb.GetShopperProfileResponse | Exception) -> None:
        self.asked: list[pb.GetShopperProfileRequest] = []
        self._reply = reply

    def future(self, request: pb.GetShopperProfileRequest, timeout: float) -> Future:
        assert 0 < timeout <= 2.0
        self.asked.append(request)
        return Future(self._reply)


class _Recommend:
    def __init__(self, reply: pb.GetShopperProfileResponse | Exception) -> None:
        self.GetShopperProfile = _Profiles(reply)


class _Ranking:
    """Records the profiles it was given; uses one when it has it."""

    def __init__(self) -> None:
        self.profiles: list[common_pb2.Embedding | None] = []

    def Rank(self, request: ranking_service_pb2.RankRequest, timeout: float):
        given = request.shopper_profile if request.HasField("shopper_profile") else None
        self.profiles.append(given)
        return ranking_service_pb2.RankResponse(
            items=[
                ranking_service_pb2.RankedItem(product_id=c.product.product_id, score=c.fused_score)
                for c in request.candidates
            ],
            model_version="features-v1",
            personalized=given is not None,
        )


def _servicer(
    default: str, reply: pb.GetShopperProfileResponse | Exception
) -> tuple[SearchServicer, _Recommend, _Ranking]:
    settings = GatewaySettings.load(
        {}, explore_rate=0.0, token_secret="test", personalize=default, guard_min_searches=1
    )
    recommend, ranking = _Recommend(reply), _Ranking()
    servicer = SearchServicer(
        settings,
        Encoder(),
        Hops(intent=Intent(), retrieval=Retrieval(), ranking=ranking, recommend=recommend),  # type: ignore[arg-type]
        AttributionSigner("test"),
        experiment=EXPERIMENT,
    )
    return servicer, recommend, ranking


def _user_in(arm: str) -> str:
    for n in range(1000):
        assigned = assign_arm(EXPERIMENT, f"u-{n}", "")
        if assigned is not None and assigned.name == arm:
            return f"u-{n}"
    raise AssertionError(f"no user in arm {arm}")


def _search(servicer: SearchServicer, user: str) -> spb.SearchResponse:
    request = spb.SearchRequest(query="sofa", user=common_pb2.UserContext(user_id=user))
    return servicer.Search(request, Context(2.0))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("arm", "default", "personalised"),
    [("on", "off", True), ("off", "on", False), ("default", "on", True), ("default", "off", False)],
)
def test_the_arm_or_else_the_setting_decides(arm: str, default: str, personalised: bool) -> None:
    servicer, recommend, ranking = _servicer(default, pb.GetShopperProfileResponse(profile=PROFILE))
    user = _user_in(arm)
    reply = _search(servicer, user)
    assert reply.experiment_arm == arm and reply.results
    assert not reply.degraded.personalization
    if personalised:
        assert [r.user_id for r in recommend.GetShopperProfile.asked] == [user]
        assert ranking.profiles == [PROFILE]
    else:  # not even asked
        assert recommend.GetShopperProfile.asked == [] and ranking.profiles == [None]


def test_a_shopper_without_a_profile_is_ranked_as_before_without_degradation() -> None:
    servicer, _, ranking = _servicer("on", pb.GetShopperProfileResponse())
    reply = _search(servicer, _user_in("on"))
    assert ranking.profiles == [None] and not reply.degraded.personalization


@pytest.mark.parametrize("code", [grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED])
def test_a_failed_profile_degrades_the_search_and_is_not_the_arms_failure(
    code: grpc.StatusCode,
) -> None:
    servicer, _, ranking = _servicer("on", RpcError(code, "recommend service down"))
    reply = _search(servicer, _user_in("on"))
    assert reply.results and reply.degraded.personalization
    assert not reply.degraded.ranking and ranking.profiles == [None]
    window = servicer.guard_rail._health._arms["on"]
    assert [failed for _, failed in window] == [False]  # not counted against the arm


def test_an_arm_sets_personalisation_in_its_pipeline_and_a_bad_value_is_named() -> None:
    from shopsense.experiments.v1 import experiment_service_pb2 as epb

    from shared.contracts.experiments import from_proto, to_proto
    from shared.errors import InvalidArgument
    from shared.experiments.assignment import from_dict, to_dict

    defined = from_dict(
        {
            "name": "p",
            "arms": [
                {"name": "a", "share": 0.5},
                {"name": "b", "share": 0.5, "pipeline": {"personalize": True}},
            ],
        }
    )
    assert [arm.pipeline.personalize for arm in defined.arms] == [None, True]
    assert "personalize" not in to_dict(defined)["arms"][0]["pipeline"]  # stored as before
    message = to_proto(defined)
    assert message.arms[1].pipeline.personalization == epb.PERSONALIZATION_ON
    assert from_proto(message) == defined
    with pytest.raises(InvalidArgument, match=r"arms\[0\]\.pipeline\.personalize: true or false"):
        from_dict(
            {"name": "p", "arms": [{"name": "a", "share": 1, "pipeline": {"personalize": 1}}]}
        )
    message.arms[0].pipeline.personalization = 7
    with pytest.raises(InvalidArgument, match=r"arms\[0\]\.pipeline\.personalization: unknown"):
        from_proto(message)
