"""The report's statistics against values computed by hand (and textbook tables)."""

from __future__ import annotations

import math
import random

import pytest

from shared.experiments.stats import (
    Estimate,
    compare,
    preference_test,
    ratio_estimate,
    sample_ratio_mismatch,
)

pytestmark = pytest.mark.unit


def test_the_delta_method_ratio_matches_the_hand_computation() -> None:
    # ratio 6/8; var_x 4/3, var_y 1, cov 1 (n - 1 denominators);
    # var = (1 - 2 * 0.75 + 0.75**2 * 4/3) / (3 * (8/3)**2) = 0.25 / (64/3)
    estimate = ratio_estimate([1, 2, 3], [2, 2, 4])
    assert estimate.value == 0.75
    assert estimate.stderr == pytest.approx(math.sqrt(0.25 / (64 / 3)), rel=1e-12)
    assert estimate.low == pytest.approx(0.75 - 1.959964 * estimate.stderr, rel=1e-6)


def test_one_trial_a_unit_is_the_binomial_standard_error() -> None:
    estimate = ratio_estimate([1] * 30 + [0] * 70, [1] * 100)
    assert estimate.value == pytest.approx(0.3)
    # sample variance with n - 1: 0.3 * 0.7 * 100 / 99
    assert estimate.stderr == pytest.approx(math.sqrt(0.3 * 0.7 / 99), rel=1e-12)


def test_degenerate_inputs_give_nan_not_errors() -> None:
    assert math.isnan(ratio_estimate([], []).value)
    assert math.isnan(ratio_estimate([1], [0]).value)
    assert math.isnan(ratio_estimate([1], [2]).stderr)
    with pytest.raises(ValueError, match="differ in length"):
        ratio_estimate([1, 2], [1])


def test_comparison_is_a_z_test_on_the_difference() -> None:
    result = compare(Estimate(0.10, 0.01), Estimate(0.13, 0.01))
    assert result.difference.value == pytest.approx(0.03)
    assert result.difference.stderr == pytest.approx(math.sqrt(2) * 0.01)
    assert result.p_value == pytest.approx(0.033895, abs=2e-6)  # z = 2.1213
    assert result.relative == pytest.approx(0.3)


@pytest.mark.parametrize(
    ("counts", "shares", "expected"),
    [
        ([5100, 4900], [0.5, 0.5], 0.0455003),  # chi2 = 4, 1 dof
        ([120, 90, 90], [1 / 3, 1 / 3, 1 / 3], math.exp(-3)),  # chi2 = 6, 2 dof
        ([250, 750], [0.25, 0.75], 1.0),
        ([5300, 4700], [0.5, 0.5], 1.97318e-9),  # chi2 = 36: erfc(6 / sqrt 2)
    ],
)
def test_sample_ratio_mismatch_is_pearsons_chi_square(counts, shares, expected) -> None:
    assert sample_ratio_mismatch(counts, shares) == pytest.approx(expected, rel=1e-3)


def test_the_preference_sign_test_is_exact() -> None:
    share, p_value = preference_test(60, 40)
    assert share == 0.6
    assert p_value == pytest.approx(0.056887, abs=2e-6)  # 2 * P(X <= 40 | n=100, 1/2)
    assert preference_test(5, 5)[1] == 1.0
    assert math.isnan(preference_test(0, 0)[0])


def test_a_a_comparisons_are_significant_about_five_percent_of_the_time() -> None:
    rng = random.Random(4)
    significant = 0
    for _ in range(400):
        arms = []
        for _arm in range(2):
            impressions = [rng.randint(5, 40) for _ in range(300)]
            clicks = [sum(rng.random() < 0.1 for _ in range(n)) for n in impressions]
            arms.append(ratio_estimate(clicks, impressions))
        significant += compare(*arms).p_value < 0.05
    assert 8 <= significant <= 32, significant  # 20 expected; Binomial(400, 0.05) +- 3 sd
