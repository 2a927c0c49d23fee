"""Training jobs in worker processes: start, progress, cancel, crash, and the registry behind them.

``JobRunner.submit`` creates the job (QUEUED) in the registry and starts one worker process
(multiprocessing ``spawn``: a fresh interpreter, so torch's threads and a crash never touch the
trainer's RPC threads). The worker runs a *job function* (``shared.training.job``'s
``run_training_job``, the only code here that imports torch) and reports over a queue; one
monitor thread per job applies the reports to an in-memory snapshot, writes them to the
registry (at most every ``persist_interval_s``, and always on a stage or state change) and
wakes WatchJob streams through a ``threading.Condition``. Cancellation sets a multiprocessing
Event the job function polls (``should_stop``); a worker that does not stop within
``cancel_grace_s`` is terminated.

The outcome is decided by the parent only: a result from the worker goes to ``on_result``
(register the version, publish it), anything else (an error, a non-zero exit, a signal) marks
the job FAILED with the reason and registers nothing, so the registry stays consistent and the
serving version is untouched whatever the worker did.
"""

from __future__ import annotations

import json
import multiprocessing
import multiprocessing.process
import queue
import shutil
import signal
import threading
import time
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

from shared.errors import FailedPrecondition, ShopsenseError, Unavailable
from shared.rpc import metrics
from shared.storage.registry import (
    JobStage,
    JobState,
    ModelRegistry,
    TrainingJob,
    utc_now,
)
from shared.training.job import (
    JobCancelled,
    JobSpec,
    Report,
    ShouldStop,
    plain,
    run_training_job,
    stage_of,
)

_log = structlog.get_logger("shopsense.trainer.jobs")
_STARTED = metrics.counter(
    "trainer", "shopsense_training_jobs_started", "Training jobs started, by model.", ("model",)
)
_FINISHED = metrics.counter(
    "trainer",
    "shopsense_training_jobs_finished",
    "Training jobs ended, by model and state (SUCCEEDED, FAILED, CANCELLED).",
    ("model", "state"),
)

# Runs in the worker (``run_training_job``, fakes in tests); returns the result dict ``on_result`` receives. Must be a module-level
# function (spawn pickles it by name).
JobFunction = Callable[[JobSpec, Report, ShouldStop], Mapping[str, Any]]
# Runs in the trainer when a worker returned a result: registers (and maybe publishes) the
# version; returns (version number, a note for the job's error/notes field, "" for none).
OnResult = Callable[[TrainingJob, Mapping[str, Any], Callable[[JobStage], None]], tuple[int, str]]


def _worker_main(
    job_function: JobFunction, spec: JobSpec, events: Any, stop: Any
) -> None:  # pragma: no cover - runs in the spawned process
    """The worker process: run the job function, send its result or its error, exit."""

    def report(update: Mapping[str, Any]) -> None:
        events.put(("progress", dict(update)))

    try:
        result = job_function(spec, report, stop.is_set)
    except JobCancelled as exc:
        events.put(("cancelled", str(exc)))
        return
    except BaseException as exc:
        traceback.print_exc()
        message = str(exc) or type(exc).__name__
        events.put(("error", f"{type(exc).__name__}: {message}"))
        return
    events.put(("result", plain(dict(result))))


def exit_reason(exitcode: int | None) -> str:
    """Why a worker ended without a result, in words."""
    if exitcode is None:
        return "worker did not exit"
    if exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = f"signal {-exitcode}"
        return f"worker process was killed by {name}"
    return f"worker process exited with code {exitcode} without a result"


@dataclass
class _LiveJob:
    """A job whose worker the runner still watches."""

    job: TrainingJob
    process: multiprocessing.process.BaseProcess
    events: Any
    stop: Any
    revision: int = 0
    last_persist: float = 0.0
    cancel_deadline: float | None = None
    stopping_for_shutdown: bool = False
    monitor: threading.Thread | None = None


