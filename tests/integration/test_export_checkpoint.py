"""Exporting checkpoints of each kind: fp32 and int8 graphs, checks, the served choice."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from shared.models.onnx_runtime import (
    OnnxModel,
    OnnxSentenceEncoder,
    available_engines,
    served_engine,
)
from shared.models.tokenization import Tokenizer
from shared.training.engines import AGREEMENT_BARS, ExportReport, default_check_inputs, spearman
from shared.training.export import export_checkpoint

pytestmark = pytest.mark.integration

LABELS = ["Sofas", "Beds", "Rugs"]
CHECKS = [
    ("grey velvet sofa", ["Harlow Sofa | Sofas | Grey | Velvet", "Oak Bed | Beds | Oak"]),
    ("wool rug", ["Nordic Wool Rug | Area Rugs | Wool", "Brass Lamp | Table Lamps | Brass"]),
    ("king bed", ["Oak Bed | Beds | Oak", "Harlow Sofa | Sofas | Grey | Velvet"]),
]


@pytest.fixture(scope="module", params=["intent_classifier", "text_encoder", "cross_encoder"])
def exported(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, ExportReport]:
    import torch

    from shared.training.modules import ModelSpec, ShopsenseModel

    torch.manual_seed(0)
    labels = LABELS if request.param == "intent_classifier" else []
    tmp = tmp_path_factory.mktemp(request.param)
    checkpoint = ShopsenseModel.pretrained(ModelSpec(kind=request.param, labels=labels))
    checkpoint.save(tmp / "checkpoint")
    return tmp / "out", export_checkpoint(tmp / "checkpoint", tmp / "out", check_inputs=CHECKS)


def test_writes_both_precisions_and_the_report(exported: tuple[Path, ExportReport]) -> None:
    out, report = exported
    for name in ("model.fp32.onnx", "model.int8.onnx", "model.onnx", "shopsense_model.json"):
        assert (out / name).is_file(), name
    # int8 weights in the encoder layers; the embedding table (47 MB) stays fp32.
    assert (out / "model.int8.onnx").stat().st_size < 0.7 * (out / "model.fp32.onnx").stat().st_size
    graph = "model.int8.onnx" if report.served == "int8" else "model.fp32.onnx"
    assert (out / "model.onnx").read_bytes() == (out / graph).read_bytes()
    saved = json.loads((out / "export_report.json").read_text())
    assert saved["served"] == report.served and saved["engine"] == report.engine
    assert saved["kind"] == report.kind
    assert served_engine(out) == (report.engine, report.served)
    metric, bar = AGREEMENT_BARS[report.kind]
    assert report.bar == {metric: bar}
    assert report.fp32_max_abs_diff < 1e-4
    assert metric in report.reason


def test_serves_the_fastest_candidate_that_agrees(exported: tuple[Path, ExportReport]) -> None:
    _, report = exported
    metric, bar = AGREEMENT_BARS[report.kind]
    candidates = report.candidates
    tried = {(c["engine"], c["precision"]) for c in candidates}
    # Every engine of this machine on the fp32 graph, and int8 on onnxruntime.
    assert set(available_engines()) | {("onnxruntime", "int8")} <= tried
    for candidate in candidates:
        assert candidate["check_ms"] > 0
        reference = candidate["engine"] == "onnxruntime" and candidate["precision"] == "fp32"
        assert candidate["admitted"] == (reference or candidate["agreement"][metric] >= bar)
    admitted = [c for c in candidates if c["admitted"]]
    fastest = min(admitted, key=lambda c: c["check_ms"])
    assert (report.engine, report.served) == (fastest["engine"], fastest["precision"])
    assert report.agreement == fastest["agreement"]
    # The int8 ladder stops at the first variant that meets the bar.
    int8 = [c for c in candidates if c["precision"] == "int8"]
    assert all(not c["admitted"] for c in int8[:-1])


def test_served_graph_outputs(exported: tuple[Path, ExportReport], tokenizer: Tokenizer) -> None:
    out, report = exported
    model = OnnxModel(out / "model.fp32.onnx")
    assert model.kind == report.kind
    texts = ["sofa", "a solid oak dining table with six chairs"]
    if report.kind == "cross_encoder":
        output = model.run(*tokenizer.encode_pairs(["sofa"] * 2, texts, 64))
        assert output.shape == (2, 1)
    else:
        output = model.run(*tokenizer.encode(texts, 32))
    if report.kind == "intent_classifier":
        assert output.shape == (2, len(LABELS))
        np.testing.assert_allclose(output.sum(axis=1), 1.0, atol=1e-5)
    if report.kind == "text_encoder":
        np.testing.assert_allclose(np.linalg.norm(output, axis=1), 1.0, atol=1e-5)
        assert OnnxSentenceEncoder(out / "model.onnx").dimension == 384


def test_spearman() -> None:
    a = np.array([0.1, 0.5, 0.3, 0.9])
    assert spearman(a, a * 3 + 1) == pytest.approx(1.0)
    assert spearman(a, -a) == pytest.approx(-1.0)
    assert spearman(np.array([1.0]), np.array([2.0])) == 1.0


def test_default_check_inputs_are_realistic() -> None:
    inputs = default_check_inputs(n_queries=4, n_candidates=10)
    assert len(inputs) == 4
    assert all(len(docs) == 10 and len(set(docs)) == 10 for _, docs in inputs)
    assert all(query and " | " in docs[0] for query, docs in inputs)


def test_rejects_empty_check_inputs(tmp_path: Path) -> None:
    from shared.training.modules import ModelSpec, ShopsenseModel

    checkpoint = ShopsenseModel.pretrained(ModelSpec(kind="text_encoder")).save(tmp_path / "c")
    with pytest.raises(ValueError, match="check_inputs"):
        export_checkpoint(checkpoint, tmp_path / "out", check_inputs=[])
