"""RankingService: v1 scores candidates with the transparent feature scorer."""

from __future__ import annotations

import grpc
from shopsense.ranking.v1 import ranking_service_pb2, ranking_service_pb2_grpc

from shared.ranking.features import VERSION, FeatureScorer, RankInput
from shared.rpc.convert import check_count, intent_pairs, validate_query
from shared.rpc.errors import InvalidArgument
from shared.rpc.server import ServerHandle, build_server
from shared.settings import Settings

MAX_CANDIDATES = 1000
SERVICE_NAME = ranking_service_pb2.DESCRIPTOR.services_by_name["RankingService"].full_name


class RankingServicer(ranking_service_pb2_grpc.RankingServiceServicer):
    def __init__(self, scorer: FeatureScorer) -> None:
        self._scorer = scorer

    def Rank(
        self, request: ranking_service_pb2.RankRequest, context: grpc.ServicerContext
    ) -> ranking_service_pb2.RankResponse:
        validate_query(request.query)
        check_count(request.candidates, "candidates", MAX_CANDIDATES, minimum=1)
        if request.explain_top < 0:
            raise InvalidArgument(f"explain_top: must be >= 0, got {request.explain_top}")
        explain = request.explain_top or len(request.candidates)
        inputs = []
        seen: set[str] = set()
        for i, c in enumerate(request.candidates):
            pid = c.product.product_id
            if not pid:
                raise InvalidArgument(f"candidates[{i}].product.product_id: required")
            if pid in seen:
                raise InvalidArgument(f"candidates[{i}].product.product_id: duplicate id {pid!r}")
            seen.add(pid)
            inputs.append(
                RankInput(
                    product_id=pid,
                    product_class=c.product.product_class,
                    fused_score=c.fused_score,
                    dense_score=c.dense_score if "dense" in c.sources or c.dense_score else None,
                    lexical_score=c.lexical_score if c.lexical_rank else None,
                    rating=c.product.rating,
                    review_count=c.product.review_count,
                    attributes=c.product.attributes,
                )
            )
        intent_message = request.intent if request.HasField("intent") else None
        ranked = self._scorer.score(
            inputs,
            dict(intent_pairs(intent_message)),
            dict(intent_message.attributes) if intent_message else None,
        )
        return ranking_service_pb2.RankResponse(
            items=[
                ranking_service_pb2.RankedItem(
                    product_id=s.product_id,
                    score=s.score,
                    parts=[
                        ranking_service_pb2.ScorePart(
                            feature=f, value=v, weight=w, contribution=v * w
                        )
                        for f, v, w in (s.parts if position < explain else ())
                    ],
                )
                for position, s in enumerate(ranked)
            ],
            model_version=VERSION,
        )


def create_server(settings: Settings, scorer: FeatureScorer | None = None) -> ServerHandle:
    servicer = RankingServicer(scorer or FeatureScorer())
    handle = build_server(
        "ranking",
        lambda s: ranking_service_pb2_grpc.add_RankingServiceServicer_to_server(servicer, s),
        [SERVICE_NAME],
        settings.ranking_listen,
        settings.grpc_workers,
    )
    handle.mark_serving()  # v1 has no model to warm
    return handle
