"""Where the suite's time goes beside the floor's (issue 14, item 2): what each process
says of itself, read from its /metrics around the suite's runs of ``make bench``.

- **Per hop, at 1 client:** the mean time the gateway saw for each hop against the mean
  time the hop's server spent on the call: the handler, its interceptors and its engine
  (``grpc_server_handling_seconds`` of Classify, Retrieve, Rank and the gateway's Search;
  Triton's ``nv_inference_request_duration_us`` of the text encoder). What is left between
  them is the hop's transport: the client's and server's gRPC, (de)serialisation and the
  thread hand-offs.
- **CPU per search, at 8 clients:** each process's CPU seconds over the searches it served
  (``process_cpu_seconds_total`` of every service; Triton's server and its python-backend
  stubs from ``/proc``, found by the model repository in their command lines), against the
  floor's: this process's CPU time over the floor's searches.
"""

from __future__ import annotations

import os
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

# Each hop of the gateway's timings, and the series that says what its server spent.
SERVER_SERIES = {
    "embed": ("triton", "text_encoder"),
    "intent": ("intent", "Classify"),
    "retrieval": ("retrieval", "Retrieve"),
    "ranking": ("ranking", "Rank"),
    "total": ("gateway", "Search"),
}
TRITON = "triton"


@dataclass
class Reading:
    """Cumulative counters at one moment: per (process, method) the calls and seconds spent
    serving them; per process its CPU seconds."""

    calls: dict[tuple[str, str], float] = field(default_factory=dict)
    seconds: dict[tuple[str, str], float] = field(default_factory=dict)
    cpu_s: dict[str, float] = field(default_factory=dict)

    def minus(self, before: Reading) -> Reading:
        def delta(now: dict, then: dict) -> dict:
            return {key: value - then.get(key, 0.0) for key, value in now.items()}

        return Reading(
            delta(self.calls, before.calls),
            delta(self.seconds, before.seconds),
            delta(self.cpu_s, before.cpu_s),
        )

    def plus(self, other: Reading) -> Reading:
        def total(a: dict, b: dict) -> dict:
            return {key: a.get(key, 0.0) + b.get(key, 0.0) for key in {*a, *b}}

        return Reading(
            total(self.calls, other.calls),
            total(self.seconds, other.seconds),
            total(self.cpu_s, other.cpu_s),
        )


def parse_targets(targets: str) -> dict[str, str]:
    """``SHOPSENSE_METRICS_TARGETS``'s ``name=host:port,...`` as a dict."""
    pairs = (item.split("=", 1) for item in targets.split(",") if "=" in item)
    return {name.strip(): where.strip() for name, where in pairs}


def read_service(name: str, text: str, reading: Reading) -> None:
    """A service's /metrics text into ``reading``: its CPU and its unary methods' handling."""
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "process_cpu_seconds_total":
                reading.cpu_s[name] = sample.value
            elif sample.name in (
                "grpc_server_handling_seconds_sum",
                "grpc_server_handling_seconds_count",
            ):
                key = (name, sample.labels.get("grpc_method", ""))
                into = reading.seconds if sample.name.endswith("_sum") else reading.calls
                into[key] = into.get(key, 0.0) + sample.value


def read_triton(text: str, reading: Reading) -> None:
    """Triton's /metrics text into ``reading``: each model's requests and their duration
    (all versions together)."""
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            # The parser names a counter's sample with _total whether Triton does or not.
            name = sample.name.removesuffix("_total")
            if name not in ("nv_inference_request_duration_us", "nv_inference_request_success"):
                continue
            key = (TRITON, sample.labels.get("model", ""))
            if name == "nv_inference_request_success":
                reading.calls[key] = reading.calls.get(key, 0.0) + sample.value
            else:
                reading.seconds[key] = reading.seconds.get(key, 0.0) + sample.value / 1e6


def triton_cpu_s(repository: Path) -> float | None:
    """CPU seconds of the Triton server and python-backend stubs serving ``repository``
    (their command lines name it); None when none is found on this machine."""
    needle, total, found = str(repository), 0.0, False
    ticks = os.sysconf("SC_CLK_TCK")
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            if "triton" not in command or needle not in command:
                continue
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # the process ended meanwhile
            continue
        total += (int(fields[11]) + int(fields[12])) / ticks  # utime, stime
        found = True
    return total if found else None


def read(targets: dict[str, str], repository: Path, timeout_s: float = 5.0) -> Reading:
    """Every target's counters now; a target that does not answer is left out."""
    reading = Reading()
    for name, where in targets.items():
        try:
            with urllib.request.urlopen(f"http://{where}/metrics", timeout=timeout_s) as reply:
                text = reply.read().decode()
        except OSError:
            continue
        if name == TRITON:
            read_triton(text, reading)
        else:
            read_service(name, text, reading)
    cpu = triton_cpu_s(repository)
    if cpu is not None:
        reading.cpu_s[TRITON] = cpu
    return reading


@dataclass
class Meter:
    """Readings around runs, added up: ``with meter.measuring(): ...`` around each."""

    targets: dict[str, str]
    repository: Path
    total: Reading = field(default_factory=Reading)

    @contextmanager
    def measuring(self) -> Iterator[None]:
        before = read(self.targets, self.repository)
        yield
        self.total = self.total.plus(read(self.targets, self.repository).minus(before))


def hop_table(
    meter: Reading,
    seen_ms: dict[str, Sequence[float]],
    client_ms: Sequence[float],
    floor_ms: dict[str, Sequence[float]],
) -> dict[str, dict[str, float]]:
    """Per hop: the gateway's mean (``gateway_ms``), the server's mean (``server_ms``), what
    lies between (``transport_ms``) and the floor's mean for the same step (``floor_ms``).
    ``total`` is the whole search: the bench client's mean (``client_ms``) against the
    gateway's own handling. A hop whose server said nothing has no ``server_ms``."""
    rows: dict[str, dict[str, float]] = {}
    for hop, (process, method) in SERVER_SERIES.items():
        samples = client_ms if hop == "total" else seen_ms.get(hop)
        if not samples:
            continue
        row = {"gateway_ms": sum(samples) / len(samples)}
        calls = meter.calls.get((process, method), 0.0)
        if calls > 0:
            row["server_ms"] = meter.seconds[(process, method)] / calls * 1e3
            row["transport_ms"] = row["gateway_ms"] - row["server_ms"]
        if floor_ms.get(hop):
            row["floor_ms"] = sum(floor_ms[hop]) / len(floor_ms[hop])
        rows[hop] = {key: round(value, 3) for key, value in row.items()}
    return rows


def cpu_table(meter: Reading, searches: int, floor_cpu_s: float, floor_searches: int) -> dict:
    """CPU milliseconds per search of each process that spent any, their sum (``suite``),
    and the floor's (``floor``)."""
    rows = {
        name: round(seconds / searches * 1e3, 3)
        for name, seconds in sorted(meter.cpu_s.items(), key=lambda item: -item[1])
        if seconds > 0 and searches
    }
    rows["suite"] = round(sum(rows.values()), 3)
    if floor_searches:
        rows["floor"] = round(floor_cpu_s / floor_searches * 1e3, 3)
    return rows
