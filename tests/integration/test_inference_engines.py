"""The engines that run exported graphs: length buckets, OpenVINO against onnxruntime,
and a version folder's engine choice with its fallback."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from shared.models import onnx_runtime
from shared.models.onnx_runtime import (
    OPENVINO,
    OnnxModel,
    OnnxSentenceEncoder,
    available_engines,
    served_engine,
)
from shared.models.tokenization import Tokenizer

pytestmark = pytest.mark.integration

TEXTS = [
    "lamp",
    "modern grey fabric three seater sofa with chaise",
    "oak table",
    "king size upholstered bed frame with storage drawers and a tall padded headboard",
    "rug",
    "solid wood six drawer double dresser in a walnut finish",
    "wall clock",
]


@pytest.fixture(scope="module")
def base_onnx(exported_model_repository: Path) -> Path:
    return exported_model_repository / "text_encoder" / "1" / "model.fp32.onnx"


def test_length_buckets_change_nothing(base_onnx: Path, tokenizer: Tokenizer) -> None:
    """Sorting by length and cutting each slice to its longest row is exact: the rows
    come back in their order with the values of one padded run."""
    ids, mask = tokenizer.encode(TEXTS, max_length=64)
    whole = OnnxSentenceEncoder(base_onnx, bucket_rows=len(TEXTS)).run(ids, mask)
    sliced = OnnxSentenceEncoder(base_onnx, bucket_rows=2).run(ids, mask)
    assert sliced.shape == whole.shape == (len(TEXTS), 384)
    np.testing.assert_allclose(sliced, whole, atol=1e-5)
    # Each row is its own sentence: a one-row run of row 3 matches.
    alone = OnnxSentenceEncoder(base_onnx).run(*tokenizer.encode(TEXTS[3:4], max_length=64))
    np.testing.assert_allclose(sliced[3], alone[0], atol=1e-5)


@pytest.mark.parametrize("engine", [e for e in available_engines() if e[0] == OPENVINO])
def test_openvino_agrees_with_onnxruntime(
    engine: tuple[str, str], base_onnx: Path, tokenizer: Tokenizer
) -> None:
    ids, mask = tokenizer.encode(TEXTS, max_length=64)
    reference = OnnxSentenceEncoder(base_onnx).run(ids, mask)
    model = OnnxSentenceEncoder(base_onnx, engine=engine[0], precision=engine[1], bucket_rows=3)
    assert model.kind == "text_encoder" and model.dimension == 384
    actual = model.run(ids, mask)
    cosine = (actual * reference).sum(axis=1)
    # fp32 is the same arithmetic; bf16 keeps 8 bits of mantissa.
    assert cosine.min() > (0.9999 if engine[1] == "fp32" else 0.995)
    assert model.run(ids[:0], mask[:0]).shape == (0, 384)


def test_unknown_engine_or_precision_is_refused(base_onnx: Path) -> None:
    with pytest.raises(ValueError, match="engine"):
        OnnxModel(base_onnx, engine="tensorflow")
    with pytest.raises(ValueError, match="precision"):
        OnnxModel(base_onnx, engine="openvino", precision="int8")


def _version(tmp_path: Path, base_onnx: Path, report: dict | None) -> Path:
    version = tmp_path / "3"
    version.mkdir()
    shutil.copy2(base_onnx, version / "model.onnx")
    if report is not None:
        (version / "export_report.json").write_text(json.dumps(report))
    return version


def test_version_without_a_report_runs_on_onnxruntime(tmp_path: Path, base_onnx: Path) -> None:
    version = _version(tmp_path, base_onnx, None)
    assert served_engine(version) == ("onnxruntime", "fp32")
    model = OnnxModel.for_version(version)
    assert (model.engine, model.precision) == ("onnxruntime", "fp32")


def test_version_follows_its_export_or_falls_back(
    tmp_path: Path, base_onnx: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    version = _version(tmp_path, base_onnx, {"engine": "openvino", "served": "bf16"})
    assert served_engine(version) == ("openvino", "bf16")
    if ("openvino", "bf16") in available_engines():
        model = OnnxModel.for_version(version)
        assert (model.engine, model.precision) == ("openvino", "bf16")
    # A machine without bf16 (or without OpenVINO) serves the same graph in fp32.
    monkeypatch.setattr(onnx_runtime, "available_engines", lambda: [("onnxruntime", "fp32")])
    model = OnnxModel.for_version(version)
    assert (model.engine, model.precision) == ("onnxruntime", "fp32")


def test_report_naming_an_unknown_engine_is_an_error(tmp_path: Path, base_onnx: Path) -> None:
    version = _version(tmp_path, base_onnx, {"engine": "openvino", "served": "int4"})
    with pytest.raises(ValueError, match="unknown engine"):
        served_engine(version)
