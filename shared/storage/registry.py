"""The model registry: every trained version of every model, and the training jobs.

Two tables in the suite's SQL database (``create_db_engine``: SQLite by default, PostgreSQL
the same): ``model_versions`` (lineage, training-data fingerprint, hyperparameters, metrics,
export report, status) and ``training_jobs`` (state, stage, progress, metrics so far). JSON
values are stored as text so both backends read them the same way.

Status changes happen in one transaction each, and a partial unique index makes "at most one
SERVING version per model" a property of the database, not only of this code. This module
knows nothing of gRPC messages or Triton; its errors are the suite's domain errors so the
trainer can pass them straight to its callers.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import sqlalchemy
from sqlalchemy import Index, Text, UniqueConstraint, func, select, text
from sqlmodel import Field, Session, SQLModel

from shared.errors import FailedPrecondition, NotFound
from shared.storage.feedback import UTCDateTime
from shared.storage.migrate import upgrade

MAX_NAME_CHARS = 64


class JobState(StrEnum):
    """Where a training job is in its life (the proto's JobState without the prefix)."""

    QUEUED = "QUEUED"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"

    @property
    def terminal(self) -> bool:
        """True for SUCCEEDED, FAILED and CANCELLED: the state never changes again."""
        return self in (JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED)


ACTIVE_STATES = (JobState.QUEUED, JobState.RUNNING)


class JobStage(StrEnum):
    """What a running job is doing (the proto's JobStage without the prefix)."""

    UNSPECIFIED = "UNSPECIFIED"
    LOADING_DATA = "LOADING_DATA"
    TRAINING = "TRAINING"
    EVALUATING = "EVALUATING"
    EXPORTING = "EXPORTING"
    OFFLINE_EVAL = "OFFLINE_EVAL"
    PUBLISHING = "PUBLISHING"
    DONE = "DONE"


class VersionStatus(StrEnum):
    """A registered version's place in its model's history."""

    CANDIDATE = "CANDIDATE"
    SERVING = "SERVING"
    RETIRED = "RETIRED"
    ROLLED_BACK = "ROLLED_BACK"


def utc_now() -> datetime:
    """Aware UTC now (the registry's only clock)."""
    return datetime.now(UTC)


def _dumps(value: Mapping[str, Any] | Sequence[Any] | None) -> str:
    return json.dumps(value if value is not None else {}, sort_keys=True, default=str)


def _loads(raw: str | None) -> Any:
    return json.loads(raw) if raw else {}


class TrainingJob(SQLModel, table=True):
    """One training job. ``metrics`` holds the latest figures (loss, dev and offline metrics)."""

    __tablename__ = "training_jobs"  # type: ignore[assignment]

    job_id: str = Field(primary_key=True, max_length=32)
    model: str = Field(index=True, max_length=MAX_NAME_CHARS)
    # A JobState value.
    state: str = Field(default=JobState.QUEUED.value, index=True, max_length=16)
    # A JobStage value.
    stage: str = Field(default=JobStage.UNSPECIFIED.value, max_length=16)
    # Share of the training steps done, 0..1.
    progress: float = 0.0
    step: int = 0
    total_steps: int = 0
    epoch: int = 0
    # JSON object name -> number.
    metrics_json: str = Field(default="{}", sa_type=Text)
    # Why it failed, or notes on a finished job; "" otherwise.
    error: str = Field(default="", sa_type=Text)
    # The request: dataset folder, hyperparameter overrides (JSON object), lineage, publish.
    dataset: str = Field(default="", sa_type=Text)
    hyperparameters_json: str = Field(default="{}", sa_type=Text)
    # Registered version trained from; None: the base model.
    parent_version: int | None = None
    # cross_encoder version distilled from; None: none.
    teacher_version: int | None = None
    publish: bool = False
    cancel_requested: bool = False
    created_at: datetime = Field(default_factory=utc_now, sa_type=UTCDateTime)
    started_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    finished_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    # The version registered by this job (SUCCEEDED only).
    result_version: int | None = None

    @property
    def job_state(self) -> JobState:
        return JobState(self.state)

    @property
    def metrics(self) -> dict[str, float]:
        return {str(k): float(v) for k, v in _loads(self.metrics_json).items()}

    @property
    def hyperparameters(self) -> dict[str, str]:
        return {str(k): str(v) for k, v in _loads(self.hyperparameters_json).items()}


class ModelVersion(SQLModel, table=True):
    """One trained version of a model and where its files are."""

    __tablename__ = "model_versions"  # type: ignore[assignment]
    __table_args__ = (
        UniqueConstraint("model", "version", name="uq_model_versions_model_version"),
        # At most one SERVING row per model, enforced by both backends.
        Index(
            "uq_model_versions_one_serving",
            "model",
            unique=True,
            sqlite_where=text("status = 'SERVING'"),
            postgresql_where=text("status = 'SERVING'"),
        ),
    )

    id: int | None = Field(default=None, primary_key=True)
    model: str = Field(index=True, max_length=MAX_NAME_CHARS)
    version: int
    # The version it was trained from; None: the base model.
    parent_version: int | None = None
    data_fingerprint: str = Field(default="", max_length=128)
    # Every hyperparameter the run used (JSON object).
    hyperparameters_json: str = Field(default="{}", sa_type=Text)
    dev_metrics_json: str = Field(default="{}", sa_type=Text)
    offline_metrics_json: str = Field(default="{}", sa_type=Text)
    # The export report (JSON object: precision, max_abs_diff, agreement, ...).
    export_json: str = Field(default="{}", sa_type=Text)
    training_seconds: float = 0.0
    # Where the trained checkpoint and the ONNX export live (until published, and after).
    checkpoint_dir: str = Field(default="", sa_type=Text)
    export_dir: str = Field(default="", sa_type=Text)
    # A VersionStatus value.
    status: str = Field(default=VersionStatus.CANDIDATE.value, index=True, max_length=16)
    job_id: str = Field(default="", max_length=32)
    created_at: datetime = Field(default_factory=utc_now, sa_type=UTCDateTime)
    # When it last became SERVING; None if never. Orders the rollback history.
    served_at: datetime | None = Field(default=None, sa_type=UTCDateTime)

    @property
    def version_status(self) -> VersionStatus:
        return VersionStatus(self.status)

    @property
    def hyperparameters(self) -> dict[str, str]:
        return {str(k): str(v) for k, v in _loads(self.hyperparameters_json).items()}

    @property
    def dev_metrics(self) -> dict[str, float]:
        return _numbers(_loads(self.dev_metrics_json))

    @property
    def offline_metrics(self) -> dict[str, float]:
        return _numbers(_loads(self.offline_metrics_json))

    @property
    def export_report(self) -> dict[str, Any]:
        return dict(_loads(self.export_json))


def _numbers(values: Mapping[str, Any]) -> dict[str, float]:
    """The entries that are numbers (reports may carry text next to figures)."""
    out: dict[str, float] = {}
    for key, value in values.items():
        if isinstance(value, int | float):  # bool is an int
            out[str(key)] = float(value)
    return out


_JOB_FIELDS = frozenset(TrainingJob.model_fields)


class ModelRegistry:
    """Reads and consistent writes of versions and jobs over an engine from ``create_db_engine``."""

    def __init__(self, engine: sqlalchemy.Engine) -> None:
        self._engine = engine
        upgrade(engine, "registry")

    @property
    def engine(self) -> sqlalchemy.Engine:
        """The engine, so the owner can dispose it."""
        return self._engine

    def _session(self) -> Session:
        return Session(self._engine, expire_on_commit=False)

    def ping(self) -> None:
        """Raise unless the database answers and the tables are readable."""
        with self._session() as session:
            session.exec(select(func.count()).select_from(ModelVersion))  # type: ignore[call-overload]

    # --- jobs ---------------------------------------------------------------------------

    def create_job(
        self,
        model: str,
        dataset: str,
        hyperparameters: Mapping[str, str] | None = None,
        *,
        parent_version: int | None = None,
        teacher_version: int | None = None,
        publish: bool = False,
    ) -> TrainingJob:
        """A new QUEUED job, or FailedPrecondition naming the job already active for ``model``.

        The check and the insert are one transaction; the trainer also serialises starts per
        model, so two concurrent requests cannot both pass the check.
        """
        job = TrainingJob(
            job_id=uuid.uuid4().hex,
            model=model,
            dataset=dataset,
            hyperparameters_json=_dumps(dict(hyperparameters or {})),
            parent_version=parent_version,
            teacher_version=teacher_version,
            publish=publish,
        )
        with self._session() as session, session.begin():
            active = session.exec(  # type: ignore[call-overload]
                select(TrainingJob)
                .where(TrainingJob.model == model)
                .where(TrainingJob.state.in_([s.value for s in ACTIVE_STATES]))  # type: ignore[attr-defined]
                .limit(1)
            ).scalar_one_or_none()
            if active is not None:
                raise FailedPrecondition(
                    f"model {model}: job {active.job_id} is already running"
                    f" ({active.state}); wait for it or cancel it"
                )
            session.add(job)
        return job

    def get_job(self, job_id: str) -> TrainingJob:
        """The job, or NotFound naming ``job_id``."""
        with self._session() as session:
            job = session.get(TrainingJob, job_id)
        if job is None:
            raise NotFound(f"job_id: no job {job_id!r}")
        return job

    def active_job(self, model: str) -> TrainingJob | None:
        """The QUEUED or RUNNING job of ``model``, if any."""
        with self._session() as session:
            return session.exec(  # type: ignore[call-overload]
                select(TrainingJob)
                .where(TrainingJob.model == model)
                .where(TrainingJob.state.in_([s.value for s in ACTIVE_STATES]))  # type: ignore[attr-defined]
                .limit(1)
            ).scalar_one_or_none()

    def list_jobs(self, model: str | None = None, limit: int = 20) -> list[TrainingJob]:
        """The most recent jobs (of ``model`` when given), newest first."""
        query = select(TrainingJob).order_by(TrainingJob.created_at.desc()).limit(limit)  # type: ignore[attr-defined]
        if model:
            query = query.where(TrainingJob.model == model)
        with self._session() as session:
            return list(session.exec(query).scalars())  # type: ignore[call-overload]

    def update_job(
        self,
        job_id: str,
        *,
        metrics: Mapping[str, float] | None = None,
        **fields: Any,
    ) -> TrainingJob:
        """Set ``fields`` (column names) on the job; ``metrics`` are merged into the stored ones.

        A job in a terminal state is never changed again (a late progress message from a
        worker cannot revive a job marked FAILED); the stored row is returned as it is.
        """
        unknown = set(fields) - _JOB_FIELDS
        if unknown:
            raise ValueError(f"update_job: unknown fields {sorted(unknown)}")
        with self._session() as session, session.begin():
            job = session.get(TrainingJob, job_id, with_for_update=True)
            if job is None:
                raise NotFound(f"job_id: no job {job_id!r}")
            if job.job_state.terminal:
                return job
            for name, value in fields.items():
                if isinstance(value, StrEnum):
                    value = value.value
                setattr(job, name, value)
            if metrics:
                merged = job.metrics
                merged.update({str(k): float(v) for k, v in metrics.items()})
                job.metrics_json = _dumps(merged)
            session.add(job)
        return job

    def fail_stale_jobs(self, reason: str = "trainer restarted") -> list[str]:
        """Mark every QUEUED or RUNNING job FAILED with ``reason``; their ids.

        Called when a trainer starts: no worker of a previous trainer survives it, and
        nothing such a job produced was registered or published.
        """
        now = utc_now()
        with self._session() as session, session.begin():
            stale = list(
                session.exec(  # type: ignore[call-overload]
                    select(TrainingJob).where(
                        TrainingJob.state.in_([s.value for s in ACTIVE_STATES])  # type: ignore[attr-defined]
                    )
                ).scalars()
            )
            for job in stale:
                job.state = JobState.FAILED.value
                job.stage = JobStage.DONE.value
                job.error = reason
                job.finished_at = now
                session.add(job)
        return [job.job_id for job in stale]

    # --- versions -----------------------------------------------------------------------

    def get_version(self, model: str, version: int) -> ModelVersion:
        """The registered version, or NotFound naming it."""
        with self._session() as session:
            row = session.exec(  # type: ignore[call-overload]
                select(ModelVersion)
                .where(ModelVersion.model == model)
                .where(ModelVersion.version == version)
            ).scalar_one_or_none()
        if row is None:
            raise NotFound(f"version: model {model} has no registered version {version}")
        return row

    def list_versions(self, model: str) -> list[ModelVersion]:
        """Every registered version of ``model``, newest first."""
        with self._session() as session:
            return list(
                session.exec(  # type: ignore[call-overload]
                    select(ModelVersion)
                    .where(ModelVersion.model == model)
                    .order_by(ModelVersion.version.desc())  # type: ignore[attr-defined]
                ).scalars()
            )

    def serving_version(self, model: str) -> ModelVersion | None:
        """The SERVING version of ``model``; None when no registered version serves."""
        with self._session() as session:
            return session.exec(  # type: ignore[call-overload]
                select(ModelVersion)
                .where(ModelVersion.model == model)
                .where(ModelVersion.status == VersionStatus.SERVING.value)
            ).scalar_one_or_none()

    def serving_versions(self) -> list[ModelVersion]:
        """The SERVING version of every model that has one."""
        with self._session() as session:
            return list(
                session.exec(  # type: ignore[call-overload]
                    select(ModelVersion)
                    .where(ModelVersion.status == VersionStatus.SERVING.value)
                    .order_by(ModelVersion.model)
                ).scalars()
            )

    def max_version(self, model: str) -> int:
        """The highest registered version of ``model`` (0 when none)."""
        with self._session() as session:
            value = session.exec(  # type: ignore[call-overload]
                select(func.max(ModelVersion.version)).where(ModelVersion.model == model)
            ).scalar_one()
        return int(value or 0)

    def register_version(
        self,
        model: str,
        version: int,
        *,
        job_id: str = "",
        parent_version: int | None = None,
        data_fingerprint: str = "",
        hyperparameters: Mapping[str, Any] | None = None,
        dev_metrics: Mapping[str, Any] | None = None,
        offline_metrics: Mapping[str, Any] | None = None,
        export_report: Mapping[str, Any] | None = None,
        training_seconds: float = 0.0,
        checkpoint_dir: str = "",
        export_dir: str = "",
    ) -> ModelVersion:
        """Register a new CANDIDATE version; FailedPrecondition if the number is taken."""
        if version < 1:
            raise ValueError(f"version: must be >= 1, got {version}")
        row = ModelVersion(
            model=model,
            version=version,
            parent_version=parent_version,
            data_fingerprint=data_fingerprint,
            hyperparameters_json=_dumps(
                {str(k): str(v) for k, v in (hyperparameters or {}).items()}
            ),
            dev_metrics_json=_dumps(dict(dev_metrics or {})),
            offline_metrics_json=_dumps(dict(offline_metrics or {})),
            export_json=_dumps(dict(export_report or {})),
            training_seconds=training_seconds,
            checkpoint_dir=checkpoint_dir,
            export_dir=export_dir,
            job_id=job_id,
        )
        try:
            with self._session() as session, session.begin():
                session.add(row)
        except sqlalchemy.exc.IntegrityError as exc:
            raise FailedPrecondition(
                f"version: model {model} already has a version {version}"
            ) from exc
        return row

    def previous_serving(self, model: str) -> ModelVersion | None:
        """The version that served before the current one: the RETIRED version served last.

        ROLLED_BACK versions are skipped, so repeated rollbacks walk back through history.
        """
        with self._session() as session:
            return session.exec(  # type: ignore[call-overload]
                select(ModelVersion)
                .where(ModelVersion.model == model)
                .where(ModelVersion.status == VersionStatus.RETIRED.value)
                .where(ModelVersion.served_at.is_not(None))  # type: ignore[union-attr]
                .order_by(ModelVersion.served_at.desc(), ModelVersion.version.desc())  # type: ignore[union-attr]
                .limit(1)
            ).scalar_one_or_none()

    def promote(
        self,
        model: str,
        version: int,
        *,
        previous_becomes: VersionStatus = VersionStatus.RETIRED,
    ) -> tuple[ModelVersion, ModelVersion | None]:
        """Make ``version`` SERVING and the serving one ``previous_becomes``, in one transaction.

        Returns (new serving row, previous serving row or None). Promoting the serving version
        changes nothing. NotFound if the version is not registered.
        """
        if previous_becomes == VersionStatus.SERVING:
            raise ValueError("previous_becomes: must not be SERVING")
        with self._session() as session, session.begin():
            rows = list(
                session.exec(  # type: ignore[call-overload]
                    select(ModelVersion)
                    .where(ModelVersion.model == model)
                    .where(
                        (ModelVersion.version == version)
                        | (ModelVersion.status == VersionStatus.SERVING.value)
                    )
                    .with_for_update()
                ).scalars()
            )
            target = next((r for r in rows if r.version == version), None)
            if target is None:
                raise NotFound(f"version: model {model} has no registered version {version}")
            previous = next((r for r in rows if r.status == VersionStatus.SERVING.value), None)
            if previous is not None and previous.version == version:
                return target, None
            if previous is not None:
                previous.status = previous_becomes.value
                session.add(previous)
                # Demote first: the one-SERVING index must never see two at once.
                session.flush()
            target.status = VersionStatus.SERVING.value
            target.served_at = utc_now()
            session.add(target)
        return target, previous
