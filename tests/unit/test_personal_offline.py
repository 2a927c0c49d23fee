"""The offline check of personalised search (``shopsense simulate --personalization-offline``):
a page's expected clicks under the simulator's click model, the shopper's history drawn from
the page, and the paired lift with its confidence interval (SYNTHETIC shoppers)."""

from __future__ import annotations

import pytest

from shared.bench.experiments import OfflineCell, _ClickModelView, _history_of_round
from shared.data.catalog import Product
from shared.data.dataset import Dataset, Query
from shared.recommendation.events import VIEW
from shared.simulation.shoppers import ATTRACTION, TASTE_LIKE, Shopper, Taste

pytestmark = pytest.mark.unit

STORE = Dataset(
    queries=[Query("q1", "sofa")],
    products=[
        Product("grey", "Grey sofa", attributes={"colour": "Grey"}, price=100.0),
        Product("green", "Green sofa", attributes={"colour": "Green"}, price=100.0),
    ],
    labels={"q1": {"grey": "Exact", "green": "Exact"}},
)
SHOPPER = Shopper("ann", ("q1",), budget=500.0)
LIKES_GREY = Taste((("colour", "Grey"),), 0.0, 1000.0)


def test_a_pages_expected_clicks_follow_position_relevance_and_taste() -> None:
    view = _ClickModelView(STORE)
    judged = STORE.labels["q1"]
    grey = ATTRACTION["Exact"] * TASTE_LIKE  # liked: 2.5 times as attractive
    green = ATTRACTION["Exact"]
    assert view.attraction("grey", judged, SHOPPER, LIKES_GREY) == pytest.approx(min(0.95, grey))
    second = view.model.examine(2)
    liked_first = view.expected(["grey", "green"], judged, SHOPPER, LIKES_GREY)
    assert liked_first == pytest.approx(min(0.95, grey) + second * green)
    # The liked product first is worth more than the other way round.
    assert liked_first > view.expected(["green", "grey"], judged, SHOPPER, LIKES_GREY)
    # Over budget: the simulator's penalty.
    poor = Shopper("bo", ("q1",), budget=50.0)
    assert view.attraction("green", judged, poor, LIKES_GREY) == pytest.approx(
        green * view.model.over_budget
    )


def test_the_history_is_what_the_shopper_clicked_on_the_page_and_is_seeded() -> None:
    view = _ClickModelView(STORE)
    rows = {"grey": 0, "green": 1}
    draws = [
        _history_of_round(
            view, ["grey", "green"], STORE.labels["q1"], SHOPPER, LIKES_GREY, rows, 5, n
        )
        for n in range(40)
    ]
    again = _history_of_round(
        view, ["grey", "green"], STORE.labels["q1"], SHOPPER, LIKES_GREY, rows, 5, 0
    )
    assert [(s.item, s.kind) for s in again] == [(s.item, s.kind) for s in draws[0]]
    first = sum(any(s.item == 0 for s in d) for d in draws)
    second = sum(any(s.item == 1 for s in d) for d in draws)
    # The liked product in first place (clicked ~0.95 of the time) beats the other in second.
    assert first > second
    assert all(s.kind >= VIEW and s.at == n for n, d in enumerate(draws) for s in d)


def test_the_cell_counts_the_paired_lift_and_its_interval() -> None:
    plain, personal = OfflineCell(), OfflineCell()
    for unpersonalised, gained in ((1.0, 1.2), (1.0, 1.0), (2.0, 2.4), (1.0, 1.2)):
        plain.add(unpersonalised, ["a", "c"], ["a", "c"])
        personal.add(gained, ["a", "b"], ["a", "c"])
    assert personal.searches == 4 and personal.impressions == 8 and personal.changed == 4
    assert personal.ctr == pytest.approx(5.8 / 8)
    lift, margin = personal.lift_over(plain)
    # Differences 0.2, 0, 0.4, 0.2 over 5 expected clicks; sample sd 0.1633 of 4 searches.
    assert lift == pytest.approx(0.8 / 5.0)
    assert margin == pytest.approx(1.96 * 0.1633 * 2 / 5.0, abs=1e-4)
    assert plain.lift_over(plain) == (0.0, 0.0)
    with pytest.raises(ValueError, match="reference: not the same searches"):
        personal.lift_over(OfflineCell())
