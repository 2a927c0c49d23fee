"""``make bench-scale`` on a small catalog: it prints the three rows with figures a reader
can check (the in-process search is exact; the HNSW graph's recall is high on clustered
vectors; milvus-lite's FLAT index below 100,000 products is exact too, so its recall is 1
and its hybrid list is the in-process one)."""

from __future__ import annotations

import re

import pytest

from shared.bench import scale

pytestmark = pytest.mark.integration


def test_bench_scale_prints_both_backends(capsys: pytest.CaptureFixture[str]) -> None:
    scale.main(
        ["--products", "3000", "--queries", "20", "--clusters", "50", "--ann-threshold", "1000"]
    )
    out = capsys.readouterr().out
    assert "SYNTHETIC catalog: 3,000 products" in out
    assert re.search(r"^machine: .+", out, re.M)
    assert "milvus reopen (collection reused)" in out
    rows = {
        cells[0]: cells[1:]
        for line in out.splitlines()
        if line.startswith(("| memory", "| milvus"))
        for cells in [[c.strip() for c in line.strip("|").split("|")]]
    }
    assert set(rows) == {"memory, exact", "memory, HNSW", "milvus"}
    for name, cells in rows.items():
        for latency in cells[2:5]:
            p50, p99 = (float(x) for x in latency.split(" / "))
            assert 0 < p50 <= p99, (name, latency)
    assert rows["memory, exact"][5:] == ["1.000", "1.000"]
    assert float(rows["memory, HNSW"][5]) >= 0.95
    assert "then the graph built in the background" in out
    assert float(rows["milvus"][5]) == 1.0  # FLAT: exact
    assert float(rows["milvus"][6]) >= 0.98  # the same lists, up to float ties
    engine_mib = float(rows["milvus"][1].split(" + ")[1].replace(",", ""))
    assert engine_mib > 0  # the milvus-lite server process was found and measured
