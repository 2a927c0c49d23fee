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

from services.gateway.server import create_server as create_gateway
from services.intent.server import create_server as create_intent
from services.ranking.server import create_server as create_ranking
from services.retrieval.server import create_server as create_retrieval
from shared.data.synthetic import generate_store
from shared.models.triton_server import TritonServer
from shared.rpc.server import ServerHandle
from shared.runtime.catalog import upsert_products
from shared.runtime.suite import is_serving
from shared.settings import Settings
from shared.training.publish import install_version, load_versions
from tests.support import export_untrained, wait_until

pytestmark = pytest.mark.integration
ANY = "127.0.0.1:0"
STORE = generate_store(n_products=300, n_queries=10, seed=5)
CLASSES = sorted({p.product_class for p in STORE.products})


@dataclasses.dataclass
class Stack:
    triton: TritonServer
    ranking: ServerHandle
    intent: ServerHandle
    gateway: ServerHandle

    def rank_stub(self) -> ranking_service_pb2_grpc.RankingServiceStub:
        return ranking_service_pb2_grpc.RankingServiceStub(
            grpc.insecure_channel(self.ranking.address)
        )

    def intent_stub(self) -> intent_service_pb2_grpc.IntentServiceStub:
        return intent_service_pb2_grpc.IntentServiceStub(grpc.insecure_channel(self.intent.address))

    def search(self, query: str) -> spb.SearchResponse:
        stub = search_service_pb2_grpc.SearchServiceStub(
            grpc.insecure_channel(self.gateway.address)
        )
        return stub.Search(
            spb.SearchRequest(query=query, user=common_pb2.UserContext(session_id="s")),
            timeout=20,
        )


@pytest.fixture(scope="module")
def stack(exported_model_repository: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator:
    tmp = tmp_path_factory.mktemp("fine-tuned")
    repository = tmp / "repository"
    shutil.copytree(exported_model_repository / "text_encoder", repository / "text_encoder")
    install_version(
        repository,
        "intent_classifier",
        1,
        export_untrained(tmp, "intent", STORE.products, kind="intent_classifier", labels=CLASSES),
    )
    install_version(
        repository,
        "cross_encoder",
        1,
        export_untrained(tmp, "cross", STORE.products, kind="cross_encoder"),
    )
    triton = TritonServer(repository, log_file=tmp / "triton.log").start()
    settings = dataclasses.replace(
        Settings(),
        state_dir=tmp,
        catalog_db=tmp / "catalog.db",
        triton_url=triton.grpc_url,
        retrieval_listen=ANY,
        ranking_listen=ANY,
        intent_listen=ANY,
        gateway_listen=ANY,
        trainer_target="127.0.0.1:9",  # no trainer: "" asks Triton for its newest version
        intent_refresh_s=0.5,
        token_secret="test-secret",
    )
    retrieval = create_retrieval(settings)
    ranking = create_ranking(settings, watch_interval_s=0.2)
    settings = dataclasses.replace(
        settings, retrieval_target=retrieval.address, ranking_target=ranking.address
    )
    intent = create_intent(settings)
    gateway = create_gateway(dataclasses.replace(settings, intent_target=intent.address))
    handles = [retrieval, ranking, intent, gateway]
    try:
        for handle in handles:
            wait_until(lambda h=handle: is_serving(h.address), f"{handle.name} SERVING")
        reply = upsert_products(retrieval.address, STORE.products, progress=False)
        assert not [r.error for r in reply.results if r.error]
        yield Stack(triton, ranking, intent, gateway)
    finally:
        for handle in reversed(handles):
            handle.stop(0.5)
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


def test_search_uses_the_published_classifier_and_cross_encoder(stack: Stack) -> None:
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


def test_rank_scores_the_head_to_the_requested_depth(stack: Stack) -> None:
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


@pytest.mark.parametrize(
    ("fields", "code", "named"),
    [
        ({"rerank_depth": 201}, grpc.StatusCode.INVALID_ARGUMENT, "rerank_depth"),
        ({"rerank_depth": -2}, grpc.StatusCode.INVALID_ARGUMENT, "rerank_depth"),
        ({"model_version": "v2"}, grpc.StatusCode.INVALID_ARGUMENT, "model_version"),
        ({"model_version": "7"}, grpc.StatusCode.FAILED_PRECONDITION, "model_version"),
    ],
)
def test_bad_rank_requests_name_the_field(stack: Stack, fields: dict, code, named: str) -> None:
    with pytest.raises(grpc.RpcError) as error:
        stack.rank_stub().Rank(
            ranking_service_pb2.RankRequest(query="sofa", candidates=_candidates(5), **fields),
            timeout=20,
        )
    assert error.value.code() == code and named in error.value.details()


def test_intent_names_the_version_and_refuses_one_not_loaded(stack: Stack) -> None:
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


def test_unloading_the_models_falls_back_to_prototypes_and_features(stack: Stack) -> None:
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
