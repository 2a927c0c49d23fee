"""Intent v1: zero-shot class prototypes built from the catalog.

Each class's prototype is the normalised blend of the mean embedding of its products and
the embedding of its name; a query's class probabilities are a temperature softmax over
its cosine similarity to every prototype. No training: it works from the first catalog
load, and stays as the fallback once a fine-tuned classifier exists.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

# Weight of the products' centroid against the class name (a class with no products
# uses its name alone). Temperature of the softmax over cosine similarities.
CENTROID_WEIGHT = 0.7
TEMPERATURE = 0.05


@dataclass(frozen=True)
class CatalogStats:
    """What intent needs to know about the catalog: each class's mean embedding, the
    attribute values products carry (with their counts), and the generation and
    text_encoder version they were read at ("" for an empty catalog)."""

    generation: int
    centroids: dict[str, np.ndarray] = field(default_factory=dict)
    attribute_values: dict[str, dict[str, int]] = field(default_factory=dict)
    embedding_version: str = ""


@dataclass(frozen=True)
class Prototypes:
    classes: list[str]
    matrix: np.ndarray  # [C, D], L2-normalised rows
    version: str

    def classify(self, query_vector: np.ndarray, top_k: int) -> list[tuple[str, float]]:
        if not self.classes:
            return []
        sims = self.matrix @ query_vector.astype(np.float32)
        logits = (sims - sims.max()) / TEMPERATURE
        probs = np.exp(logits)
        probs /= probs.sum()
        top = np.argsort(-probs)[:top_k]
        return [(self.classes[i], float(probs[i])) for i in top]


def build_prototypes(
    name_vectors: Mapping[str, np.ndarray],
    centroids: Mapping[str, np.ndarray],
    version: str,
    centroid_weight: float = CENTROID_WEIGHT,
) -> Prototypes:
    """Blend every class's name vector with its products' centroid, when it has products."""
    classes: Sequence[str] = sorted(set(name_vectors) | set(centroids))
    rows = []
    for name in classes:
        named = name_vectors.get(name)
        centroid = centroids.get(name)
        if named is not None and centroid is not None:
            v = centroid_weight * centroid + (1.0 - centroid_weight) * named
        else:
            v = centroid if centroid is not None else named
        v = np.asarray(v, dtype=np.float32)
        rows.append(v / (np.linalg.norm(v) or 1.0))
    dim = rows[0].shape[0] if rows else 0
    matrix = np.stack(rows) if rows else np.zeros((0, dim), dtype=np.float32)
    return Prototypes(list(classes), matrix, version)


def read_taxonomy(path: Path) -> list[str]:
    """One class name a line; a missing file means "the catalog's classes only"."""
    if not path.is_file():
        return []
    return [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
