"""The ``sequence`` source with real parts: a sequence_recommender trained on the catalog's
real MiniLM vectors (from retrieval), exported, installed and loaded into a real Triton
while the suite runs; the recommendation service picks it up, asks it per request, names
its version, honours a pin (and refuses a version Triton does not serve), and goes quiet
when the model is unloaded."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from shopsense.common.v1 import common_pb2
from shopsense.recommend.v1 import recommend_service_pb2 as pb
from shopsense.recommend.v1 import recommend_service_pb2_grpc
from shopsense.retrieval.v1 import retrieval_service_pb2_grpc

from shared.contracts.retrieval import export_catalog
from shared.models.triton_client import TextEncoderClient
from shared.recommendation.events import VIEW
from shared.training.hyperparams import Hyperparameters
from shared.training.publish import install_version, load_versions, remove_version
from shared.training.sequence import DevCase, History, SequenceCorpus, train_sequence_model
from shared.training.sequence_export import export_sequence_checkpoint
from tests.integration.conftest import Stack
from tests.support import HOME_CATALOG, wait_until

pytestmark = pytest.mark.integration

# SYNTHETIC: shoppers walk this catalog in order (and round again).
CATALOG = HOME_CATALOG
MODEL = "sequence_recommender"


def _walks(ids: list[str]) -> SequenceCorpus:
    n = len(CATALOG)
    order = [ids.index(p.product_id) for p in CATALOG]
    train = [
        History.of([order[(start + i) % n] for i in range(length)], VIEW)
        for start in range(n)
        for length in (3, 4, 5, 6)
        for _ in range(4)
    ]
    dev = [
        DevCase(History.of([order[(s + i) % n] for i in range(3)], VIEW), order[(s + 3) % n])
        for s in range(n)
    ]
    return SequenceCorpus(list(ids), None, train, dev)


@pytest.fixture(scope="module")
def stack(
    start_stack, triton_server, tokenizer, exported_model_repository: Path, tmp_path_factory
) -> Iterator[Stack]:
    encoder = TextEncoderClient(triton_server.grpc_url, tokenizer)
    stack = start_stack(
        ["retrieval", "recommend", "feedback", "gateway"],
        triton_url=triton_server.grpc_url,
        settings={"refresh_s": 0.2},
        only={"recommend": {"sequence_weight": 0.5}},
        using={service: {"encoder": encoder} for service in ("retrieval", "gateway")},
    )
    stack.load_catalog(CATALOG)
    retrieval = stack.stub("retrieval", retrieval_service_pb2_grpc.RetrievalServiceStub)
    snapshot = export_catalog(retrieval, 30.0)
    ids = [p.product_id for p in snapshot.products]
    corpus = _walks(ids)
    corpus.vectors = snapshot.vectors
    hp = Hyperparameters.for_kind(
        MODEL, {"epochs": 8, "history_length": 8, "learning_rate": 3e-3, "batch_size": 16}
    )
    tmp = tmp_path_factory.mktemp("sequence")
    result = train_sequence_model(corpus, tmp / "run", hp)
    assert result.dev_metrics["recall@10"] == 1.0  # 8 products: every target is in the top 10
    export_sequence_checkpoint(result.checkpoint_dir, tmp / "export")
    install_version(exported_model_repository, MODEL, 1, tmp / "export")
    load_versions(triton_server.grpc_url, MODEL, [1], repository=exported_model_repository)
    try:
        yield stack
    finally:
        # The session's Triton and repository serve other modules (a suite started on the
        # repository would load this version): leave both as they were.
        load_versions(triton_server.grpc_url, MODEL, [], repository=exported_model_repository)
        remove_version(exported_model_repository, MODEL, 1)


def _history(*ids: str) -> list[pb.HistoryEvent]:
    return [pb.HistoryEvent(product_id=p, type=pb.INTERACTION_TYPE_VIEW) for p in ids]


def _for_you(stack: Stack, via: str = "gateway", **options) -> pb.RecommendResponse:
    stub = stack.stub(via, recommend_service_pb2_grpc.RecommendServiceStub)
    return stub.Recommend(
        pb.RecommendRequest(
            placement=pb.PLACEMENT_RECOMMENDED_FOR_YOU,
            user=common_pb2.UserContext(session_id="walker"),
            history=_history("teapot", "kettle", "sofa"),
            options=pb.RecommendOptions(history_only=True, **options),
        ),
        timeout=10,
    )


def test_the_served_model_recommends_what_comes_next(stack: Stack) -> None:
    wait_until(
        lambda: _for_you(stack).model_versions.get(MODEL) == "1",
        "the recommender picked the sequence model up",
        timeout=60,
    )
    alone = _for_you(stack, sources=["sequence"])
    assert alone.items[0].product_id == "cushion"  # after teapot, kettle, sofa
    part = alone.items[0].score_parts[0]
    assert part.source == "sequence" and part.value > 0.5
    blended = _for_you(stack)
    assert "sequence" in {p.source for item in blended.items for p in item.score_parts}
    assert not blended.degraded.sequence
    assert "sofa" not in [i.product_id for i in alone.items[:1]]


def test_a_pinned_version_answers_and_an_unserved_one_is_refused(stack: Stack) -> None:
    pinned = _for_you(stack, via="recommend", model_versions={MODEL: "1"})
    assert pinned.model_versions[MODEL] == "1"
    with pytest.raises(grpc.RpcError) as error:
        _for_you(stack, model_versions={MODEL: "7"})
    assert error.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "options.model_versions" in error.value.details()
    assert "version 7" in error.value.details()
    with pytest.raises(grpc.RpcError) as error:
        _for_you(stack, model_versions={"cross_encoder": "1"})
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.RpcError) as error:
        _for_you(stack, model_versions={MODEL: "latest"})
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_unloading_the_model_quiets_the_source(
    stack: Stack, triton_server, exported_model_repository: Path
) -> None:
    load_versions(triton_server.grpc_url, MODEL, [], repository=exported_model_repository)
    wait_until(
        lambda: MODEL not in _for_you(stack).model_versions,
        "the recommender noticed the model is gone",
        timeout=30,
    )
    answer = _for_you(stack)
    assert answer.items and not answer.degraded.sequence
    load_versions(triton_server.grpc_url, MODEL, [1], repository=exported_model_repository)
