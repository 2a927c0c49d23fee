"""Continuous retraining: retrain a model when enough new feedback has arrived.

Off unless ``SHOPSENSE_RETRAIN_MODELS`` names models. Every ``SHOPSENSE_RETRAIN_INTERVAL_S``
the trainer counts, for each of them, the feedback events that model learns from (search
feedback for the cross_encoder; clicks, carts and purchases for the sequence_recommender)
received since the model's newest training job was created. That watermark is read from
the registry's job table, not kept in memory: it survives a restart, and a job that
StartTraining started moves it like a scheduled one (both trained on that feedback).

From ``SHOPSENSE_RETRAIN_MIN_NEW_EVENTS`` on, and only while no job of the model is queued
or running, the schedule starts the job StartTraining starts (it calls the servicer): a
feedback job from the serving version, evaluated offline against it in the worker and
registered as a CANDIDATE, never published. Once that job has succeeded and
``SHOPSENSE_RETRAIN_EXPERIMENT_SHARE`` is above 0, it creates and starts an A/B experiment,
the serving version against the candidate, which the guard rails then watch; promoting
stays a person's call (PromoteArm). It never starts a second experiment while one runs.

Each scheduled job is a row of ``scheduled_retrains`` in the registry's database: why it
started and what became of its candidate. ListJobs shows that as the job's ``trigger``, and
the schedule's latest check of each model as its ``schedule``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import sqlalchemy
import structlog
from shopsense.trainer.v1 import trainer_service_pb2 as pb
from sqlalchemy import Text, func, select
from sqlmodel import Field, Session, SQLModel

from services.trainer.experiments import ExperimentServicer
from shared.contracts.common import set_timestamps
from shared.errors import InvalidArgument, ShopsenseError
from shared.experiments.assignment import Arm, Experiment
from shared.models.kinds import CROSS_ENCODER, SEQUENCE_RECOMMENDER
from shared.paths import confined
from shared.settings import TrainerSettings
from shared.storage.experiments import ExperimentStore
from shared.storage.feedback import FeedbackEvent, UTCDateTime
from shared.storage.migrate import upgrade
from shared.storage.registry import JobState, ModelRegistry, TrainingJob, utc_now
from shared.training.hyperparams import HyperparameterError, Hyperparameters

# The kinds the schedule can retrain: those StartTraining trains from feedback.
RETRAIN_KINDS = (CROSS_ENCODER, SEQUENCE_RECOMMENDER)
# The offline figure a candidate is reported by, beside the serving version's
# (``offline/<name>`` and ``offline/serving/<name>`` in the job's metrics).
HEADLINE = {CROSS_ENCODER: "pipeline/ndcg@10", SEQUENCE_RECOMMENDER: "next_item/ndcg@10"}

_log = structlog.get_logger("shopsense.trainer.schedule")

# StartTraining as the servicer answers it (the RPC's own checks and job).
StartTraining = Callable[[pb.StartTrainingRequest], pb.StartTrainingResponse]


# --- settings -----------------------------------------------------------------------------


@dataclass(frozen=True)
class RetrainPolicy:
    """The schedule's settings, checked (see the module docstring)."""

    models: tuple[str, ...]
    min_new_events: int = 10_000
    interval_s: float = 300.0
    window_days: float = 0.0
    hyperparameters: Mapping[str, str] = field(default_factory=dict)
    catalog: str = ""
    experiment_share: float = 0.0

    @classmethod
    def from_settings(cls, settings: TrainerSettings) -> RetrainPolicy:
        """The policy of ``settings``; ValueError naming the variable of a bad value."""
        models = tuple(
            dict.fromkeys(m.strip() for m in settings.retrain_models.split(",") if m.strip())
        )
        for model in models:
            if model not in RETRAIN_KINDS:
                raise ValueError(
                    f"SHOPSENSE_RETRAIN_MODELS: {model!r} does not learn from feedback; "
                    f"one of {', '.join(RETRAIN_KINDS)}"
                )
        if CROSS_ENCODER in models and not settings.retrain_catalog:
            raise ValueError(
                "SHOPSENSE_RETRAIN_CATALOG: required when SHOPSENSE_RETRAIN_MODELS names the "
                "cross_encoder (its catalog folder, with product.csv)"
            )
        if settings.retrain_catalog:
            # Checked again by StartTraining at every scheduled run (as its dataset).
            try:
                confined(settings.retrain_catalog, settings.data_root, "SHOPSENSE_RETRAIN_CATALOG")
            except InvalidArgument as exc:
                raise ValueError(exc.message) from None
        overrides = parse_hyperparameters(settings.retrain_hyperparameters)
        for model in models:
            try:
                Hyperparameters.for_kind(model, overrides)
            except HyperparameterError as exc:
                raise ValueError(f"SHOPSENSE_RETRAIN_HYPERPARAMETERS: {exc}") from None
        return cls(
            models=models,
            min_new_events=settings.retrain_min_new_events,
            interval_s=settings.retrain_interval_s,
            window_days=settings.retrain_window_days,
            hyperparameters=overrides,
            catalog=settings.retrain_catalog,
            experiment_share=settings.retrain_experiment_share,
        )


