"""Inner-product search over a row-addressed float32 matrix: exact, and above a size an
HNSW graph (faiss) in front of it.

Exact search is the right tool for a store's usual catalog: a matrix-vector product over
20,000 x 384 float32 takes about a millisecond, there is no recall loss to explain, and
updates are a row write. It grows linearly (about 130 ms at 1,000,000 products here), so
an index holding at least ``ann_threshold`` vectors gets an HNSW graph over 8-bit
scalar-quantised copies of them (M 32, efConstruction 80; a quarter of the matrix's memory
besides the graph's links). Building it takes minutes at a million vectors, so it is built
from a copy, away from the index's locks (``ann_due``, ``begin_ann``, ``_Hnsw``,
``finish_ann``: the catalog index does this in a thread; ``build_ann`` in one call), and
searches stay exact until it is attached. A search through the graph asks it for
``max(k, 2 * ANN_MIN_EF)`` candidates (efSearch the same) and
rescores them exactly from the matrix, so scores are exact and only recall is approximate
(``python -m shared.bench.scale`` measures it against exact search). Filters reach the
graph as a bitmap of allowed entries, and the search widens (efSearch) in inverse
proportion to the share of rows they allow; when they allow fewer than
``ANN_MIN_FRACTION`` of the rows, the exact search over those few rows is faster and is
used instead.

Writes between ``begin_ann`` and ``finish_ann`` are recorded and applied to the graph when
it is attached. After that, ``set`` adds the new vector to the graph and retires the old
entry, and ``clear`` retires it: retired entries are never returned, and are dropped when
a bulk load (``set_many``, which starts a new index) builds the next graph.
"""

from __future__ import annotations

import numpy as np

from shared.search.topk import top_k

_MIN_CAPACITY = 1024
# Below this fraction of allowed rows, gathering them beats scoring the whole matrix.
_GATHER_FRACTION = 0.25
# Bulk loads of at least this many vectors build the HNSW graph.
ANN_THRESHOLD = 200_000
# The graph's candidates per search are at least twice this (then rescored exactly).
ANN_MIN_EF = 128
# Filters allowing fewer rows than this fraction search the allowed rows exactly; above
# it the graph search widens in inverse proportion to the fraction, up to ANN_MAX_EF.
ANN_MIN_FRACTION = 0.05
ANN_MAX_EF = 4_096
_HNSW_M = 32
_HNSW_EF_CONSTRUCTION = 80


class _Hnsw:
    """faiss HNSW over 8-bit scalar-quantised vectors; entries are appended, retired by a
    flag, and mapped back to rows."""

    def __init__(self, dim: int, rows: np.ndarray, vectors: np.ndarray) -> None:
        import faiss  # imported when a catalog is large enough to need it

        self._faiss = faiss
        self.index = faiss.IndexHNSWSQ(
            dim, faiss.ScalarQuantizer.QT_8bit, _HNSW_M, faiss.METRIC_INNER_PRODUCT
        )
        self.index.hnsw.efConstruction = _HNSW_EF_CONSTRUCTION
        sample = vectors[np.random.default_rng(0).permutation(len(vectors))[:100_000]]
        self.index.train(np.ascontiguousarray(sample))
        self.index.add(np.ascontiguousarray(vectors))
        # Entry -> row and entry -> live, with room to append (doubling).
        self.size = len(rows)
        self.retired = 0
        self._row_of = np.asarray(rows, dtype=np.int64).copy()
        self._alive = np.ones(len(rows), dtype=bool)
        self.entry_of: dict[int, int] = {int(r): i for i, r in enumerate(self._row_of.tolist())}

    @property
    def row_of(self) -> np.ndarray:
        return self._row_of[: self.size]

    @property
    def alive(self) -> np.ndarray:
        return self._alive[: self.size]

    def add(self, row: int, vec: np.ndarray) -> None:
        self.remove(row)
        self.index.add(np.asarray(vec, dtype=np.float32).reshape(1, -1))
        if self.size == len(self._row_of):
            grow = max(1024, self.size)
            self._row_of = np.concatenate((self._row_of, np.zeros(grow, dtype=np.int64)))
            self._alive = np.concatenate((self._alive, np.zeros(grow, dtype=bool)))
        self._row_of[self.size] = row
        self._alive[self.size] = True
        self.entry_of[row] = self.size
        self.size += 1

    def remove(self, row: int) -> None:
        entry = self.entry_of.pop(row, None)
        if entry is not None:
            self._alive[entry] = False
            self.retired += 1

    def candidates(
        self, q: np.ndarray, n: int, allowed: np.ndarray | None, fraction: float = 1.0
    ) -> np.ndarray:
        """Up to ``n`` rows near ``q`` among live entries whose row ``allowed`` marks (about
        ``fraction`` of them: the search widens in proportion, up to ``ANN_MAX_EF``)."""
        faiss = self._faiss
        if allowed is None and not self.retired:
            params = faiss.SearchParametersHNSW(efSearch=n)
        else:
            ok = self.alive if allowed is None else self.alive & allowed[self.row_of]
            bitmap = np.packbits(ok, bitorder="little")
            params = faiss.SearchParametersHNSW(
                sel=faiss.IDSelectorBitmap(len(ok), faiss.swig_ptr(bitmap)),
                efSearch=int(min(ANN_MAX_EF, max(n, n / max(fraction, 1e-6)))),
            )
        _, entries = self.index.search(q.reshape(1, -1), n, params=params)
        entries = entries[0]
        return self.row_of[entries[entries >= 0]]


