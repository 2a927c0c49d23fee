"""An experiment's report from the feedback its tokens attributed to it.

Per arm: shoppers, searches, impressions, clicks, and the rates a store decides on (CTR,
add-to-cart rate, conversion rate, revenue per search), each with its 95% interval and,
against the first arm, the difference with its interval and p-value (see ``stats``). A
sample-ratio-mismatch check compares the shoppers per arm with the configured shares. No
verdict is given below ``min_shoppers`` per arm, or when the split is off.

For interleaving, each search whose results were clicked is won by the arm whose picks
got more clicks; the report gives each arm's wins and the preference share with its test.

Definitions (per arm, sums over its shoppers): a search is a request id with at least one
impression; CTR = clicks / impressions; add-to-cart rate = add-to-cart events / searches;
conversion rate = purchases / searches; revenue per search = purchase amounts / searches
(one currency is assumed: the store's).
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field

import sqlalchemy
from sqlalchemy import select

from shared.experiments.assignment import INTERLEAVING, Experiment
from shared.experiments.stats import (
    SRM_ALPHA,
    Comparison,
    Estimate,
    compare,
    preference_test,
    ratio_estimate,
    sample_ratio_mismatch,
)
from shared.storage.feedback import MICROS_PER_UNIT, FeedbackEvent

MIN_SHOPPERS = 100
SIGNIFICANCE = 0.05
# (name, numerator, denominator) of the per-shopper totals.
METRICS = (
    ("ctr", "clicks", "impressions"),
    ("add_to_cart_rate", "carts", "searches"),
    ("conversion_rate", "purchases", "searches"),
    ("revenue_per_search", "revenue", "searches"),
)


@dataclass
class _Shopper:
    searches: set[str] = field(default_factory=set)
    impressions: int = 0
    clicks: int = 0
    carts: int = 0
    purchases: int = 0
    revenue: float = 0.0

    def total(self, name: str) -> float:
        return float(len(self.searches)) if name == "searches" else float(getattr(self, name))


@dataclass(frozen=True)
class MetricReport:
    name: str
    estimate: Estimate
    # Against the first arm; None for the first arm itself.
    comparison: Comparison | None


@dataclass(frozen=True)
class ArmReport:
    arm: str
    shoppers: int
    searches: int
    impressions: int
    clicks: int
    metrics: list[MetricReport]


@dataclass(frozen=True)
class Interleaving:
    wins: dict[str, int]  # arm name -> searches won
    ties: int
    preference_share: float  # share of decided searches the first arm won
    p_value: float


@dataclass(frozen=True)
class Report:
    experiment: str
    arms: list[ArmReport]
    srm_p_value: float
    verdict: str
    interleaving: Interleaving | None = None

    @property
    def sample_ratio_mismatch(self) -> bool:
        return self.srm_p_value < SRM_ALPHA


def _rows(engine: sqlalchemy.Engine, name: str) -> list[tuple]:
    table = FeedbackEvent.__table__
    query = select(
        table.c.arm,
        table.c.team,
        table.c.type,
        table.c.user_id,
        table.c.session_id,
        table.c.request_id,
        table.c.amount_micros,
    ).where(table.c.experiment == name)
    with engine.connect() as conn:
        return list(conn.execute(query))


@dataclass
class Collected:
    """An experiment's feedback, per shopper (the unit of randomisation)."""

    # arm name -> shopper (user id, else session id) -> totals
    shoppers: dict[str, dict[str, _Shopper]]
    # Interleaving: request id -> clicks per team letter, and the shopper of each request.
    team_clicks: dict[str, dict[str, int]]
    request_unit: dict[str, str]


def collect(engine: sqlalchemy.Engine, experiment: Experiment) -> Collected:
    """Per-shopper totals of ``experiment``'s feedback (and, interleaving, per-search clicks
    by team)."""
    rows = _rows(engine, experiment.name)
    shoppers: dict[str, dict[str, _Shopper]] = {arm.name: {} for arm in experiment.arms}
    team_clicks: dict[str, dict[str, int]] = defaultdict(lambda: {"a": 0, "b": 0})
    request_unit: dict[str, str] = {}
    interleaved = experiment.type == INTERLEAVING
    for arm, team, kind, user_id, session_id, request_id, micros in rows:
        unit = user_id or session_id or ""
        if interleaved:
            # Every shopper sees both arms: credit by the team that placed the item.
            if kind == "click" and team in ("a", "b") and request_id:
                team_clicks[request_id][team] += 1
                request_unit[request_id] = unit
            arm = experiment.arms[0 if team == "a" else 1].name if team else None
            if arm is None:
                continue
        if arm not in shoppers:
            continue  # "control" outside a targeted experiment, or a stale arm name
        shopper = shoppers[arm].setdefault(unit, _Shopper())
        if kind == "impression":
            shopper.impressions += 1
            if request_id:
                shopper.searches.add(request_id)
        elif kind == "click":
            shopper.clicks += 1
        elif kind == "add_to_cart":
            shopper.carts += 1
        elif kind == "purchase":
            shopper.purchases += 1
            shopper.revenue += (micros or 0) / MICROS_PER_UNIT
    return Collected(shoppers, dict(team_clicks), request_unit)


