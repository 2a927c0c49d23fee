"""The search path once fine-tuned versions are published: intent answers with the
classifier, ranking blends the cross-encoder into the top candidates, requests name the
versions they want, and a version that goes away degrades to the v1 behaviour.

Real parts: a Triton of its own over a repository holding text_encoder 1 and exported
(untrained-head) intent_classifier and cross_encoder versions, real gRPC servers on port 0,
a real catalog file. Training itself is covered by test_training and test_trainer_service.
"""

from __future__ import annotations

import dataclasses
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from shopsense.common.v1 import common_pb2
from shopsense.intent.v1 import intent_service_pb2, intent_service_pb2_grpc
from shopsense.ranking.v1 import ranking_service_pb2, ranking_service_pb2_grpc
from shopsense.retrieval.v1 import retrieval_service_pb2 as rpb
from shopsense.search.v1 import search_service_pb2 as spb
from shopsense.search.v1 import search_service_pb2_grpc

from shared.models.triton_server import TritonServer
from shared.training.publish import install_version, load_versions
from tests.support import SMALL_STORE, SMALL_STORE_CLASSES, wait_until

pytestmark = pytest.mark.integration
STORE = SMALL_STORE
CLASSES = SMALL_STORE_CLASSES


@dataclasses.dataclass
class FineTuned:
    triton: TritonServer
    stack: FineTuned

    def rank_stub(self) -> ranking_service_pb2_grpc.RankingServiceStub:
        return self.stack.stub("ranking", ranking_service_pb2_grpc.RankingServiceStub)

    def intent_stub(self) -> intent_service_pb2_grpc.IntentServiceStub:
        return self.stack.stub("intent", intent_service_pb2_grpc.IntentServiceStub)

    def search(self, query: str) -> spb.SearchResponse:
        stub = self.stack.stub("gateway", search_service_pb2_grpc.SearchServiceStub)
        return stub.Search(
            spb.SearchRequest(query=query, user=common_pb2.UserContext(session_id="s")),
            timeout=20,
        )


@pytest.fixture(scope="module")
def stack(
    exported_model_repository: Path,
    untrained_exports: dict[str, Path],
    tmp_path_factory: pytest.TempPathFactory,
    start_stack,
) -> Iterator[FineTuned]:
    tmp = tmp_path_factory.mktemp("fine-tuned")
    repository = tmp / "repository"
    shutil.copytree(exported_model_repository / "text_encoder", repository / "text_encoder")
    for model in ("intent_classifier", "cross_encoder"):
        install_version(repository, model, 1, untrained_exports[model])
    triton = TritonServer(repository, log_file=tmp / "triton.log").start()
    try:
        # No trainer: "" asks Triton for its newest version. The result cache cannot see
        # versions loaded in Triton by hand (only the registry's), so it is off here.
        stack = start_stack(
            ["retrieval", "ranking", "intent", "gateway"],
            triton_url=triton.grpc_url,
            state=tmp,
            settings={"refresh_s": 0.5, "token_secret": "test-secret", "result_cache_entries": 0},
            using={"ranking": {"watch_interval_s": 0.2}},
        )
        stack.load_catalog(STORE.products)
        yield FineTuned(triton, stack)
        stack.stop()
    finally:
        triton.stop()


def _candidates(n: int = 60) -> list[rpb.Candidate]:
    return [
        rpb.Candidate(
            product=common_pb2.Product(
                product_id=p.product_id,
                title=p.title,
                product_class=p.product_class,
                attributes=p.attributes,
            ),
            fused_score=1.0 / (i + 1),
        )
        for i, p in enumerate(STORE.products[:n])
    ]


def test_search_uses_the_published_classifier_and_cross_encoder(stack: FineTuned) -> None:
    sofa = next(p for p in STORE.products if p.product_class == "Sofas")
    reply = stack.search(sofa.title)
    assert reply.model_versions.intent == "intent_classifier/1"
    # A fine-tuned intent is trusted more: the features' v2 weights (intent_match 0.6).
    assert reply.model_versions.ranking == "cross_encoder/1+features-v2"
    assert {c.product_class for c in reply.intent.classes} <= set(CLASSES)
    assert not (reply.degraded.intent or reply.degraded.ranking)
    top = reply.results[0]
    assert top.explanation.score_parts[0].feature == "cross_encoder"
    assert top.score == pytest.approx(sum(p.contribution for p in top.explanation.score_parts))
    scores = [r.score for r in reply.results]
    assert scores == sorted(scores, reverse=True)


