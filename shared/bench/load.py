"""Closed-loop load, the pattern every latency benchmark here uses: ``concurrency`` clients
each sending the next request as soon as the last is answered, for a fixed time; and the
percentile they report."""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

R = TypeVar("R")


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def closed_loop(
    call: Callable[[R], object], requests: Sequence[R], concurrency: int, seconds: float
) -> dict[str, float]:
    """``concurrency`` threads calling ``call`` on ``requests`` in turn (client ``i`` sends
    requests ``i``, ``i + concurrency``, ...) for ``seconds``: the number of calls, p50 and
    p99 in ms, and calls per second of wall time. Each thread keeps its own latencies
    until it ends, so no lock is taken between calls."""
    latencies: list[float] = []
    lock = threading.Lock()
    stop_at = time.perf_counter() + seconds

    def client(offset: int) -> None:
        mine, i = [], offset
        while time.perf_counter() < stop_at:
            started = time.perf_counter()
            call(requests[i % len(requests)])
            mine.append((time.perf_counter() - started) * 1e3)
            i += concurrency
        with lock:
            latencies.extend(mine)

    began = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(client, range(concurrency)))
    wall = time.perf_counter() - began
    return {
        "requests": len(latencies),
        "p50_ms": statistics.median(latencies),
        "p99_ms": percentile(latencies, 0.99),
        "per_s": len(latencies) / wall,
    }
