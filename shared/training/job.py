"""One training job as its worker process runs it: train, export (with its checks), evaluate
offline, reporting progress as it goes.

The trainer's job runner (``services/trainer/jobs.py``) starts :func:`run_training_job` in a
spawned worker process and applies its reports; torch, the exporters and the evaluation are
imported inside it, so the trainer's RPC process, which imports this module for the job's
types, never loads them.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shared.storage.registry import JobStage

# A job's working folder: <training_dir>/<job_id>/{checkpoint,export}; train_model writes
# the checkpoint.
EXPORT_DIR = "export"


class JobCancelled(Exception):
    """Raised by a job function when ``should_stop()`` turned true: the job ends CANCELLED."""


@dataclass(frozen=True)
class JobSpec:
    """Everything a worker needs, picklable (it crosses into the spawned process)."""

    job_id: str
    model: str
    dataset_dir: str
    work_dir: str
    hyperparameters: dict[str, str] = field(default_factory=dict)
    # Checkpoint folders to start from / distil from; None: the base model / no teacher.
    init_checkpoint: str | None = None
    teacher_checkpoint: str | None = None
    # Kind -> exported version folder of the versions serving now (offline evaluation).
    serving_exports: dict[str, str] = field(default_factory=dict)


# A report: any of "stage" (a JobStage value), "step", "total_steps", "epoch", "progress"
# (0..1) and "metrics" (name -> number).
Report = Callable[[Mapping[str, Any]], None]
ShouldStop = Callable[[], bool]


# The stages ``train_model`` reports (``Progress.stage``) as the job's: saving the checkpoint
# still counts as training.
_TRAINING_STAGES = {
    "prepare": JobStage.LOADING_DATA,
    "train": JobStage.TRAINING,
    "evaluate": JobStage.EVALUATING,
    "save": JobStage.TRAINING,
}


def stage_of(name: str) -> JobStage:
    """A stage a job reports (a JobStage value, or a training stage) as a JobStage;
    TRAINING when it is neither."""
    try:
        return JobStage(name.upper())
    except ValueError:
        return _TRAINING_STAGES.get(name.lower(), JobStage.TRAINING)


def plain(value: Any) -> Any:
    """``value`` with dataclasses, paths and numpy scalars made JSON- and pickle-friendly."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, bool | int | float | str) or value is None:
        return value
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    return str(value)


def run_training_job(spec: JobSpec, report: Report, should_stop: ShouldStop) -> dict[str, Any]:
    """The real job: train -> export (with its checks) -> offline evaluation; in the worker.

    Returns the result the trainer registers: metrics, fingerprint, hyperparameters, the
    checkpoint and export folders and the export report.
    """
    import torch

    from shared.training.export import export_checkpoint
    from shared.training.hyperparams import Hyperparameters
    from shared.training.train import TrainingCancelled, train_model

    torch.set_num_threads(os.cpu_count() or 1)
    work = Path(spec.work_dir)
    report({"stage": JobStage.LOADING_DATA.value})

    def on_progress(progress: Any) -> None:
        update: dict[str, Any] = {
            "stage": stage_of(str(getattr(progress, "stage", "training"))).value,
            "step": int(getattr(progress, "step", 0) or 0),
            "total_steps": int(getattr(progress, "total_steps", 0) or 0),
            "epoch": int(getattr(progress, "epoch", 0) or 0),
        }
        metrics = getattr(progress, "metrics", None) or {}
        update["metrics"] = {
            str(k): float(v)
            for k, v in metrics.items()
            if isinstance(v, int | float) and not isinstance(v, bool)
        }
        report(update)

    try:
        result = train_model(
            spec.model,
            Path(spec.dataset_dir),
            work,  # train_model saves into <work>/checkpoint
            Hyperparameters.for_kind(spec.model, spec.hyperparameters),
            init_checkpoint=Path(spec.init_checkpoint) if spec.init_checkpoint else None,
            teacher_checkpoint=Path(spec.teacher_checkpoint) if spec.teacher_checkpoint else None,
            progress=on_progress,
            should_stop=should_stop,
        )
    except TrainingCancelled as exc:
        raise JobCancelled(str(exc)) from exc
    dev_metrics = plain(result.dev_metrics)
    report({"stage": JobStage.EXPORTING.value, "metrics": _numbers("dev/", dev_metrics)})
    if should_stop():
        raise JobCancelled("cancelled before export")

    export_dir = work / EXPORT_DIR
    export_report = plain(
        export_checkpoint(
            Path(result.checkpoint_dir), export_dir, store_check_inputs(Path(spec.dataset_dir))
        )
    )
    if should_stop():
        raise JobCancelled("cancelled before offline evaluation")

    from shared.training.offline_eval import evaluate_version

    report({"stage": JobStage.OFFLINE_EVAL.value})
    serving = {k: Path(v) for k, v in spec.serving_exports.items() if k != spec.model}
    offline = {
        str(k): float(v)
        for k, v in evaluate_version(
            spec.model, export_dir, Path(spec.dataset_dir), serving
        ).items()
    }
    current = spec.serving_exports.get(spec.model)
    if current and Path(current).is_dir():
        # The serving version on the same dev queries: the figures the candidate must beat.
        for k, v in evaluate_version(
            spec.model, Path(current), Path(spec.dataset_dir), serving
        ).items():
            if k.startswith("pipeline/"):
                offline[f"serving/{k}"] = float(v)
    report({"metrics": _numbers("offline/", offline)})
    return {
        "checkpoint_dir": str(result.checkpoint_dir),
        "export_dir": str(export_dir),
        "dev_metrics": dev_metrics,
        "offline_metrics": offline,
        "data_fingerprint": str(result.data_fingerprint),
        "hyperparameters": plain(result.hyperparameters),
        "seconds": float(result.seconds),
        "train_examples": int(result.train_examples),
        "device": str(result.device),
        "export_report": export_report,
    }


def store_check_inputs(
    dataset_dir: Path, n_queries: int = 32, n_candidates: int = 20
) -> list[tuple[str, list[str]]] | None:
    """Export check inputs from the store trained on: its queries, each with its judged
    products first, then other products; None (the export's built-in set) when it has none.

    The ONNX-vs-PyTorch and int8-vs-fp32 checks then measure the texts this store serves.
    """
    from shared.training.data import load_training_data

    data = load_training_data(dataset_dir)
    texts = {p.product_id: p.embedding_text() for p in data.products}
    catalog = list(texts)
    queries = (data.dev_queries + data.train_queries)[:n_queries]
    inputs: list[tuple[str, list[str]]] = []
    for number, query in enumerate(queries):
        ids = [pid for pid in data.labels.get(query.query_id, {}) if pid in texts][:n_candidates]
        others = (catalog[(number * 37 + i) % len(catalog)] for i in range(len(catalog)))
        ids += [pid for pid in others if pid not in ids][: n_candidates - len(ids)]
        if ids:
            inputs.append((query.text, [texts[pid] for pid in ids]))
    return inputs or None


def _numbers(prefix: str, values: Mapping[str, Any]) -> dict[str, float]:
    return {
        f"{prefix}{k}": float(v)
        for k, v in values.items()
        if isinstance(v, int | float) and not isinstance(v, bool)
    }