def parse_hyperparameters(raw: str) -> dict[str, str]:
    """``NAME=VALUE,NAME=VALUE`` as a dict; ValueError naming the variable when malformed."""
    out: dict[str, str] = {}
    for part in (p.strip() for p in raw.split(",")):
        if not part:
            continue
        name, sep, value = part.partition("=")
        if not sep or not name.strip():
            raise ValueError(
                f"SHOPSENSE_RETRAIN_HYPERPARAMETERS: expected NAME=VALUE, got {part!r}"
            )
        out[name.strip()] = value.strip()
    return out


# --- what the schedule did, in the registry's database -------------------------------------


class ScheduledRetrain(SQLModel, table=True):
    """A job the schedule started: why, and what became of its candidate."""

    __tablename__ = "scheduled_retrains"  # type: ignore[assignment]

    job_id: str = Field(primary_key=True, max_length=32)
    model: str = Field(index=True, max_length=64)
    # New feedback events counted, and since when (None: the model had no job before).
    new_events: int = 0
    since: datetime | None = Field(default=None, sa_type=UTCDateTime)
    created_at: datetime = Field(default_factory=utc_now, sa_type=UTCDateTime)
    # "schedule: N new feedback events since T (threshold M)".
    trigger: str = Field(default="", sa_type=Text)
    # What became of the candidate once the job ended ("" until then).
    outcome: str = Field(default="", sa_type=Text)
    followed_up: bool = Field(default=False, index=True)

    def describe(self) -> str:
        """The job's ``trigger`` as ListJobs shows it."""
        return f"{self.trigger}; {self.outcome}" if self.outcome else self.trigger


class ScheduledRuns:
    """The ``scheduled_retrains`` table of the registry's database (its migrations create
    it, as they do every registry table)."""

    def __init__(self, engine: sqlalchemy.Engine) -> None:
        self._engine = engine
        upgrade(engine, "registry")  # one SELECT when the registry is already current

    def _session(self) -> Session:
        return Session(self._engine, expire_on_commit=False)

    def add(self, row: ScheduledRetrain) -> None:
        with self._session() as session, session.begin():
            session.add(row)

    def pending(self, model: str) -> list[ScheduledRetrain]:
        """``model``'s scheduled jobs whose candidate is not followed up yet."""
        query = (
            select(ScheduledRetrain)
            .where(ScheduledRetrain.model == model)
            .where(ScheduledRetrain.followed_up == False)  # noqa: E712 (SQL, not Python)
            .order_by(ScheduledRetrain.created_at)  # type: ignore[arg-type]
        )
        with self._session() as session:
            return list(session.exec(query).scalars())  # type: ignore[call-overload]

    def finish(self, job_id: str, outcome: str) -> None:
        with self._session() as session, session.begin():
            row = session.get(ScheduledRetrain, job_id)
            if row is not None:
                row.outcome = outcome
                row.followed_up = True

    def triggers(self, job_ids: Iterable[str]) -> dict[str, str]:
        """Job id -> its ``trigger`` text, for the ids the schedule started."""
        ids = list(job_ids)
        if not ids:
            return {}
        query = select(ScheduledRetrain).where(ScheduledRetrain.job_id.in_(ids))  # type: ignore[attr-defined]
        with self._session() as session:
            return {row.job_id: row.describe() for row in session.exec(query).scalars()}  # type: ignore[call-overload]


# --- the decision ---------------------------------------------------------------------------


def watermark(jobs: Iterable[TrainingJob]) -> datetime | None:
    """Since when feedback is new for a model: when its newest job was created, whatever
    its state or who started it (a failed or cancelled run waits for new feedback too,
    instead of retrying every interval); None when it never had a job."""
    return max((job.created_at for job in jobs), default=None)


@dataclass(frozen=True)
class Decision:
    """Whether to retrain now, and why, in words."""

    retrain: bool
    reason: str


