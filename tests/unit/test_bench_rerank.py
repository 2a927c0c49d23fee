"""make bench-rerank's choices: which versions each step serves, and the repeated load."""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

import pytest

from shared.bench.arguments import add_rerank_arguments
from shared.bench.rerank import cross_encoder_versions, steps, zipf_draws


def _install(repository: Path, version: int, layers: int | None) -> None:
    folder = repository / "cross_encoder" / str(version)
    folder.mkdir(parents=True)
    spec = {"kind": "cross_encoder"} | ({} if layers is None else {"layers": layers})
    (folder / "shopsense_model.json").write_text(json.dumps(spec))


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_rerank_arguments(parser)
    return parser.parse_args(list(argv))


def test_steps_serve_the_newest_full_and_pruned_versions_cumulatively(tmp_path: Path) -> None:
    _install(tmp_path, 1, None)  # a version exported before layers were recorded: 6
    _install(tmp_path, 2, 3)
    _install(tmp_path, 3, 6)
    _install(tmp_path, 4, 2)
    _install(tmp_path, 5, 3)
    versions = cross_encoder_versions(tmp_path)
    assert versions == {1: 6, 2: 3, 3: 6, 4: 2, 5: 3}
    chosen = steps(_args("--pair-tokens", "32", "--deadline-ms", "80"), versions)
    # The newest of each pruned layer count, most layers first; the deadline and cache
    # steps serve the last (the fewest layers).
    assert [s.cross_encoder for s in chosen] == [0, 3, 3, 5, 4, 4, 4]
    assert [s.pair_tokens for s in chosen] == [64, 64, 32, 32, 32, 32, 32]
    assert [s.deadline_s for s in chosen][-2:] == [0.08, 0.08]
    assert {s.deadline_s for s in chosen[:-2]} == {10.0}
    assert [s.cached for s in chosen] == [False] * 6 + [True]
    assert "3 layers" in chosen[3].name and "2 layers" in chosen[4].name
    assert "(v4, at most 50)" in chosen[5].name
    pinned = steps(_args("--full", "1", "--pruned", "2"), versions)
    assert [s.cross_encoder for s in pinned] == [0, 1, 1, 2, 2, 2]
    both = steps(_args("--pruned", "4", "2"), versions)
    assert [s.cross_encoder for s in both][3:] == [4, 2, 2, 2]
    assert {s.depth for s in both} == {50}
    # A shallower head is a step of its own, after the pruned rows (which rescore 50).
    shallow = steps(_args("--depth", "30"), versions)
    assert [s.cross_encoder for s in shallow] == [0, 3, 3, 5, 4, 4, 4, 4]
    assert [s.depth for s in shallow] == [50, 50, 50, 50, 50, 30, 30, 30]
    assert "top 30" in shallow[5].name and "at most 30" in shallow[6].name
    assert [s.deadline_s for s in shallow][-3:] == [10.0, 0.1, 0.1]


def test_missing_versions_say_what_to_run(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="make train"):
        steps(_args(), {})
    with pytest.raises(SystemExit, match=r"cross_encoder\.layers=3"):
        steps(_args(), {1: 6})
    with pytest.raises(SystemExit, match="--depth: 0"):
        steps(_args("--depth", "0"), {1: 6, 2: 3})


def test_the_repeated_load_favours_the_head_queries() -> None:
    queries = [f"q{i}" for i in range(100)]
    draws = zipf_draws(queries, 5000)
    counts = Counter(draws)
    assert len(draws) == 5000 and set(draws) <= set(queries)
    # P(rank 1) / P(rank 10) = 10 for s = 1.
    assert 6 < counts["q0"] / counts["q9"] < 16
    assert zipf_draws(queries, 50) == zipf_draws(queries, 50)  # seeded
