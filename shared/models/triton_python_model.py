"""Triton python-backend adapter for every model kind, installed as ``<n>/model.py``.

A thin shell over ``OnnxModel`` (which imports and tests without Triton), on the engine
the version's export chose. The version
folder's ``shopsense_model.json`` says what it serves (a version 1 text_encoder folder
exported before that file existed is a text_encoder). Its jobs of its own:

- the dynamic batcher hands over requests of different sequence lengths, so they are
  padded to a common length, run once and split back per request. Padding is exact:
  padded positions have attention_mask 0, so attention and mean pooling ignore them;
- an intent classifier also answers ``labels`` (the class names in probability order)
  when a request asks for it, so a client needs no access to the version's files;
- a ``sequence_recommender`` version holds two graphs (:mod:`shared.models.sequence_runtime`):
  a request with ``text_vectors`` and ``product_ids`` runs the item tower (the product
  ids become the model's rows here), one with ``history_*`` runs the shopper tower. Its
  config has no batcher: each request runs alone.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from shared.models.kinds import CROSS_ENCODER, INTENT_CLASSIFIER, SEQUENCE_RECOMMENDER
from shared.models.layout import SPEC_FILE
from shared.models.onnx_runtime import OUTPUT_NAMES, OnnxModel

PAD_ID = 0
LABELS_OUTPUT = "labels"


def pad_and_concatenate(
    batches: list[tuple[np.ndarray, ...]],
) -> tuple[list[np.ndarray], list[int]]:
    """Stack requests' token arrays (each ``[rows, length]``) into one padded batch.

    Every request holds the same inputs in the same order (input_ids, attention_mask,
    token_type_ids); all pad with 0. Returns the merged arrays, in that order, and each
    request's row count to split the output with.
    """
    longest = max(arrays[0].shape[1] for arrays in batches)
    rows = [arrays[0].shape[0] for arrays in batches]
    merged = [np.full((sum(rows), longest), PAD_ID, dtype=np.int64) for _ in batches[0]]
    start = 0
    for arrays, count in zip(batches, rows, strict=True):
        for target, array in zip(merged, arrays, strict=True):
            target[start : start + count, : array.shape[1]] = array
        start += count
    return merged, rows


def read_spec(version_dir: Path) -> dict:
    """The version's ``shopsense_model.json``; a folder without one is a text_encoder."""
    path = version_dir / SPEC_FILE
    if not path.is_file():
        return {"kind": "text_encoder", "labels": []}
    return json.loads(path.read_text(encoding="utf-8"))


class TritonPythonModel:
    """The interface Triton's python backend calls."""

    def initialize(self, args: dict[str, str]) -> None:
        """Load ``model.onnx`` of this version with the configured thread budget."""
        config = json.loads(args["model_config"])
        parameters = config.get("parameters", {})
        threads = int(parameters.get("intra_op_threads", {}).get("string_value", "2"))
        version_dir = Path(args["model_repository"]) / args["model_version"]
        spec = read_spec(version_dir)
        self.sequence = None
        if spec["kind"] == SEQUENCE_RECOMMENDER:
            from shared.models.sequence_runtime import SequenceModel

            provider = parameters.get("execution_provider", {}).get("string_value", "cpu")
            self.sequence = SequenceModel(version_dir, intra_op_threads=threads, provider=provider)
            return
        # On the engine and precision the version's export chose (export_report.json).
        self.model = OnnxModel.for_version(version_dir, intra_op_threads=threads)
        if self.model.kind != spec["kind"]:
            raise ValueError(
                f"{version_dir}: {SPEC_FILE} kind {spec['kind']!r} but model.onnx is a "
                f"{self.model.kind}"
            )
        self.output_name = OUTPUT_NAMES[self.model.kind]
        self.input_names = ["input_ids", "attention_mask"]
        if self.model.kind == CROSS_ENCODER:
            self.input_names.append("token_type_ids")
        self.labels = np.array(
            [label.encode("utf-8") for label in spec.get("labels", [])], dtype=np.object_
        )

    def execute(self, requests: list) -> list:
        """One run for all merged requests; one response per request."""
        import triton_python_backend_utils as pb_utils  # exists only inside Triton

        if self.sequence is not None:
            return [self._execute_sequence(request, pb_utils) for request in requests]
        responses: list = [None] * len(requests)
        batches: list[tuple[np.ndarray, ...]] = []
        valid: list[int] = []
        for index, request in enumerate(requests):
            arrays = tuple(
                pb_utils.get_input_tensor_by_name(request, name).as_numpy()
                for name in self.input_names
            )
            if any(a.shape != arrays[0].shape for a in arrays) or arrays[0].ndim != 2:
                shapes = ", ".join(
                    f"{n} {a.shape}" for n, a in zip(self.input_names, arrays, strict=True)
                )
                message = f"{shapes}: must all be [batch, sequence] of one shape"
                responses[index] = pb_utils.InferenceResponse(error=pb_utils.TritonError(message))
                continue
            batches.append(arrays)
            valid.append(index)
        if batches:
            merged, rows = pad_and_concatenate(batches)
            outputs = self.model.run(*merged)
            start = 0
            for index, count in zip(valid, rows, strict=True):
                tensors = [pb_utils.Tensor(self.output_name, outputs[start : start + count])]
                if self.model.kind == INTENT_CLASSIFIER and (
                    LABELS_OUTPUT in requests[index].requested_output_names()
                ):
                    # Outputs are batched, so every row carries the class names.
                    labels = np.tile(self.labels, (count, 1))
                    tensors.append(pb_utils.Tensor(LABELS_OUTPUT, labels))
                responses[index] = pb_utils.InferenceResponse(output_tensors=tensors)
                start += count
        return responses

    def _execute_sequence(self, request, pb_utils):  # -> pb_utils.InferenceResponse
        """One request of the sequence recommender: item tower or shopper tower."""
        from shared.models.sequence_runtime import ITEM_OUTPUT, SHOPPER_INPUTS, SHOPPER_OUTPUT

        def array(name: str):
            tensor = pb_utils.get_input_tensor_by_name(request, name)
            return None if tensor is None else tensor.as_numpy()

        try:
            vectors, ids = array("text_vectors"), array("product_ids")
            if vectors is not None or ids is not None:
                if vectors is None or ids is None:
                    raise ValueError("text_vectors and product_ids: give both for the item tower")
                keys = [i.decode("utf-8") if isinstance(i, bytes) else str(i) for i in ids]
                output = self.sequence.item_embeddings(vectors, self.sequence.rows_of(keys))
                name = ITEM_OUTPUT
            else:
                history = [array(n) for n in SHOPPER_INPUTS]
                missing = [n for n, a in zip(SHOPPER_INPUTS, history, strict=True) if a is None]
                if missing:
                    raise ValueError(f"{', '.join(missing)}: required for the shopper tower")
                output = self.sequence.shopper_vectors(*history)
                name = SHOPPER_OUTPUT
        except ValueError as error:
            return pb_utils.InferenceResponse(error=pb_utils.TritonError(str(error)))
        return pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor(name, output)])

    def finalize(self) -> None:
        """Release the model's sessions."""
        self.model = None
        self.sequence = None
