"""Export models to ONNX: the base text encoder into Triton's repository, and checkpoints.

``python -m shared.training.export --model text_encoder [--version 1] [--repository DIR]
[--force] [--precision fp32]`` writes ``<repository>/text_encoder/<version>/``: the fp32
graph ``model.fp32.onnx`` (checked against PyTorch), its int8 quantization
``model.int8.onnx``, ``model.onnx`` (a copy of the one to serve), ``export_report.json``
(every engine and precision tried on this machine and the choice, as for checkpoints
below) and the python backend adapter ``model.py``. ``--precision fp32`` serves the fp32
graph whatever was fastest: for GPUs, whose ONNX Runtime backend runs ``model.onnx``.

``python -m shared.training.export --checkpoint DIR --out DIR`` exports a trained
checkpoint (:mod:`shared.training.modules`) of any kind: ``model.fp32.onnx``,
``model.int8.onnx`` (dynamic, per-channel int8 weights), ``model.onnx`` (the graph to
serve), the checkpoint's ``shopsense_model.json`` and ``export_report.json`` (the
checks, every engine and precision tried with its agreement and speed on this machine,
and the choice: the fastest that agrees with fp32 well enough).
:mod:`shared.training.publish` installs such a folder as a Triton version.
torch and transformers are needed here only, never at serving time.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from shared.models.kinds import CROSS_ENCODER, INTENT_CLASSIFIER, TEXT_ENCODER
from shared.models.layout import FP32_FILE, INT8_FILE, REPORT_FILE, SERVED_FILE, SPEC_FILE
from shared.models.onnx_runtime import ONNXRUNTIME, OUTPUT_NAMES, served_engine
from shared.models.paths import base_model_dir
from shared.paths import triton_model_repository
from shared.training.engines import (
    CHECK_QUERIES,
    CheckInputs,
    ExportReport,
    check_batches,
    default_check_inputs,
    measure_candidates,
    reference_run,
    write_report,
)
from shared.training.repository import ADAPTER_SOURCE, install_model_folder

MODELS = (TEXT_ENCODER,)
OPSET = 17
TOLERANCE = 1e-4
CHECK_SENTENCES = (
    "red velvet sofa",
    "a solid oak dining table with six matching chairs and a bench",
    "king size bed frame, upholstered headboard, grey linen, easy assembly",
    "lamp",
)


class ExportCheckFailed(RuntimeError):
    """The ONNX model disagrees with the PyTorch model it was exported from."""


@dataclass(frozen=True, slots=True)
class ExportResult:
    """What an export produced; ``max_abs_diff`` is None when it was skipped."""

    model_dir: Path
    onnx_path: Path
    exported: bool
    seconds: float
    max_abs_diff: float | None


def _sentence_encoder_module():  # -> torch.nn.Module; torch is imported lazily
    """BertModel -> mean pooling over attention_mask -> L2 normalisation, in torch."""
    import torch
    from transformers import AutoModel

    class SentenceEncoder(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            # Eager attention traces to plain MatMul/Softmax that every runtime supports.
            self.bert = AutoModel.from_pretrained(
                str(base_model_dir()), local_files_only=True, attn_implementation="eager"
            )

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            tokens = self.bert(input_ids=input_ids, attention_mask=attention_mask)[0]
            mask = attention_mask.unsqueeze(-1).to(tokens.dtype)
            summed = (tokens * mask).sum(dim=1)
            counts = mask.sum(dim=1).clamp(min=1e-9)
            return torch.nn.functional.normalize(summed / counts, p=2.0, dim=1)

    return SentenceEncoder().eval()


def _served_module(model):  # ShopsenseModel -> torch.nn.Module with the served outputs
    """The checkpoint's module with its served head: softmax for the classifier, a
    ``[B, 1]`` score for the cross-encoder (Triton's batched output of width 1)."""
    import torch

    kind = model.spec.kind

    class Served(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(
            self,
            input_ids: torch.Tensor,
            attention_mask: torch.Tensor,
            token_type_ids: torch.Tensor | None = None,
        ) -> torch.Tensor:
            output = self.model(input_ids, attention_mask, token_type_ids)
            if kind == INTENT_CLASSIFIER:
                return torch.softmax(output, dim=-1)
            if kind == CROSS_ENCODER:
                return output.unsqueeze(-1)
            return output

    return Served().eval()


def _export_onnx(module, target: Path, example: Sequence[np.ndarray], output_name: str) -> None:
    """Trace ``module`` on ``example`` (input_ids, attention_mask[, token_type_ids])."""
    import torch

    input_names = ["input_ids", "attention_mask", "token_type_ids"][: len(example)]
    args = tuple(torch.from_numpy(array) for array in example)
    dynamic_axes = {name: {0: "batch", 1: "sequence"} for name in input_names}
    dynamic_axes[output_name] = {0: "batch"}
    with torch.no_grad(), warnings.catch_warnings():
        # The tracer's warnings (a shape test frozen as a constant, advanced indexing)
        # are expected for BERT; the checks after export verify the graph numerically.
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", UserWarning)
        try:
            torch.onnx.export(
                module,
                args,
                str(target),
                input_names=input_names,
                output_names=[output_name],
                dynamic_axes=dynamic_axes,
                opset_version=OPSET,
                do_constant_folding=True,
                dynamo=False,
            )
        except Exception as error:  # the legacy tracer is gone or fails: use dynamo
            print(f"TorchScript export failed ({error!r}); retrying with dynamo", file=sys.stderr)
            batch, sequence = torch.export.Dim("batch"), torch.export.Dim("sequence")
            torch.onnx.export(
                module,
                args,
                str(target),
                input_names=input_names,
                output_names=[output_name],
                dynamic_shapes=tuple({0: batch, 1: sequence} for _ in input_names),
                opset_version=18,
                dynamo=True,
                external_data=False,
            )


def check_against_torch(module, onnx_path: Path) -> float:
    """Max abs difference between ONNX and PyTorch embeddings of a padded batch.

    Raises ExportCheckFailed above TOLERANCE: a wrong export must never be served.
    """
    import torch

    from shared.models.onnx_runtime import OnnxSentenceEncoder
    from shared.models.tokenization import Tokenizer

    ids, mask = Tokenizer().encode(list(CHECK_SENTENCES), max_length=64)
    with torch.no_grad():
        expected = module(torch.from_numpy(ids), torch.from_numpy(mask)).numpy()
    actual = OnnxSentenceEncoder(onnx_path).run(ids, mask)
    diff = float(np.max(np.abs(actual - expected)))
    print(f"max abs difference onnxruntime vs PyTorch: {diff:.2e} (limit {TOLERANCE:.0e})")
    if not diff < TOLERANCE:
        raise ExportCheckFailed(f"{onnx_path}: max abs difference {diff:.2e} >= {TOLERANCE:.0e}")
    return diff


def export_text_encoder(
    version: int = 1,
    repository: Path | None = None,
    force: bool = False,
    precision: str | None = None,
) -> ExportResult:
    """Export all-MiniLM-L6-v2 as a sentence encoder to ``text_encoder/<version>/``.

    ``precision`` "fp32" serves the fp32 graph (for GPUs); None serves the fastest
    engine and precision that agrees (:func:`choose_base_engine`).
    """
    from shared.models.tokenization import Tokenizer

    if precision not in (None, "fp32"):
        raise ValueError(f"precision: must be None or 'fp32', got {precision!r}")
    repository = Path(repository) if repository else triton_model_repository()
    model_dir = install_model_folder(TEXT_ENCODER, repository)
    version_dir = model_dir / str(version)
    onnx_path, fp32_path = version_dir / SERVED_FILE, version_dir / FP32_FILE
    version_dir.mkdir(parents=True, exist_ok=True)
    # The adapter is cheap and may have changed: always refresh it.
    shutil.copy2(ADAPTER_SOURCE, version_dir / "model.py")
    if onnx_path.is_file() and not force:
        if not fp32_path.is_file():
            # Exported before int8 was tried: its model.onnx is the checked fp32 graph.
            shutil.copy2(onnx_path, fp32_path)
            (version_dir / REPORT_FILE).unlink(missing_ok=True)
        chosen = served_engine(version_dir) if (version_dir / REPORT_FILE).is_file() else None
        if chosen is None or (precision == "fp32" and chosen != (ONNXRUNTIME, "fp32")):
            choose_base_engine(version_dir, _sentence_encoder_module(), precision)
        print(f"{onnx_path}: up to date")
        return ExportResult(model_dir, onnx_path, False, 0.0, None)

    start = time.perf_counter()
    module = _sentence_encoder_module()
    example = Tokenizer().encode(list(CHECK_SENTENCES[:2]), max_length=64)
    # Write next to the target, check, then rename: a failed export leaves nothing behind.
    with tempfile.TemporaryDirectory(dir=version_dir) as tmp:
        staged = Path(tmp) / FP32_FILE
        _export_onnx(module, staged, example, OUTPUT_NAMES[TEXT_ENCODER])
        diff = check_against_torch(module, staged)
        (version_dir / REPORT_FILE).unlink(missing_ok=True)
        onnx_path.unlink(missing_ok=True)
        staged.replace(fp32_path)
    choose_base_engine(version_dir, module, precision)
    seconds = time.perf_counter() - start
    print(f"exported {onnx_path} in {seconds:.1f} s")
    return ExportResult(model_dir, onnx_path, True, seconds, diff)


def choose_base_engine(version_dir: Path, module, precision: str | None = None) -> ExportReport:
    """Measure the engines on the base text encoder's ``model.fp32.onnx`` and its int8
    quantization (written as ``model.int8.onnx``), write the choice to
    ``export_report.json`` and copy the chosen graph to ``model.onnx``, all beside it.

    The check set is the built-in synthetic one: queries and product texts; the bar is
    the text encoder's (mean cosine with fp32 at least 0.99). ``precision`` "fp32" keeps
    only onnxruntime fp32 admitted (the others are still measured and reported).
    """
    import torch

    from shared.training.modules import ModelSpec

    started = time.perf_counter()
    spec = ModelSpec(kind=TEXT_ENCODER)
    check_inputs = default_check_inputs()
    batches, sizes = check_batches(TEXT_ENCODER, spec, check_inputs)
    fp32_path = version_dir / FP32_FILE
    with torch.no_grad():
        torch_out = np.concatenate(
            [module(*(torch.from_numpy(a) for a in batch)).numpy() for batch in batches]
        )
    reference = reference_run(TEXT_ENCODER, fp32_path, batches, torch_out, sizes)
    fp32 = reference[1]
    seconds: dict[str, float] = {}
    tried = measure_candidates(
        TEXT_ENCODER,
        fp32_path,
        batches,
        reference,
        torch_out,
        sizes,
        version_dir / INT8_FILE,
        seconds,
    )
    if precision == "fp32":
        tried = [(replace(c, admitted=c is reference[0]), out) for c, out in tried]
    report = write_report(
        TEXT_ENCODER, version_dir, tried, fp32, torch_out, len(check_inputs), seconds, started
    )
    serve_chosen_graph(version_dir, report)
    print(f"{version_dir / SERVED_FILE}: serving {report.reason}")
    return report


def serve_chosen_graph(folder: Path, report: ExportReport) -> None:
    """Copy the graph ``report`` chose (int8 or fp32) to ``folder``'s ``model.onnx``;
    copied beside it, then renamed, so that Triton's adapter never reads half a graph."""
    graph = INT8_FILE if report.served == "int8" else FP32_FILE
    staged = folder / f".{SERVED_FILE}.staged"
    shutil.copy2(folder / graph, staged)
    staged.replace(folder / SERVED_FILE)


# -- checkpoints -------------------------------------------------------------------------


def export_checkpoint(
    checkpoint_dir: Path | str, out_dir: Path | str, check_inputs: CheckInputs | None = None
) -> ExportReport:
    """Export a checkpoint to fp32 and int8 ONNX in ``out_dir`` and choose how to serve it.

    Every engine and precision this machine offers (onnxruntime fp32 and int8, OpenVINO
    fp32 and bf16: :func:`available_engines`) runs the check set; the fastest whose
    agreement with fp32 meets the kind's bar is served (fp32 onnxruntime always does).
    ``check_inputs`` are ``(query, candidate product texts)`` pairs, e.g. a store's dev
    queries with their candidates; None uses a built-in synthetic set. The queries feed
    the classifier and the encoder, the candidates the encoder and the cross-encoder.
    Raises ExportCheckFailed when fp32 differs from PyTorch by TOLERANCE or more.
    """
    import torch

    from shared.training.modules import ShopsenseModel

    checkpoint_dir, out_dir = Path(checkpoint_dir), Path(out_dir)
    started = time.perf_counter()
    model = ShopsenseModel.load(checkpoint_dir)
    kind, spec = model.spec.kind, model.spec
    if check_inputs is None:
        # Top-1 agreement needs many queries to resolve 0.98; they are cheap to classify.
        queries = CHECK_QUERIES * 8 if kind == INTENT_CLASSIFIER else CHECK_QUERIES
        check_inputs = default_check_inputs(queries)
    check_inputs = list(check_inputs)
    if not check_inputs or any(not docs for _, docs in check_inputs):
        raise ValueError("check_inputs: need at least one query, each with candidates")
    module = _served_module(model)
    batches, sizes = check_batches(kind, spec, check_inputs)
    out_dir.mkdir(parents=True, exist_ok=True)
    seconds: dict[str, float] = {}
    with tempfile.TemporaryDirectory(dir=out_dir) as tmp:
        fp32_path, int8_path = Path(tmp) / FP32_FILE, Path(tmp) / INT8_FILE
        _export_onnx(module, fp32_path, batches[0], OUTPUT_NAMES[kind])
        seconds["export"] = time.perf_counter() - started
        mark = time.perf_counter()
        with torch.no_grad():
            torch_out = np.concatenate(
                [module(*(torch.from_numpy(a) for a in batch)).numpy() for batch in batches]
            )
        if torch_out.ndim == 1:
            torch_out = torch_out[:, None]
        reference = reference_run(kind, fp32_path, batches, torch_out, sizes)
        fp32 = reference[1]
        fp32_diff = float(np.abs(fp32 - torch_out).max())
        if not fp32_diff < TOLERANCE:
            raise ExportCheckFailed(
                f"{checkpoint_dir}: fp32 ONNX max abs difference {fp32_diff:.2e} "
                f">= {TOLERANCE:.0e} from PyTorch"
            )
        seconds["check"] = time.perf_counter() - mark
        tried = measure_candidates(
            kind, fp32_path, batches, reference, torch_out, sizes, int8_path, seconds
        )
        for path in (fp32_path, int8_path):
            path.replace(out_dir / path.name)
    (out_dir / SPEC_FILE).write_text(spec.to_json(), encoding="utf-8")
    report = write_report(
        kind, out_dir, tried, fp32, torch_out, len(check_inputs), seconds, started
    )
    serve_chosen_graph(out_dir, report)
    print(f"exported {kind} to {out_dir} in {seconds['total']:.1f} s: serving {report.reason}")
    return report


def main(argv: list[str] | None = None) -> int:
    """Command line entry point; returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--model", choices=MODELS, help="export the base model into Triton's repository"
    )
    parser.add_argument("--version", type=int, default=1)
    parser.add_argument("--repository", type=Path, default=None)
    parser.add_argument("--force", action="store_true", help="export even if up to date")
    parser.add_argument(
        "--precision",
        choices=("fp32",),
        help="--model only: serve the fp32 graph whatever was fastest here (for GPUs)",
    )
    parser.add_argument("--checkpoint", type=Path, help="export this checkpoint folder instead")
    parser.add_argument("--out", type=Path, help="where --checkpoint's export goes")
    args = parser.parse_args(argv)
    if (args.model is None) == (args.checkpoint is None):
        parser.error("give exactly one of --model and --checkpoint")
    if args.checkpoint is not None and args.out is None:
        parser.error("--checkpoint needs --out")
    try:
        if args.checkpoint is not None:
            export_checkpoint(args.checkpoint, args.out)
        else:
            export_text_encoder(args.version, args.repository, args.force, args.precision)
    except ExportCheckFailed as error:
        print(f"EXPORT CHECK FAILED: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
