"""The gateway's Recommend: a shopper's experiment arm pins the sequence model version the
recommendation service answers with, and the signed token names what answered. The
recommendation service is a recording stand-in (the unit under test is the gateway's
routing); the real service's handling of a pin is tested in
tests/integration/test_recommend_sequence.py."""

from __future__ import annotations

from shopsense.common.v1 import common_pb2
from shopsense.recommend.v1 import recommend_service_pb2 as pb

from services.gateway.recommend import RecommendGatewayServicer
from shared.contracts.recommend import RECOMMENDED_FOR_YOU
from shared.experiments.assignment import Arm, Experiment, assign_arm
from shared.experiments.attribution import AttributionSigner

MODEL = "sequence_recommender"
EXPERIMENT = Experiment(
    name="sequence-v3",
    salt="pins",
    arms=[Arm(name="control", share=0.5), Arm(name="treatment", share=0.5, models={MODEL: "3"})],
)


class Recommend:
    """Records each forwarded request; answers with the version it was asked for."""

    def __init__(self) -> None:
        self.requests: list[pb.RecommendRequest] = []

    def Recommend(self, request: pb.RecommendRequest, timeout: float) -> pb.RecommendResponse:
        self.requests.append(request)
        version = request.options.model_versions.get(MODEL, "1")
        return pb.RecommendResponse(model_versions={MODEL: version})


class Context:
    def time_remaining(self) -> float | None:
        return 1.0


def _session_in(arm: str) -> str:
    return next(
        s for s in (f"s-{n}" for n in range(1000)) if assign_arm(EXPERIMENT, "", s).name == arm
    )


def test_an_arm_pins_the_sequence_model_version_and_the_token_names_it() -> None:
    recommend, signer = Recommend(), AttributionSigner("test")
    gateway = RecommendGatewayServicer(recommend, signer, lambda: EXPERIMENT, deadline_s=1.0)
    answers = {}
    for arm in ("control", "treatment"):
        request = pb.RecommendRequest(
            placement=pb.PLACEMENT_RECOMMENDED_FOR_YOU,
            user=common_pb2.UserContext(session_id=_session_in(arm)),
            # The storefront's own pin: an arm's pin overrides it, no arm keeps it.
            options=pb.RecommendOptions(model_versions={MODEL: "2"}),
        )
        answers[arm] = gateway.Recommend(request, Context())  # type: ignore[arg-type]
        assert request.options.model_versions[MODEL] == "2", "the caller's request changed"

    control, treatment = recommend.requests
    assert dict(control.options.model_versions) == {MODEL: "2"}
    assert dict(treatment.options.model_versions) == {MODEL: "3"}
    for arm, version in (("control", "2"), ("treatment", "3")):
        answer = answers[arm]
        assert answer.experiment_arm == arm
        token = signer.decode(answer.attribution_token)
        assert (token.arm, token.experiment) == (arm, EXPERIMENT.name)
        assert token.model_versions == {MODEL: version}
        assert token.placement == RECOMMENDED_FOR_YOU
