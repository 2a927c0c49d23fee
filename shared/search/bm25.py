"""An incremental BM25 index over integer rows, scored with numpy.

The catalog changes one product at a time (an upsert stream), so the index must take adds
and removes without a rebuild, and a query must still score whole posting lists at once.

Layout: one posting list per term, three parallel growable arrays (row, term frequency,
epoch). A removal does not touch the posting lists: it bumps the row's epoch, so every
posting of the old document stops matching ``epoch == row_epoch[row]`` at once, and it
counts one dead posting on each of the document's terms. A term's arrays are compacted
when half of its postings are dead, so the work is amortised O(1) per removed posting and
a search never mutates anything (concurrent readers need no lock between them).

Scoring is Lucene's BM25:
``idf(t) = ln(1 + (N - df + 0.5) / (df + 0.5))`` (never negative) and
``score(d) = sum_t qtf(t) * idf(t) * tf * (k1 + 1) / (tf + k1 * (1 - b + b * len(d) / avgdl))``
where ``N`` is the number of live documents, ``df`` the live documents holding ``t``,
``len(d)`` the number of terms of ``d`` (after analysis) and ``avgdl`` the mean length.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence

import numpy as np

from shared.search.text import analyze
from shared.search.topk import top_k

_MIN_POSTINGS = 4
# Stride of the sample that sets the top-k threshold on large score arrays.
_SAMPLE_STRIDE = 16


class _Postings:
    """One term's growable posting arrays; ``size`` slots used, ``dead`` of them stale."""

    __slots__ = ("dead", "epochs", "rows", "size", "tfs")

    def __init__(self) -> None:
        self.rows = np.empty(_MIN_POSTINGS, dtype=np.int32)
        self.tfs = np.empty(_MIN_POSTINGS, dtype=np.float32)
        self.epochs = np.empty(_MIN_POSTINGS, dtype=np.uint32)
        self.size = 0
        self.dead = 0

    def reserve(self, extra: int) -> None:
        need = self.size + extra
        if need <= len(self.rows):
            return
        cap = max(need, 2 * len(self.rows))
        for name in ("rows", "tfs", "epochs"):
            old = getattr(self, name)
            new = np.empty(cap, dtype=old.dtype)
            new[: self.size] = old[: self.size]
            setattr(self, name, new)

    def append(self, row: int, tf: float, epoch: int) -> None:
        self.reserve(1)
        i = self.size
        self.rows[i] = row
        self.tfs[i] = tf
        self.epochs[i] = epoch
        self.size = i + 1

    def extend(self, rows: np.ndarray, tfs: np.ndarray, epochs: np.ndarray) -> None:
        n = len(rows)
        self.reserve(n)
        s = self.size
        self.rows[s : s + n] = rows
        self.tfs[s : s + n] = tfs
        self.epochs[s : s + n] = epochs
        self.size = s + n

    def compact(self, row_epoch: np.ndarray) -> None:
        rows = self.rows[: self.size]
        keep = self.epochs[: self.size] == row_epoch[rows]
        n = int(keep.sum())
        cap = max(_MIN_POSTINGS, 2 * n)
        # Fresh arrays, not in-place: a reader may still hold views of the old ones.
        new_rows = np.empty(cap, dtype=np.int32)
        new_tfs = np.empty(cap, dtype=np.float32)
        new_epochs = np.empty(cap, dtype=np.uint32)
        new_rows[:n] = rows[keep]
        new_tfs[:n] = self.tfs[: self.size][keep]
        new_epochs[:n] = self.epochs[: self.size][keep]
        self.rows, self.tfs, self.epochs = new_rows, new_tfs, new_epochs
        self.size = n
        self.dead = 0


