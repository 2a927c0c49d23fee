"""`shopsense fuzz` on a suite of its own: every RPC of every service answers generated and
naughty requests without an INTERNAL or UNKNOWN status, no process exits, and every service
is SERVING at the end (the command's exit status says so; the report is checked too)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from shared.paths import REPO_ROOT

pytestmark = pytest.mark.system


def test_fuzzing_every_rpc_leaves_no_internal_error_and_every_process_serving(
    tmp_path: Path,
) -> None:
    out = tmp_path / "fuzz.json"
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "shared.cli.main", "fuzz", "--examples", "8", "--products", "60",
         "--json", str(out)],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=1_200,
    )  # fmt: skip
    assert out.exists(), done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads(out.read_text())
    methods = {m["method"] for m in report["methods"]}
    # Every service's public and operator RPCs were reached (a sample of each).
    for path in (
        "/shopsense.search.v1.SearchService/Search",
        "/shopsense.retrieval.v1.RetrievalService/UpsertProducts",
        "/shopsense.retrieval.v1.RetrievalService/ExportCatalog",
        "/shopsense.feedback.v1.FeedbackService/StreamEvents",
        "/shopsense.ranking.v1.RankingService/Rank",
        "/shopsense.intent.v1.IntentService/Classify",
        "/shopsense.recommend.v1.RecommendService/Recommend",
    ):
        assert path in methods, sorted(methods)
    # Each method had its requests (hypothesis gives a method without fields fewer: it
    # does not repeat an identical example), and some of them were valid.
    calls = {m["method"]: sum(m["codes"].values()) for m in report["methods"]}
    assert min(calls.values()) >= 1 and calls["/shopsense.search.v1.SearchService/Search"] >= 8
    assert report["totals"].get("OK", 0) > 0 and report["totals"].get("INVALID_ARGUMENT", 0) > 0
    # Valid searches were made (then mutated one field at a time): the pipeline was reached.
    search = next(m for m in report["methods"] if m["method"].endswith("SearchService/Search"))
    assert search["codes"].get("OK", 0) >= 5, search
    assert report["naughty_strings"] == 515
    assert report["internal_or_unknown"] == 0, [m for m in report["methods"] if m["failures"]]
    assert report["crashed"] == []
    assert all(report["serving_at_end"].values()) and report["triton_live_at_end"]
    assert done.returncode == 0, done.stdout[-3000:]
