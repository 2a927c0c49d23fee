"""The exported models run by onnxruntime: one runner used both inside Triton's python
backend and in-process (tests, benchmarks, export checks), so it must not import Triton.

Every exported graph takes int64 ``input_ids`` and ``attention_mask`` ``[B, T]`` (the
cross-encoder also ``token_type_ids``) and has one output, named after its kind:
``embedding`` ``[B, 384]`` (text_encoder, L2-normalised), ``probabilities`` ``[B, C]``
(intent_classifier, softmax applied) or ``score`` ``[B, 1]`` (cross_encoder, a logit).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort

INTENT_CLASSIFIER = "intent_classifier"
TEXT_ENCODER = "text_encoder"
CROSS_ENCODER = "cross_encoder"
OUTPUT_NAMES = {
    TEXT_ENCODER: "embedding",
    INTENT_CLASSIFIER: "probabilities",
    CROSS_ENCODER: "score",
}


def session_options(intra_op_threads: int = 2) -> ort.SessionOptions:
    """Options with a deliberate thread budget.

    Spinning intra-op threads fought the other threads of the process over 2 cores and
    doubled the latency of a full search (PERFORMANCE.md), so spinning is off, there is
    one inter-op thread and the graph runs sequentially.
    """
    options = ort.SessionOptions()
    options.intra_op_num_threads = max(1, int(intra_op_threads))
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    return options


def kind_of_output(output_name: str) -> str:
    """The model kind whose graph ends in ``output_name``."""
    for kind, name in OUTPUT_NAMES.items():
        if name == output_name:
            return kind
    raise ValueError(f"output_name: {output_name!r} is none of {sorted(OUTPUT_NAMES.values())}")


class OnnxModel:
    """Runs an exported ``model.onnx`` of any kind; the kind is read from its output name."""

    def __init__(self, path: Path | str, intra_op_threads: int = 2) -> None:
        self.path = Path(path)
        self.session = ort.InferenceSession(
            str(self.path),
            sess_options=session_options(intra_op_threads),
            providers=["CPUExecutionProvider"],
        )
        output = self.session.get_outputs()[0]
        self.output_name: str = output.name
        self.kind: str = kind_of_output(output.name)
        self.input_names: tuple[str, ...] = tuple(i.name for i in self.session.get_inputs())
        # Width of the output row: 384 (embedding), C (classes) or 1 (score).
        width = output.shape[-1] if len(output.shape) > 1 else 1
        self.width: int = int(width) if isinstance(width, int) else 0

    @property
    def needs_token_type_ids(self) -> bool:
        """Whether the graph takes ``token_type_ids`` (the cross-encoder's pairs)."""
        return "token_type_ids" in self.input_names

    def run(
        self,
        input_ids: np.ndarray,
        attention_mask: np.ndarray,
        token_type_ids: np.ndarray | None = None,
    ) -> np.ndarray:
        """float32 output ``[B, width]`` for int64 ``[B, T]`` token arrays.

        ``token_type_ids`` None means all zeros (segment A) where the graph takes them.
        """
        if input_ids.shape != attention_mask.shape or input_ids.ndim != 2:
            raise ValueError(
                f"input_ids {input_ids.shape} and attention_mask {attention_mask.shape} "
                "must both be [batch, sequence]"
            )
        if token_type_ids is not None and token_type_ids.shape != input_ids.shape:
            raise ValueError(
                f"token_type_ids {token_type_ids.shape} must match input_ids {input_ids.shape}"
            )
        if input_ids.shape[0] == 0:
            return np.zeros((0, self.width), dtype=np.float32)
        feeds = {
            "input_ids": np.ascontiguousarray(input_ids, dtype=np.int64),
            "attention_mask": np.ascontiguousarray(attention_mask, dtype=np.int64),
        }
        if self.needs_token_type_ids:
            types = np.zeros_like(input_ids) if token_type_ids is None else token_type_ids
            feeds["token_type_ids"] = np.ascontiguousarray(types, dtype=np.int64)
        (output,) = self.session.run([self.output_name], feeds)
        return output


class OnnxSentenceEncoder(OnnxModel):
    """Runs a text encoder's ``model.onnx`` (-> L2-normalised ``embedding``)."""

    def __init__(self, path: Path | str, intra_op_threads: int = 2) -> None:
        super().__init__(path, intra_op_threads)
        if self.kind != TEXT_ENCODER:
            raise ValueError(f"path: {self.path} is a {self.kind}, not a {TEXT_ENCODER}")
        self.dimension: int = self.width
