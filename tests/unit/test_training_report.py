"""The registry report: a version table with changes, and the PNG chart."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from rich.console import Console
from shopsense.trainer.v1 import trainer_service_pb2 as tpb

from shared.training.report import draw_chart, version_table, write_chart

pytestmark = pytest.mark.unit


def _version(n: int, ndcg: float, job: str) -> tpb.ModelVersion:
    return tpb.ModelVersion(
        model="cross_encoder",
        version=n,
        parent_version=n - 1,
        status=tpb.VERSION_STATUS_SERVING if n == 2 else tpb.VERSION_STATUS_RETIRED,
        training_seconds=300.0,
        export=tpb.ExportSummary(precision="int8"),
        offline_metrics={"pipeline/ndcg@10": ndcg, "bm25/ndcg@10": 0.70},
        job_id=job,
    )


def test_the_table_shows_each_version_with_its_change_against_the_previous() -> None:
    table = version_table("cross_encoder", [_version(1, 0.80, "a"), _version(2, 0.85, "b")])
    console = Console(file=io.StringIO(), width=250, color_system=None)
    console.print(table)
    text = console.file.getvalue()
    assert "0.850 (+0.050)" in text and "serving" in text and "retired" in text


def test_a_sequence_model_is_listed_by_its_next_item_figures() -> None:
    versions = [
        tpb.ModelVersion(
            model="sequence_recommender",
            version=n,
            status=tpb.VERSION_STATUS_CANDIDATE,
            offline_metrics={"next_item/recall@10": r, "next_item/ndcg@10": r / 2},
        )
        for n, r in ((1, 0.40), (2, 0.47))
    ]
    console = Console(file=io.StringIO(), width=250, color_system=None)
    console.print(version_table("sequence_recommender", versions))
    text = console.file.getvalue()
    assert "recall@10" in text and "0.470 (+0.070)" in text and "0.235 (+0.035)" in text
    assert "pipeline" not in text


def test_the_chart_is_a_png_with_the_learning_curves(tmp_path: Path) -> None:
    for job in ("a", "b"):
        (tmp_path / job).mkdir()
        history = {
            "kind": "cross_encoder",
            "history": [{"step": s, "train_loss": 1.0 / s} for s in (10, 20, 30)],
        }
        (tmp_path / job / "history.json").write_text(json.dumps(history))
    out = write_chart(
        {"cross_encoder": [_version(1, 0.80, "a"), _version(2, 0.85, "b")]},
        tmp_path,
        tmp_path / "chart.png",
    )
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 10_000


def _registered(model: str, n: int, metrics: dict[str, float]) -> tpb.ModelVersion:
    return tpb.ModelVersion(model=model, version=n, offline_metrics=metrics, job_id=f"{model}-{n}")


REGISTRY = {
    "intent_classifier": [
        _registered("intent_classifier", 1, {"intent/top1": 0.88, "zero_shot/top1": 0.71}),
        _registered("intent_classifier", 2, {"intent/top1": 0.91, "zero_shot/top1": 0.72}),
    ],
    "text_encoder": [
        _registered("text_encoder", 2, {"retrieval/ndcg@10": 0.80, "bm25/ndcg@10": 0.70}),
        _registered("text_encoder", 3, {"retrieval/ndcg@10": 0.82, "bm25/ndcg@10": 0.70}),
    ],
    "cross_encoder": [
        _registered("cross_encoder", 1, {"pipeline/ndcg@10": 0.85, "bm25/ndcg@10": 0.69}),
        _registered("cross_encoder", 2, {"pipeline/ndcg@10": 0.87, "bm25/ndcg@10": 0.70}),
    ],
}


def _per_version_panels(tmp_path: Path) -> dict[str, object]:
    import matplotlib.pyplot as plt

    fig = draw_chart(REGISTRY, tmp_path)
    panels = {
        ax.get_title().split(":")[0]: ax for ax in fig.axes if "per version" in ax.get_title()
    }
    plt.close(fig)
    assert set(panels) == set(REGISTRY)
    return panels


def test_version_axes_are_ticked_with_whole_versions(tmp_path: Path) -> None:
    for model, ax in _per_version_panels(tmp_path).items():
        low, high = ax.get_xlim()
        ticks = [t for t in ax.get_xticks() if low <= t <= high]
        assert ticks and all(float(t).is_integer() for t in ticks), (model, ticks)
        versions = {v.version for v in REGISTRY[model]}
        assert versions <= {int(t) for t in ticks}, (model, ticks)


def test_every_models_panel_draws_its_baseline(tmp_path: Path) -> None:
    expected = {
        "intent_classifier": ("zero-shot prototypes", 0.72),
        "text_encoder": ("BM25", 0.70),
        "cross_encoder": ("BM25", 0.70),
    }
    for model, ax in _per_version_panels(tmp_path).items():
        lines = {line.get_label(): list(line.get_ydata()) for line in ax.get_lines()}
        label, value = expected[model]
        assert label in lines, (model, list(lines))
        assert lines[label] == pytest.approx([value, value]), (model, lines[label])
        legend = ax.get_legend()
        assert legend is not None and label in [t.get_text() for t in legend.get_texts()]


def test_the_learning_curve_draws_every_logged_loss(tmp_path: Path) -> None:
    """The history logs the training loss every few steps and the dev metrics at each
    evaluation (entries with a dev metric are evaluations): the curve draws every loss."""
    (tmp_path / "cross_encoder-2").mkdir()
    history = [
        {
            "step": s,
            "epoch": 0,
            "train_loss": 1.0 / s,
            "lr": 1e-4,
            **({"ndcg@10": 0.7} if s % 300 == 0 else {}),
        }
        for s in range(12, 601, 12)
    ]
    (tmp_path / "cross_encoder-2" / "history.json").write_text(json.dumps({"history": history}))
    import matplotlib.pyplot as plt

    fig = draw_chart({"cross_encoder": REGISTRY["cross_encoder"]}, tmp_path)
    (curves,) = [ax for ax in fig.axes if ax.get_title() == "cross_encoder: training loss"]
    plt.close(fig)
    (line,) = [line for line in curves.get_lines() if line.get_label() == "v2"]
    assert list(line.get_xdata()) == [h["step"] for h in history]
