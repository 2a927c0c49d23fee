"""Experiment reports from a real feedback store (SQLite file), on events made by hand."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from shared.experiments.assignment import INTERLEAVING, Arm, Experiment
from shared.experiments.report import build_report
from shared.storage.database import create_db_engine
from shared.storage.feedback import FeedbackStore, ValidEvent

pytestmark = pytest.mark.unit
NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
AB = Experiment("ce-2", "ce-2", (Arm("control", 0.5), Arm("treatment", 0.5)))


def _event(n: list[int], kind: str, shopper: str, request: str, **fields) -> ValidEvent:
    n[0] += 1
    return ValidEvent(
        event_id=f"e{n[0]}",
        type=kind,
        occurred_at=NOW,
        received_at=NOW,
        product_id="p",
        user_id=shopper,
        request_id=request,
        **fields,
    )


def _ab_events(shoppers: int, treatment_clicks: int) -> list[ValidEvent]:
    n = [0]
    events = []
    for arm, clicks in (("control", 1), ("treatment", treatment_clicks)):
        for s in range(shoppers):
            shopper, request = f"{arm}-{s}", f"{arm}-{s}-r"
            tags = {"arm": arm, "experiment": "ce-2"}
            events += [
                _event(n, "impression", shopper, request, position=p, **tags) for p in range(1, 11)
            ]
            events += [_event(n, "click", shopper, request, **tags) for _ in range(clicks)]
            if s % 4 == 0:  # a quarter of the shoppers buy once, for 50.0
                events.append(
                    _event(
                        n,
                        "purchase",
                        shopper,
                        request,
                        amount_micros=50_000_000,
                        currency="EUR",
                        **tags,
                    )
                )
    other = _event(n, "click", "x", "x-r", arm="treatment", experiment="another")
    return [*events, other]


@pytest.fixture
def store(tmp_path) -> FeedbackStore:
    return FeedbackStore(create_db_engine(f"sqlite:///{tmp_path / 'feedback.db'}"))


def test_ab_report_figures_and_verdict(store: FeedbackStore) -> None:
    store.record(_ab_events(shoppers=120, treatment_clicks=2))
    report = build_report(store.engine, AB)
    control, treatment = report.arms
    assert (control.shoppers, control.searches, control.impressions, control.clicks) == (
        120,
        120,
        1200,
        120,
    )
    assert treatment.clicks == 240  # the other experiment's click is not counted
    ctr = {a.arm: a.metrics[0] for a in report.arms}
    assert ctr["control"].estimate.value == pytest.approx(0.1)
    assert ctr["treatment"].estimate.value == pytest.approx(0.2)
    # Every shopper has the same CTR: no spread, so the difference is certain.
    assert ctr["treatment"].comparison.difference.value == pytest.approx(0.1)
    assert ctr["treatment"].comparison.p_value < 1e-6
    conversion = {a.arm: a.metrics[2] for a in report.arms}
    assert conversion["control"].estimate.value == pytest.approx(0.25)
    revenue = treatment.metrics[3]
    assert revenue.estimate.value == pytest.approx(12.5)  # 30 purchases of 50 / 120 searches
    assert revenue.comparison.p_value == pytest.approx(1.0)  # the same in both arms
    assert report.srm_p_value == pytest.approx(1.0) and not report.sample_ratio_mismatch
    assert report.verdict == "treatment: ctr higher (p = 0)"


def test_no_verdict_below_the_minimum_sample_or_with_a_mismatched_split(
    store: FeedbackStore,
) -> None:
    store.record(_ab_events(shoppers=120, treatment_clicks=2))
    assert build_report(store.engine, AB, min_shoppers=500).verdict.startswith(
        "no verdict: arm control has 120 shoppers, at least 500 needed"
    )
    skewed = Experiment("ce-2", "ce-2", (Arm("control", 0.8), Arm("treatment", 0.2)))
    report = build_report(store.engine, skewed)
    assert report.sample_ratio_mismatch  # 120/120 against 80/20
    assert report.verdict.startswith("no verdict: sample ratio mismatch")


def test_interleaving_credits_clicks_to_the_arm_that_placed_the_item(store: FeedbackStore) -> None:
    n = [0]
    events = []
    for s in range(150):
        request = f"r{s}"
        tags = {"arm": "interleaved", "experiment": "il"}
        events.append(_event(n, "impression", f"u{s}", request, position=1, team="a", **tags))
        events.append(_event(n, "impression", f"u{s}", request, position=2, team="b", **tags))
        winner = "a" if s % 10 < 7 else "b"  # a wins 105 searches, b 45
        events.append(_event(n, "click", f"u{s}", request, position=1, team=winner, **tags))
    store.record(events)
    experiment = Experiment("il", "il", (Arm("new", 0.5), Arm("current", 0.5)), type=INTERLEAVING)
    report = build_report(store.engine, experiment)
    assert report.interleaving.wins == {"new": 105, "current": 45}
    assert report.interleaving.preference_share == pytest.approx(0.7)
    assert report.interleaving.p_value < 1e-5
    assert report.verdict.startswith("new preferred")
    assert [a.clicks for a in report.arms] == [105, 45]
