"""The registry report: a version table with changes, and the PNG chart."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from rich.console import Console
from shopsense.trainer.v1 import trainer_service_pb2 as tpb

from shared.training.report import version_table, write_chart

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
