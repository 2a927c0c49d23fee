"""Export the encoders to ONNX into Triton's model repository.

``python -m shared.models.export --model text_encoder [--version 1] [--repository DIR]
[--force]`` writes ``<repository>/text_encoder/<version>/model.onnx`` and the python
backend adapter ``model.py`` next to it, then checks the ONNX output against PyTorch.
torch and transformers are needed here only, never at serving time.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from shared.models.paths import base_model_dir
from shared.paths import REPO_ROOT, triton_model_repository

TEXT_ENCODER = "text_encoder"
MODELS = (TEXT_ENCODER,)
# The committed model folder (config.pbtxt, configs/) that a repository elsewhere copies.
COMMITTED_REPOSITORY = REPO_ROOT / "triton_models"
ADAPTER_SOURCE = Path(__file__).resolve().parent / "triton_python_model.py"
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


def _export_onnx(module, target: Path) -> None:
    import torch

    from shared.models.tokenization import Tokenizer

    ids, mask = Tokenizer().encode(list(CHECK_SENTENCES[:2]), max_length=64)
    args = (torch.from_numpy(ids), torch.from_numpy(mask))
    dynamic_axes = {
        "input_ids": {0: "batch", 1: "sequence"},
        "attention_mask": {0: "batch", 1: "sequence"},
        "embedding": {0: "batch"},
    }
    with torch.no_grad(), warnings.catch_warnings():
        # The tracer's warnings (a shape test frozen as a constant, advanced indexing)
        # are expected for BERT; check_against_torch verifies the graph numerically.
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", UserWarning)
        try:
            torch.onnx.export(
                module,
                args,
                str(target),
                input_names=["input_ids", "attention_mask"],
                output_names=["embedding"],
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
                input_names=["input_ids", "attention_mask"],
                output_names=["embedding"],
                dynamic_shapes=({0: batch, 1: sequence}, {0: batch, 1: sequence}),
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


def _install_model_folder(model: str, repository: Path) -> Path:
    """Give ``<repository>/<model>/`` the committed config files it lacks.

    Only missing files are copied: a deployed repository's own edits (a pinned version
    policy during an experiment) survive a re-export.
    """
    model_dir = repository / model
    source = COMMITTED_REPOSITORY / model
    model_dir.mkdir(parents=True, exist_ok=True)
    if model_dir.resolve() != source.resolve():
        for item in source.iterdir():
            if item.name.isdigit():
                continue
            target = model_dir / item.name
            if item.is_dir():
                for file in item.rglob("*"):
                    copy = target / file.relative_to(item)
                    if file.is_file() and not copy.exists():
                        copy.parent.mkdir(parents=True, exist_ok=True)
                        shutil.copy2(file, copy)
            elif not target.exists():
                shutil.copy2(item, target)
    return model_dir


def export_text_encoder(
    version: int = 1, repository: Path | None = None, force: bool = False
) -> ExportResult:
    """Export all-MiniLM-L6-v2 as a sentence encoder to ``text_encoder/<version>/``."""
    repository = Path(repository) if repository else triton_model_repository()
    model_dir = _install_model_folder(TEXT_ENCODER, repository)
    version_dir = model_dir / str(version)
    onnx_path = version_dir / "model.onnx"
    version_dir.mkdir(parents=True, exist_ok=True)
    # The adapter is cheap and may have changed: always refresh it.
    shutil.copy2(ADAPTER_SOURCE, version_dir / "model.py")
    if onnx_path.is_file() and not force:
        print(f"{onnx_path}: up to date")
        return ExportResult(model_dir, onnx_path, False, 0.0, None)

    start = time.perf_counter()
    module = _sentence_encoder_module()
    # Write next to the target, check, then rename: a failed export leaves nothing behind.
    with tempfile.TemporaryDirectory(dir=version_dir) as tmp:
        staged = Path(tmp) / "model.onnx"
        _export_onnx(module, staged)
        diff = check_against_torch(module, staged)
        staged.replace(onnx_path)
    seconds = time.perf_counter() - start
    print(f"exported {onnx_path} in {seconds:.1f} s")
    return ExportResult(model_dir, onnx_path, True, seconds, diff)


def main(argv: list[str] | None = None) -> int:
    """Command line entry point; returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, choices=MODELS)
    parser.add_argument("--version", type=int, default=1)
    parser.add_argument("--repository", type=Path, default=None)
    parser.add_argument("--force", action="store_true", help="export even if up to date")
    args = parser.parse_args(argv)
    try:
        export_text_encoder(args.version, args.repository, args.force)
    except ExportCheckFailed as error:
        print(f"EXPORT CHECK FAILED: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
