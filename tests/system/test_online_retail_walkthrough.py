"""The README's Online Retail walk-through, as a newcomer copies it: a suite started with
an empty catalog (what `shopsense up --no-demo` starts), the real store imported up to the
split, and the evaluation against the baselines, each `.venv/bin/shopsense` line of the
README's ```bash online-retail block run as written (files under var/ go to a temporary
folder)."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from shared.paths import REPO_ROOT, shared_data_dir
from shared.runtime.suite import Suite
from tests.support import client_env

pytestmark = pytest.mark.system

DATA = shared_data_dir() / "online_retail"
BLOCK = re.compile(r"^```bash online-retail\n(.*?)^```", re.MULTILINE | re.DOTALL)


def walkthrough() -> list[str]:
    text = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    found = BLOCK.search(text)
    assert found, "README.md has no ```bash online-retail block"
    lines = [line.strip() for line in found.group(1).splitlines()]
    return [line for line in lines if ".venv/bin/shopsense " in line]


@pytest.fixture(scope="module")
def empty_suite(exported_model_repository: Path, tmp_path_factory) -> Iterator[Suite]:
    if not DATA.is_dir():
        pytest.skip(f"{DATA} is not here (../shared/data beside the repository)")
    state = tmp_path_factory.mktemp("online-retail-state")
    with Suite(
        state=state,
        model_repository=exported_model_repository,
        ephemeral_ports=True,
        extra_env={"SHOPSENSE_RECOMMEND_REFRESH_S": "0.5"},
    ) as running:
        yield running


def test_the_readme_walkthrough_imports_and_evaluates(empty_suite: Suite, tmp_path: Path):
    commands = walkthrough()
    assert any(" up --no-demo" in c for c in commands), commands
    env = client_env(empty_suite)
    report = png = None
    for command in commands:
        argv = shlex.split(command, comments=True)
        argv = [arg for arg in argv if "=" not in arg or arg.startswith("-")]  # VAR=... prefixes
        if argv[1] == "up":
            continue  # the fixture's suite stands in for it
        argv = [str(tmp_path / a[4:]) if a.startswith("var/") else a for a in argv]
        if "--json" in argv:
            report = Path(argv[argv.index("--json") + 1])
        if "--png" in argv:
            png = Path(argv[argv.index("--png") + 1])
        done = subprocess.run(
            argv, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=900
        )
        assert done.returncode == 0, f"$ {command}\n{done.stdout}{done.stderr}"
    assert report is not None and report.is_file()
    figures = json.loads(report.read_text())
    systems = {s["name"]: s for s in figures["systems"]}
    assert {
        "served",
        "popularity (30 days)",
        "buy again",
        "ALS",
        "co-occurrence",
        "content",
    } <= set(systems)
    assert figures["cases"] > 1000
    # Exposure: the served lists spread over far more of the catalog than popularity's one
    # list, and the diversity setting buys variety (it may cost recall).
    popular = systems["popularity (30 days)"]
    assert systems["served"]["gini"] < popular["gini"]
    assert systems["served"]["top1_share"] < popular["top1_share"] == 1.0
    variety = [systems[n]["intra_list_diversity"] for n in ("served", "served, diversity 0.5")]
    assert variety[0] < variety[1]
    assert png is not None and png.stat().st_size > 10_000
    # The served pipeline's own variants (diversity settings; with a sequence model served,
    # the blend without it) are not baselines.
    for name in [n for n in systems if n.startswith("served") and n != "served"]:
        systems.pop(name)
    served = systems.pop("served")
    for name, other in systems.items():
        assert served["recall_at_20"] > other["recall_at_20"], (name, served, other)
    # Products first sold after the split: no history can name them, their text can.
    assert systems["content"]["new_product_recall"] > 0
    assert systems["popularity (30 days)"]["new_product_recall"] == 0
    assert served["new_product_recall"] >= systems["popularity (30 days)"]["new_product_recall"]
