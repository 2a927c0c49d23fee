"""Guard rails: an experiment is stopped when one of its arms hurts shoppers.

Two kinds, each stopping the experiment through ``StopExperiment`` with a reason that
names the arm, the figure and the threshold (everyone then gets the serving versions):

- **Operational**, in every gateway (:class:`ArmHealth`): over each arm's last
  ``window`` searches, the share that failed or came back degraded by the arm's own
  models, and the 99th percentile of its latency, against the limits and against the
  control's own figures. Checked on every search once an arm has ``min_searches``.
- **Business**, in the trainer (:func:`metric_breach`): from the experiment report, an
  arm whose click-through or conversion rate is below the first arm's (the control) with
  p < ``alpha`` (default 0.001, far stricter than the report's 0.05, since it is looked
  at again and again), or that loses an interleaving comparison at that level.
"""

from __future__ import annotations

import math
import threading
from collections import deque
from dataclasses import dataclass

from shared.experiments.report import Report

GUARDED_METRICS = ("ctr", "conversion_rate")


@dataclass(frozen=True)
class Limits:
    """The thresholds (SHOPSENSE_GUARD_*: the gateway's operational ones, the trainer's
    business ones)."""

    max_error_rate: float = 0.05
    max_p99_ms: float = 2000.0
    min_searches: int = 100
    window: int = 1000
    alpha: float = 0.001
    min_shoppers: int = 100


class ArmHealth:
    """Per-arm sliding windows of outcomes and latencies; thread-safe.

    A treatment arm is judged against the first arm (the control) over the same stretch of
    time, so that load on the whole suite, which slows every arm alike, stops nothing: it
    trips when its error rate is over the limit *and* twice the control's, or its p99 is
    over the limit *and* 1.5 times the control's. The control itself is never blamed. With
    no control to compare with (interleaving serves both arms in one search), the limits
    apply alone."""

    def __init__(self, limits: Limits) -> None:
        self._limits = limits
        self._lock = threading.Lock()
        self._experiment = ""
        self._arms: dict[str, deque[tuple[float, bool]]] = {}
        self._tripped = False

    def _figures(self, arm: str) -> tuple[int, float, float]:
        window = self._arms.get(arm, ())
        if not window:
            return 0, 0.0, 0.0
        errors = sum(1 for _, failed in window if failed) / len(window)
        latencies = sorted(t for t, _ in window)
        p99 = latencies[min(len(latencies) - 1, math.ceil(0.99 * len(latencies)) - 1)]
        return len(window), errors, 1000.0 * p99

    def record(
        self, experiment: str, arm: str, latency_s: float, failed: bool, control: str = ""
    ) -> str | None:
        """Add one search of ``arm`` (``control``: the experiment's first arm, "" for none);
        return the breach reason the first time an arm crosses a limit, else None."""
        limits = self._limits
        with self._lock:
            if experiment != self._experiment:  # a new experiment starts with clean windows
                self._experiment, self._arms, self._tripped = experiment, {}, False
            self._arms.setdefault(arm, deque(maxlen=limits.window)).append((latency_s, failed))
            if self._tripped or arm == control:
                return None
            n, errors, p99_ms = self._figures(arm)
            if n < limits.min_searches:
                return None
            base_n, base_errors, base_p99 = self._figures(control) if control else (0, 0.0, 0.0)
            compared = base_n >= limits.min_searches
            if control and not compared:
                return None  # wait until the control has as much to compare with
            reason = None
            if errors > limits.max_error_rate and (not compared or errors > 2 * base_errors):
                reason = (
                    f"guard rail: arm {arm} failed or degraded {errors:.1%} of its last {n} "
                    f"searches (limit {limits.max_error_rate:.1%}"
                    + (f"; {control} {base_errors:.1%})" if compared else ")")
                )
            elif (
                limits.max_p99_ms > 0
                and p99_ms > limits.max_p99_ms
                and (not compared or p99_ms > 1.5 * base_p99)
            ):
                reason = (
                    f"guard rail: arm {arm} p99 latency {p99_ms:.0f} ms over its last {n} "
                    f"searches (limit {limits.max_p99_ms:.0f} ms"
                    + (f"; {control} {base_p99:.0f} ms)" if compared else ")")
                )
            self._tripped = reason is not None
            return reason


def metric_breach(report: Report, limits: Limits) -> str | None:
    """The reason to stop the experiment of ``report``, or None."""
    if report.interleaving is not None:
        result = report.interleaving
        if sum(result.wins.values()) < limits.min_shoppers or result.p_value >= limits.alpha:
            return None
        names = list(result.wins)
        loser = names[1] if result.preference_share > 0.5 else names[0]
        return (
            f"guard rail: arm {loser} loses the interleaving comparison "
            f"(preference for {names[0]} {result.preference_share:.1%}, p = {result.p_value:.2g}, "
            f"limit {limits.alpha:g})"
        )
    if len(report.arms) < 2 or report.arms[0].shoppers < limits.min_shoppers:
        return None
    control = report.arms[0].arm
    for arm in report.arms[1:]:
        if arm.shoppers < limits.min_shoppers:
            continue
        for metric in arm.metrics:
            c = metric.comparison
            if metric.name not in GUARDED_METRICS or c is None:
                continue
            if math.isfinite(c.p_value) and c.p_value < limits.alpha and c.difference.value < 0:
                return (
                    f"guard rail: arm {arm.arm} {metric.name} {metric.estimate.value:.4f} is "
                    f"below {control}'s by {-c.difference.value:.4f} (p = {c.p_value:.2g}, "
                    f"limit {limits.alpha:g}, {arm.shoppers} shoppers)"
                )
    return None
