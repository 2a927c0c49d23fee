"""The trainer's background loops, each stopped with its server: reconciling Triton with the
registry while Triton starts, checking the running experiment against the guard rails, and
the retraining schedule (services/trainer/schedule.py), and applying shoppers' erasures to
the training folders (shared/training/erasure.py)."""

from __future__ import annotations

import threading

import structlog

from services.trainer.experiments import ExperimentServicer
from services.trainer.publisher import ModelPublisher
from services.trainer.schedule import RetrainScheduler
from shared.experiments.guardrails import Limits
from shared.rpc.server import ServerHandle
from shared.settings import TrainerSettings
from shared.training.erasure import ErasureSweeper, Sweep

# Seconds between reconcile attempts while Triton is starting.
RECONCILE_RETRY_S = 2.0

_log = structlog.get_logger("shopsense.trainer")


def reconcile_in_background(handle: ServerHandle, publisher: ModelPublisher) -> None:
    """Retry until Triton serves every registered serving version (Triton may be starting)."""
    stop = threading.Event()
    handle.on_stop(stop.set)

    def loop() -> None:
        while not stop.is_set():
            try:
                pending = publisher.reconcile()
            except Exception as exc:  # the registry or Triton still starting
                _log.warning("reconcile_failed", error=str(exc))
                pending = ["?"]
            if not pending:
                _log.info("reconciled")
                return
            stop.wait(RECONCILE_RETRY_S)

    threading.Thread(target=loop, name="trainer-reconcile", daemon=True).start()


def guard_in_background(
    handle: ServerHandle, experiments: ExperimentServicer, settings: TrainerSettings
) -> None:
    """Check the running experiment's report against the guard rails every
    ``guard_interval_s`` (shared/experiments/guardrails.py)."""
    stop = threading.Event()
    handle.on_stop(stop.set)
    limits = Limits(alpha=settings.guard_alpha, min_shoppers=settings.guard_min_shoppers)

    def loop() -> None:
        while not stop.wait(settings.guard_interval_s):
            try:
                experiments.check_guard_rails(limits)
            except Exception as exc:  # the feedback store away: try again next time
                _log.warning("guard_rail_check_failed", error=str(exc))

    threading.Thread(target=loop, name="trainer-guard-rails", daemon=True).start()


def retrain_in_background(handle: ServerHandle, schedule: RetrainScheduler) -> None:
    """Every ``interval_s``: follow up the schedule's ended jobs and start the jobs due."""
    stop = threading.Event()
    handle.on_stop(stop.set)

    def loop() -> None:
        while not stop.wait(schedule.policy.interval_s):
            try:
                schedule.tick()
            except Exception as exc:  # the feedback store or registry away: next time
                _log.warning("retrain_check_failed", error=str(exc))

    threading.Thread(target=loop, name="trainer-retrain-schedule", daemon=True).start()


def log_sweep(sweep: Sweep) -> None:
    """One line when a pass removed something or found folders it cannot clean."""
    if sweep.rewritten:
        _log.info(
            "erasures_applied",
            folders=sweep.rewritten,
            histories_removed=sweep.histories_removed,
            queries_removed=sweep.queries_removed,
            through=sweep.through,
        )
    if sweep.unkeyed:
        _log.warning(
            "erasure_unkeyed_folders",
            folders=sweep.unkeyed,
            hint="written before erasure keys: delete them, or an erased shopper stays there",
        )


def erasures_in_background(
    handle: ServerHandle, sweeper: ErasureSweeper, interval_s: float
) -> None:
    """Now (erasures made while the trainer was down), then every ``interval_s``: apply new
    erasures to the training folders."""
    stop = threading.Event()
    handle.on_stop(stop.set)

    def loop() -> None:
        while True:
            try:
                log_sweep(sweeper.sweep())
            except Exception as exc:  # the feedback store away: next time
                _log.warning("erasure_sweep_failed", error=str(exc))
            if stop.wait(interval_s):
                return

    threading.Thread(target=loop, name="trainer-erasures", daemon=True).start()
