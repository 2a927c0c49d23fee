"""The model registry as a report: a table per model and a PNG chart.

Reads every version from the TrainerService (``ListModelVersions``): status, lineage,
training time, export precision, and the offline metrics measured on the dev judgments,
each compared with the previous version and with BM25 alone. The chart shows each job's
learning curve (the training loss every few steps, from
``<training_dir>/<job_id>/history.json``) and the headline metric per version against the
model's baseline (BM25 alone; for intent the zero-shot prototypes).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

from rich.console import Console
from rich.table import Table
from shopsense.trainer.v1 import trainer_service_pb2 as tpb
from shopsense.trainer.v1 import trainer_service_pb2_grpc

from shared.models.kinds import SEQUENCE_RECOMMENDER
from shared.paths import state_dir
from shared.rpc.clients import open_channel

MODELS = ("intent_classifier", "text_encoder", "cross_encoder")
# The metric each model is judged by, and the ones shown beside it.
HEADLINE = {
    "intent_classifier": "intent/top1",
    "text_encoder": "retrieval/ndcg@10",
    "cross_encoder": "pipeline/ndcg@10",
}
# The baseline each model's headline is drawn against: (metric key, label). BM25 alone for
# the retrieval models; for intent the zero-shot prototypes (class names + catalog
# centroids, what intent serves without a classifier), on the same dev queries.
BASELINE = {
    "intent_classifier": ("zero_shot/top1", "zero-shot prototypes"),
    "text_encoder": ("bm25/ndcg@10", "BM25"),
    "cross_encoder": ("bm25/ndcg@10", "BM25"),
}
# (column, metric key): nDCG@10 unless the column says otherwise.
SHOWN = (
    ("intent top-1", "intent/top1"),
    ("intent top-3", "intent/top3"),
    ("dense", "dense/ndcg@10"),
    ("retrieval", "retrieval/ndcg@10"),
    ("pipeline", "pipeline/ndcg@10"),
    ("pipeline R@100", "pipeline/recall@100"),
    ("pipeline MRR@10", "pipeline/mrr@10"),
    ("BM25", "bm25/ndcg@10"),
)


def list_versions(trainer: str) -> dict[str, list[tpb.ModelVersion]]:
    """Every registered version per model, oldest first."""
    stub = trainer_service_pb2_grpc.TrainerServiceStub(open_channel(trainer))
    out = {}
    for model in MODELS:
        reply = stub.ListModelVersions(tpb.ListModelVersionsRequest(model=model), timeout=10)
        out[model] = sorted(reply.versions, key=lambda v: v.version)
    return out


def _status(version: tpb.ModelVersion) -> str:
    return tpb.VersionStatus.Name(version.status).removeprefix("VERSION_STATUS_").lower()


def _delta(value: float | None, before: float | None) -> str:
    if value is None:
        return "-"
    if before is None:
        return f"{value:.3f}"
    return f"{value:.3f} ({value - before:+.3f})"


def _served(export: tpb.ExportSummary) -> str:
    """Engine and precision, short: "ov bf16", "ort int8"."""
    if not export.precision:
        return "-"
    engine = {"openvino": "ov", "onnxruntime": "ort"}.get(export.engine, export.engine)
    return f"{engine} {export.precision}".strip()


# The sequence recommender's columns: next-item figures on held-out events.
SEQUENCE_SHOWN = tuple(
    (name, f"next_item/{name}") for name in ("recall@10", "ndcg@10", "recall@50", "ndcg@50")
)


def version_table(model: str, versions: Sequence[tpb.ModelVersion]) -> Table:
    """One row per version; each metric with its change against the previous version."""
    shown = SEQUENCE_SHOWN if model == SEQUENCE_RECOMMENDER else SHOWN
    what = (
        "next event of held-out shoppers"
        if model == SEQUENCE_RECOMMENDER
        else "the dev judgments (nDCG@10 unless named)"
    )
    table = Table(title=f"{model}: versions, offline on {what}")
    for column in ("version", "parent", "status", "train s", "served", *(c for c, _ in shown)):
        table.add_column(column, justify="left" if column == "status" else "right")
    previous: Mapping[str, float] = {}
    for v in versions:
        metrics = dict(v.offline_metrics)
        table.add_row(
            str(v.version),
            str(v.parent_version or "base"),
            _status(v),
            f"{v.training_seconds:.0f}",
            _served(v.export),
            *[_delta(metrics.get(key), previous.get(key)) for _, key in shown],
        )
        previous = metrics
    return table


def _history(training_dir: Path, job_id: str) -> list[dict]:
    """The evaluations of a job's run (``history.json``, as ``train_model`` writes it)."""
    path = training_dir / job_id / "history.json"
    if not job_id or not path.is_file():
        return []
    return list(json.loads(path.read_text(encoding="utf-8")).get("history", []))


def draw_chart(versions: Mapping[str, Sequence[tpb.ModelVersion]], training_dir: Path):
    """Learning curves of every job (top row) and the headline metric per version (bottom);
    returns the matplotlib figure."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, axes = plt.subplots(2, len(MODELS), figsize=(6 * len(MODELS), 8), squeeze=False)
    for column, model in enumerate(MODELS):
        curves, per_version = axes[0][column], axes[1][column]
        curves.set_title(f"{model}: training loss")
        curves.set_xlabel("step")
        for v in versions.get(model, []):
            history = [h for h in _history(training_dir, v.job_id) if "train_loss" in h]
            if history:
                curves.plot(
                    [h["step"] for h in history],
                    [h["train_loss"] for h in history],
                    label=f"v{v.version}",
                )
        if curves.lines:
            curves.legend()
        key = HEADLINE[model]
        per_version.set_title(f"{model}: {key} per version (dev)")
        per_version.set_xlabel("version")
        per_version.xaxis.set_major_locator(MaxNLocator(integer=True))
        points = [(v.version, v.offline_metrics[key]) for v in versions.get(model, [])
                  if key in v.offline_metrics]  # fmt: skip
        if not points:
            continue
        per_version.plot([p[0] for p in points], [p[1] for p in points], marker="o")
        # The baseline as measured with the latest version that has it.
        baseline_key, label = BASELINE[model]
        measured = [v for v in versions.get(model, []) if baseline_key in v.offline_metrics]
        if measured:
            value = measured[-1].offline_metrics[baseline_key]
            per_version.axhline(value, linestyle="--", color="grey", label=label)
            per_version.legend()
        else:
            per_version.set_title(f"{model}: {key} per version (dev; no {label} figure)")
    fig.tight_layout()
    return fig


def write_chart(
    versions: Mapping[str, Sequence[tpb.ModelVersion]], training_dir: Path, out: Path
) -> Path:
    """:func:`draw_chart` saved as a PNG at ``out``."""
    import matplotlib.pyplot as plt

    fig = draw_chart(versions, training_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=90)
    plt.close(fig)
    return out


def print_report(trainer: str, console: Console, training_dir: Path | None = None) -> Path:
    """Print every model's version table and write the chart; returns the PNG's path."""
    training_dir = Path(training_dir or state_dir() / "training")
    versions = list_versions(trainer)
    for model in MODELS:
        if versions[model]:
            console.print(version_table(model, versions[model]))
        else:
            console.print(f"{model}: no trained version yet (make train)")
    chart = write_chart(versions, training_dir, state_dir() / "reports" / "model-versions.png")
    console.print(f"chart: {chart}")
    return chart
