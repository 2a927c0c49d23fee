"""`shopsense bench search` (make bench) against the running suite: the machine first, then
Search through the suite and through the floor at 1 and 8 clients, and --json with the
figures a program reads. One-second runs on the system suite's 2,000-product SYNTHETIC
store: this checks what the benchmark reports, not how fast anything is."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from shared.bench.machine import INSTRUCTION_SETS
from shared.paths import REPO_ROOT
from shared.runtime.suite import Suite
from tests.support import client_env

pytestmark = pytest.mark.system


def test_bench_search_prints_the_machine_and_writes_its_runs_as_json(
    suite: Suite, exported_model_repository: Path, tmp_path: Path
) -> None:
    out = tmp_path / "bench.json"
    command = ["bench", "search", "--seconds", "1", "--no-security", "--json", str(out)]
    done = subprocess.run(
        [".venv/bin/shopsense", *command],
        cwd=REPO_ROOT,
        env={**client_env(suite), "SHOPSENSE_TRITON_MODELS": str(exported_model_repository)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads(out.read_text())
    cpu = report["machine"]["cpu"]
    assert cpu in Path("/proc/cpuinfo").read_text()
    assert set(report["machine"]["instruction_sets"]) <= {name for name, _ in INSTRUCTION_SETS}
    assert report["machine"]["engines"]["text_encoder"].endswith("(version 1)")
    # The machine is printed before any figure.
    printed = done.stdout
    assert printed.index(f"machine: {cpu}") < printed.index("suite-to-floor")
    runs = {(run["name"], run["clients"]): run for run in report["runs"]}
    assert set(runs) == {("suite", 1), ("suite", 8), ("floor", 1), ("floor", 8)}
    for run in runs.values():
        assert run["searches"] > 0 and run["errors"] == 0, run
        assert 0 < run["p50_ms"] <= run["p99_ms"]
        assert run["per_second"] > 0
    assert set(runs["suite", 1]["hops_ms"]) >= {"embed", "intent", "retrieval", "ranking"}
    ratios = report["ratios"]
    assert ratios["p50_at_1"] == pytest.approx(
        runs["suite", 1]["p50_ms"] / runs["floor", 1]["p50_ms"], rel=0.01
    )
    assert ratios["throughput_at_8"] == pytest.approx(
        runs["suite", 8]["per_second"] / runs["floor", 8]["per_second"], rel=0.01
    )
    assert "secure_runs" not in report  # --no-security
    # Where the time goes: each hop against its server's own time, read from its /metrics.
    hops = report["tax"]["hops_at_1"]
    assert set(hops) >= {"embed", "intent", "retrieval", "ranking", "total"}
    for hop in ("intent", "retrieval", "ranking", "total"):
        row = hops[hop]
        assert 0 < row["server_ms"] < row["gateway_ms"], (hop, row)
        assert row["transport_ms"] == pytest.approx(row["gateway_ms"] - row["server_ms"], abs=2e-3)
    assert hops["total"]["floor_ms"] > 0
    cpu = report["tax"]["cpu_ms_per_search_at_8"]
    assert {"gateway", "retrieval", "ranking", "intent", "suite", "floor"} <= set(cpu)
    assert cpu["suite"] == pytest.approx(
        sum(ms for name, ms in cpu.items() if name not in ("suite", "floor", "bench clients")),
        abs=0.01,
    )
    assert "Where a search's time goes" in printed and "CPU ms per search" in printed
    # The text encoder through Triton against the same engine in process, in turns.
    encoder = report["text_encoder"]
    for batch in ("batch1", "batch32"):
        share = encoder["triton_share_of_inprocess"][batch]
        assert share == pytest.approx(
            encoder[f"triton_{batch}"]["texts_per_s"] / encoder[f"inprocess_{batch}"]["texts_per_s"]
        )
    assert "share of the in-process rate" in printed