class BM25Index:
    """BM25 over documents addressed by a non-negative integer row (the catalog's row).

    ``add`` on a row that is already present replaces its document. Not thread-safe for
    writers; ``search`` only reads, so concurrent searches are safe when writers are
    excluded by the caller (the catalog index's readers-writer lock).
    """

    def __init__(self, k1: float = 1.2, b: float = 0.75) -> None:
        if k1 < 0 or not 0 <= b <= 1:
            raise ValueError(f"BM25 needs k1 >= 0 and 0 <= b <= 1 (got k1={k1}, b={b})")
        self.k1 = float(k1)
        self.b = float(b)
        self._vocab: dict[str, int] = {}
        self._postings: list[_Postings] = []
        self._doc_len = np.zeros(0, dtype=np.float32)
        self._row_epoch = np.zeros(0, dtype=np.uint32)
        self._present = np.zeros(0, dtype=bool)
        # Term ids of each live row's document, to maintain df and dead counts on removal.
        self._doc_terms: dict[int, np.ndarray] = {}
        self._total_len = 0

    # ----------------------------------------------------------------- statistics
    def __len__(self) -> int:
        return len(self._doc_terms)

    def __contains__(self, row: object) -> bool:
        return row in self._doc_terms

    @property
    def num_docs(self) -> int:
        """N: live documents."""
        return len(self._doc_terms)

    @property
    def total_length(self) -> int:
        """Sum of the live documents' lengths (in analyzed terms)."""
        return self._total_len

    @property
    def avgdl(self) -> float:
        """Mean live document length (0 when empty)."""
        n = len(self._doc_terms)
        return self._total_len / n if n else 0.0

    def doc_freq(self, term: str) -> int:
        """Live documents containing ``term`` (an analyzed term, e.g. ``"sofa"``)."""
        tid = self._vocab.get(term)
        if tid is None:
            return 0
        p = self._postings[tid]
        return p.size - p.dead

    def idf(self, term: str) -> float:
        """Lucene's non-negative BM25 idf for an analyzed term."""
        return self._idf(self.doc_freq(term))

    def _idf(self, df: int) -> float:
        n = len(self._doc_terms)
        return math.log(1.0 + (n - df + 0.5) / (df + 0.5))

    # -------------------------------------------------------------------- writing
    def _ensure_rows(self, max_row: int) -> None:
        if max_row < len(self._present):
            return
        cap = max(max_row + 1, 2 * len(self._present), 1024)
        for name in ("_doc_len", "_row_epoch", "_present"):
            old = getattr(self, name)
            new = np.zeros(cap, dtype=old.dtype)
            new[: len(old)] = old
            setattr(self, name, new)

    def _term_id(self, term: str) -> int:
        tid = self._vocab.get(term)
        if tid is None:
            tid = len(self._postings)
            self._vocab[term] = tid
            self._postings.append(_Postings())
        return tid

    def add(self, row: int, text: str) -> None:
        """Index ``text`` as the document of ``row`` (replacing any previous one)."""
        self.add_terms(row, analyze(text))

    def add_terms(self, row: int, terms: Sequence[str]) -> None:
        """Index already-analyzed terms, so callers can analyze outside their write lock."""
        if row < 0:
            raise ValueError(f"row must be >= 0 (got {row})")
        if row in self._doc_terms:
            self.remove(row)
        self._ensure_rows(row)
        counts = Counter(terms)
        epoch = int(self._row_epoch[row])
        tids = np.empty(len(counts), dtype=np.int32)
        for i, (term, tf) in enumerate(counts.items()):
            tid = self._term_id(term)
            tids[i] = tid
            self._postings[tid].append(row, tf, epoch)
        self._doc_terms[row] = tids
        self._doc_len[row] = len(terms)
        self._total_len += len(terms)
        self._present[row] = True

    def add_many(self, rows: Sequence[int], term_lists: Iterable[Sequence[str]]) -> None:
        """Index many documents at once: postings are appended per term, not per document.

        Rows already present are replaced. Much faster than repeated ``add`` for bulk loads.
        """
        rows = [int(r) for r in rows]
        if not rows:
            return
        if min(rows) < 0:
            raise ValueError("rows must be >= 0")
        if len(set(rows)) != len(rows):
            raise ValueError("add_many needs distinct rows")
        for row in rows:
            if row in self._doc_terms:
                self.remove(row)
        self._ensure_rows(max(rows))
        all_rows: list[int] = []
        all_tids: list[int] = []
        all_tfs: list[int] = []
        term_id = self._term_id
        for row, terms in zip(rows, term_lists, strict=True):
            counts = Counter(terms)
            tids = [term_id(t) for t in counts]
            self._doc_terms[row] = np.asarray(tids, dtype=np.int32)
            self._doc_len[row] = len(terms)
            self._total_len += len(terms)
            all_rows.extend([row] * len(tids))
            all_tids.extend(tids)
            all_tfs.extend(counts.values())
        self._present[np.asarray(rows)] = True
        if not all_tids:
            return
        row_arr = np.asarray(all_rows, dtype=np.int32)
        tid_arr = np.asarray(all_tids, dtype=np.int32)
        tf_arr = np.asarray(all_tfs, dtype=np.float32)
        order = np.argsort(tid_arr, kind="stable")
        row_arr, tid_arr, tf_arr = row_arr[order], tid_arr[order], tf_arr[order]
        epoch_arr = self._row_epoch[row_arr]
        bounds = np.flatnonzero(np.diff(tid_arr)) + 1
        starts = np.concatenate(([0], bounds))
        ends = np.concatenate((bounds, [len(tid_arr)]))
        for s, e in zip(starts.tolist(), ends.tolist(), strict=True):
            self._postings[int(tid_arr[s])].extend(row_arr[s:e], tf_arr[s:e], epoch_arr[s:e])

    def remove(self, row: int) -> bool:
        """Drop the document of ``row``; returns whether it was present."""
        tids = self._doc_terms.pop(row, None)
        if tids is None:
            return False
        self._row_epoch[row] += 1  # every posting of the old document is now stale
        self._present[row] = False
        self._total_len -= int(self._doc_len[row])
        self._doc_len[row] = 0
        for tid in tids.tolist():
            p = self._postings[tid]
            p.dead += 1
            if p.dead * 2 > p.size:
                p.compact(self._row_epoch)
        return True

    # -------------------------------------------------------------------- reading
    def search(
        self, query: str, k: int, mask: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top ``k`` rows for ``query`` by BM25, best first, as ``(rows, scores)``.

        ``mask`` is a boolean array over rows: only rows where it is True are returned
        (rows beyond its end count as False). Rows matching no query term are never
        returned. Ties are broken by the lower row, so results are deterministic.
        """
        return self.search_terms(analyze(query), k, mask)

    def search_terms(
        self, terms: Sequence[str], k: int, mask: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """``search`` for already-analyzed query terms."""
        empty = (np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32))
        n_docs = len(self._doc_terms)
        if k <= 0 or n_docs == 0:
            return empty
        lists = []
        for term, qtf in Counter(terms).items():
            tid = self._vocab.get(term)
            if tid is None:
                continue
            p = self._postings[tid]
            df = p.size - p.dead
            if df > 0:
                lists.append((p, df, qtf))
        if not lists:
            return empty

        k1, b = self.k1, self.b
        avgdl = self._total_len / n_docs if self._total_len else 1.0
        row_epoch, doc_len = self._row_epoch, self._doc_len
        n_rows = len(self._present)
        scores = np.zeros(n_rows, dtype=np.float32)
        touched = 0
        parts = []
        for p, df, qtf in lists:
            # Snapshot the arrays first: compaction swaps them, never edits in place.
            size, rows, tfs, epochs = p.size, p.rows, p.tfs, p.epochs
            rows, tfs = rows[:size], tfs[:size]
            if p.dead:
                live = epochs[:size] == row_epoch[rows]
                rows, tfs = rows[live], tfs[live]
            norm = doc_len[rows] * np.float32(k1 * b / avgdl) + np.float32(k1 * (1.0 - b))
            weight = np.float32(qtf * self._idf(df) * (k1 + 1.0))
            # Rows are unique within one posting list, so fancy-index += is exact.
            scores[rows] += weight * tfs / (tfs + norm)
            touched += len(rows)
            parts.append(rows)

        if touched * 8 < n_rows:
            # Few postings: gather the matched rows directly.
            cand = np.unique(np.concatenate(parts)) if len(parts) > 1 else np.sort(parts[0])
            if mask is not None:
                mask = np.asarray(mask, dtype=bool)
                cand = cand[cand < len(mask)]
                cand = cand[mask[cand]]
            return top_k(cand, scores[cand], k)
        # Many postings (common terms over a large catalog): stay on the dense score array
        # and cut it with a threshold taken from a strided sample. At least k rows of the
        # sample score >= t, so at least k rows overall do, and the true top k (ties
        # included) all pass the cut: the result is exact.
        if mask is not None:
            m = np.zeros(n_rows, dtype=bool)
            mask = np.asarray(mask, dtype=bool)
            m[: min(n_rows, len(mask))] = mask[:n_rows]
            scores *= m
        sample = scores[::_SAMPLE_STRIDE]
        positive = sample[sample > 0]
        if len(positive) >= k:
            threshold = np.partition(positive, len(positive) - k)[len(positive) - k]
            cand = np.flatnonzero(scores >= threshold)
        else:
            cand = np.flatnonzero(scores > 0)
        return top_k(cand, scores[cand], k)
