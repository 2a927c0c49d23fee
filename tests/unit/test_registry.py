"""The model registry's transitions and the job runner's state machine, over real SQLite files.

Job functions here are fakes (no torch): they run in real spawned worker processes, so crash,
kill and cancel are the real thing.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy.exc

from services.trainer.jobs import JobCancelled, JobRunner, JobSpec, exit_reason
from shared.errors import FailedPrecondition, NotFound
from shared.storage.database import create_db_engine
from shared.storage.registry import (
    JobStage,
    JobState,
    ModelRegistry,
    ModelVersion,
    VersionStatus,
)

pytestmark = pytest.mark.unit

MODEL = "cross_encoder"


@pytest.fixture(params=["sqlite", "postgresql"])
def registry(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ModelRegistry]:
    """The registry on a SQLite file, and on PostgreSQL (the production backend)."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'registry.db'}"
    else:
        url = str(request.getfixturevalue("postgres_url"))
    reg = ModelRegistry(create_db_engine(url))
    yield reg
    reg.engine.dispose()


# --- fake job functions (module level: spawn pickles them by name) ---------------------------


def quick_job(spec: JobSpec, report: Any, should_stop: Any) -> Mapping[str, Any]:
    """Two reported steps, then a result."""
    for step in (1, 2):
        report({"stage": "TRAINING", "step": step, "total_steps": 2, "metrics": {"loss": 1 / step}})
    return {
        "data_fingerprint": "abc",
        "hyperparameters": {"max_steps": 2},
        "dev_metrics": {"ndcg@10": 0.5},
        "seconds": 0.1,
        "checkpoint_dir": str(Path(spec.work_dir) / "checkpoint"),
        "export_dir": str(Path(spec.work_dir) / "export"),
    }


def stoppable_job(spec: JobSpec, report: Any, should_stop: Any) -> Mapping[str, Any]:
    """Runs until cancelled (at most 60 s)."""
    report({"stage": "TRAINING", "step": 0, "total_steps": 100})
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if should_stop():
            raise JobCancelled("stop requested")
        time.sleep(0.05)
    return {}


def crashing_job(spec: JobSpec, report: Any, should_stop: Any) -> Mapping[str, Any]:
    """Dies the hard way mid-training: no exception, no result."""
    report({"stage": "TRAINING", "step": 1, "total_steps": 10})
    os._exit(3)


def failing_job(spec: JobSpec, report: Any, should_stop: Any) -> Mapping[str, Any]:
    raise RuntimeError("disk full")


