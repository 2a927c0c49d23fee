"""Personalised search: the shopper's profile as one more explained ranking feature.

The profile (the recommendation service's ``GetShopperProfile``) is a unit vector in the
space of the catalog's text vectors. A candidate's ``personal`` value is the cosine of its
text vector with the profile, scaled over the candidate list (0 the least like the
profile, 1 the most): every candidate of one query is about the same thing, so the raw
cosines differ by a few hundredths, and unscaled they would hardly move the order. Its
weight (``SHOPSENSE_PERSONAL_WEIGHT``) decides how far a taste may lift a product past
relevance. Without a profile there is no feature, and the ranking is the unpersonalised one.

``ProductVectors`` holds the catalog's vectors by product id (the ranking service loads
them from retrieval's ``ExportCatalog``, as the recommender does).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from shared.errors import InvalidArgument
from shared.ranking.features import Scored

PERSONAL_FEATURE = "personal"
# A tenth of the features' weights (0.94 at most), below intent match (0.30) and the
# retrieval scores (0.20 each): a taste reorders products of similar relevance, it does
# not lift an irrelevant one past a relevant one.
DEFAULT_PERSONAL_WEIGHT = 0.1


@dataclass(frozen=True)
class ProductVectors:
    """The catalog's text vectors by product id, of one text_encoder ``version`` and
    catalog ``generation``."""

    version: str = ""
    generation: int = -1
    rows: Mapping[str, int] = field(default_factory=dict)
    matrix: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), dtype=np.float32))

    @classmethod
    def of(
        cls, product_ids: Sequence[str], vectors: np.ndarray | None, version: str, generation: int
    ) -> ProductVectors:
        if vectors is None or not len(product_ids):
            return cls(version, generation)
        matrix = np.asarray(vectors, dtype=np.float32)
        return cls(version, generation, {pid: i for i, pid in enumerate(product_ids)}, matrix)

    @property
    def dimension(self) -> int:
        return int(self.matrix.shape[1]) if self.matrix.ndim == 2 else 0

    def cosines(self, profile: np.ndarray, product_ids: Sequence[str]) -> list[float | None]:
        """Each product's cosine with ``profile`` (a unit vector); None for a product
        without a vector here (added since the vectors were loaded)."""
        found = [self.rows.get(pid) for pid in product_ids]
        rows = [row for row in found if row is not None]
        values = iter((self.matrix[rows] @ profile).tolist() if rows else [])
        return [None if row is None else float(next(values)) for row in found]


def checked_profile(values: Sequence[float], version: str, field_name: str) -> np.ndarray | None:
    """The request's profile as a unit vector, None when it has no values or no length;
    INVALID_ARGUMENT naming the field for a non-finite value or a missing version."""
    if not len(values):
        return None
    vector = np.asarray(values, dtype=np.float32)
    if not np.isfinite(vector).all():
        raise InvalidArgument(f"{field_name}.values: must be finite numbers")
    if not version.strip():
        raise InvalidArgument(f"{field_name}.model_version: required with values")
    norm = float(np.linalg.norm(vector))
    if not norm > 0:
        return None
    return vector / np.float32(norm)


def likeness(cosines: Sequence[float | None]) -> list[float]:
    """The feature's values: the cosines scaled to [0, 1] over the list (all 0 when they are
    equal); a product without a vector gets the list's mean, neither lifted nor sunk."""
    known = [c for c in cosines if c is not None]
    if not known:
        return [0.0] * len(cosines)
    low, high = min(known), max(known)
    span = high - low
    mean = sum(known) / len(known)
    return [(((mean if c is None else c) - low) / span) if span > 0 else 0.0 for c in cosines]


def add_personal(
    scored: Sequence[Scored], values: Mapping[str, float], weight: float
) -> list[Scored]:
    """The feature ranking with each item's ``personal`` part (``values`` by product id)
    added, re-sorted by score (stable: ties keep the previous order)."""
    if weight < 0:
        raise ValueError(f"weight: must be >= 0, got {weight}")
    out = [
        Scored(
            s.product_id,
            s.score + weight * values.get(s.product_id, 0.0),
            [*s.parts, (PERSONAL_FEATURE, values.get(s.product_id, 0.0), weight)],
        )
        for s in scored
    ]
    out.sort(key=lambda s: -s.score)
    return out
