"""The trainer between its messages (shopsense.trainer.v1) and the registry's rows."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from shopsense.trainer.v1 import trainer_service_pb2 as pb

from shared.contracts.common import set_timestamps
from shared.errors import InvalidArgument
from shared.models.kinds import MODEL_KINDS
from shared.storage.registry import ModelVersion, TrainingJob


def check_model(model: str, field: str = "model") -> None:
    """InvalidArgument naming ``field`` unless ``model`` is a known model kind."""
    if not model:
        raise InvalidArgument(f"{field}: required, one of {', '.join(MODEL_KINDS)}")
    if model not in MODEL_KINDS:
        raise InvalidArgument(
            f"{field}: unknown model kind {model!r}; one of {', '.join(MODEL_KINDS)}"
        )


def job_message(job: TrainingJob) -> pb.Job:
    """The registry row as the proto's Job."""
    message = pb.Job(
        job_id=job.job_id,
        model=job.model,
        state=pb.JobState.Value(f"JOB_STATE_{job.state}"),
        stage=pb.JobStage.Value(f"JOB_STAGE_{job.stage}"),
        progress=job.progress,
        step=job.step,
        total_steps=job.total_steps,
        epoch=job.epoch,
        metrics=job.metrics,
        error=job.error,
        result_version=job.result_version or 0,
        dataset=job.dataset,
        hyperparameters=job.hyperparameters,
        parent_version=job.parent_version or 0,
        teacher_version=job.teacher_version or 0,
        publish=job.publish,
        cancel_requested=job.cancel_requested,
    )
    set_timestamps(
        message,
        created_time=job.created_at,
        started_time=job.started_at,
        finished_time=job.finished_at,
    )
    return message


def export_summary(report: Mapping[str, Any]) -> pb.ExportSummary:
    """Precision, largest difference and agreement out of an export report."""
    served = str(report.get("served", report.get("precision", "")))
    diff = report.get(
        "served_max_abs_diff", report.get(f"{served}_max_abs_diff", report.get("max_abs_diff"))
    )
    agreement_metrics = report.get("agreement") or {}
    bar = report.get("bar") or {}
    agreement = 0.0
    if isinstance(agreement_metrics, Mapping):
        metric = next(iter(bar), None) if isinstance(bar, Mapping) else None
        if metric is not None and metric in agreement_metrics:
            agreement = float(agreement_metrics[metric])
        elif agreement_metrics:
            agreement = min(float(v) for v in agreement_metrics.values())
    elif isinstance(agreement_metrics, int | float):
        agreement = float(agreement_metrics)
    return pb.ExportSummary(
        precision=served,
        max_abs_diff=float(diff or 0.0),
        agreement=agreement,
        engine=str(report.get("engine", "onnxruntime" if served else "")),
    )


def version_message(row: ModelVersion) -> pb.ModelVersion:
    """The registry row as the proto's ModelVersion."""
    message = pb.ModelVersion(
        model=row.model,
        version=row.version,
        parent_version=row.parent_version or 0,
        data_fingerprint=row.data_fingerprint,
        hyperparameters=row.hyperparameters,
        dev_metrics=row.dev_metrics,
        offline_metrics=row.offline_metrics,
        training_seconds=row.training_seconds,
        export=export_summary(row.export_report),
        status=pb.VersionStatus.Value(f"VERSION_STATUS_{row.status}"),
        job_id=row.job_id,
    )
    set_timestamps(message, created_time=row.created_at, served_time=row.served_at)
    return message


def feedback_window(source: pb.FeedbackSource) -> tuple[datetime | None, datetime | None]:
    """The request's ``since`` and ``until`` (None where unset); InvalidArgument when the
    window is empty."""
    since = source.since.ToDatetime(UTC) if source.HasField("since") else None
    until = source.until.ToDatetime(UTC) if source.HasField("until") else None
    if since and until and until <= since:
        raise InvalidArgument("feedback.until: must be after feedback.since")
    return since, until


class ClickFit(Protocol):
    """What a click model's fit (``shared.training.clicks.ClickModelFit``) reports."""

    pages: int
    impressions: int
    clicks: int
    examination: list[float]
    eta: float
    measured: bool
    explored_clicks: int


def feedback_data_summary(
    fit: ClickFit, queries: int, judgments: int, dataset: Path
) -> pb.FeedbackDataSummary:
    """What a feedback training folder was built from, as StartTraining answers it."""
    return pb.FeedbackDataSummary(
        pages=fit.pages,
        impressions=fit.impressions,
        clicks=fit.clicks,
        queries=queries,
        judgments=judgments,
        examination=fit.examination,
        eta=fit.eta,
        examination_measured=fit.measured,
        explored_clicks=fit.explored_clicks,
        dataset=str(dataset),
    )


def sequence_data_summary(dataset: Path, info: Mapping[str, Any]) -> pb.FeedbackDataSummary:
    """A sequence_recommender's feedback folder as StartTraining answers it: the folder and
    its counts (``info``: its dataset.json); the job reports the split
    (``data/train_histories``, ``data/dev_cases``)."""
    return pb.FeedbackDataSummary(
        dataset=str(dataset),
        shoppers=int(info.get("shoppers", 0)),
        events=int(info.get("events", 0)),
        dev_eligible=int(info.get("dev_eligible", 0)),
        products=int(info.get("products", 0)),
    )
