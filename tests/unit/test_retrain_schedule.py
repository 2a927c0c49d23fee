"""The retraining schedule's trigger: counts against the threshold, the watermark read from
the registry's jobs (so a restart keeps it), one job per model at a time, and what it records.

Real SQLite files for the registry and the feedback store; the one fake is StartTraining,
which creates the job in the registry as the runner does, without a worker.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from shopsense.trainer.v1 import trainer_service_pb2 as pb

from services.trainer.schedule import (
    RetrainPolicy,
    RetrainScheduler,
    ScheduledRuns,
    count_new_events,
    decide,
    watermark,
)
from shared.contracts.trainer import job_message
from shared.errors import FailedPrecondition
from shared.settings import TrainerSettings
from shared.storage.database import create_db_engine
from shared.storage.feedback import FeedbackStore, ValidEvent
from shared.storage.registry import JobState, ModelRegistry

pytestmark = pytest.mark.unit

MODEL = "sequence_recommender"
THRESHOLD = 5


@pytest.mark.parametrize(
    ("new_events", "active", "refused_at", "retrain", "reason"),
    [
        (0, None, None, False, "below the threshold (0 of 5)"),
        (4, None, None, False, "below the threshold (4 of 5)"),
        (5, None, None, True, "5 new feedback events (threshold 5)"),
        (900, None, None, True, "900 new feedback events (threshold 5)"),
        # One job per model: whoever started the running one.
        (900, "job-rpc", None, False, "job job-rpc is running; one job per model at a time"),
        (4, "job-rpc", None, False, "job job-rpc is running"),
        # Refused at 6 (too little usable data): asked again from 6 + 5 on.
        (10, None, 6, False, "refused at 6 new events; waiting for 11"),
        (11, None, 6, True, "11 new feedback events"),
    ],
)
def test_the_decision_counts_against_the_threshold_one_job_at_a_time(
    new_events: int, active: str | None, refused_at: int | None, retrain: bool, reason: str
) -> None:
    decision = decide(new_events, THRESHOLD, active, refused_at)
    assert decision.retrain is retrain
    assert reason in decision.reason


class Files:
    """A registry and a feedback store on SQLite files, and a StartTraining fake."""

    def __init__(self, tmp: Path) -> None:
        self.registry = ModelRegistry(create_db_engine(f"sqlite:///{tmp / 'registry.db'}"))
        self.feedback = FeedbackStore(create_db_engine(f"sqlite:///{tmp / 'feedback.db'}"))
        self.requests: list[pb.StartTrainingRequest] = []
        self.refuse = ""
        self._events = 0

    def start_training(self, request: pb.StartTrainingRequest) -> pb.StartTrainingResponse:
        self.requests.append(request)
        if self.refuse:
            raise FailedPrecondition(self.refuse)
        job = self.registry.create_job(request.model, "folder", dict(request.hyperparameters))
        return pb.StartTrainingResponse(job_id=job.job_id, job=job_message(job))

    def events(self, n: int, kind: str = "click", **fields: object) -> None:
        """``n`` events received now."""
        now = datetime.now(UTC)
        batch = []
        for _ in range(n):
            self._events += 1
            batch.append(
                ValidEvent(
                    f"ev-{self._events}",
                    kind,
                    now,
                    now,
                    f"p{self._events % 7}",
                    session_id=f"s{self._events}",
                    **fields,  # type: ignore[arg-type]
                )
            )
        assert all(self.feedback.record(batch))

    def scheduler(self, **policy: object) -> RetrainScheduler:
        """A fresh scheduler (nothing in memory), as after a trainer restart."""
        return RetrainScheduler(
            RetrainPolicy(models=(MODEL,), min_new_events=THRESHOLD, **policy),  # type: ignore[arg-type]
            self.registry,
            lambda: self.feedback.engine,
            self.start_training,
            ScheduledRuns(self.registry.engine),
        )

    def close(self) -> None:
        self.registry.engine.dispose()
        self.feedback.engine.dispose()


@pytest.fixture
def files(tmp_path: Path) -> Iterator[Files]:
    files = Files(tmp_path)
    yield files
    files.close()


def test_the_watermark_is_the_newest_job_whatever_its_state_or_origin(files: Files) -> None:
    assert watermark(files.registry.list_jobs(MODEL, 1)) is None
    first = files.registry.create_job(MODEL, "a")
    files.registry.update_job(first.job_id, state=JobState.FAILED)
    second = files.registry.create_job(MODEL, "b")
    files.registry.update_job(second.job_id, state=JobState.CANCELLED)
    assert watermark(files.registry.list_jobs(MODEL, 1)) == second.created_at
    assert watermark([first, second]) == second.created_at


def test_each_kind_counts_the_events_it_learns_from(files: Files) -> None:
    files.events(3, "impression", request_id="r1", query="sofa", position=1)
    files.events(2, "click", request_id="r1", query="sofa")
    files.events(4, "click")  # a product page, no search: only the sequence model's
    files.events(1, "purchase")
    engine = files.feedback.engine
    assert count_new_events(engine, "cross_encoder", None) == 5
    assert count_new_events(engine, MODEL, None) == 7
    assert count_new_events(engine, MODEL, datetime.now(UTC) + timedelta(seconds=1)) == 0


def test_below_the_threshold_nothing_starts_then_one_job_then_it_waits_for_new_feedback(
    files: Files,
) -> None:
    schedule = files.scheduler(hyperparameters={"epochs": "1"})
    files.events(THRESHOLD - 1)
    check = schedule.check(MODEL)
    assert (check.new_events, check.since, check.job_id) == (THRESHOLD - 1, None, "")
    assert check.decision == "below the threshold (4 of 5)"
    assert files.requests == [] and files.registry.list_jobs(MODEL) == []

    files.events(1)
    check = schedule.check(MODEL)
    (job,) = files.registry.list_jobs(MODEL)
    assert check.job_id == job.job_id and check.decision.startswith(f"started job {job.job_id}")
    # The request StartTraining gets: feedback, the policy's hyperparameters, never published.
    (request,) = files.requests
    assert request.model == MODEL and request.feedback.enabled and not request.publish
    assert dict(request.hyperparameters) == {"epochs": "1"}
    assert not request.feedback.HasField("since")  # no window: all the feedback
    trigger = ScheduledRuns(files.registry.engine).triggers([job.job_id])[job.job_id]
    assert trigger == "schedule: 5 new feedback events since the first event (threshold 5)"

    # More feedback while the job runs: not a second job.
    files.events(2 * THRESHOLD)
    check = schedule.check(MODEL)
    assert check.since == job.created_at and check.new_events == 2 * THRESHOLD
    assert check.decision == f"job {job.job_id} is running; one job per model at a time"
    assert len(files.requests) == 1

    # It ended; a restarted trainer (a fresh schedule) counts from the same job: the ten
    # events since start the next run, the five it trained on count no more.
    files.registry.update_job(job.job_id, state=JobState.SUCCEEDED)
    restarted = files.scheduler()
    check = restarted.check(MODEL)
    assert check.since == job.created_at and check.decision.startswith("started job")
    files.registry.update_job(check.job_id, state=JobState.SUCCEEDED)
    check = restarted.check(MODEL)
    assert (check.new_events, check.decision) == (0, "below the threshold (0 of 5)")
    assert len(files.requests) == 2


def test_a_job_started_through_the_rpc_moves_the_watermark_and_blocks_the_schedule(
    files: Files,
) -> None:
    schedule = files.scheduler()
    files.events(THRESHOLD)
    rpc_job = files.registry.create_job(MODEL, "by hand")
    check = schedule.check(MODEL)
    assert check.decision.startswith(f"job {rpc_job.job_id} is running")
    assert check.new_events == 0  # the events came before that job: it trains on them
    assert files.requests == []


def test_a_refused_start_waits_for_more_feedback_instead_of_asking_every_interval(
    files: Files,
) -> None:
    schedule = files.scheduler()
    files.refuse = "feedback: 3 shoppers have 2 or more events on catalog products (need 20)"
    files.events(THRESHOLD)
    check = schedule.check(MODEL)
    assert check.decision == f"StartTraining refused: {files.refuse}" and check.job_id == ""
    files.events(THRESHOLD - 1)
    check = schedule.check(MODEL)
    assert check.decision == "refused at 5 new events; waiting for 10"
    files.refuse = ""
    files.events(1)
    assert schedule.check(MODEL).decision.startswith("started job")
    assert len(files.requests) == 2


def test_the_follow_up_records_the_candidate_against_the_serving_version(files: Files) -> None:
    schedule = files.scheduler()
    files.events(THRESHOLD)
    job_id = schedule.check(MODEL).job_id
    runs = ScheduledRuns(files.registry.engine)
    (row,) = runs.pending(MODEL)
    assert schedule.follow_up(row) is None  # still running: nothing recorded
    metrics = {"offline/next_item/ndcg@10": 0.25, "offline/serving/next_item/ndcg@10": 0.2}
    files.registry.update_job(
        job_id,
        state=JobState.SUCCEEDED,
        result_version=3,
        metrics_json=json.dumps(metrics),
    )
    outcome = schedule.follow_up(row)
    assert outcome == (
        "candidate sequence_recommender 3 registered, offline next_item/ndcg@10 0.2500 "
        "against the serving version's 0.2000; no experiment "
        "(SHOPSENSE_RETRAIN_EXPERIMENT_SHARE is 0)"
    )
    assert runs.pending(MODEL) == []
    assert runs.triggers([job_id])[job_id].endswith(outcome)
    (status,) = schedule.status()
    assert status.job_id == job_id and status.decision.endswith(outcome)


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"SHOPSENSE_RETRAIN_MODELS": "text_encoder"}, "SHOPSENSE_RETRAIN_MODELS: 'text_en"),
        ({"SHOPSENSE_RETRAIN_MODELS": "cross_encoder"}, "SHOPSENSE_RETRAIN_CATALOG: required"),
        (
            {
                "SHOPSENSE_RETRAIN_MODELS": "cross_encoder",
                "SHOPSENSE_RETRAIN_CATALOG": "/etc/store",
                "SHOPSENSE_DATA_ROOT": "/data",
            },
            "SHOPSENSE_RETRAIN_CATALOG: /etc/store is outside the data root",
        ),
        (
            {"SHOPSENSE_RETRAIN_MODELS": MODEL, "SHOPSENSE_RETRAIN_HYPERPARAMETERS": "epochs"},
            "SHOPSENSE_RETRAIN_HYPERPARAMETERS: expected NAME=VALUE, got 'epochs'",
        ),
        (
            {"SHOPSENSE_RETRAIN_MODELS": MODEL, "SHOPSENSE_RETRAIN_HYPERPARAMETERS": "colour=red"},
            "SHOPSENSE_RETRAIN_HYPERPARAMETERS: hyperparameters.colour: unknown",
        ),
        ({"SHOPSENSE_RETRAIN_EXPERIMENT_SHARE": "1"}, "SHOPSENSE_RETRAIN_EXPERIMENT_SHARE: must"),
    ],
)
def test_bad_settings_stop_the_start_naming_the_variable(
    environ: dict[str, str], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        RetrainPolicy.from_settings(TrainerSettings.load(environ))


def test_the_schedule_is_off_by_default() -> None:
    policy = RetrainPolicy.from_settings(TrainerSettings.load({}))
    assert policy.models == () and policy.experiment_share == 0.0
    on = RetrainPolicy.from_settings(
        TrainerSettings.load(
            {
                "SHOPSENSE_RETRAIN_MODELS": f"{MODEL}, {MODEL},cross_encoder",
                "SHOPSENSE_RETRAIN_CATALOG": "/data/store",
                "SHOPSENSE_DATA_ROOT": "/data",
                "SHOPSENSE_RETRAIN_HYPERPARAMETERS": "epochs=2, batch_size=8",
            }
        )
    )
    assert on.models == (MODEL, "cross_encoder")
    assert dict(on.hyperparameters) == {"epochs": "2", "batch_size": "8"}


def test_the_demo_turns_on_a_schedule_the_trainer_accepts() -> None:
    from shared.cli.demo import DEMO_HYPERPARAMETERS, schedule_env

    # The environment the Suite gives the trainer: this process's (its state folder, where the
    # demo store lies and so the data root) plus the schedule's.
    trainer_env = {**os.environ, **schedule_env(4_000)}
    policy = RetrainPolicy.from_settings(TrainerSettings.load(trainer_env))
    assert policy.models == ("cross_encoder",) and policy.min_new_events == 4_000
    assert dict(policy.hyperparameters) == DEMO_HYPERPARAMETERS
    assert policy.experiment_share == 0.5 and policy.catalog.endswith("demo-store-20000-s7")
