"""Personalised search: the shopper's profile as one more explained ranking feature.

The profile (the recommendation service's ``GetShopperProfile``) is a unit vector in the
space of the catalog's taste vectors (its text vectors less their class's mean, made of
their attribute values' centroids). A candidate's ``personal`` value is the cosine of its
taste vector with the profile, scaled over the candidate list (0 the least like the
profile, 1 the most): one query's candidates are much alike, so the cosines' spread
depends on the query more than on the shopper, and scaled, the feature's weight means the
same for every query. Its
weight (``SHOPSENSE_PERSONAL_WEIGHT``) decides how far a taste may lift a product past
relevance. Without a profile there is no feature, and the ranking is the unpersonalised one.

``ProductVectors`` holds the catalog's vectors by product id (the ranking service loads
them from retrieval's ``ExportCatalog``, as the recommender does, and turns them into the
taste vectors the recommender makes the profile of: see
``shared.recommendation.shoppers.taste_vectors``). A product without a vector there (added
since, or nothing left once centred) gets the list's mean.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from shared.errors import InvalidArgument
from shared.ranking.features import Scored

PERSONAL_FEATURE = "personal"
# A fifth of the features' weights (0.94 at most), below intent match (0.30) and no more
# than either retrieval score (0.20 each): a taste reorders products of similar relevance,
# it does not lift an irrelevant one past a relevant one. Chosen on the offline check
# (`shopsense simulate --personalization-offline`, SYNTHETIC shoppers, seed 5, not the
# A/B's): with the taste vectors, expected search CTR +4.6% at 0.2 and at 0.3, +3.4% at 0.1,
# +2.9% at 0.5; 0.2 changes fewer products of a page for the same gain (1.7 of 10, not 2.2).
# From 0.5 the wrong guesses of a thin history cost more than the right ones gain.
DEFAULT_PERSONAL_WEIGHT = 0.2


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
        without a vector here (added since the vectors were loaded, or an all-zero row)."""
        found = [self.rows.get(pid) for pid in product_ids]
        rows = [row for row in found if row is not None]
        held = self.matrix[rows] if rows else np.zeros((0, len(profile)), dtype=np.float32)
        values = iter(zip((held @ profile).tolist(), held.any(axis=1).tolist(), strict=True))
        out: list[float | None] = []
        for row in found:
            if row is None:
                out.append(None)
                continue
            value, present = next(values)
            out.append(float(value) if present else None)
        return out


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
