"""The exported sentence encoder run by onnxruntime: one class used both inside Triton's
python backend and in-process (tests, benchmarks), so it must not import Triton."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort


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


class OnnxSentenceEncoder:
    """Runs ``model.onnx`` (input_ids, attention_mask -> L2-normalised ``embedding``)."""

    def __init__(self, path: Path | str, intra_op_threads: int = 2) -> None:
        self.path = Path(path)
        self.session = ort.InferenceSession(
            str(self.path),
            sess_options=session_options(intra_op_threads),
            providers=["CPUExecutionProvider"],
        )
        self.dimension: int = int(self.session.get_outputs()[0].shape[-1])

    def run(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        """float32 ``[B, dimension]`` embeddings for int64 ``[B, T]`` token arrays."""
        if input_ids.shape != attention_mask.shape or input_ids.ndim != 2:
            raise ValueError(
                f"input_ids {input_ids.shape} and attention_mask {attention_mask.shape} "
                "must both be [batch, sequence]"
            )
        if input_ids.shape[0] == 0:
            return np.zeros((0, self.dimension), dtype=np.float32)
        (embedding,) = self.session.run(
            ["embedding"],
            {
                "input_ids": np.ascontiguousarray(input_ids, dtype=np.int64),
                "attention_mask": np.ascontiguousarray(attention_mask, dtype=np.int64),
            },
        )
        return embedding