def decide(
    new_events: int,
    min_new_events: int,
    active_job: str | None = None,
    refused_at: int | None = None,
) -> Decision:
    """Retrain when ``new_events`` reach ``min_new_events`` and no job of the model
    (``active_job``, whoever started it) is queued or running. ``refused_at``: the count
    at which StartTraining last refused a scheduled run since the same watermark (the data
    was too small, say): then wait for ``min_new_events`` more rather than ask again."""
    if active_job:
        return Decision(False, f"job {active_job} is running; one job per model at a time")
    if new_events < min_new_events:
        return Decision(False, f"below the threshold ({new_events:,} of {min_new_events:,})")
    if refused_at is not None and new_events < refused_at + min_new_events:
        return Decision(
            False,
            f"refused at {refused_at:,} new events; waiting for {refused_at + min_new_events:,}",
        )
    return Decision(True, f"{new_events:,} new feedback events (threshold {min_new_events:,})")


def count_new_events(engine: sqlalchemy.Engine, model: str, since: datetime | None) -> int:
    """Feedback events ``model`` learns from, received after ``since`` (all when None)."""
    table = FeedbackEvent.__table__
    query = select(func.count()).select_from(table)
    if model == CROSS_ENCODER:
        # Search feedback: the token named the query (what the click model reads).
        query = query.where(table.c.query.is_not(None), table.c.request_id.is_not(None))
    else:
        query = query.where(table.c.type != "impression")
    if since is not None:
        query = query.where(table.c.received_at > since)
    with engine.connect() as conn:
        return int(conn.execute(query).scalar_one())


def offline_comparison(model: str, metrics: Mapping[str, float]) -> str:
    """The candidate's headline offline figure beside the serving version's, in words."""
    name = HEADLINE[model]
    candidate = metrics.get(f"offline/{name}")
    serving = metrics.get(f"offline/serving/{name}")
    if candidate is None:
        return "no offline figures"
    if serving is None:
        return f"offline {name} {candidate:.4f} (no serving version to compare)"
    return f"offline {name} {candidate:.4f} against the serving version's {serving:.4f}"


def experiment_name(model: str, version: int) -> str:
    return f"retrain-{model}-v{version}"


# --- the schedule ---------------------------------------------------------------------------


@dataclass
class Check:
    """The latest check of one model, as ListJobs reports it."""

    model: str
    checked_at: datetime | None = None
    new_events: int = 0
    since: datetime | None = None
    decision: str = "not checked yet"
    job_id: str = ""