def wait_terminal(runner: JobRunner, job_id: str, timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    job, revision = runner.snapshot(job_id)
    while not job.job_state.terminal:
        assert time.monotonic() < deadline, f"job still {job.state}"
        runner.wait_for_change(job_id, revision, 1.0)
        job, revision = runner.snapshot(job_id)
    return job


# --- registry ---------------------------------------------------------------------------------


def test_promote_keeps_exactly_one_serving_and_rollback_walks_history(
    registry: ModelRegistry,
) -> None:
    for version in (1, 2, 3):
        registry.register_version(MODEL, version, dev_metrics={"ndcg": 0.1 * version})
    assert registry.serving_version(MODEL) is None
    assert registry.get_version(MODEL, 2).version_status == VersionStatus.CANDIDATE

    serving, previous = registry.promote(MODEL, 1)
    assert (serving.version, previous) == (1, None)
    registry.promote(MODEL, 2)
    _, previous = registry.promote(MODEL, 3)
    assert previous is not None and previous.version == 2
    statuses = {v.version: v.status for v in registry.list_versions(MODEL)}
    assert statuses == {3: "SERVING", 2: "RETIRED", 1: "RETIRED"}

    # Rollback: the version served last before the current one, then the one before it.
    assert registry.previous_serving(MODEL).version == 2
    registry.promote(MODEL, 2, previous_becomes=VersionStatus.ROLLED_BACK)
    assert registry.previous_serving(MODEL).version == 1
    registry.promote(MODEL, 1, previous_becomes=VersionStatus.ROLLED_BACK)
    statuses = {v.version: v.status for v in registry.list_versions(MODEL)}
    assert statuses == {3: "ROLLED_BACK", 2: "ROLLED_BACK", 1: "SERVING"}
    assert registry.previous_serving(MODEL) is None
    assert [v.model for v in registry.serving_versions()] == [MODEL]

    # Promoting the serving version is a no-op; an unknown one is NOT_FOUND, nothing changes.
    assert registry.promote(MODEL, 1)[1] is None
    with pytest.raises(NotFound, match="version"):
        registry.promote(MODEL, 9)
    assert registry.serving_version(MODEL).version == 1


def test_database_refuses_two_serving_versions(registry: ModelRegistry) -> None:
    registry.register_version(MODEL, 1)
    registry.register_version(MODEL, 2)
    registry.promote(MODEL, 1)
    from sqlmodel import Session, select

    with Session(registry.engine) as session:
        row = session.exec(select(ModelVersion).where(ModelVersion.version == 2)).one()
        row.status = VersionStatus.SERVING.value
        session.add(row)
        with pytest.raises(sqlalchemy.exc.IntegrityError):
            session.commit()
    assert registry.serving_version(MODEL).version == 1


def test_register_refuses_a_taken_version_and_keeps_json_fields(registry: ModelRegistry) -> None:
    registry.register_version(
        MODEL,
        1,
        hyperparameters={"batch_size": 4},
        dev_metrics={"ndcg@10": 0.5, "note": "text is skipped"},
        export_report={"precision": "fp32", "max_abs_diff": 1e-6},
    )
    with pytest.raises(FailedPrecondition, match="already has a version 1"):
        registry.register_version(MODEL, 1)
    row = registry.get_version(MODEL, 1)
    assert row.hyperparameters == {"batch_size": "4"}
    assert row.dev_metrics == {"ndcg@10": 0.5}
    assert row.export_report["precision"] == "fp32"
    assert registry.max_version(MODEL) == 1
    assert registry.max_version("text_encoder") == 0


def test_one_active_job_per_model_and_stale_jobs_fail_on_restart(
    registry: ModelRegistry,
) -> None:
    job = registry.create_job(MODEL, "/data", {"max_steps": "3"})
    with pytest.raises(FailedPrecondition, match=f"model {MODEL}: job {job.job_id}"):
        registry.create_job(MODEL, "/data")
    other = registry.create_job("text_encoder", "/data")  # another model may train meanwhile
    registry.update_job(other.job_id, state=JobState.RUNNING, metrics={"loss": 2.0})

    assert sorted(registry.fail_stale_jobs("trainer restarted")) == sorted(
        [job.job_id, other.job_id]
    )
    stale = registry.get_job(other.job_id)
    assert (stale.state, stale.error, stale.metrics) == ("FAILED", "trainer restarted", {"loss": 2})
    # A terminal job never changes again (a late progress message cannot revive it).
    assert registry.update_job(other.job_id, state=JobState.RUNNING).state == "FAILED"
    registry.create_job(MODEL, "/data")  # the model is free again


# --- job runner -----------------------------------------------------------------------------


def test_job_runs_in_a_worker_reports_progress_and_registers_a_candidate(
    registry: ModelRegistry, tmp_path: Path
) -> None:
    runner = JobRunner(registry, tmp_path / "training", quick_job)
    try:
        job = runner.submit(MODEL, "/data", {"max_steps": "2"})
        assert job.state == JobState.QUEUED
        done = wait_terminal(runner, job.job_id)
    finally:
        runner.close()
    assert done.state == "SUCCEEDED", done.error
    assert (done.result_version, done.step, done.total_steps, done.progress) == (1, 2, 2, 1.0)
    assert done.metrics == {"loss": 0.5}
    stored = registry.get_job(job.job_id)
    assert (stored.state, stored.result_version, stored.stage) == ("SUCCEEDED", 1, "DONE")
    version = registry.get_version(MODEL, 1)
    assert (version.status, version.data_fingerprint, version.job_id) == (
        "CANDIDATE",
        "abc",
        job.job_id,
    )
    assert registry.serving_version(MODEL) is None


def test_cancel_and_one_job_per_model(registry: ModelRegistry, tmp_path: Path) -> None:
    runner = JobRunner(registry, tmp_path / "training", stoppable_job)
    try:
        job = runner.submit(MODEL, "/data")
        with pytest.raises(FailedPrecondition, match=f"job {job.job_id} is already running"):
            runner.submit(MODEL, "/data")
        # Wait until the worker really trains, then cancel.
        deadline = time.monotonic() + 60
        while runner.snapshot(job.job_id)[0].stage != JobStage.TRAINING.value:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert runner.cancel(job.job_id).cancel_requested
        done = wait_terminal(runner, job.job_id)
        assert (done.state, done.error) == ("CANCELLED", "cancelled")
        with pytest.raises(FailedPrecondition, match="already ended CANCELLED"):
            runner.cancel(job.job_id)
    finally:
        runner.close()
    assert registry.get_job(job.job_id).state == "CANCELLED"
    assert registry.list_versions(MODEL) == []
    assert not (tmp_path / "training" / job.job_id).exists()


def test_crashed_or_failing_worker_fails_the_job_and_leaves_serving_untouched(
    registry: ModelRegistry, tmp_path: Path
) -> None:
    registry.register_version(MODEL, 1)
    registry.promote(MODEL, 1)
    runner = JobRunner(registry, tmp_path / "training", crashing_job)
    try:
        crashed = wait_terminal(runner, runner.submit(MODEL, "/data").job_id)
    finally:
        runner.close()
    assert crashed.state == "FAILED"
    assert crashed.error == "worker process exited with code 3 without a result"
    runner = JobRunner(registry, tmp_path / "training", failing_job)
    try:
        failed = wait_terminal(runner, runner.submit(MODEL, "/data").job_id)
    finally:
        runner.close()
    assert (failed.state, failed.error) == ("FAILED", "RuntimeError: disk full")
    assert [(v.version, v.status) for v in registry.list_versions(MODEL)] == [(1, "SERVING")]
    assert registry.active_job(MODEL) is None


def test_runner_recover_marks_jobs_of_a_dead_trainer_failed(
    registry: ModelRegistry, tmp_path: Path
) -> None:
    job = registry.create_job(MODEL, "/data")
    registry.update_job(job.job_id, state=JobState.RUNNING, stage=JobStage.TRAINING)
    runner = JobRunner(registry, tmp_path / "training", quick_job)
    assert runner.recover() == [job.job_id]
    assert registry.get_job(job.job_id).error == "trainer restarted"
    assert exit_reason(-9) == "worker process was killed by SIGKILL"


# --- publish and rollback over a fake Triton --------------------------------------------------


def _fake_export(folder: Path) -> Path:
    folder.mkdir(parents=True)
    (folder / "model.onnx").write_bytes(b"onnx")
    (folder / "shopsense_model.json").write_text('{"kind": "cross_encoder"}')
    return folder


def test_publish_is_all_or_nothing_and_rollback_restores_the_old_version(
    registry: ModelRegistry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from services.trainer.publisher import ModelPublisher
    from shared.training import publish as triton

    repository = tmp_path / "repository"
    for version in (1, 2):
        export = _fake_export(tmp_path / f"export{version}")
        registry.register_version(MODEL, version, export_dir=str(export))
    publisher = ModelPublisher(registry, repository, "triton:8001")
    served: list[int] = []
    calls: list[list[int]] = []

    def load_versions(url: str, model: str, versions: list[int], **_: Any) -> list[int]:
        calls.append(sorted(versions))
        if 2 in versions and fail_v2:
            raise triton.ModelLoadError("cross_encoder versions [1, 2]: Triton failed to load: bad")
        served[:] = sorted(versions)
        return served

    monkeypatch.setattr(triton, "loaded_versions", lambda url, model, **_: list(served))
    monkeypatch.setattr(triton, "load_versions", load_versions)

    fail_v2 = False
    assert publisher.publish(MODEL, 1).previous is None
    assert (repository / MODEL / "1" / "model.onnx").is_file()
    assert served == [1]

    fail_v2 = True  # Triton refuses v2: v1 keeps serving, registry and repository unchanged
    with pytest.raises(FailedPrecondition, match=r"version: .*Triton failed to load: bad"):
        publisher.publish(MODEL, 2)
    assert registry.serving_version(MODEL).version == 1
    assert registry.get_version(MODEL, 2).status == "CANDIDATE"
    assert not (repository / MODEL / "2").exists()
    assert served == [1]

    fail_v2 = False
    calls.clear()
    outcome = publisher.publish(MODEL, 2)
    # Both load first (the old one serves until the new is READY), then the old one goes.
    assert calls == [[1, 2], [2]]
    assert (outcome.version.version, outcome.previous.version) == (2, 1)
    assert {v.version: v.status for v in registry.list_versions(MODEL)} == {
        2: "SERVING",
        1: "RETIRED",
    }

    calls.clear()
    outcome = publisher.rollback(MODEL)
    assert calls == [[1, 2], [1]] and served == [1]
    assert {v.version: v.status for v in registry.list_versions(MODEL)} == {
        2: "ROLLED_BACK",
        1: "SERVING",
    }
    with pytest.raises(FailedPrecondition, match="to_version: no version"):
        publisher.rollback(MODEL)