def build_graph(dim: int, rows: np.ndarray, vectors: np.ndarray) -> _Hnsw:
    """The HNSW graph over ``vectors`` (those of ``rows``); minutes at a million."""
    return _Hnsw(dim, rows, vectors)


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

    def __init__(self, dim: int = 384, ann_threshold: int | None = ANN_THRESHOLD) -> None:
        """``ann_threshold``: from this many vectors the HNSW graph is due (None: never)."""
        if dim <= 0:
            raise ValueError(f"dim must be > 0 (got {dim})")
        self.dim = dim
        self.ann_threshold = ann_threshold
        self._ann: _Hnsw | None = None
        # Rows written since ``begin_ann`` copied the vectors (None: no build under way).
        self._changed: set[int] | None = None
        self._matrix = np.zeros((0, dim), dtype=np.float32)
        self._present = np.zeros(0, dtype=bool)
        self._count = 0
        self._end = 0  # one past the highest row ever set: the scored prefix

    def __len__(self) -> int:
        return self._count

    def __contains__(self, row: object) -> bool:
        return isinstance(row, int) and 0 <= row < self._end and bool(self._present[row])

    @property
    def approximate(self) -> bool:
        """Whether searches go through the HNSW graph (built by a large enough bulk load)."""
        return self._ann is not None

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
        if self._ann is not None:
            self._ann.add(row, vec)
        if self._changed is not None:
            self._changed.add(row)
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
        if self._ann is not None:
            for row in rows.tolist():
                self._ann.add(row, self._matrix[row])
        if self._changed is not None:
            self._changed.update(rows.tolist())

    def clear(self, row: int) -> bool:
        """Remove the vector at ``row``; returns whether one was there."""
        if row not in self:
            return False
        self._present[row] = False
        self._matrix[row] = 0.0
        self._count -= 1
        if self._ann is not None:
            self._ann.remove(row)
        if self._changed is not None:
            self._changed.add(row)
        return True

    # ------------------------------------------------------------------ the HNSW graph
    def ann_due(self) -> bool:
        """Whether the index is large enough for the graph and has none, nor one under way."""
        return (
            self.ann_threshold is not None
            and self._count >= self.ann_threshold
            and self._ann is None
            and self._changed is None
        )

    def begin_ann(self) -> tuple[np.ndarray, np.ndarray]:
        """The present rows and a copy of their vectors, to build the graph from; writes
        from now on are recorded for ``finish_ann``. Writers must be excluded meanwhile."""
        self._changed = set()
        rows = np.flatnonzero(self._present[: self._end])
        return rows, self._matrix[rows]

    def finish_ann(self, graph: _Hnsw) -> None:
        """Attach ``graph`` (built from ``begin_ann``'s copy), with the writes since then.
        Writers and readers must be excluded meanwhile."""
        for row in sorted(self._changed or ()):
            if row in self:
                graph.add(row, self._matrix[row])
            else:
                graph.remove(row)
        self._changed = None
        self._ann = graph

    def abandon_ann(self) -> None:
        """Forget a build under way (it failed); the search stays exact."""
        self._changed = None

    def build_ann(self) -> None:
        """Build and attach the graph now, whatever the threshold (one thread, no locks)."""
        rows, vectors = self.begin_ann()
        self.finish_ann(build_graph(self.dim, rows, vectors))

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
        fraction = 1.0 if mask is None else float(allowed.sum()) / self._count
        if self._ann is not None and fraction >= ANN_MIN_FRACTION:
            rows = self._ann.candidates(
                q, max(k, 2 * ANN_MIN_EF), None if mask is None else allowed, fraction
            )
            rows.sort()
            return top_k(rows, matrix[rows] @ q, k)
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