class RetrainScheduler:
    """Checks the models of a policy, starts their jobs, follows their candidates up.

    ``start_training`` is the servicer's StartTraining; ``experiments`` (with their
    ``store``) create and start the A/B experiment, and may be None when the policy's
    share is 0.
    """

    def __init__(
        self,
        policy: RetrainPolicy,
        registry: ModelRegistry,
        feedback_engine: Callable[[], sqlalchemy.Engine],
        start_training: StartTraining,
        runs: ScheduledRuns,
        experiments: ExperimentServicer | None = None,
        store: ExperimentStore | None = None,
    ) -> None:
        self._policy = policy
        self._registry = registry
        self._feedback_engine = feedback_engine
        self._start = start_training
        self._runs = runs
        self._experiments = experiments
        self._store = store
        self._lock = threading.Lock()
        self._checks = {model: Check(model) for model in policy.models}
        # Model -> (watermark, count) of StartTraining's last refusal.
        self._refused: dict[str, tuple[datetime | None, int]] = {}

    @property
    def policy(self) -> RetrainPolicy:
        return self._policy

    def status(self, model: str = "") -> list[pb.RetrainCheck]:
        """The latest check of each model (of ``model`` when given)."""
        with self._lock:
            checks = [c for c in self._checks.values() if not model or c.model == model]
            out = []
            for c in checks:
                message = pb.RetrainCheck(
                    model=c.model,
                    new_events=c.new_events,
                    min_new_events=self._policy.min_new_events,
                    decision=c.decision,
                    job_id=c.job_id,
                )
                set_timestamps(message, checked_time=c.checked_at, since_time=c.since)
                out.append(message)
        return out

    def tick(self) -> None:
        """One look at every model: follow up ended jobs, then maybe start one."""
        for model in self._policy.models:
            try:
                for row in self._runs.pending(model):
                    self.follow_up(row)
                self.check(model)
            except Exception as exc:  # the feedback store or registry away: next time
                _log.warning("retrain_check_failed", model=model, error=str(exc))

    # --- starting -------------------------------------------------------------------------

    def check(self, model: str) -> Check:
        """Count the model's new feedback and start its job when due; the check."""
        since = watermark(self._registry.list_jobs(model, 1))
        new_events = count_new_events(self._feedback_engine(), model, since)
        active = self._registry.active_job(model)
        refused = self._refused.get(model)
        refused_at = refused[1] if refused is not None and refused[0] == since else None
        decision = decide(
            new_events, self._policy.min_new_events, active.job_id if active else None, refused_at
        )
        job_id = ""
        reason = decision.reason
        if decision.retrain:
            job_id, reason = self._start_job(model, new_events, since)
        with self._lock:
            check = self._checks[model]
            if not decision.retrain and reason != check.decision:  # said once, not each time
                _log.info("retrain_waiting", model=model, new_events=new_events, reason=reason)
            check.checked_at = utc_now()
            check.new_events = new_events
            check.since = since
            check.decision = reason
            check.job_id = job_id or check.job_id
            return Check(**vars(check))

    def _start_job(self, model: str, new_events: int, since: datetime | None) -> tuple[str, str]:
        """Start the model's job as StartTraining does; (job id or "", what happened)."""
        request = self.training_request(model)
        try:
            started = self._start(request)
        except ShopsenseError as exc:
            # Too little usable data, a job started meanwhile, the catalog missing: the
            # RPC's own refusal. Asked again once min_new_events more have arrived.
            self._refused[model] = (since, new_events)
            _log.warning("retrain_refused", model=model, new_events=new_events, error=exc.message)
            return "", f"StartTraining refused: {exc.message}"
        self._refused.pop(model, None)
        when = since.isoformat(timespec="seconds") if since else "the first event"
        trigger = (
            f"schedule: {new_events:,} new feedback events since {when} "
            f"(threshold {self._policy.min_new_events:,})"
        )
        self._runs.add(
            ScheduledRetrain(
                job_id=started.job_id,
                model=model,
                new_events=new_events,
                since=since,
                trigger=trigger,
            )
        )
        _log.info(
            "retrain_started",
            model=model,
            job_id=started.job_id,
            new_events=new_events,
            since=when,
            parent_version=started.job.parent_version,
        )
        return started.job_id, f"started job {started.job_id}: {trigger}"

    def training_request(self, model: str) -> pb.StartTrainingRequest:
        """The StartTraining request of a scheduled run of ``model``: feedback (of the last
        ``window_days`` when set), the policy's hyperparameters, registered, not published."""
        source = pb.FeedbackSource(enabled=True)
        if self._policy.window_days > 0:
            set_timestamps(source, since=utc_now() - timedelta(days=self._policy.window_days))
        return pb.StartTrainingRequest(
            model=model,
            dataset=self._policy.catalog if model == CROSS_ENCODER else "",
            hyperparameters=dict(self._policy.hyperparameters),
            publish=False,
            feedback=source,
        )

    # --- following up ---------------------------------------------------------------------

    def follow_up(self, row: ScheduledRetrain) -> str | None:
        """Once the row's job has ended: record what became of its candidate (and start
        its experiment when the policy asks); the outcome, or None while it runs."""
        job = self._registry.get_job(row.job_id)
        if not job.job_state.terminal:
            return None
        if job.job_state != JobState.SUCCEEDED or not job.result_version:
            outcome = f"job {job.state}: {job.error or 'no version'}"
            _log.warning("retrain_failed", model=row.model, job_id=row.job_id, error=outcome)
        else:
            version = int(job.result_version)
            figures = offline_comparison(row.model, job.metrics)
            _log.info(
                "retrain_candidate",
                model=row.model,
                version=version,
                job_id=row.job_id,
                offline=figures,
            )
            outcome = f"candidate {row.model} {version} registered, {figures}; " + (
                self._experiment(row, version)
            )
        self._runs.finish(row.job_id, outcome)
        with self._lock:
            check = self._checks.get(row.model)
            if check is not None and check.job_id == row.job_id:
                check.decision = f"job {row.job_id} ended: {outcome}"
        return outcome

    def _experiment(self, row: ScheduledRetrain, version: int) -> str:
        """Create and start the A/B experiment of a candidate; what happened, in words."""
        share = self._policy.experiment_share
        if share <= 0 or self._experiments is None or self._store is None:
            return "no experiment (SHOPSENSE_RETRAIN_EXPERIMENT_SHARE is 0)"
        name = experiment_name(row.model, version)
        running = self._store.running()
        if running is not None and running.name != name:
            _log.warning("retrain_experiment_not_started", name=name, running=running.name)
            return f"no experiment: {running.name!r} is running (one experiment at a time)"
        experiment = Experiment(
            name=name,
            salt=name,
            arms=(
                Arm("serving", round(1.0 - share, 6)),
                Arm("candidate", round(share, 6), models={row.model: str(version)}),
            ),
            description=f"{row.trigger}: {row.model} {version} against the serving version",
        )
        try:
            self._experiments.create(experiment, "schedule")
            self._experiments.start(name)
        except ShopsenseError as exc:
            _log.warning("retrain_experiment_not_started", name=name, error=exc.message)
            return f"no experiment: {exc.message}"
        _log.info("retrain_experiment_started", name=name, model=row.model, version=version)
        return f"experiment {name} started ({share:.0%} of shoppers to the candidate)"
