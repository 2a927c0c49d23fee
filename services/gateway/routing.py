"""Experiment routing for one search: which arms serve the shopper, how two interleaved arms'
rankings merge, which searches explore, what the attribution token says, and the guard
rails that watch each arm.

- **Arms**: the shopper's arm of the running experiment by a sticky hash
  (``shared/experiments/assignment.py``); both arms for an interleaving experiment; the
  control outside any.
- **Interleaving**: team draft of the two arms' orders, seeded so the next page agrees;
  each result remembers which arm picked it.
- **Exploration**: a share of searches get their top results shuffled (seeded by shopper
  and query), so that the trainer can measure position bias from clicks.
- **Tokens**: the request, arm, experiment, model versions, teams and query, signed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import structlog

from services.gateway.pipeline import ArmRun, Ranked
from shared.experiments.assignment import (
    CONTROL,
    INTERLEAVING,
    NO_EXPERIMENT,
    Arm,
    Experiment,
    assign_arm,
)
from shared.experiments.attribution import Attribution
from shared.experiments.exploration import explores, shuffle_top
from shared.experiments.guardrails import ArmHealth, Limits
from shared.experiments.interleaving import TEAM_A, TEAM_B, seed_for, team_draft
from shared.models.kinds import INTENT_CLASSIFIER

# The arm name in responses and tokens when two arms are interleaved.
INTERLEAVED = "interleaved"
_log = structlog.get_logger("shopsense.gateway")


@dataclass(frozen=True)
class Route:
    """The arms that serve one search."""

    # The running experiment the shopper entered; None outside any.
    experiment: Experiment | None
    # One arm, or two when interleaving.
    arms: Sequence[Arm]

    @property
    def arm_name(self) -> str:
        return INTERLEAVED if len(self.arms) == 2 else self.arms[0].name

    @property
    def experiment_name(self) -> str:
        return self.experiment.name if self.experiment is not None else ""

    @property
    def control(self) -> str:
        """The arm this one is judged against: the experiment's first ("" when
        interleaving, which serves both arms in one search, or outside any experiment)."""
        if self.experiment is None or len(self.arms) == 2:
            return ""
        return self.experiment.arms[0].name

    def shares_retrieval(self, index: int) -> int | None:
        """An earlier arm whose intent and candidates arm ``index`` can reuse (they may
        rank differently), or None."""
        arm = self.arms[index]
        for earlier, other in enumerate(self.arms[:index]):
            same_intent = other.pinned(INTENT_CLASSIFIER) == arm.pinned(INTENT_CLASSIFIER)
            if same_intent and other.pipeline.fusion_weights == arm.pipeline.fusion_weights:
                return earlier
        return None


def route(experiment: Experiment | None, user: str, session: str) -> Route:
    """The shopper's arms in the running experiment (``experiment``; None or
    NO_EXPERIMENT when none runs)."""
    if experiment is None or experiment is NO_EXPERIMENT:
        return Route(None, [CONTROL])
    arm = assign_arm(experiment, user, session)
    if arm is None:
        return Route(None, [CONTROL])
    if experiment.type == INTERLEAVING:
        return Route(experiment, list(experiment.arms))
    return Route(experiment, [arm])


def arrange(
    where: Route,
    runs: Sequence[ArmRun],
    shopper: str,
    fingerprint: str,
    explore_rate: float,
    explore_depth: int,
    limit: int,
) -> tuple[list[Ranked], str, bool]:
    """The results in the order shown, which arm picked each one (``"ab..."``; "" unless
    interleaving), and whether this search explores (its top results shuffled)."""
    teams = ""
    if len(runs) == 2:
        assert where.experiment is not None
        merged, teams = team_draft(
            [pid for pid, _, _ in runs[0].order],
            [pid for pid, _, _ in runs[1].order],
            seed_for(where.experiment.salt, shopper, fingerprint),
            limit=limit,
        )
        picked = {TEAM_A: _by_id(runs[0].order), TEAM_B: _by_id(runs[1].order)}
        order = [picked[team][pid] for pid, team in zip(merged, teams, strict=True)]
    else:
        order = runs[0].order
    explored = explores(explore_rate, shopper, fingerprint)
    if explored:
        order = shuffle_top(order, explore_depth, shopper, fingerprint)
        if teams:
            teams = "".join(shuffle_top(teams, explore_depth, shopper, fingerprint))
    return order, teams, explored


def _by_id(order: list[Ranked]) -> dict[str, Ranked]:
    return {row[0]: row for row in order}


def attribution(
    where: Route,
    runs: Sequence[ArmRun],
    request_id: str,
    query: str,
    teams: str,
    offset: int,
    explored: bool,
) -> Attribution:
    """What the page's token says: the request, arm, versions (the second arm's with a
    ``_b`` suffix), the page's teams from ``offset`` on, the query and exploration."""
    first = runs[0].versions
    versions = {
        "intent": first.intent,
        "text_encoder": first.text_encoder,
        "ranking": first.ranking,
    }
    if len(runs) == 2:
        versions["intent_b"] = runs[1].versions.intent
        versions["ranking_b"] = runs[1].versions.ranking
    return Attribution(
        request_id=request_id,
        arm=where.arm_name,
        model_versions=versions,
        experiment=where.experiment_name,
        teams=teams,
        offset=offset,
        query=query,
        explored=explored,
    )


class GuardRail:
    """Each arm's health over its last searches (``ArmHealth``); the first breach stops the
    experiment through ``stop(experiment, reason)``."""

    def __init__(self, limits: Limits, stop: Callable[[str, str], None] | None = None) -> None:
        self._health = ArmHealth(limits)
        self._stop = stop

    def record(self, where: Route, latency_s: float, runs: Sequence[ArmRun]) -> str | None:
        """Count one answered search: failed when an optional hop of the arm's own models
        failed (not the caller's short deadline, not another service's error: those never
        reach here, or are not the arm's). The breach reason, the first time."""
        if where.experiment is None:
            return None
        failed = any(run.model_failures for run in runs)
        reason = self._health.record(
            where.experiment_name, where.arm_name, latency_s, failed, where.control
        )
        if reason is not None:
            _log.warning("guard_rail", experiment=where.experiment_name, reason=reason)
            if self._stop is not None:
                self._stop(where.experiment_name, reason)
        return reason