class JobRunner:
    """Starts jobs in worker processes and keeps their state in the registry.

    One job per model at a time. ``job_function`` runs in the worker (tests pass fakes);
    ``on_result`` runs in the trainer when a worker returns a result.
    """

    def __init__(
        self,
        registry: ModelRegistry,
        training_dir: Path,
        job_function: JobFunction = run_training_job,
        on_result: OnResult | None = None,
        *,
        cancel_grace_s: float = 30.0,
        persist_interval_s: float = 0.5,
        poll_s: float = 0.1,
    ) -> None:
        self._registry = registry
        self._training_dir = Path(training_dir)
        self._job_function = job_function
        self._on_result = on_result or self._register_only
        self._cancel_grace_s = cancel_grace_s
        self._persist_interval_s = persist_interval_s
        self._poll_s = poll_s
        self._context = multiprocessing.get_context("spawn")
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._live: dict[str, _LiveJob] = {}
        self._revision = 0
        self._closed = False

    @property
    def registry(self) -> ModelRegistry:
        return self._registry

    def recover(self, reason: str = "trainer restarted") -> list[str]:
        """Mark jobs a previous trainer left QUEUED or RUNNING as FAILED; their ids.

        Their workers died with that trainer; nothing they made was registered.
        """
        stale = self._registry.fail_stale_jobs(reason)
        for job_id in stale:
            _log.warning("stale_job_failed", job_id=job_id, reason=reason)
        return stale

    def work_dir(self, job_id: str) -> Path:
        """The job's folder: checkpoint and export go under it."""
        return self._training_dir / job_id

    # --- starting -----------------------------------------------------------------------

    def submit(
        self,
        model: str,
        dataset: str,
        hyperparameters: Mapping[str, str] | None = None,
        *,
        parent_version: int | None = None,
        teacher_version: int | None = None,
        publish: bool = False,
        init_checkpoint: str | None = None,
        teacher_checkpoint: str | None = None,
        serving_exports: Mapping[str, str] | None = None,
    ) -> TrainingJob:
        """Create the job and start its worker; FailedPrecondition when ``model`` has one."""
        with self._lock:
            if self._closed:
                raise Unavailable("trainer: shutting down; start the job again after the restart")
            for live in self._live.values():
                # A job whose terminal state was already announced (a watcher may start the
                # next job before the monitor thread drops it) no longer holds the model.
                if live.job.model == model and not live.job.job_state.terminal:
                    raise FailedPrecondition(
                        f"model {model}: job {live.job.job_id} is already running"
                    )
            job = self._registry.create_job(
                model,
                dataset,
                hyperparameters,
                parent_version=parent_version,
                teacher_version=teacher_version,
                publish=publish,
            )
            spec = JobSpec(
                job_id=job.job_id,
                model=model,
                dataset_dir=str(dataset),
                work_dir=str(self.work_dir(job.job_id)),
                hyperparameters=dict(hyperparameters or {}),
                init_checkpoint=init_checkpoint,
                teacher_checkpoint=teacher_checkpoint,
                serving_exports=dict(serving_exports or {}),
            )
            events = self._context.Queue()
            stop = self._context.Event()
            process = self._context.Process(
                target=_worker_main,
                args=(self._job_function, spec, events, stop),
                name=f"trainer-job-{job.job_id[:8]}",
                daemon=True,
            )
            live = _LiveJob(job=job, process=process, events=events, stop=stop)
            self._live[job.job_id] = live
            self._bump(live)
            try:
                process.start()
            except Exception as exc:
                del self._live[job.job_id]
                self._registry.update_job(
                    job.job_id,
                    state=JobState.FAILED,
                    stage=JobStage.DONE,
                    error=f"worker process could not start: {exc}",
                    finished_at=utc_now(),
                )
                raise
            live.monitor = threading.Thread(
                target=self._monitor, args=(live,), name=live.process.name, daemon=True
            )
            live.monitor.start()
        _STARTED.labels(model).inc()
        _log.info("job_started", job_id=job.job_id, model=model, pid=process.pid)
        return job

    # --- reading and waiting ------------------------------------------------------------

    def snapshot(self, job_id: str) -> tuple[TrainingJob, int]:
        """The job's latest snapshot and a revision to pass to ``wait_for_change``."""
        with self._lock:
            live = self._live.get(job_id)
            if live is not None:
                return live.job, live.revision
        return self._registry.get_job(job_id), -1

    def wait_for_change(self, job_id: str, revision: int, timeout: float) -> bool:
        """Block until the job's snapshot is newer than ``revision`` (True) or ``timeout``."""

        def changed() -> bool:
            if self._closed:
                return True
            live = self._live.get(job_id)
            return (live.revision if live is not None else -1) != revision

        with self._changed:
            return self._changed.wait_for(changed, timeout)

    @property
    def closed(self) -> bool:
        return self._closed

    # --- cancelling and stopping --------------------------------------------------------

    def cancel(self, job_id: str) -> TrainingJob:
        """Ask the job's worker to stop; FailedPrecondition when it already finished."""
        with self._lock:
            live = self._live.get(job_id)
            if live is not None and live.job.job_state.terminal:
                # Finished; the monitor is only tidying up.
                raise FailedPrecondition(f"job_id: job {job_id} already ended {live.job.state}")
            if live is not None:
                live.stop.set()
                if live.cancel_deadline is None:
                    live.cancel_deadline = time.monotonic() + self._cancel_grace_s
                live.job = live.job.model_copy(update={"cancel_requested": True})
                self._bump(live)
                job = live.job
        if live is None:
            job = self._registry.get_job(job_id)
            if job.job_state.terminal:
                raise FailedPrecondition(f"job_id: job {job_id} already ended {job.state}")
            return job
        self._registry.update_job(job_id, cancel_requested=True)
        _log.info("job_cancel_requested", job_id=job_id)
        return job

    def close(self, grace_s: float = 5.0) -> None:
        """Stop every worker (jobs end FAILED "trainer stopped") and wait for the monitors."""
        with self._lock:
            self._closed = True
            lives = list(self._live.values())
            for live in lives:
                live.stopping_for_shutdown = True
                live.stop.set()
                live.cancel_deadline = time.monotonic() + grace_s
            self._changed.notify_all()
        for live in lives:
            if live.monitor is not None:
                live.monitor.join(grace_s + 10.0)

    # --- the monitor --------------------------------------------------------------------

    def _bump(self, live: _LiveJob) -> None:
        """Mark ``live`` changed and wake watchers (caller holds the lock)."""
        self._revision += 1
        live.revision = self._revision
        self._changed.notify_all()

    def _apply(self, live: _LiveJob, update: Mapping[str, Any], *, persist: bool) -> None:
        """Apply a change to the snapshot; write it to the registry when due."""
        fields: dict[str, Any] = {}
        metrics = update.get("metrics") or {}
        for name in ("step", "total_steps", "epoch"):
            if name in update:
                fields[name] = int(update[name])
        if "stage" in update:
            stage = stage_of(str(update["stage"]))
            if stage.value != live.job.stage:
                persist = True
            fields["stage"] = stage.value
        for name in ("state", "error", "started_at", "finished_at", "result_version"):
            if name in update:
                value = update[name]
                fields[name] = value.value if isinstance(value, JobState) else value
                persist = True
        if "progress" in update:
            fields["progress"] = min(1.0, max(0.0, float(update["progress"])))
        elif fields.get("total_steps"):
            fields["progress"] = min(1.0, fields.get("step", live.job.step) / fields["total_steps"])
        with self._lock:
            job = live.job
            if metrics:
                merged = job.metrics
                merged.update({str(k): float(v) for k, v in metrics.items()})
                fields["metrics_json"] = json.dumps(merged, sort_keys=True)
            snapshot = job.model_copy(update=fields)
            # A terminal state is announced once the registry holds it: a watcher told the
            # job ended may start the model's next job at once, and the registry refuses a
            # model while it still lists a job of it as running.
            ending = snapshot.job_state.terminal
            if not ending:
                live.job = snapshot
                self._bump(live)
        try:
            self._persist(live, snapshot, persist)
        finally:
            if ending:
                with self._lock:
                    live.job = snapshot
                    self._bump(live)

    def _persist(self, live: _LiveJob, snapshot: TrainingJob, persist: bool) -> None:
        """Write ``snapshot`` to the registry when ``persist`` or the interval is due."""
        now = time.monotonic()
        if persist or now - live.last_persist >= self._persist_interval_s:
            live.last_persist = now
            try:
                self._registry.update_job(
                    snapshot.job_id,
                    **{
                        name: getattr(snapshot, name)
                        for name in (
                            "state",
                            "stage",
                            "progress",
                            "step",
                            "total_steps",
                            "epoch",
                            "metrics_json",
                            "error",
                            "started_at",
                            "finished_at",
                            "result_version",
                        )
                    },
                )
            except Exception as exc:  # the database is back next time; the snapshot is current
                _log.warning("job_persist_failed", job_id=snapshot.job_id, error=str(exc))
                if persist:
                    raise

    def _monitor(self, live: _LiveJob) -> None:
        job_id = live.job.job_id
        self._apply(
            live,
            {
                "state": JobState.RUNNING,
                "stage": JobStage.LOADING_DATA.value,
                "started_at": utc_now(),
            },
            persist=True,
        )
        result: Mapping[str, Any] | None = None
        error: str | None = None
        cancelled = False
        terminated = False
        exited_at: float | None = None
        while True:
            try:
                kind, payload = live.events.get(timeout=self._poll_s)
            except queue.Empty:
                if not live.process.is_alive():
                    # The queue's pipe may still hold the last messages: drain briefly.
                    exited_at = exited_at or time.monotonic()
                    if time.monotonic() - exited_at > 0.5:
                        break
                    continue
                deadline = live.cancel_deadline
                if deadline is not None and not terminated and time.monotonic() > deadline:
                    _log.warning("job_worker_terminated", job_id=job_id)
                    live.process.terminate()
                    terminated = True
                continue
            except (EOFError, OSError):
                break
            if kind == "progress":
                try:
                    self._apply(live, payload, persist=False)
                except Exception as exc:
                    _log.warning("job_progress_failed", job_id=job_id, error=str(exc))
            elif kind == "result":
                result = payload
            elif kind == "error":
                error = str(payload)
            elif kind == "cancelled":
                cancelled = True
        live.process.join(5.0)
        exitcode = live.process.exitcode
        live.events.close()
        self._finish(live, result, error, cancelled, exitcode)

    def _finish(
        self,
        live: _LiveJob,
        result: Mapping[str, Any] | None,
        error: str | None,
        cancelled: bool,
        exitcode: int | None,
    ) -> None:
        job_id = live.job.job_id
        update: dict[str, Any] = {"stage": JobStage.DONE.value}
        stop_requested = live.stop.is_set()
        if live.stopping_for_shutdown:
            update.update(state=JobState.FAILED, error="trainer stopped while the job ran")
        elif stop_requested:
            # Cancelled wins over a result that raced it: nothing is registered.
            update.update(state=JobState.CANCELLED, error="cancelled")
        elif result is not None:
            try:
                version, note = self._on_result(live.job, result, self._stage_setter(live))
            except Exception as exc:
                message = exc.message if isinstance(exc, ShopsenseError) else str(exc)
                _log.exception("job_result_failed", job_id=job_id)
                update.update(state=JobState.FAILED, error=f"registering the result: {message}")
            else:
                update.update(
                    state=JobState.SUCCEEDED, result_version=version, error=note, progress=1.0
                )
        elif cancelled:
            update.update(state=JobState.CANCELLED, error="cancelled")
        elif error is not None:
            update.update(state=JobState.FAILED, error=error)
        else:
            update.update(state=JobState.FAILED, error=exit_reason(exitcode))
        update["finished_at"] = utc_now()
        if update["state"] != JobState.SUCCEEDED:
            shutil.rmtree(self.work_dir(job_id), ignore_errors=True)
        try:
            self._apply(live, update, persist=True)
        except Exception:
            _log.exception("job_finish_persist_failed", job_id=job_id)
        with self._lock:
            self._live.pop(job_id, None)
            self._changed.notify_all()
        _FINISHED.labels(live.job.model, str(update["state"])).inc()
        _log.info(
            "job_finished",
            job_id=job_id,
            state=str(update["state"]),
            error=update.get("error", ""),
            exitcode=exitcode,
        )

    def _stage_setter(self, live: _LiveJob) -> Callable[[JobStage], None]:
        return lambda stage: self._apply(live, {"stage": stage.value}, persist=True)

    def _register_only(
        self,
        job: TrainingJob,
        result: Mapping[str, Any],
        set_stage: Callable[[JobStage], None],
    ) -> tuple[int, str]:
        """The default ``on_result``: register the result as the next CANDIDATE version."""
        version = register_result(
            self._registry, job, result, self._registry.max_version(job.model) + 1
        )
        return version, ""


def register_result(
    registry: ModelRegistry, job: TrainingJob, result: Mapping[str, Any], version: int
) -> int:
    """Register a worker's result as CANDIDATE ``version`` of the job's model; the version."""
    registry.register_version(
        job.model,
        version,
        job_id=job.job_id,
        parent_version=job.parent_version,
        data_fingerprint=str(result.get("data_fingerprint", "")),
        hyperparameters=result.get("hyperparameters") or job.hyperparameters,
        dev_metrics=result.get("dev_metrics") or {},
        offline_metrics=result.get("offline_metrics") or {},
        export_report=result.get("export_report") or {},
        training_seconds=float(result.get("seconds", 0.0) or 0.0),
        checkpoint_dir=str(result.get("checkpoint_dir", "")),
        export_dir=str(result.get("export_dir", "")),
    )
    return version
