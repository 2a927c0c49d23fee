"""The statistics of an experiment report, on per-shopper totals.

Shoppers are what the assignment randomises, so every metric is a ratio of per-shopper
sums (clicks over impressions, revenue over searches, ...) and its variance comes from
the delta method over shoppers (Deng, Knoblich and Lu, "Applying the Delta Method in
Metric Analytics", KDD 2018). Treating searches or impressions as independent would make
the intervals too narrow, because one shopper's searches are alike.

- ``ratio_estimate``: a ratio with its standard error and 95% interval;
- ``compare``: the difference of two arms' ratios, its interval and two-sided p-value
  (a z-test on the delta-method variances);
- ``sample_ratio_mismatch``: Pearson's chi-square of the shoppers per arm against the
  configured shares (a broken assignment or logging shows here first);
- ``preference_test``: the interleaving preference share with an exact two-sided sign
  test (ties left out).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

Z95 = 1.959963984540054
# Below this p-value the split of shoppers is not the configured one.
SRM_ALPHA = 0.001


@dataclass(frozen=True)
class Estimate:
    value: float
    stderr: float

    @property
    def low(self) -> float:
        return self.value - Z95 * self.stderr

    @property
    def high(self) -> float:
        return self.value + Z95 * self.stderr


@dataclass(frozen=True)
class Comparison:
    """Treatment minus control."""

    difference: Estimate
    relative: float  # difference / control value (nan when control is 0)
    p_value: float


def _normal_two_sided(z: float) -> float:
    return math.erfc(abs(z) / math.sqrt(2.0))


def ratio_estimate(numerators: Sequence[float], denominators: Sequence[float]) -> Estimate:
    """sum(numerators) / sum(denominators) over units, with its delta-method standard error.

    Units with a zero denominator still count (they lower the mean denominator). Fewer
    than 2 units, or a zero total denominator, give a nan standard error.
    """
    n = len(numerators)
    if n != len(denominators):
        raise ValueError("numerators and denominators differ in length")
    total_x = float(sum(denominators))
    if n == 0 or total_x == 0:
        return Estimate(math.nan, math.nan)
    ratio = float(sum(numerators)) / total_x
    if n < 2:
        return Estimate(ratio, math.nan)
    mean_x = total_x / n
    mean_y = float(sum(numerators)) / n
    var_x = sum((x - mean_x) ** 2 for x in denominators) / (n - 1)
    var_y = sum((y - mean_y) ** 2 for y in numerators) / (n - 1)
    cov = sum(
        (x - mean_x) * (y - mean_y) for x, y in zip(denominators, numerators, strict=True)
    ) / (n - 1)
    variance = (var_y - 2 * ratio * cov + ratio**2 * var_x) / (n * mean_x**2)
    return Estimate(ratio, math.sqrt(max(variance, 0.0)))


def compare(control: Estimate, treatment: Estimate) -> Comparison:
    """The difference of two independent estimates, its interval and two-sided p-value."""
    difference = treatment.value - control.value
    stderr = math.sqrt(control.stderr**2 + treatment.stderr**2)
    if not math.isfinite(stderr) or stderr == 0:
        p_value = math.nan if difference == 0 or not math.isfinite(stderr) else 0.0
    else:
        p_value = _normal_two_sided(difference / stderr)
    relative = difference / control.value if control.value else math.nan
    return Comparison(Estimate(difference, stderr), relative, p_value)


def _chi2_sf(statistic: float, dof: int) -> float:
    """P(X >= statistic) for a chi-square with ``dof`` degrees of freedom (regularised
    upper incomplete gamma, by its series or continued fraction)."""
    if statistic <= 0:
        return 1.0
    a, x = dof / 2.0, statistic / 2.0
    if x < a + 1:  # series for the lower part
        term = total = 1.0 / a
        k = a
        for _ in range(10_000):
            k += 1
            term *= x / k
            total += term
            if abs(term) < abs(total) * 1e-15:
                break
        lower = total * math.exp(-x + a * math.log(x) - math.lgamma(a))
        return max(0.0, 1.0 - lower)
    # Lentz's continued fraction for the upper part.
    tiny = 1e-300
    b = x + 1 - a
    c = 1 / tiny
    d = 1 / b
    h = d
    for i in range(1, 10_000):
        an = -i * (i - a)
        b += 2
        d = an * d + b
        d = tiny if abs(d) < tiny else d
        c = b + an / c
        c = tiny if abs(c) < tiny else c
        d = 1 / d
        step = d * c
        h *= step
        if abs(step - 1) < 1e-15:
            break
    return h * math.exp(-x + a * math.log(x) - math.lgamma(a))


def sample_ratio_mismatch(counts: Sequence[int], shares: Sequence[float]) -> float:
    """The p-value of Pearson's chi-square of observed shopper counts against the shares."""
    total = sum(counts)
    if total == 0 or len(counts) < 2:
        return 1.0
    statistic = 0.0
    for count, share in zip(counts, shares, strict=True):
        expected = total * share
        statistic += (count - expected) ** 2 / expected
    return _chi2_sf(statistic, len(counts) - 1)


def _binomial_two_sided(successes: int, trials: int) -> float:
    """Exact two-sided p-value of ``successes`` in ``trials`` against p = 0.5."""
    if trials == 0:
        return 1.0
    k = min(successes, trials - successes)
    log_half = trials * math.log(0.5)
    tail = sum(
        math.exp(
            math.lgamma(trials + 1) - math.lgamma(i + 1) - math.lgamma(trials - i + 1) + log_half
        )
        for i in range(k + 1)
    )
    return min(1.0, 2 * tail)


def preference_test(wins_a: int, wins_b: int) -> tuple[float, float]:
    """Interleaving: the share of decided comparisons arm A won, and the sign test's p."""
    decided = wins_a + wins_b
    share = wins_a / decided if decided else math.nan
    return share, _binomial_two_sided(wins_a, decided)
