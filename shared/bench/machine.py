"""What a benchmark ran on, printed with every figure so that figures from different
machines are never compared blind: the CPU's model and the instruction sets our engines
use (AVX2, AVX-512, VNNI, AMX, bf16), the cores this process may use and the thread
settings, and the engine and precision each served model's export chose on this machine
(``export_report.json`` beside its ``model.onnx``; ``shared.training.export``).

The machines a session gets differ (AMD with AVX2 only; AMD with AVX-512 and VNNI; Intel
with AMX and bf16): speed is compared as ratios within one run, and the machine line says
which machine the run was.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from shared.models.layout import REPORT_FILE

# The instruction sets named in figures, and the /proc/cpuinfo flags that mean each.
INSTRUCTION_SETS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("AVX2", ("avx2",)),
    ("AVX-512", ("avx512f",)),
    ("VNNI", ("avx512_vnni", "avx_vnni")),
    ("AMX", ("amx_tile",)),
    ("bf16", ("avx512_bf16", "amx_bf16")),
)
# Thread settings the engines read, printed when set.
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


@dataclass(frozen=True)
class Machine:
    """One machine, as a benchmark prints it (``line``) and writes it (``as_json``)."""

    cpu: str
    instruction_sets: tuple[str, ...]
    cores: int  # the machine's logical CPUs
    usable_cores: int  # those this process may run on (affinity, cgroup cpusets)
    threads: dict[str, str] = field(default_factory=dict)
    # model -> "engine precision (version N)", for the served models' versions.
    engines: dict[str, str] = field(default_factory=dict)

    def line(self) -> str:
        """One line: ``machine: <cpu>; AVX2 AVX-512 ...; 2 of 2 cores; threads ...; engines ...``."""
        parts = [
            self.cpu,
            " ".join(self.instruction_sets)
            or "none of " + " ".join(n for n, _ in INSTRUCTION_SETS),
            f"{self.usable_cores} of {self.cores} cores",
        ]
        if self.threads:
            parts.append("threads " + ", ".join(f"{k}={v}" for k, v in self.threads.items()))
        if self.engines:
            parts.append("engines " + ", ".join(f"{k} {v}" for k, v in self.engines.items()))
        return "machine: " + "; ".join(parts)

    def as_json(self) -> dict[str, Any]:
        return {**asdict(self), "instruction_sets": list(self.instruction_sets)}


def _cpuinfo(path: Path) -> tuple[str, set[str]]:
    try:
        text = path.read_text()
    except OSError:
        return "unknown CPU", set()
    lines = text.splitlines()
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in lines
            if line.startswith(("model name", "Model", "cpu model"))
        ),
        "unknown CPU",
    )
    flags = next((line.split(":", 1)[1].split() for line in lines if line.startswith("flags")), [])
    return model, set(flags)


def instruction_sets(flags: set[str]) -> tuple[str, ...]:
    """The names of :data:`INSTRUCTION_SETS` that ``flags`` (/proc/cpuinfo's) include."""
    return tuple(name for name, wanted in INSTRUCTION_SETS if flags & set(wanted))


def served_engines(repository: Path, versions: Mapping[str, str]) -> dict[str, str]:
    """``model -> "engine precision (version N)"`` for each ``model: version`` whose folder
    in ``repository`` has an export report; "no report" where a version has none (a
    model that is not served, version "" or "none", is left out)."""
    engines = {}
    for model, version in versions.items():
        if not version or version == "none":
            continue
        report = repository / model / str(version) / REPORT_FILE
        try:
            chosen = json.loads(report.read_text())
        except (OSError, ValueError):
            engines[model] = f"no report (version {version})"
            continue
        engine = chosen.get("engine", "?")
        served = chosen.get("served", "")
        engines[model] = f"{engine} {served} (version {version})".replace("  ", " ")
    return engines


def newest_versions(repository: Path) -> dict[str, str]:
    """Each model of ``repository`` with its newest version folder (numbered), for a
    benchmark that does not ask a running suite which version serves."""
    newest = {}
    for model in (
        sorted(p for p in repository.iterdir() if p.is_dir()) if repository.is_dir() else []
    ):
        numbered = [int(v.name) for v in model.iterdir() if v.is_dir() and v.name.isdigit()]
        if numbered:
            newest[model.name] = str(max(numbered))
    return newest


def machine(
    engines: Mapping[str, str] | None = None, cpuinfo: Path = Path("/proc/cpuinfo")
) -> Machine:
    """This machine; ``engines`` (from :func:`served_engines`) names the models' engines."""
    model, flags = _cpuinfo(cpuinfo)
    threads = {name: os.environ[name] for name in THREAD_VARIABLES if os.environ.get(name)}
    torch = sys.modules.get("torch")  # only when the benchmark uses it: no import here
    if torch is not None:
        threads["torch"] = str(torch.get_num_threads())
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        usable = os.cpu_count() or 1
    return Machine(
        cpu=model,
        instruction_sets=instruction_sets(flags),
        cores=os.cpu_count() or 1,
        usable_cores=usable,
        threads=threads,
        engines=dict(engines or {}),
    )
