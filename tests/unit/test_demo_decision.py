"""`make demo` promotes the retrained version only on evidence."""

from __future__ import annotations

import pytest
from shopsense.experiments.v1 import experiment_service_pb2 as epb

from shared.cli.demo import decide

pytestmark = pytest.mark.unit


def _reply(verdict: str = "x", srm: bool = False, **diffs: tuple[float, float]):
    """A report whose second arm differs from the first by (difference, p) per metric."""
    names = ("ctr", "add_to_cart_rate", "conversion_rate", "revenue_per_search")
    control = epb.ArmReport(arm="serving", shoppers=400)
    treatment = epb.ArmReport(arm="retrained", shoppers=400)
    for name in names:
        control.metrics.append(epb.MetricReport(name=name, estimate=epb.Interval(value=0.1)))
        diff, p = diffs.get(name, (0.001, 0.6))
        treatment.metrics.append(
            epb.MetricReport(
                name=name,
                estimate=epb.Interval(value=0.1 + diff),
                difference=epb.Interval(value=diff),
                p_value=p,
            )
        )
    return epb.GetExperimentReportResponse(
        arms=[control, treatment], verdict=verdict, sample_ratio_mismatch=srm
    )


def test_a_significant_gain_in_ctr_with_no_loss_is_promoted() -> None:
    promote, why = decide(_reply(ctr=(0.02, 0.001)))
    assert promote and why == "retrained is better on ctr"


def test_no_promotion_without_evidence_or_with_any_significant_loss() -> None:
    assert decide(_reply()) == (False, "no significant gain in CTR or conversion")
    # a gain in revenue alone is not what the demo decides on
    assert not decide(_reply(revenue_per_search=(5.0, 0.01)))[0]
    promote, why = decide(_reply(ctr=(0.02, 0.001), conversion_rate=(-0.01, 0.02)))
    assert not promote and why == "retrained is worse on conversion_rate"
    assert decide(_reply(ctr=(0.02, 0.001), srm=True)) == (False, "sample ratio mismatch")
    small = "no verdict: arm retrained has 40 shoppers, at least 100 needed"
    assert decide(_reply(small, ctr=(0.02, 0.001))) == (False, small)
