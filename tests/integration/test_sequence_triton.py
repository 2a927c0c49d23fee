"""A trained ``sequence_recommender`` exported, installed as a Triton version and served by
a real Triton: both towers answer as PyTorch does, a product the model never saw is
embedded by its text, and a bad request gets Triton's error while the model keeps serving."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from shared.models.sequence_runtime import SequenceModel
from shared.models.triton_server import TritonServer
from shared.recommendation.events import CART, PURCHASE, VIEW
from shared.recommendation.sequence_inputs import left_padded
from shared.training.hyperparams import Hyperparameters
from shared.training.publish import install_version
from shared.training.sequence import (
    DevCase,
    History,
    SequenceCorpus,
    SequenceRecommender,
    rank_targets,
    train_sequence_model,
)
from shared.training.sequence_export import export_sequence_checkpoint

pytestmark = pytest.mark.integration

DIM = 32
ITEMS = 30


def _corpus() -> SequenceCorpus:
    """SYNTHETIC: shoppers walk i -> i+1 (mod ITEMS); random unit text vectors."""
    rng = np.random.default_rng(5)
    vectors = rng.normal(size=(ITEMS, DIM)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    train, dev = [], []
    for start in range(ITEMS * 6):
        length = 3 + start % 4
        rows = [(start + i) % ITEMS for i in range(length)]
        train.append(
            History(
                tuple(rows),
                tuple([VIEW, CART, PURCHASE][i % 3] for i in rows),
                tuple(i % 5 for i in range(length)),
            )
        )
    for start in range(ITEMS):
        rows = [(start + i) % ITEMS for i in range(4)]
        dev.append(DevCase(History.of(rows[:-1], VIEW), rows[-1]))
    return SequenceCorpus([f"sku-{i}" for i in range(ITEMS)], vectors, train, dev)


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, SequenceCorpus]:
    tmp = tmp_path_factory.mktemp("sequence")
    corpus = _corpus()
    hp = Hyperparameters.for_kind(
        "sequence_recommender", {"epochs": 3, "history_length": 6, "learning_rate": 3e-3}
    )
    result = train_sequence_model(corpus, tmp / "run", hp)
    assert result.dev_metrics["recall@10"] > 0.5, result.dev_metrics
    export_sequence_checkpoint(result.checkpoint_dir, tmp / "export")
    return tmp / "export", corpus


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, exported: tuple[Path, SequenceCorpus]
) -> Iterator[TritonServer]:
    repository = tmp_path_factory.mktemp("repository")
    install_version(repository, "sequence_recommender", 1, exported[0])
    with TritonServer(
        repository, models=["sequence_recommender"], log_file=repository.parent / "triton.log"
    ) as server:
        yield server


def test_export_writes_both_towers(exported: tuple[Path, SequenceCorpus]) -> None:
    folder, corpus = exported
    names = {p.name for p in folder.iterdir()}
    assert {"model.onnx", "item_tower.onnx", "items.json", "shopsense_model.json"} <= names
    report = json.loads((folder / "export_report.json").read_text())
    assert report["kind"] == "sequence_recommender"
    assert max(report["checks"].values()) < 1e-4
    assert json.loads((folder / "items.json").read_text()) == corpus.item_keys


def _infer(server: TritonServer, arrays: dict[str, np.ndarray], output: str) -> np.ndarray:
    client = grpcclient.InferenceServerClient(server.grpc_url)
    inputs = []
    for name, array in arrays.items():
        dtype = {np.dtype(np.float32): "FP32", np.dtype(np.int64): "INT64"}.get(
            array.dtype, "BYTES"
        )
        tensor = grpcclient.InferInput(name, list(array.shape), dtype)
        tensor.set_data_from_numpy(array)
        inputs.append(tensor)
    try:
        result = client.infer(
            "sequence_recommender", inputs, outputs=[grpcclient.InferRequestedOutput(output)]
        )
        return result.as_numpy(output)
    finally:
        client.close()


def _shopper_request(table: np.ndarray, histories: list) -> dict[str, np.ndarray]:
    """The shopper tower's inputs for ``(rows, kinds, gaps)`` histories over ``table``
    (item embeddings by row), left-padded to 6 events, in the order the tower takes them."""
    rows, kinds, gaps, mask = left_padded(histories, 6)
    history = table[np.clip(rows, 0, None)] * mask[..., None]
    return {
        "history_embeddings": history.astype(np.float32),
        "history_kinds": kinds,
        "history_gaps": gaps,
        "history_mask": mask,
    }


def test_triton_serves_both_towers_as_pytorch(
    server: TritonServer, exported: tuple[Path, SequenceCorpus]
) -> None:
    folder, corpus = exported
    model, _ = SequenceRecommender.load(folder.parent / "run" / "checkpoint")
    ids = np.array([b"sku-3", b"sku-4", b"brand-new"], dtype=np.object_)
    vectors = np.vstack([corpus.vectors[3], corpus.vectors[4], corpus.vectors[7]])
    served = _infer(server, {"text_vectors": vectors, "product_ids": ids}, "item_embedding")
    with torch.inference_mode():
        rows = torch.tensor([3, 4, -1])
        expected = model._key(model.items(torch.from_numpy(vectors), rows)).numpy()
        table = model._key(model.items(torch.from_numpy(corpus.vectors), torch.arange(ITEMS)))
    np.testing.assert_allclose(served, expected, atol=1e-5)
    # A product added after training is embedded from its text alone.
    with torch.inference_mode():
        text_only = model._key(model.adapter(torch.from_numpy(corpus.vectors[7:8]))).numpy()
    np.testing.assert_allclose(served[2], text_only[0], atol=1e-5)

    # Events as the training histories had them: kinds by product, gaps 0, 1, 2...
    kinds_of = [[VIEW, CART, PURCHASE][i % 3] for i in (3, 4, 5)]
    request = _shopper_request(
        table.numpy(), [([3, 4, 5], kinds_of, [0, 1, 2]), ([9], [PURCHASE], [0])]
    )
    shopper = _infer(server, request, "shopper_vector")
    runtime = SequenceModel(folder, intra_op_threads=1)
    np.testing.assert_allclose(shopper, runtime.shopper_vectors(*request.values()), atol=1e-5)
    # The served towers rank every dev case's next product where PyTorch does.
    cases = corpus.dev
    request = _shopper_request(
        table.numpy(), [(c.history.rows, c.history.kinds, c.history.gaps) for c in cases]
    )
    served_shoppers = _infer(server, request, "shopper_vector")
    scores = served_shoppers @ table.numpy().T
    served_ranks = []
    for i, case in enumerate(cases):
        scores[i, list(case.history.rows)] = -np.inf
        served_ranks.append(int((scores[i] > scores[i, case.target]).sum()))
    expected_ranks = rank_targets(
        model, torch.from_numpy(corpus.vectors), cases, torch.device("cpu")
    )
    assert served_ranks == expected_ranks.tolist()


def test_a_bad_request_is_refused_and_the_model_keeps_serving(server: TritonServer) -> None:
    with pytest.raises(InferenceServerException, match="history_kinds"):
        _infer(
            server,
            {"history_embeddings": np.zeros((1, 2, DIM), np.float32)},
            "shopper_vector",
        )
    with pytest.raises(InferenceServerException, match="product_ids"):
        _infer(server, {"text_vectors": np.zeros((1, DIM), np.float32)}, "item_embedding")
    ids = np.array([b"sku-1"], dtype=np.object_)
    out = _infer(
        server,
        {"text_vectors": np.ones((1, DIM), np.float32), "product_ids": ids},
        "item_embedding",
    )
    assert out.shape == (1, DIM)
