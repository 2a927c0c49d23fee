"""An exported ``sequence_recommender`` version at inference, on onnxruntime (no torch):
used inside Triton's python backend and in-process (tests, export checks, the floor).

The version folder holds two graphs (see :mod:`shared.training.sequence`):

- ``item_tower.onnx``: ``text_vectors`` float32 ``[B, d]`` and ``item_rows`` int64 ``[B]``
  (the product's row in ``items.json``; -1 for a product the model never saw) ->
  ``item_embedding`` float32 ``[B, d]``, unit length;
- ``model.onnx`` (the shopper tower): ``history_embeddings`` float32 ``[B, T, d]`` (item
  embeddings, oldest first, left-padded), ``history_kinds``, ``history_gaps`` and
  ``history_mask`` int64 ``[B, T]`` -> ``shopper_vector`` float32 ``[B, d]``, unit length.

A product's score for a shopper is the dot product of the two.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnxruntime as ort

from shared.models.layout import ITEM_TOWER_FILE, ITEMS_FILE, SERVED_FILE, SPEC_FILE
from shared.models.onnx_runtime import session_options

SHOPPER_INPUTS = ("history_embeddings", "history_kinds", "history_gaps", "history_mask")
ITEM_INPUTS = ("text_vectors", "item_rows")
SHOPPER_OUTPUT, ITEM_OUTPUT = "shopper_vector", "item_embedding"


class SequenceModel:
    """Both towers of one version."""

    def __init__(
        self, version_dir: Path | str, intra_op_threads: int = 2, provider: str = "cpu"
    ) -> None:
        folder = Path(version_dir)
        self.spec = json.loads((folder / SPEC_FILE).read_text(encoding="utf-8"))
        keys = json.loads((folder / ITEMS_FILE).read_text(encoding="utf-8"))
        self.rows = {str(key): row for row, key in enumerate(keys)}
        options = session_options(intra_op_threads)
        providers = ["CPUExecutionProvider"]
        if provider == "cuda" and "CUDAExecutionProvider" in ort.get_available_providers():
            providers.insert(0, "CUDAExecutionProvider")
        self._shopper = ort.InferenceSession(
            str(folder / SERVED_FILE), sess_options=options, providers=providers
        )
        self._items = ort.InferenceSession(
            str(folder / ITEM_TOWER_FILE), sess_options=options, providers=providers
        )
        self.dim = int(self.spec["dim"])
        self.history_length = int(self.spec["history_length"])

    def rows_of(self, product_ids: Sequence[str]) -> np.ndarray:
        """Each product's row (-1: unknown to this version)."""
        return np.array([self.rows.get(str(p), -1) for p in product_ids], dtype=np.int64)

    def item_embeddings(self, text_vectors: np.ndarray, item_rows: np.ndarray) -> np.ndarray:
        vectors = np.ascontiguousarray(text_vectors, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[1] != self.dim:
            raise ValueError(f"text_vectors: must be [rows, {self.dim}], got {vectors.shape}")
        rows = np.asarray(item_rows, dtype=np.int64).reshape(-1)
        if rows.shape[0] != vectors.shape[0]:
            raise ValueError(f"item_rows: {rows.shape[0]} rows for {vectors.shape[0]} vectors")
        if not len(rows):
            return np.zeros((0, self.dim), dtype=np.float32)
        return self._items.run([ITEM_OUTPUT], {"text_vectors": vectors, "item_rows": rows})[0]

    def shopper_vectors(
        self,
        embeddings: np.ndarray,
        kinds: np.ndarray,
        gaps: np.ndarray,
        mask: np.ndarray,
    ) -> np.ndarray:
        embeddings = np.ascontiguousarray(embeddings, dtype=np.float32)
        if embeddings.ndim != 3 or embeddings.shape[2] != self.dim:
            raise ValueError(
                f"history_embeddings: must be [batch, events, {self.dim}], got {embeddings.shape}"
            )
        shape = embeddings.shape[:2]
        arrays = [np.asarray(a, dtype=np.int64) for a in (kinds, gaps, mask)]
        for name, array in zip(SHOPPER_INPUTS[1:], arrays, strict=True):
            if array.shape != shape:
                raise ValueError(f"{name}: must be {list(shape)}, got {list(array.shape)}")
        feeds = dict(zip(SHOPPER_INPUTS, [embeddings, *arrays], strict=True))
        return self._shopper.run([SHOPPER_OUTPUT], feeds)[0]
