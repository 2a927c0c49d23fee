"""Triton python-backend adapter for the text encoder, installed as ``<n>/model.py``.

A thin shell over ``OnnxSentenceEncoder`` (which imports and tests without Triton).
Its one job of its own: the dynamic batcher hands over requests of different sequence
lengths, so they are padded to a common length, run once and split back per request.
Padding is exact: padded positions have attention_mask 0, so mean pooling ignores them.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from shared.models.onnx_runtime import OnnxSentenceEncoder

PAD_ID = 0


def pad_and_concatenate(
    batches: list[tuple[np.ndarray, np.ndarray]],
) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """Stack ``(input_ids, attention_mask)`` pairs of any lengths into one padded batch.

    Returns the merged arrays and each request's row count, to split the output with.
    """
    longest = max(ids.shape[1] for ids, _ in batches)
    rows = [ids.shape[0] for ids, _ in batches]
    input_ids = np.full((sum(rows), longest), PAD_ID, dtype=np.int64)
    attention_mask = np.zeros((sum(rows), longest), dtype=np.int64)
    start = 0
    for (ids, mask), count in zip(batches, rows, strict=True):
        input_ids[start : start + count, : ids.shape[1]] = ids
        attention_mask[start : start + count, : mask.shape[1]] = mask
        start += count
    return input_ids, attention_mask, rows


class TritonPythonModel:
    """The interface Triton's python backend calls."""

    def initialize(self, args: dict[str, str]) -> None:
        """Load ``model.onnx`` of this version with the configured thread budget."""
        config = json.loads(args["model_config"])
        parameters = config.get("parameters", {})
        threads = int(parameters.get("intra_op_threads", {}).get("string_value", "2"))
        onnx_path = Path(args["model_repository"]) / args["model_version"] / "model.onnx"
        self.encoder = OnnxSentenceEncoder(onnx_path, intra_op_threads=threads)

    def execute(self, requests: list) -> list:
        """One onnxruntime run for all merged requests; one response per request."""
        import triton_python_backend_utils as pb_utils  # exists only inside Triton

        responses: list = [None] * len(requests)
        batches: list[tuple[np.ndarray, np.ndarray]] = []
        valid: list[int] = []
        for index, request in enumerate(requests):
            ids = pb_utils.get_input_tensor_by_name(request, "input_ids").as_numpy()
            mask = pb_utils.get_input_tensor_by_name(request, "attention_mask").as_numpy()
            if ids.shape != mask.shape or ids.ndim != 2:
                message = f"input_ids {ids.shape} and attention_mask {mask.shape} must match"
                responses[index] = pb_utils.InferenceResponse(error=pb_utils.TritonError(message))
                continue
            batches.append((ids, mask))
            valid.append(index)
        if batches:
            input_ids, attention_mask, rows = pad_and_concatenate(batches)
            embeddings = self.encoder.run(input_ids, attention_mask)
            start = 0
            for index, count in zip(valid, rows, strict=True):
                tensor = pb_utils.Tensor("embedding", embeddings[start : start + count])
                responses[index] = pb_utils.InferenceResponse(output_tensors=[tensor])
                start += count
        return responses

    def finalize(self) -> None:
        """Release the onnxruntime session."""
        self.encoder = None
