"""The README's examples, as a newcomer copies them: every `.venv/bin/shopsense ...` line of
its ```bash blocks runs against the running suite (the `make ...` lines are what starts
and tests it) and must exit 0; a search must print results."""

from __future__ import annotations

import re
import shlex
import subprocess
from pathlib import Path

import pytest

from shared.paths import REPO_ROOT
from shared.runtime.suite import Suite
from tests.support import client_env

pytestmark = pytest.mark.system

COMMAND = ".venv/bin/shopsense"
# The table's title (centred) and its rows, as `shopsense search` prints them.
RESULTS = re.compile(r'^\s*"(?P<query>.*)": (?P<total>\d+) results in \d+ ms\s*$', re.MULTILINE)
ROW = re.compile(r"^│\s*(?P<position>\d+)\s*│", re.MULTILINE)


def readme_commands(text: str) -> list[str]:
    """The `.venv/bin/shopsense` lines of the ```bash blocks of a README."""
    blocks = re.findall(r"^```bash\n(.*?)^```", text, re.MULTILINE | re.DOTALL)
    return [
        line.strip()
        for block in blocks
        for line in block.splitlines()
        if line.strip().startswith(COMMAND + " ")
    ]


def test_readme_commands_are_found() -> None:
    text = '```bash\nmake run\n.venv/bin/shopsense search "a"\n```\n```toml\n.venv/bin/shopsense x\n```\n'
    assert readme_commands(text) == ['.venv/bin/shopsense search "a"']


README_COMMANDS = readme_commands((REPO_ROOT / "README.md").read_text(encoding="utf-8"))


def test_the_readme_has_shopsense_examples() -> None:
    assert any(" search " in command for command in README_COMMANDS), README_COMMANDS


@pytest.mark.parametrize("command", README_COMMANDS)
def test_readme_example_runs_against_the_suite(command: str, suite: Suite) -> None:
    argv = shlex.split(command, comments=True)
    assert Path(REPO_ROOT / argv[0]).is_file(), f"{argv[0]} is missing (make venv creates it)"
    env = client_env(suite)
    done = subprocess.run(argv, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120)
    shown = f"$ {command}\n{done.stdout}{done.stderr}"
    assert done.returncode == 0, shown
    if argv[1] == "search":
        found = RESULTS.search(done.stdout)
        assert found and found["query"] == argv[2] and int(found["total"]) > 0, shown
        positions = [int(m["position"]) for m in ROW.finditer(done.stdout)]
        assert positions and positions == list(range(1, len(positions) + 1)), shown
        if "--page-size" in argv:
            assert len(positions) <= int(argv[argv.index("--page-size") + 1]), shown
