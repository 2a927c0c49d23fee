"""Next-basket cases, the recommendation metrics against hand-computed values, and the
offline baselines (popularity, ALS) on small synthetic purchase logs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from shared.data.online_retail import RetailLine
from shared.evaluation.recs import (
    ALSBaseline,
    EvalCase,
    HistoryItem,
    Popularity,
    hit_rate_at,
    ndcg_at,
    next_basket_cases,
    recall_at,
    score_system,
)

pytestmark = pytest.mark.unit

SPLIT = datetime(2011, 6, 1, tzinfo=UTC)


def _line(
    invoice: str, product: str, days: float, shopper: str = "", quantity: int = 1
) -> RetailLine:
    """A purchase ``days`` after the split (negative: before it)."""
    at = SPLIT + timedelta(days=days)
    return RetailLine(invoice, product, quantity, 1.0, at, shopper, "United Kingdom")


def _case(target: set[str], history: tuple[str, ...] = ("h",)) -> EvalCase:
    items = [HistoryItem(p, SPLIT - timedelta(days=1), 1) for p in history]
    return EvalCase("s", items, frozenset(target))


def test_recall_hand_computed() -> None:
    ranked, target = ["a", "x", "b", "y"], {"a", "b", "c"}
    assert recall_at(ranked, target, 2) == pytest.approx(1 / 3)
    assert recall_at(ranked, target, 4) == pytest.approx(2 / 3)
    assert recall_at(["a", "a", "b"], target, 2) == pytest.approx(2 / 3)  # a repeat counts once
    assert recall_at(ranked, set(), 4) == 0.0


def test_ndcg_hand_computed() -> None:
    ranked, target = ["a", "x", "b", "y"], {"a", "b", "c"}
    # DCG = 1/log2(2) + 1/log2(4) = 1.5; ideal over min(4, 3) = 3 hits:
    # 1 + 1/log2(3) + 1/log2(4) = 2.1309298 -> 0.7039180
    assert ndcg_at(ranked, target, 4) == pytest.approx(0.7039180, abs=1e-7)
    # k = 1: the ideal DCG is over 1 hit, and "a" is one.
    assert ndcg_at(ranked, target, 1) == pytest.approx(1.0)
    # ["x", "a"], k = 2: DCG = 1/log2(3) = 0.6309298; ideal 1 + 0.6309298 -> 0.3868528
    assert ndcg_at(["x", "a"], target, 2) == pytest.approx(0.3868528, abs=1e-7)
    assert ndcg_at(ranked, set(), 4) == 0.0


def test_hit_rate() -> None:
    assert hit_rate_at(["a", "x"], {"a"}, 1) == 1.0
    assert hit_rate_at(["x", "a"], {"a"}, 1) == 0.0
    assert hit_rate_at(["x", "a"], {"a"}, 2) == 1.0
    assert hit_rate_at([], {"a"}, 10) == 0.0


def test_score_system_hand_computed() -> None:
    cases = [_case({"a", "b"}), _case({"n"}), _case({"n", "b"})]
    answers = iter([["a", "z"], ["z", "n"], ["a"]])
    scores = score_system(
        "fake", lambda case: next(answers), cases, new_products={"n"}, catalog_size=10
    )
    assert scores.name == "fake" and scores.cases == 3
    assert scores.recall_at_20 == pytest.approx((0.5 + 1.0 + 0.0) / 3)
    # nDCG: 1 / (1 + 1/log2(3)) = 0.6131472; 1/log2(3) = 0.6309298; 0
    assert scores.ndcg_at_20 == pytest.approx((0.6131472 + 0.6309298) / 3, abs=1e-7)
    assert scores.hit_rate_at_10 == pytest.approx(2 / 3)
    assert scores.coverage == pytest.approx(3 / 10)  # a, z, n
    assert scores.new_product_recall == pytest.approx(1 / 2)  # n found in case 2, not in 3


def test_score_system_without_cases_or_new_products() -> None:
    empty = score_system("none", lambda case: [], [], new_products=(), catalog_size=5)
    assert (empty.recall_at_20, empty.coverage, empty.cases) == (0.0, 0.0, 0)
    scores = score_system(
        "one", lambda case: ["a"], [_case({"a"})], new_products=(), catalog_size=1
    )
    assert scores.recall_at_20 == 1.0 and scores.new_product_recall == 0.0


def test_next_basket_cases() -> None:
    lines = [
        _line("i4", "p5", 5, "1"),  # the second invoice after the split: not the target
        _line("i3", "p4", 2, "1"),
        _line("i3", "p3", 2, "1"),
        _line("i2", "p2", -3, "1", quantity=4),
        _line("i1", "p1", -10, "1", quantity=2),
        _line("j1", "p1", -5, "2"),  # only before the split
        _line("k1", "p1", 5, "3"),  # only after it
        _line("g1", "p1", -5),  # guests, on both sides
        _line("g2", "p2", 5),
        _line("m2", "p9", 1, "0"),
        _line("m1", "p8", -1, "0"),
    ]
    cases = next_basket_cases(lines, SPLIT)
    assert [case.shopper for case in cases] == ["0", "1"]
    case = cases[1]
    assert case.history == [
        HistoryItem("p1", SPLIT - timedelta(days=10), 2),
        HistoryItem("p2", SPLIT - timedelta(days=3), 4),
    ]
    assert case.target == frozenset({"p3", "p4"})
    assert cases[0].target == frozenset({"p9"})


def test_popularity_counts_invoices_in_its_window() -> None:
    lines = [
        *(_line(f"old{i}", "A", -40) for i in range(3)),  # outside the 30 days
        _line("b1", "B", -2),
        _line("b2", "B", -20, "7"),
        _line("c1", "C", -1, quantity=100),  # many units, one invoice
        *(_line(f"new{i}", "D", 1) for i in range(5)),  # after the split
    ]
    popularity = Popularity(lines, SPLIT)
    assert popularity.recommend(_case(set())) == ["B", "C"]
    assert popularity.recommend(_case(set()), k=1) == ["B"]
    assert Popularity(lines, SPLIT, days=60).recommend(_case(set())) == ["A", "B", "C"]


def _two_groups() -> list[RetailLine]:
    """40 shoppers buy from group x, 40 others from group y; nobody mixes them."""
    lines = []
    for shopper in range(80):
        group = "X" if shopper < 40 else "Y"
        for basket in range(3):
            invoice = f"{shopper}-{basket}"
            for item in range(5):
                if (shopper + basket + item) % 4 != 0:
                    product = f"{group}{item}"
                    lines.append(_line(invoice, product, -30 + basket, str(shopper), 1 + item))
    lines.append(_line("late", "X9", 1, "0"))  # after the split: unknown to the model
    return lines


def test_als_ranks_co_bought_products_first() -> None:
    als = ALSBaseline(_two_groups(), SPLIT, factors=8, iterations=10)
    case = _case({"X2"}, history=("X0", "X1"))
    ranked = als.recommend(case, k=6)
    assert len(ranked) == 6 and len(set(ranked)) == 6
    known = {f"{group}{item}" for group in "XY" for item in range(5)}
    assert set(ranked) <= known
    # The co-bought group first (X2 among them), the unrelated group after it.
    assert set(ranked[:5]) == {"X0", "X1", "X2", "X3", "X4"}
    assert ranked[5].startswith("Y")
    # The same data and settings give the same ranking.
    assert ALSBaseline(_two_groups(), SPLIT, factors=8, iterations=10).recommend(case, 6) == ranked
    assert als.recommend(_case({"X2"}, history=("X9",))) == []  # nothing known to fold in
    assert len(als.recommend(case)) == len(known)  # k = 20 asks for more than there are
