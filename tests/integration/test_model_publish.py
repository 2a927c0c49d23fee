"""Publishing versions into a running Triton: install, load, infer by version, roll back,
survive a broken version; and the intent classifier and cross-encoder clients."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from shared.errors import Unavailable
from shared.models.onnx_runtime import OnnxModel
from shared.models.tokenization import Tokenizer
from shared.models.triton_client import CrossEncoderClient, IntentClassifierClient
from shared.models.triton_server import TritonServer
from shared.training.engines import ExportReport
from shared.training.export import export_checkpoint
from shared.training.publish import (
    ModelLoadError,
    VersionExistsError,
    install_version,
    load_versions,
    loaded_versions,
    next_version,
    remove_version,
)

pytestmark = pytest.mark.integration

LABELS_A = ["Sofas", "Beds", "Rugs", "Table Lamps"]
LABELS_B = ["Office Chairs", "Desks", "Mirrors"]
QUERIES = ["grey velvet sofa", "king bed frame", "wool rug 8x10", "brass table lamp"]
DOCS = [
    "Harlow 3 Seater Sofa | Sofas | Grey | Velvet",
    "Oakdale King Platform Bed | Beds | Walnut | Solid Wood",
    "Nordic Hand Tufted Wool Rug | Area Rugs | Ivory | Wool",
    "Brass Arc Table Lamp with Linen Shade | Table Lamps | Brass",
    "Mid Century Walnut Sideboard | Sideboards & Buffets | Walnut",
]


def _export(tmp: Path, name: str, spec_kwargs: dict) -> tuple[Path, ExportReport]:
    import torch

    from shared.training.modules import ModelSpec, ShopsenseModel

    torch.manual_seed(len(name))
    checkpoint = ShopsenseModel.pretrained(ModelSpec(**spec_kwargs)).save(tmp / f"ckpt-{name}")
    out = tmp / f"export-{name}"
    # A few check queries keep the test quick; the default set is for real exports.
    checks = [(q, DOCS) for q in QUERIES]
    return out, export_checkpoint(checkpoint, out, check_inputs=checks)


@pytest.fixture(scope="module")
def exports(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Exports of two intent classifiers (different classes) and one cross-encoder."""
    tmp = tmp_path_factory.mktemp("exports")
    return {
        "intent_a": _export(tmp, "intent_a", {"kind": "intent_classifier", "labels": LABELS_A})[0],
        "intent_b": _export(tmp, "intent_b", {"kind": "intent_classifier", "labels": LABELS_B})[0],
        "cross": _export(tmp, "cross", {"kind": "cross_encoder"})[0],
    }


@pytest.fixture(scope="module")
def repository(tmp_path_factory: pytest.TempPathFactory, exports: dict[str, Path]) -> Path:
    """A repository elsewhere, with version 1 of each model installed."""
    repository = tmp_path_factory.mktemp("repository")
    install_version(repository, "intent_classifier", 1, exports["intent_a"])
    install_version(repository, "cross_encoder", 1, exports["cross"])
    return repository


@pytest.fixture(scope="module")
def server(repository: Path) -> Iterator[TritonServer]:
    with TritonServer(
        repository,
        models=["intent_classifier", "cross_encoder"],
        log_file=repository.parent / "triton-publish.log",
    ) as server:
        yield server


def test_install_layout_and_versions(repository: Path, exports: dict[str, Path]) -> None:
    model = repository / "intent_classifier"
    assert (model / "config.pbtxt").is_file() and (model / "configs" / "gpu.pbtxt").is_file()
    version = model / "1"
    assert {p.name for p in version.iterdir()} == {
        "model.onnx",
        "model.py",
        "shopsense_model.json",
        "export_report.json",
    }
    assert not [p for p in model.iterdir() if p.name.startswith(".")], "staging left behind"
    assert next_version(repository, "intent_classifier") == 2
    assert next_version(repository, "no_such_model") == 1
    with pytest.raises(VersionExistsError, match=re.escape(str(version))):
        install_version(repository, "intent_classifier", 1, exports["intent_b"])
    with pytest.raises(ValueError, match=r"export_dir: .* holds a intent_classifier"):
        install_version(repository, "cross_encoder", 9, exports["intent_a"])