def test_rank_scores_the_head_to_the_requested_depth(stack: FineTuned) -> None:
    stub = stack.rank_stub()
    reply = stub.Rank(
        ranking_service_pb2.RankRequest(
            query="grey sofa", candidates=_candidates(), rerank_depth=10
        ),
        timeout=20,
    )
    assert reply.reranked == 10 and reply.model_version == "cross_encoder/1+features-v1"
    with_cross = [i for i in reply.items if i.parts and i.parts[0].feature == "cross_encoder"]
    assert len(with_cross) == 10
    assert {i.product_id for i in reply.items[:10]} == {i.product_id for i in with_cross}
    off = stub.Rank(
        ranking_service_pb2.RankRequest(
            query="grey sofa", candidates=_candidates(), rerank_depth=-1
        ),
        timeout=20,
    )
    assert off.model_version == "features-v1" and off.reranked == 0
    default = stub.Rank(
        ranking_service_pb2.RankRequest(
            query="grey sofa", candidates=_candidates(), model_version="1"
        ),
        timeout=20,
    )
    assert default.reranked == 50  # SHOPSENSE_RERANK_DEPTH's default


def test_a_short_deadline_gets_a_shallower_rerank_in_time(stack: FineTuned) -> None:
    """Ranking learns the version's seconds per pair and cuts the head to what fits the
    caller's deadline (kept 10 ms back to answer): an answer, not DEADLINE_EXCEEDED."""
    stub = stack.rank_stub()
    request = ranking_service_pb2.RankRequest(
        query="grey sofa", candidates=_candidates(), model_version="1", rerank_depth=50
    )
    started = time.monotonic()
    for _ in range(3):
        assert stub.Rank(request, timeout=20).reranked == 50
    per_pair = (time.monotonic() - started) / 150
    # Time for a fraction of the head, and room besides (the 10 ms margin, and the 30% of
    # the rest that ranking leaves for a call slower than the average).
    short = stub.Rank(request, timeout=0.03 + 8 * per_pair)
    assert short.reranked < 50 and short.items
    if short.reranked:
        assert short.model_version == "cross_encoder/1+features-v1"
        assert not short.cross_encoder_skipped
    assert stub.Rank(request, timeout=20).reranked == 50  # a long deadline: the whole head


@pytest.mark.parametrize(
    ("fields", "code", "named"),
    [
        ({"rerank_depth": 201}, grpc.StatusCode.INVALID_ARGUMENT, "rerank_depth"),
        ({"rerank_depth": -2}, grpc.StatusCode.INVALID_ARGUMENT, "rerank_depth"),
        ({"model_version": "v2"}, grpc.StatusCode.INVALID_ARGUMENT, "model_version"),
        ({"model_version": "7"}, grpc.StatusCode.FAILED_PRECONDITION, "model_version"),
    ],
)
def test_bad_rank_requests_name_the_field(stack: FineTuned, fields: dict, code, named: str) -> None:
    with pytest.raises(grpc.RpcError) as error:
        stack.rank_stub().Rank(
            ranking_service_pb2.RankRequest(query="sofa", candidates=_candidates(5), **fields),
            timeout=20,
        )
    assert error.value.code() == code and named in error.value.details()


def test_intent_names_the_version_and_refuses_one_not_loaded(stack: FineTuned) -> None:
    stub = stack.intent_stub()
    reply = stub.Classify(
        intent_service_pb2.ClassifyRequest(query="velvet sofa", model_version="1"), timeout=20
    )
    assert reply.intent.model_version == "intent_classifier/1"
    probabilities = [c.probability for c in reply.intent.classes]
    assert probabilities == sorted(probabilities, reverse=True) and sum(probabilities) <= 1.0 + 1e-6
    for version, code in (
        ("9", grpc.StatusCode.FAILED_PRECONDITION),
        ("x", grpc.StatusCode.INVALID_ARGUMENT),
    ):
        with pytest.raises(grpc.RpcError) as error:
            stub.Classify(
                intent_service_pb2.ClassifyRequest(query="sofa", model_version=version), timeout=20
            )
        assert error.value.code() == code and "model_version" in error.value.details()


def test_unloading_the_models_falls_back_to_prototypes_and_features(stack: FineTuned) -> None:
    url = stack.triton.grpc_url
    load_versions(url, "cross_encoder", [])
    load_versions(url, "intent_classifier", [])
    try:

        def fell_back() -> bool:
            reply = stack.search("oak dining table")
            return (
                reply.model_versions.ranking == "features-v1"
                and reply.model_versions.intent.startswith("prototypes-g")
            )

        wait_until(fell_back, "search back on prototypes and features", timeout=30)
        reply = stack.search("oak dining table")
        assert reply.results and not reply.degraded.ranking and not reply.degraded.intent
    finally:
        load_versions(url, "cross_encoder", [1])
        load_versions(url, "intent_classifier", [1])
    wait_until(
        lambda: stack.search("sofa").model_versions.ranking == "cross_encoder/1+features-v2",
        "cross-encoder back",
        timeout=30,
    )