def wins_of(team_clicks: dict[str, dict[str, int]]) -> tuple[int, int, int]:
    """Searches won by team a, by team b, and ties (clicked searches only)."""
    a = b = ties = 0
    for clicks in team_clicks.values():
        if clicks["a"] > clicks["b"]:
            a += 1
        elif clicks["b"] > clicks["a"]:
            b += 1
        else:
            ties += 1
    return a, b, ties


def build_report(
    engine: sqlalchemy.Engine, experiment: Experiment, min_shoppers: int = MIN_SHOPPERS
) -> Report:
    """The report of ``experiment`` from the feedback store on ``engine``."""
    collected = collect(engine, experiment)
    shoppers = collected.shoppers
    interleaved = experiment.type == INTERLEAVING
    # The first arm comes first, so its estimates are there when the others compare.
    control: dict[str, Estimate] = {}
    arms = []
    for number, arm in enumerate(experiment.arms):
        units = list(shoppers[arm.name].values())
        estimates = {
            name: ratio_estimate([u.total(num) for u in units], [u.total(den) for u in units])
            for name, num, den in METRICS
        }
        control = control or estimates
        arms.append(
            ArmReport(
                arm=arm.name,
                shoppers=len(units),
                searches=sum(len(u.searches) for u in units),
                impressions=sum(u.impressions for u in units),
                clicks=sum(u.clicks for u in units),
                metrics=[
                    MetricReport(
                        name,
                        estimates[name],
                        None if number == 0 else compare(control[name], estimates[name]),
                    )
                    for name, _, _ in METRICS
                ],
            )
        )
    counts = [a.shoppers for a in arms]
    srm = 1.0 if interleaved else sample_ratio_mismatch(counts, [a.share for a in experiment.arms])
    result_interleaving = None
    if interleaved:
        won_a, won_b, ties = wins_of(collected.team_clicks)
        wins = {experiment.arms[0].name: won_a, experiment.arms[1].name: won_b}
        share, p_value = preference_test(*wins.values())
        result_interleaving = Interleaving(wins, ties, share, p_value)
    return Report(
        experiment.name,
        arms,
        srm,
        _verdict(experiment, arms, srm, result_interleaving, min_shoppers),
        result_interleaving,
    )


def _verdict(
    experiment: Experiment,
    arms: list[ArmReport],
    srm: float,
    interleaving: Interleaving | None,
    min_shoppers: int,
) -> str:
    if interleaving is not None:
        decided = sum(interleaving.wins.values())
        if decided < min_shoppers:
            return f"no verdict: {decided} decided searches, at least {min_shoppers} needed"
        if interleaving.p_value >= SIGNIFICANCE:
            return f"no significant preference (p = {interleaving.p_value:.3g})"
        first, second = interleaving.wins
        better = first if interleaving.preference_share > 0.5 else second
        return f"{better} preferred (p = {interleaving.p_value:.3g})"
    small = [a for a in arms if a.shoppers < min_shoppers]
    if small:
        return (
            f"no verdict: arm {small[0].arm} has {small[0].shoppers} shoppers, "
            f"at least {min_shoppers} needed"
        )
    if srm < SRM_ALPHA:
        return f"no verdict: sample ratio mismatch (p = {srm:.2g}); check assignment and logging"
    findings = []
    for arm in arms[1:]:
        for metric in arm.metrics:
            c = metric.comparison
            if c is not None and math.isfinite(c.p_value) and c.p_value < SIGNIFICANCE:
                direction = "higher" if c.difference.value > 0 else "lower"
                findings.append(f"{arm.arm}: {metric.name} {direction} (p = {c.p_value:.3g})")
    return "; ".join(findings) if findings else "no significant difference"
