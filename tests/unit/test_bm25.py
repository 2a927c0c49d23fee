"""BM25: hand-computed scores and incremental updates equal to a fresh build."""

from __future__ import annotations

import numpy as np
import pytest

from shared.search.bm25 import BM25Index
from shared.search.text import analyze

pytestmark = pytest.mark.unit


def _example() -> BM25Index:
    index = BM25Index(k1=1.2, b=0.75)
    index.add(0, "red sofa")  # [red, sofa], len 2
    index.add(1, "blue sofa, sofa bed")  # [blue, sofa, sofa, bed], len 4, tf(sofa) = 2
    index.add(2, "red chair")  # [red, chair], len 2
    return index


def test_scores_match_hand_computation() -> None:
    # N = 3, total length 8, avgdl = 8/3; df(sofa) = df(red) = 2
    # idf = ln(1 + (3 - 2 + 0.5) / (2 + 0.5)) = ln(1.6) = 0.4700036
    # row 0, tf 1, len 2: norm = 1.2 * (0.25 + 0.75 * 2 / (8/3)) = 1.2 * 0.8125 = 0.975
    #   sofa: 0.4700036 * 1 * 2.2 / (1 + 0.975) = 0.4700036 * 1.1139241 = 0.5235483
    # row 1, tf 2, len 4: norm = 1.2 * (0.25 + 0.75 * 4 / (8/3)) = 1.2 * 1.375 = 1.65
    #   sofa: 0.4700036 * 2 * 2.2 / (2 + 1.65) = 0.4700036 * 1.2054795 = 0.5665797
    # row 2, red, tf 1, len 2: same as row 0's sofa = 0.5235483
    index = _example()
    assert index.num_docs == 3
    assert index.total_length == 8
    assert index.idf("sofa") == pytest.approx(0.4700036, rel=1e-6)

    rows, scores = index.search("sofa", 10)
    assert rows.tolist() == [1, 0]
    assert scores.tolist() == pytest.approx([0.5665797, 0.5235483], rel=1e-5)

    # "red sofas": row 0 = 0.5235483 + 0.5235483 = 1.0470966
    rows, scores = index.search("red sofas", 10)
    assert rows.tolist() == [0, 1, 2]
    assert scores.tolist() == pytest.approx([1.0470966, 0.5665797, 0.5235483], rel=1e-5)


def test_mask_k_and_unknown_terms() -> None:
    index = _example()
    mask = np.array([False, True, True])
    rows, _ = index.search("red sofa", 10, mask)
    assert rows.tolist() == [1, 2]
    assert index.search("red sofa", 1)[0].tolist() == [0]
    assert len(index.search("zebra", 10)[0]) == 0
    assert len(index.search("the of", 10)[0]) == 0
    # A mask shorter than the rows treats the missing rows as excluded.
    assert index.search("red sofa", 10, np.array([False]))[0].tolist() == []


def _random_docs(rng: np.random.Generator, n: int) -> list[str]:
    vocab = [f"w{i}" for i in range(60)]
    return [" ".join(rng.choice(vocab, size=int(rng.integers(1, 12)))) for _ in range(n)]


def test_incremental_equals_fresh_build() -> None:
    rng = np.random.default_rng(7)
    docs = dict(enumerate(_random_docs(rng, 300)))
    inc = BM25Index()
    for row, text in docs.items():
        inc.add(row, text)
    # Remove a third, then replace some of the survivors and re-add some removed rows.
    removed = rng.choice(300, size=100, replace=False).tolist()
    for row in removed:
        assert inc.remove(row)
        del docs[row]
    assert not inc.remove(removed[0])
    new_texts = _random_docs(rng, 40)
    for row, text in zip(list(docs)[:20] + removed[:20], new_texts, strict=True):
        inc.add(row, text)
        docs[row] = text

    fresh = BM25Index()
    fresh.add_many(list(docs), [analyze(t) for t in docs.values()])
    assert inc.num_docs == fresh.num_docs == len(docs)
    assert inc.total_length == fresh.total_length
    for term in [f"w{i}" for i in range(60)]:
        assert inc.doc_freq(term) == fresh.doc_freq(term)
    for query in ["w1 w2 w3", "w5", "w10 w10 w40", "w59 w0"]:
        r1, s1 = inc.search(query, 50)
        r2, s2 = fresh.search(query, 50)
        assert r1.tolist() == r2.tolist()
        np.testing.assert_allclose(s1, s2, rtol=1e-6)
        assert set(r1.tolist()) <= set(docs)


def test_readd_same_row_does_not_resurrect_old_terms() -> None:
    index = BM25Index()
    index.add(0, "oak table")
    index.add(1, "pine table")
    index.add(0, "velvet sofa")  # replaces row 0's document
    assert index.search("oak", 10)[0].tolist() == []
    assert index.search("sofa", 10)[0].tolist() == [0]
    index.remove(0)
    index.add(0, "oak chair")
    assert index.search("sofa", 10)[0].tolist() == []
    assert index.search("oak", 10)[0].tolist() == [0]
    assert index.doc_freq("table") == 1


def _brute_force(docs: dict[int, list[str]], query: list[str]) -> dict[int, float]:
    n = len(docs)
    avgdl = sum(len(t) for t in docs.values()) / n
    scores: dict[int, float] = {}
    for term in set(query):
        df = sum(term in t for t in docs.values())
        idf = np.log(1 + (n - df + 0.5) / (df + 0.5))
        for row, terms in docs.items():
            tf = terms.count(term)
            if tf:
                norm = 1.2 * (1 - 0.75 + 0.75 * len(terms) / avgdl)
                scores[row] = scores.get(row, 0.0) + idf * tf * 2.2 / (tf + norm)
    return scores


@pytest.mark.parametrize("vocab_size", [5, 400])  # common terms (dense path), rare (sparse)
def test_matches_brute_force(vocab_size: int) -> None:
    rng = np.random.default_rng(vocab_size)
    vocab = [f"t{i}" for i in range(vocab_size)]
    docs = {row: list(rng.choice(vocab, size=int(rng.integers(1, 8)))) for row in range(3000)}
    index = BM25Index()
    index.add_many(list(docs), list(docs.values()))
    mask = rng.random(3000) < 0.5
    for query in (vocab[:2], vocab[1:4], [vocab[0]]):
        expected = _brute_force(docs, query)
        for k in (1, 10, 250):
            for m in (None, mask):
                allowed = {r: s for r, s in expected.items() if m is None or m[r]}
                # Round so float32 and float64 agree on ties; ties go to the lower row.
                want = sorted(allowed, key=lambda r: (-round(allowed[r], 4), r))[:k]
                rows, scores = index.search_terms(query, k, m)
                assert rows.tolist() == want
                np.testing.assert_allclose(scores, [allowed[r] for r in want], rtol=1e-5)
