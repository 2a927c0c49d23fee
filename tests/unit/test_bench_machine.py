"""The machine every benchmark prints (shared.bench.machine) and the search benchmark's
figures as --json writes them (shared.bench.suite)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from shared.bench.machine import INSTRUCTION_SETS, machine, newest_versions, served_engines
from shared.bench.suite import FLOOR_1, FLOOR_8, SUITE_1, SUITE_8, as_run, ratios
from shared.cli.main import main

AVX2_ONLY = "fpu sse2 avx avx2 fma bmi2"
AVX512_VNNI = AVX2_ONLY + " avx512f avx512bw avx512_vnni"
AMX = AVX512_VNNI + " avx512_bf16 amx_tile amx_bf16 amx_int8"


def _cpuinfo(tmp_path: Path, model: str, flags: str) -> Path:
    path = tmp_path / "cpuinfo"
    block = f"processor\t: 0\nvendor_id\t: x\nmodel name\t: {model}\nflags\t\t: {flags}\n\n"
    path.write_text(block * 2)
    return path


@pytest.mark.parametrize(
    ("model", "flags", "expected"),
    [
        ("AMD EPYC 7B12", AVX2_ONLY, ("AVX2",)),
        ("AMD EPYC 9B14", AVX512_VNNI, ("AVX2", "AVX-512", "VNNI")),
        ("Intel(R) Xeon(R) Platinum 8481C", AMX, ("AVX2", "AVX-512", "VNNI", "AMX", "bf16")),
    ],
)
def test_the_machine_names_its_cpu_and_the_instruction_sets_the_engines_use(
    tmp_path: Path, model: str, flags: str, expected: tuple[str, ...]
) -> None:
    here = machine(cpuinfo=_cpuinfo(tmp_path, model, flags))
    assert here.cpu == model
    assert here.instruction_sets == expected
    line = here.line()
    assert line.startswith(f"machine: {model}; {' '.join(expected)}; ")
    assert f"{here.usable_cores} of {here.cores} cores" in line
    assert json.loads(json.dumps(here.as_json()))["instruction_sets"] == list(expected)


def test_this_machine_is_read_from_proc_cpuinfo() -> None:
    here = machine()
    text = Path("/proc/cpuinfo").read_text()
    assert here.cpu in text
    flags = set(next(line for line in text.splitlines() if line.startswith("flags")).split())
    for name, wanted in INSTRUCTION_SETS:
        assert (name in here.instruction_sets) == bool(flags & set(wanted))
    assert 1 <= here.usable_cores <= here.cores


def test_engines_come_from_each_served_versions_export_report(tmp_path: Path) -> None:
    (tmp_path / "text_encoder" / "1").mkdir(parents=True)
    (tmp_path / "text_encoder" / "3").mkdir()
    (tmp_path / "text_encoder" / "3" / "export_report.json").write_text(
        json.dumps({"engine": "openvino", "served": "int8"})
    )
    (tmp_path / "cross_encoder" / "2").mkdir(parents=True)
    assert newest_versions(tmp_path) == {"cross_encoder": "2", "text_encoder": "3"}
    engines = served_engines(
        tmp_path, {"text_encoder": "3", "cross_encoder": "2", "intent_classifier": "none"}
    )
    assert engines == {
        "text_encoder": "openvino int8 (version 3)",
        "cross_encoder": "no report (version 2)",
    }
    line = machine(engines).line()
    assert "engines text_encoder openvino int8 (version 3), cross_encoder no report" in line


def _row(p50: float, p99: float, qps: float, **hops: float) -> dict:
    return {"n": 10, "errors": 0, "p50_ms": p50, "p99_ms": p99, "qps": qps, "hops_ms": hops}


def test_the_search_benchmarks_runs_and_ratios_as_a_program_reads_them() -> None:
    rows = {
        SUITE_1: _row(30.0, 60.0, 33.0, embed=10.0, ranking=6.0, total=30.0),
        SUITE_8: _row(200.0, 400.0, 40.0),
        FLOOR_1: _row(15.0, 20.0, 66.0, embed=7.5, ranking=2.0, total=15.0),
        FLOOR_8: _row(100.0, 150.0, 80.0),
    }
    runs = [as_run(name, row) for name, row in rows.items()]
    assert [(run["name"], run["clients"]) for run in runs] == [
        ("suite", 1),
        ("suite", 8),
        ("floor", 1),
        ("floor", 8),
    ]
    assert runs[0]["p50_ms"] == 30.0 and runs[0]["per_second"] == 33.0
    assert set(runs[0]) >= {"name", "clients", "p50_ms", "p99_ms", "per_second"}
    assert ratios(rows) == {
        "p50_at_1": 2.0,
        "p99_at_1": 3.0,
        "throughput_at_8": 0.5,
        "embed_p50_at_1": 1.333,
        "ranking_p50_at_1": 3.0,
        "total_p50_at_1": 2.0,
    }


def test_shopsense_bench_search_takes_seconds_and_json(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as done:
        main(["bench", "search", "--help"])
    assert done.value.code == 0
    usage = capsys.readouterr().out
    for option in ("--seconds", "--json", "--no-security"):
        assert option in usage
