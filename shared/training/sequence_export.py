"""Export a ``sequence_recommender`` checkpoint to the two ONNX graphs Triton serves
(:mod:`shared.models.sequence_runtime` says what they take and give), and check both
against PyTorch before anything is written as final.

``python -m shared.training.sequence_export --checkpoint DIR --out DIR``

The folder gets ``model.onnx`` (the shopper tower; also ``model.fp32.onnx``),
``item_tower.onnx``, ``items.json``, ``shopsense_model.json`` and ``export_report.json``
(the checks and the engine: onnxruntime fp32; the model is small, a few ms per request,
so no int8 variant is made). Raises ``ExportCheckFailed`` when a graph differs from
PyTorch by ``TOLERANCE`` or more.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from shared.models.layout import (
    FP32_FILE,
    ITEM_TOWER_FILE,
    ITEMS_FILE,
    REPORT_FILE,
    SERVED_FILE,
    SPEC_FILE,
)
from shared.models.sequence_runtime import (
    ITEM_INPUTS,
    ITEM_OUTPUT,
    SHOPPER_INPUTS,
    SHOPPER_OUTPUT,
    SequenceModel,
)
from shared.recommendation.sequence_inputs import GAP_BUCKETS, NUM_KINDS
from shared.training.export import ExportCheckFailed
from shared.training.sequence import SequenceRecommender

OPSET = 17
TOLERANCE = 1e-4


class _ItemTower(nn.Module):
    def __init__(self, model: SequenceRecommender) -> None:
        super().__init__()
        self.model = model

    def forward(self, text_vectors: torch.Tensor, item_rows: torch.Tensor) -> torch.Tensor:
        return self.model._key(self.model.items(text_vectors, item_rows))


class _ShopperTower(nn.Module):
    def __init__(self, model: SequenceRecommender) -> None:
        super().__init__()
        self.model = model

    def forward(
        self,
        history_embeddings: torch.Tensor,
        history_kinds: torch.Tensor,
        history_gaps: torch.Tensor,
        history_mask: torch.Tensor,
    ) -> torch.Tensor:
        return self.model.shopper(history_embeddings, history_kinds, history_gaps, history_mask)


def _export(module: nn.Module, args: tuple, target: Path, names: tuple, output: str, axes: dict):
    # The exporter restores the module's mode afterwards: a wrapper left in training mode
    # would switch the model's dropout on for everything that follows.
    module.eval()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            args,
            str(target),
            input_names=list(names),
            output_names=[output],
            dynamic_axes={**axes, output: {0: "batch"}},
            opset_version=OPSET,
            do_constant_folding=True,
            dynamo=False,
        )


def _check_inputs(model: SequenceRecommender, seed: int = 7) -> dict[str, np.ndarray]:
    """Random histories of several lengths, left-padded (one of a single event)."""
    rng = np.random.default_rng(seed)
    spec = model.spec
    batch, length = 5, min(12, spec.history_length)
    vectors = rng.normal(size=(batch * length, spec.dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    rows = rng.integers(-1, spec.num_items, size=batch * length)
    with torch.inference_mode():
        embeddings = model._key(model.items(torch.from_numpy(vectors), torch.from_numpy(rows)))
    embeddings = embeddings.numpy().reshape(batch, length, spec.dim)
    mask = np.ones((batch, length), dtype=np.int64)
    for i, events in enumerate((length, 1, 3, length - 2, 7)):
        mask[i, : length - events] = 0
    embeddings = embeddings * mask[:, :, None]
    return {
        "text_vectors": vectors,
        "item_rows": rows.astype(np.int64),
        "history_embeddings": embeddings.astype(np.float32),
        "history_kinds": (rng.integers(0, NUM_KINDS, size=(batch, length)) * mask).astype(np.int64),
        "history_gaps": (rng.integers(0, GAP_BUCKETS, size=(batch, length)) * mask).astype(
            np.int64
        ),
        "history_mask": mask,
    }


def export_sequence_checkpoint(checkpoint_dir: Path | str, out_dir: Path | str) -> dict:
    """Export and check; returns the report written to ``export_report.json``."""
    started = time.perf_counter()
    checkpoint_dir, out_dir = Path(checkpoint_dir), Path(out_dir)
    model, _ = SequenceRecommender.load(checkpoint_dir)
    if not model.spec.text:
        raise ValueError(f"checkpoint_dir: {checkpoint_dir} is an ID-only baseline, not served")
    inputs = _check_inputs(model)
    out_dir.mkdir(parents=True, exist_ok=True)
    staging = out_dir / ".partial"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    torch_in = {k: torch.from_numpy(v) for k, v in inputs.items()}
    _export(
        _ItemTower(model),
        tuple(torch_in[n] for n in ITEM_INPUTS),
        staging / ITEM_TOWER_FILE,
        ITEM_INPUTS,
        ITEM_OUTPUT,
        {"text_vectors": {0: "batch"}, "item_rows": {0: "batch"}},
    )
    _export(
        _ShopperTower(model),
        tuple(torch_in[n] for n in SHOPPER_INPUTS),
        staging / SERVED_FILE,
        SHOPPER_INPUTS,
        SHOPPER_OUTPUT,
        {name: {0: "batch", 1: "events"} for name in SHOPPER_INPUTS},
    )
    for name in (SPEC_FILE, ITEMS_FILE):
        shutil.copy2(checkpoint_dir / name, staging / name)
    shutil.copy2(staging / SERVED_FILE, staging / FP32_FILE)

    runtime = SequenceModel(staging, intra_op_threads=1)
    with torch.inference_mode():
        item_ref = _ItemTower(model)(*(torch_in[n] for n in ITEM_INPUTS)).numpy()
        shopper_ref = _ShopperTower(model)(*(torch_in[n] for n in SHOPPER_INPUTS)).numpy()
    item_out = runtime.item_embeddings(inputs["text_vectors"], inputs["item_rows"])
    shopper_out = runtime.shopper_vectors(*(inputs[n] for n in SHOPPER_INPUTS))
    diffs = {
        "item_tower_max_abs_diff": float(np.abs(item_out - item_ref).max()),
        "shopper_tower_max_abs_diff": float(np.abs(shopper_out - shopper_ref).max()),
    }
    # A longer history than the check used must work too (dynamic axes), batch of one.
    long = runtime.shopper_vectors(
        np.repeat(inputs["history_embeddings"][:1], 3, axis=1),
        *(np.repeat(inputs[n][:1], 3, axis=1) for n in SHOPPER_INPUTS[1:]),
    )
    if long.shape != (1, model.spec.dim):
        raise ExportCheckFailed(f"shopper tower returned {long.shape} for one long history")
    for name, diff in diffs.items():
        if not diff < TOLERANCE:
            shutil.rmtree(staging, ignore_errors=True)
            raise ExportCheckFailed(f"{name} {diff:.2e} >= {TOLERANCE:.0e}: not served")
    report = {
        "kind": model.spec.kind,
        "checks": diffs,
        "engine": "onnxruntime",
        "served": "fp32",
        "items": model.spec.num_items,
        "seconds": round(time.perf_counter() - started, 2),
    }
    (staging / REPORT_FILE).write_text(json.dumps(report, indent=2), encoding="utf-8")
    for item in staging.iterdir():
        target = out_dir / item.name
        if target.exists():
            target.unlink()
        item.rename(target)
    staging.rmdir()
    return report


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Export a sequence_recommender checkpoint.")
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    report = export_sequence_checkpoint(args.checkpoint, args.out)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