def test_publish_infer_by_version_rollback_and_broken_version(
    server: TritonServer, repository: Path, exports: dict[str, Path], tokenizer: Tokenizer
) -> None:
    url = server.grpc_url
    client = IntentClassifierClient(url, tokenizer, timeout_s=30.0)
    assert loaded_versions(url, "intent_classifier") == [1]
    first = client.classify(QUERIES)
    assert first.version == "1" and first.labels == LABELS_A
    assert first.probabilities.shape == (len(QUERIES), len(LABELS_A))
    np.testing.assert_allclose(first.probabilities.sum(axis=1), 1.0, atol=1e-5)
    expected = OnnxModel.for_version(repository / "intent_classifier" / "1").run(
        *tokenizer.encode(QUERIES, max_length=32)
    )
    assert np.abs(first.probabilities - expected).max() < 1e-5

    # Publish v2 (other classes) next to v1, no restart.
    version = next_version(repository, "intent_classifier")
    install_version(repository, "intent_classifier", version, exports["intent_b"])
    assert load_versions(url, "intent_classifier", [1, 2], repository=repository) == [1, 2]
    by_version = {v: client.classify(QUERIES, version=v) for v in ("1", "2")}
    assert by_version["1"].labels == LABELS_A and by_version["1"].probabilities.shape[1] == 4
    assert by_version["2"].labels == LABELS_B and by_version["2"].probabilities.shape[1] == 3
    assert client.classify(QUERIES).version == "2"  # "" is the newest loaded

    # Rollback to v1 only: v2 answers an error, v1 keeps serving.
    assert load_versions(url, "intent_classifier", [1], repository=repository) == [1]
    assert loaded_versions(url, "intent_classifier") == [1]
    with pytest.raises(Unavailable, match="intent_classifier"):
        client.classify(QUERIES, version="2")
    assert not client.is_ready("2") and client.is_ready("1")
    assert client.classify(QUERIES).version == "1"

    # A broken v3 fails to load with Triton's message; v1 still answers.
    broken = install_version(repository, "intent_classifier", 3, exports["intent_a"])
    (broken / "model.onnx").write_bytes(b"this is not an onnx model")
    with pytest.raises(ModelLoadError, match=r"intent_classifier versions \[1, 3\]"):
        load_versions(url, "intent_classifier", [1, 3], repository=repository, timeout_s=60)
    assert loaded_versions(url, "intent_classifier") == [1]
    again = client.classify(QUERIES, version="1")
    assert np.abs(again.probabilities - first.probabilities).max() < 1e-5
    assert server.is_running()

    # Versions 2 and 3 are unloaded: they can be deleted.
    for number in (2, 3):
        remove_version(repository, "intent_classifier", number)
    assert next_version(repository, "intent_classifier") == 2
    with pytest.raises(FileNotFoundError, match="version: "):
        remove_version(repository, "intent_classifier", 3)


def test_cross_encoder_scores_match_onnxruntime_and_chunk(
    server: TritonServer, repository: Path, tokenizer: Tokenizer, engine_atol
) -> None:
    client = CrossEncoderClient(server.grpc_url, tokenizer, timeout_s=30.0)
    assert client.is_ready() and client.is_ready("1") and not client.is_ready("7")
    docs = DOCS * 30  # 150 pairs: two requests at max_batch_size 128
    result = client.score("grey velvet sofa", docs)
    assert result.version == "1"
    assert result.scores.dtype == np.float32 and result.scores.shape == (len(docs),)
    # The engine and precision the export chose, in process, on the same chunks: an int8
    # export quantizes its activations per batch, so another batch rounds differently.
    model = OnnxModel.for_version(repository / "cross_encoder" / "1")
    step = client.max_batch_size()
    expected = np.concatenate(
        [
            model.run(*tokenizer.encode_pairs(["grey velvet sofa"] * len(chunk), chunk, 64))[:, 0]
            for chunk in (docs[start : start + step] for start in range(0, len(docs), step))
        ]
    )
    atol = engine_atol(repository / "cross_encoder" / "1") * max(1.0, np.abs(expected).max())
    assert np.abs(result.scores - expected).max() < atol
    assert client.score("sofa", []).scores.shape == (0,)


def test_unload_and_load_from_the_repository_config(
    server: TritonServer, repository: Path, exports: dict[str, Path]
) -> None:
    url = server.grpc_url
    assert load_versions(url, "cross_encoder", [], repository=repository) == []
    assert loaded_versions(url, "cross_encoder") == []
    # Not loaded: the config comes from the repository's config.pbtxt.
    install_version(repository, "cross_encoder", 2, exports["cross"])
    assert load_versions(url, "cross_encoder", [2], repository=repository) == [2]
    report = json.loads((repository / "cross_encoder" / "2" / "export_report.json").read_text())
    assert report["kind"] == "cross_encoder"


def test_labels_from_config_parameters_when_no_labels_output(
    server: TritonServer, repository: Path, tokenizer: Tokenizer
) -> None:
    """The GPU config has no `labels` output: names come from the parameters that
    load_versions writes, so a client still needs no file access."""
    client = IntentClassifierClient(server.grpc_url, tokenizer, timeout_s=30.0)
    load_versions(server.grpc_url, "intent_classifier", [1], repository=repository)
    config = client._model_config()
    assert json.loads(config.parameters["labels_1"].string_value) == LABELS_A
    assert client._labels_from_config("1") == LABELS_A


def test_clients_unavailable_when_server_is_down(tokenizer: Tokenizer) -> None:
    from shared.models.triton_server import free_port

    url = f"127.0.0.1:{free_port()}"
    intent = IntentClassifierClient(url, tokenizer, timeout_s=1.0)
    assert not intent.is_ready()
    with pytest.raises(Unavailable, match="intent_classifier"):
        intent.classify(["sofa"])
    with pytest.raises(Unavailable, match="cross_encoder"):
        CrossEncoderClient(url, tokenizer, timeout_s=1.0).score("sofa", ["a sofa"])
