"""One training job as its worker process runs it: train, export (with its checks), evaluate
offline, reporting progress as it goes.

The trainer's job runner (``services/trainer/jobs.py``) starts :func:`run_training_job` in a
spawned worker process and applies its reports; torch, the exporters and the evaluation are
imported inside it, so the trainer's RPC process, which imports this module for the job's
types, never loads them.

A ``sequence_recommender`` job (:func:`run_sequence_job`) trains on a sequence folder
(``shared.training.sequence_data``) and is evaluated offline on that folder's held-out
next events, through onnxruntime as Triton serves it: the candidate's figures are
``next_item/recall@10``, ``next_item/ndcg@10``, ``next_item/recall@50`` and
``next_item/ndcg@50``, the serving version's on the same cases ``serving/next_item/...``
(the text models' are ``pipeline/...`` and ``serving/pipeline/...``).
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shared.models.kinds import SEQUENCE_RECOMMENDER
from shared.storage.registry import JobStage

# A job's working folder: <training_dir>/<job_id>/{checkpoint,export}; train_model writes
# the checkpoint.
EXPORT_DIR = "export"
# The prefixes of a sequence_recommender's offline figures (see the module docstring).
NEXT_ITEM = "next_item/"
SERVING = "serving/"
# Dev cases scored per onnxruntime call in the offline evaluation.
_EVAL_BATCH = 256


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
    if spec.model == SEQUENCE_RECOMMENDER:
        return run_sequence_job(spec, report, should_stop)

    import torch

    from shared.training.export import export_checkpoint
    from shared.training.hyperparams import Hyperparameters
    from shared.training.train import TrainingCancelled, train_model

    torch.set_num_threads(os.cpu_count() or 1)
    work = Path(spec.work_dir)
    report({"stage": JobStage.LOADING_DATA.value})

    def on_progress(progress: Any) -> None:
        report(
            progress_update(
                str(getattr(progress, "stage", "training")),
                getattr(progress, "step", 0),
                getattr(progress, "total_steps", 0),
                getattr(progress, "epoch", 0),
                getattr(progress, "metrics", None),
            )
        )

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
    dataset = Path(spec.dataset_dir)

    def export(checkpoint: Path, export_dir: Path) -> dict[str, Any]:
        return export_checkpoint(checkpoint, export_dir, store_check_inputs(dataset))

    def evaluate(export_dir: Path) -> dict[str, float]:
        from shared.training.offline_eval import evaluate_version

        serving = {k: Path(v) for k, v in spec.serving_exports.items() if k != spec.model}
        offline = {
            str(k): float(v)
            for k, v in evaluate_version(spec.model, export_dir, dataset, serving).items()
        }
        current = spec.serving_exports.get(spec.model)
        if current and Path(current).is_dir():
            # The serving version on the same dev queries: the figures the candidate must
            # beat.
            for k, v in evaluate_version(spec.model, Path(current), dataset, serving).items():
                if k.startswith("pipeline/"):
                    offline[f"serving/{k}"] = float(v)
        return offline

    return _export_and_evaluate(result, work, report, should_stop, export, evaluate)


def _export_and_evaluate(
    result: Any,
    work: Path,
    report: Report,
    should_stop: ShouldStop,
    export: Callable[[Path, Path], Any],
    evaluate: Callable[[Path], dict[str, float]],
) -> dict[str, Any]:
    """A trained job's tail, every kind's: report the dev figures, ``export`` the checkpoint
    into ``<work>/export`` (with its checks), ``evaluate`` the export offline, and return
    what the trainer registers; cancellable between the steps."""
    dev_metrics = plain(result.dev_metrics)
    report({"stage": JobStage.EXPORTING.value, "metrics": _numbers("dev/", dev_metrics)})
    if should_stop():
        raise JobCancelled("cancelled before export")
    export_dir = work / EXPORT_DIR
    export_report = plain(export(Path(result.checkpoint_dir), export_dir))
    if should_stop():
        raise JobCancelled("cancelled before offline evaluation")
    report({"stage": JobStage.OFFLINE_EVAL.value})
    offline = evaluate(export_dir)
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


def progress_update(
    stage: str, step: Any, total: Any, epoch: Any, metrics: Mapping[str, Any] | None
) -> dict[str, Any]:
    """A training loop's report as the job's: its stage as a JobStage, numbers only."""
    return {
        "stage": stage_of(stage).value,
        "step": int(step or 0),
        "total_steps": int(total or 0),
        "epoch": int(epoch or 0),
        "metrics": {
            str(k): float(v)
            for k, v in (metrics or {}).items()
            if isinstance(v, int | float) and not isinstance(v, bool)
        },
    }


def run_sequence_job(spec: JobSpec, report: Report, should_stop: ShouldStop) -> dict[str, Any]:
    """A ``sequence_recommender`` job: load the folder -> train -> export (with its checks)
    -> offline next-item figures of the candidate and of the serving version; the same
    result keys as :func:`run_training_job`."""
    import torch

    from shared.training.hyperparams import Hyperparameters
    from shared.training.loop import TrainingCancelled
    from shared.training.sequence import train_sequence_model
    from shared.training.sequence_data import load_sequence_dataset
    from shared.training.sequence_export import export_sequence_checkpoint

    torch.set_num_threads(os.cpu_count() or 1)
    work = Path(spec.work_dir)
    report({"stage": JobStage.LOADING_DATA.value})
    corpus, info = load_sequence_dataset(Path(spec.dataset_dir))
    report(
        {
            "metrics": {
                "data/train_histories": float(info["train_histories"]),
                "data/dev_cases": float(info["dev_cases"]),
                "data/products": float(corpus.num_items),
            }
        }
    )

    def on_report(stage: str, step: int, total: int, epoch: int, metrics: Any) -> None:
        report(progress_update(stage, step, total, epoch, metrics))

    try:
        result = train_sequence_model(
            corpus,
            work,  # saves into <work>/checkpoint
            Hyperparameters.for_kind(SEQUENCE_RECOMMENDER, spec.hyperparameters),
            text_encoder=str(info.get("text_encoder_version") or "base"),
            data_fingerprint=str(info["fingerprint"]),
            init_checkpoint=Path(spec.init_checkpoint) if spec.init_checkpoint else None,
            report=on_report,
            should_stop=should_stop,
        )
    except TrainingCancelled as exc:
        raise JobCancelled(str(exc)) from exc

    def evaluate(export_dir: Path) -> dict[str, float]:
        offline = _numbers(NEXT_ITEM, next_item_offline_metrics(export_dir, corpus))
        current = spec.serving_exports.get(SEQUENCE_RECOMMENDER)
        if current and _comparable_export(Path(current), corpus.vectors.shape[1]):
            # The serving version on the same held-out events: the figures to beat.
            # Products it never saw are scored by their text alone, as it would serve them.
            serving = next_item_offline_metrics(Path(current), corpus)
            offline.update(_numbers(SERVING + NEXT_ITEM, serving))
        return offline

    return _export_and_evaluate(
        result, work, report, should_stop, export_sequence_checkpoint, evaluate
    )


def _comparable_export(folder: Path, dim: int) -> bool:
    """Whether ``folder`` is a sequence version that reads text vectors of width ``dim``:
    both towers and the product ids there, and a spec of that width (a version trained on
    another text encoder's vectors cannot score these)."""
    from shared.models.layout import ITEM_TOWER_FILE, ITEMS_FILE, SERVED_FILE, SPEC_FILE

    names = (SERVED_FILE, ITEM_TOWER_FILE, ITEMS_FILE, SPEC_FILE)
    if not all((folder / name).is_file() for name in names):
        return False
    spec = json.loads((folder / SPEC_FILE).read_text(encoding="utf-8"))
    return spec.get("kind") == SEQUENCE_RECOMMENDER and int(spec.get("dim", -1)) == dim


def next_item_offline_metrics(version_dir: Path, corpus: Any) -> dict[str, float]:
    """Recall and NDCG at 10 and 50 of an exported ``sequence_recommender`` version on
    ``corpus.dev`` (a ``SequenceCorpus``), through onnxruntime as Triton runs it: every
    catalog product ranked, the case's history products excluded
    (``shared.training.sequence.rank_targets``'s protocol).

    The corpus's rows are mapped to the version's by product id, so a version trained on
    another catalog is measured on this one (a product it never saw: text alone).
    """
    import numpy as np

    from shared.evaluation.sequential import next_item_metrics
    from shared.models.sequence_runtime import SequenceModel
    from shared.recommendation.sequence_inputs import left_padded

    model = SequenceModel(version_dir, intra_op_threads=os.cpu_count() or 1)
    vectors = np.ascontiguousarray(corpus.vectors, dtype=np.float32)
    keys = model.item_embeddings(vectors, model.rows_of(corpus.item_keys))
    cases = list(corpus.dev)
    ranks = np.zeros(len(cases), dtype=np.int64)
    # Chunks of similar history lengths: each is padded to its longest.
    order = sorted(range(len(cases)), key=lambda i: len(cases[i].history.rows))
    for start in range(0, len(order), _EVAL_BATCH):
        positions = order[start : start + _EVAL_BATCH]
        chunk = [cases[i] for i in positions]
        rows, kinds, gaps, mask = left_padded(
            [(c.history.rows, c.history.kinds, c.history.gaps) for c in chunk],
            model.history_length,
        )
        history = keys[np.maximum(rows, 0)] * mask[:, :, None]
        scores = model.shopper_vectors(history, kinds, gaps, mask) @ keys.T
        for i, case in enumerate(chunk):
            scores[i, list(case.history.rows)] = -np.inf
        targets = np.array([c.target for c in chunk], dtype=np.int64)
        target_scores = scores[np.arange(len(chunk)), targets]
        ranks[positions] = (scores > target_scores[:, None]).sum(axis=1)
    return next_item_metrics(ranks)


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
