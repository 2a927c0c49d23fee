"""Guard rails (operational in the gateway, business in the trainer) and exploration."""

from __future__ import annotations

import random
from datetime import UTC, datetime

import pytest

from shared.experiments.assignment import Arm, Experiment
from shared.experiments.exploration import explores, shuffle_top
from shared.experiments.guardrails import ArmHealth, Limits, metric_breach
from shared.experiments.report import build_report
from shared.storage.database import create_db_engine
from shared.storage.feedback import FeedbackStore, ValidEvent

pytestmark = pytest.mark.unit
NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
LIMITS = Limits(max_error_rate=0.05, max_p99_ms=500, min_searches=100, window=200, alpha=0.001)


def test_an_arm_failing_more_than_the_limit_and_the_control_trips_once() -> None:
    health = ArmHealth(LIMITS)
    for _ in range(99):  # under the minimum: no verdict, whatever happens
        assert health.record("ce-2", "control", 0.05, False, "control") is None
        assert health.record("ce-2", "treatment", 0.05, True, "control") is None
    assert health.record("ce-2", "control", 0.05, False, "control") is None
    reason = health.record("ce-2", "treatment", 0.05, True, "control")
    assert reason is not None
    assert reason.startswith("guard rail: arm treatment failed or degraded 100.0%")
    assert "(limit 5.0%; control 0.0%)" in reason
    assert health.record("ce-2", "treatment", 0.05, True, "control") is None  # said once


def test_the_control_is_never_blamed_and_waits_for_its_own_sample() -> None:
    health = ArmHealth(LIMITS)
    for _ in range(150):
        assert health.record("e", "control", 0.05, True, "control") is None
    # the treatment fails as much as the control: the suite is in trouble, not the arm
    for _ in range(150):
        assert health.record("e", "treatment", 0.05, True, "control") is None
    # a treatment alone (its control not yet seen 100 times) is not judged either
    fresh = ArmHealth(LIMITS)
    for _ in range(150):
        assert fresh.record("e", "treatment", 0.05, True, "control") is None


def test_error_rate_at_the_limit_passes_and_above_it_trips() -> None:
    health = ArmHealth(LIMITS)
    for i in range(200):  # 5.0% of the window failed: at the limit, not over it
        assert health.record("e", "b", 0.05, failed=i % 20 == 19) is None
    reason = None
    for _ in range(5):
        reason = reason or health.record("e", "b", 0.05, failed=True)
    assert reason is not None and "of its last 200 searches (limit 5.0%)" in reason


def test_load_that_slows_every_arm_stops_nothing_but_a_slow_arm_trips() -> None:
    health = ArmHealth(LIMITS)
    for _ in range(200):  # everything slow: p99 over the limit in both arms
        assert health.record("e", "control", 0.9, False, "control") is None
        assert health.record("e", "treatment", 1.0, False, "control") is None
    slow = ArmHealth(LIMITS)
    results = []
    for i in range(200):
        slow.record("e", "control", 0.1, False, "control")
        results.append(slow.record("e", "slow", 0.1 if i % 50 else 0.9, False, "control"))
    tripped = [r for r in results if r]
    assert len(tripped) == 1
    assert "arm slow p99 latency 900 ms" in tripped[0]
    assert "(limit 500 ms; control 100 ms)" in tripped[0]
    # a new experiment starts from clean windows
    assert slow.record("next", "slow", 0.1, False, "control") is None


def _events(arms: dict[str, float], shoppers: int, seed: int) -> list[ValidEvent]:
    """Each shopper: one search of 10 impressions, each clicked with the arm's rate."""
    rng = random.Random(seed)
    events, n = [], 0
    for arm, rate in arms.items():
        for s in range(shoppers):
            user, request = f"{arm}-{s}", f"{arm}-{s}-r"
            for position in range(1, 11):
                for kind in ("impression", "click"):
                    if kind == "click" and rng.random() >= rate:
                        continue
                    n += 1
                    events.append(
                        ValidEvent(
                            event_id=f"e{n}",
                            type=kind,
                            occurred_at=NOW,
                            received_at=NOW,
                            product_id=f"p{position}",
                            user_id=user,
                            request_id=request,
                            arm=arm,
                            experiment="x",
                            position=position,
                        )
                    )
    return events


EXPERIMENT = Experiment("x", "x", (Arm("control", 0.5), Arm("treatment", 0.5)))


@pytest.mark.parametrize(
    ("treatment_rate", "shoppers", "stops"),
    [
        (0.04, 300, True),  # far worse: stopped
        (0.12, 300, False),  # the same: kept
        (0.25, 300, False),  # better: kept (guard rails only stop harm)
        (0.04, 50, False),  # worse, but below the minimum sample
    ],
)
def test_business_guard_rail_stops_only_a_significantly_worse_arm(
    tmp_path, treatment_rate: float, shoppers: int, stops: bool
) -> None:
    store = FeedbackStore(create_db_engine(f"sqlite:///{tmp_path / 'feedback.db'}"))
    store.record(_events({"control": 0.12, "treatment": treatment_rate}, shoppers, seed=3))
    report = build_report(store.engine, EXPERIMENT, min_shoppers=100)
    reason = metric_breach(report, Limits(min_shoppers=100))
    if stops:
        assert reason is not None
        assert reason.startswith("guard rail: arm treatment ctr")
        assert "below control's" in reason and "limit 0.001" in reason
    else:
        assert reason is None


def test_exploration_picks_its_share_of_searches_and_shuffles_the_top_only() -> None:
    n = 20_000
    picked = sum(explores(0.05, f"u{i}", "fp") for i in range(n))
    sd = (n * 0.05 * 0.95) ** 0.5
    assert abs(picked - 0.05 * n) < 4 * sd
    assert not any(explores(0.0, f"u{i}", "fp") for i in range(1000))
    items = [f"p{i}" for i in range(30)]
    shuffled = shuffle_top(items, 10, "u1", "fp")
    assert shuffled[10:] == items[10:]
    assert sorted(shuffled[:10]) == sorted(items[:10]) and shuffled[:10] != items[:10]
    assert shuffle_top(items, 10, "u1", "fp") == shuffled  # the next page sees the same order
