"""Exact inner-product search over a row-addressed float32 matrix.

Exact search is the right tool up to about a million products here: a matrix-vector
product over 20,000 x 384 float32 takes about a millisecond, there is no recall loss to
explain, and updates are a row write. An ANN index becomes worth its complexity only
beyond that (see the timings printed by ``python -m shared.bench.index``).
"""

from __future__ import annotations

import numpy as np

from shared.search.topk import top_k

_MIN_CAPACITY = 1024
# Below this fraction of allowed rows, gathering them beats scoring the whole matrix.
_GATHER_FRACTION = 0.25


def vector_error(vec: np.ndarray, dim: int, name: str = "embedding") -> str | None:
    """Why ``vec`` cannot be indexed, as ``"field: reason"``; None if it can."""
    if vec.shape != (dim,):
        return f"{name}: must have {dim} dimensions (got shape {tuple(vec.shape)})"
    if not np.isfinite(vec).all():
        return f"{name}: must be finite (found NaN or infinity)"
    if not float(np.dot(vec, vec)) > 0:
        return f"{name}: must not be all zeros"
    return None


class VectorIndex:
    """Row-addressed embedding matrix with capacity doubling and exact top-k search.

    Vectors are expected L2-normalised (inner product = cosine); the index does not
    normalise them itself. Not thread-safe for writers; concurrent searches are safe
    when writers are excluded by the caller.
    """

    def __init__(self, dim: int = 384) -> None:
        if dim <= 0:
            raise ValueError(f"dim must be > 0 (got {dim})")
        self.dim = dim
        self._matrix = np.zeros((0, dim), dtype=np.float32)
        self._present = np.zeros(0, dtype=bool)
        self._count = 0
        self._end = 0  # one past the highest row ever set: the scored prefix

    def __len__(self) -> int:
        return self._count

    def __contains__(self, row: object) -> bool:
        return isinstance(row, int) and 0 <= row < self._end and bool(self._present[row])

    @property
    def nbytes(self) -> int:
        """Bytes held by the matrix (capacity, not just used rows)."""
        return int(self._matrix.nbytes)

    def _ensure(self, max_row: int) -> None:
        if max_row < len(self._present):
            return
        cap = max(max_row + 1, 2 * len(self._present), _MIN_CAPACITY)
        matrix = np.zeros((cap, self.dim), dtype=np.float32)
        matrix[: self._end] = self._matrix[: self._end]
        present = np.zeros(cap, dtype=bool)
        present[: self._end] = self._present[: self._end]
        self._matrix, self._present = matrix, present

    def get(self, row: int) -> np.ndarray | None:
        """A copy of the vector at ``row``, or None."""
        if row not in self:
            return None
        return self._matrix[row].copy()

    def set(self, row: int, vec: np.ndarray) -> None:
        """Store ``vec`` at ``row`` (replacing any previous vector)."""
        vec = np.asarray(vec, dtype=np.float32)
        if vec.shape != (self.dim,):
            raise ValueError(f"vector must have shape ({self.dim},), got {vec.shape}")
        if row < 0:
            raise ValueError(f"row must be >= 0 (got {row})")
        self._ensure(row)
        self._matrix[row] = vec
        if not self._present[row]:
            self._present[row] = True
            self._count += 1
        self._end = max(self._end, row + 1)

    def set_many(self, rows: np.ndarray, vecs: np.ndarray) -> None:
        """Store many vectors at once (bulk load)."""
        rows = np.asarray(rows, dtype=np.int64)
        vecs = np.asarray(vecs, dtype=np.float32)
        if vecs.shape != (len(rows), self.dim):
            raise ValueError(f"vectors must have shape ({len(rows)}, {self.dim}), got {vecs.shape}")
        if len(rows) == 0:
            return
        if rows.min() < 0:
            raise ValueError("rows must be >= 0")
        self._ensure(int(rows.max()))
        self._matrix[rows] = vecs
        self._count += int((~self._present[rows]).sum())
        self._present[rows] = True
        self._end = max(self._end, int(rows.max()) + 1)

    def clear(self, row: int) -> bool:
        """Remove the vector at ``row``; returns whether one was there."""
        if row not in self:
            return False
        self._present[row] = False
        self._matrix[row] = 0.0
        self._count -= 1
        return True

    def similarity(self, rows: np.ndarray, qvec: np.ndarray) -> np.ndarray:
        """Inner products of ``qvec`` with the given rows (a candidate list's dense evidence)."""
        return self._matrix[rows] @ np.asarray(qvec, dtype=np.float32)

    def search(
        self, qvec: np.ndarray, k: int, mask: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top ``k`` rows by inner product with ``qvec``, best first, as ``(rows, scores)``.

        ``mask`` is a boolean array over rows (rows beyond its end count as False); only
        present rows where it is True are returned. Ties go to the lower row.
        """
        q = np.asarray(qvec, dtype=np.float32)
        if q.shape != (self.dim,):
            raise ValueError(f"query vector must have shape ({self.dim},), got {q.shape}")
        end = self._end
        matrix, present = self._matrix, self._present
        if k <= 0 or self._count == 0:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
        allowed = present[:end]
        if mask is not None:
            m = np.zeros(end, dtype=bool)
            mask = np.asarray(mask, dtype=bool)
            n = min(end, len(mask))
            m[:n] = mask[:n]
            allowed = allowed & m
        if mask is not None or self._count < end:
            rows = np.flatnonzero(allowed)
            if len(rows) < _GATHER_FRACTION * end:
                scores = matrix[rows] @ q
            else:
                scores = (matrix[:end] @ q)[rows]
        else:
            rows = np.arange(end)
            scores = matrix[:end] @ q
        return top_k(rows, scores, k)
