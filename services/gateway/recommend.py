"""RecommendService on the gateway: the public recommendation API. A request is checked,
routed to the shopper's experiment arm (as a search is), answered by the recommendation
service within the caller's deadline, and signed with an attribution token that names the
placement, so feedback, reports and guard rails see recommendations as they see searches.
"""

from __future__ import annotations

from collections.abc import Callable

import grpc
import structlog
from shopsense.recommend.v1 import recommend_service_pb2 as pb
from shopsense.recommend.v1 import recommend_service_pb2_grpc as pb_grpc

from services.gateway.routing import route
from shared.contracts.common import checked_shopper
from shared.contracts.recommend import placement_name
from shared.errors import DeadlineExceeded, Unavailable, Unimplemented
from shared.experiments.assignment import Experiment
from shared.experiments.attribution import Attribution, AttributionSigner
from shared.models.kinds import SEQUENCE_RECOMMENDER
from shared.rpc.clients import remaining
from shared.rpc.interceptors import current_request_id
from shared.rpc.privacy import bind_shopper
from shared.rpc.status import error_from_status

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["RecommendService"].full_name
# Status codes from the recommendation service that describe the caller's request.
_CALLER_ERRORS = {
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.NOT_FOUND,
}


class RecommendGatewayServicer(pb_grpc.RecommendServiceServicer):
    def __init__(
        self,
        recommend: pb_grpc.RecommendServiceStub,
        signer: AttributionSigner,
        running: Callable[[], Experiment | None],
        deadline_s: float,
    ) -> None:
        self._recommend = recommend
        self._signer = signer
        self._running = running
        self._deadline_s = deadline_s

    def Recommend(
        self, request: pb.RecommendRequest, context: grpc.ServicerContext
    ) -> pb.RecommendResponse:
        # What routing needs (the shopper for the arm); the recommendation service checks
        # every other field, and its INVALID_ARGUMENT is passed on as it is.
        bind_shopper(request.user.user_id, request.user.session_id)
        placement = placement_name(request.placement)
        user, session = checked_shopper(request.user)
        where = route(self._running(), user, session)
        arm = where.arms[0]  # interleaving interleaves searches; a list takes the first arm
        structlog.contextvars.bind_contextvars(
            arm=arm.name, experiment=where.experiment_name, placement=placement
        )
        pinned = arm.pinned(SEQUENCE_RECOMMENDER)
        if pinned:
            # The arm's sequence model version answers (a storefront's own pin is overridden).
            forwarded = pb.RecommendRequest()
            forwarded.CopyFrom(request)
            forwarded.options.model_versions[SEQUENCE_RECOMMENDER] = pinned
            request = forwarded
        left = remaining(context, self._deadline_s)
        try:
            response = self._recommend.Recommend(request, timeout=max(0.005, left - 0.002))
        except grpc.RpcError as exc:
            code = exc.code()
            if code in _CALLER_ERRORS:
                raise error_from_status(code, exc.details()) from exc
            if code == grpc.StatusCode.DEADLINE_EXCEEDED:
                raise DeadlineExceeded(
                    "recommendation service did not answer within the deadline"
                ) from exc
            raise Unavailable(f"recommendation service unavailable: {exc.details()}") from exc
        response.request_id = current_request_id()
        response.experiment_arm = arm.name
        response.attribution_token = self._signer.encode(
            Attribution(
                request_id=response.request_id,
                arm=arm.name,
                model_versions=dict(response.model_versions),
                experiment=where.experiment_name,
                placement=placement,
            )
        )
        # Told on the call's one log line (the interceptor's "rpc", with its time), not on a
        # second line of its own: a JSON line costs 0.1-0.2 ms, on every request.
        structlog.contextvars.bind_contextvars(items=len(response.items))
        return response

    # Operators' calls, served by the recommendation service only.
    def GetRecommenderStats(self, request, context):  # type: ignore[no-untyped-def]
        raise Unimplemented("GetRecommenderStats: ask the recommendation service, not the gateway")

    def ForgetShopper(self, request, context):  # type: ignore[no-untyped-def]
        raise Unimplemented("ForgetShopper: ask the recommendation service, not the gateway")
