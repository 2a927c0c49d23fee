"""Benchmark of the text encoder: ``python -m shared.bench.encoder [--url HOST:PORT]``.

Prints embed throughput through Triton (gRPC + python backend + the engine its export
chose) at batch 1 and 32, and with 8 concurrent batch-1 clients (the dynamic batcher's
case), next to the same engine in this process, tokenization included on both sides;
Triton and in-process take turns (ABBA) with Triton up throughout, and
``triton_share_of_inprocess`` is Triton's rate over the in-process one per batch size.
Without ``--url`` it starts its own Triton and reports start-to-ready time; ``--export``
also times an export.
"""

from __future__ import annotations

import argparse
import contextlib
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from shared.models.onnx_runtime import OnnxSentenceEncoder
from shared.models.tokenization import Tokenizer
from shared.paths import triton_model_repository

_WORDS = [
    "modern",
    "grey",
    "fabric",
    "three",
    "seater",
    "sofa",
    "with",
    "solid",
    "oak",
    "legs",
    "and",
    "removable",
    "cushions",
    "round",
    "walnut",
    "dining",
    "table",
    "for",
    "six",
    "people",
    "mid",
    "century",
    "style",
    "brass",
    "handles",
    "white",
    "ceramic",
    "lamp",
    "linen",
    "shade",
    "outdoor",
    "teak",
    "bench",
    "king",
    "size",
    "upholstered",
    "bed",
    "frame",
    "storage",
    "drawers",
    "velvet",
    "armchair",
    "navy",
    "blue",
    "rug",
    "wool",
    "hand",
    "woven",
    "small",
    "mirror",
    "black",
    "metal",
]


def sample_texts(count: int, words: int = 12, seed: int = 0) -> list[str]:
    """Product-title-like texts of ``words`` words (about 14-16 tokens)."""
    rng = np.random.default_rng(seed)
    return [" ".join(rng.choice(_WORDS, size=words)) for _ in range(count)]


def _timed(
    call: Callable[[list[str]], object], texts: list[str], batch: int, seconds: float
) -> tuple[list[float], float]:
    """Repeat ``call`` on batches for about ``seconds`` (at least 5 calls): each call's
    milliseconds and the elapsed seconds."""
    latencies: list[float] = []
    start = time.perf_counter()
    offset = 0
    while time.perf_counter() - start < seconds or len(latencies) < 5:
        chunk = texts[offset : offset + batch]
        if len(chunk) < batch:
            offset, chunk = 0, texts[:batch]
        began = time.perf_counter()
        call(chunk)
        latencies.append((time.perf_counter() - began) * 1000.0)
        offset += batch
    return latencies, time.perf_counter() - start


def _rate(parts: list[tuple[list[float], float]], batch: int) -> dict[str, float]:
    """Texts/s and per-call p50/p99 of one side's turns (:func:`_timed` results)."""
    ms = np.array([latency for latencies, _ in parts for latency in latencies])
    return {
        "texts_per_s": len(ms) * batch / sum(elapsed for _, elapsed in parts),
        "p50_ms": float(np.percentile(ms, 50)),
        "p99_ms": float(np.percentile(ms, 99)),
    }


def _in_turns(
    sides: dict[str, Callable[[list[str]], object]],
    texts: list[str],
    batch: int,
    seconds: float,
) -> dict[str, dict[str, float]]:
    """Two sides (e.g. Triton and in-process) at one batch size, in turns A, B, B, A of
    ``seconds / 2`` each (after a warm-up call each), so that neither gets the machine's
    quieter moments: ``{side: figures}``."""
    first, second = sides
    parts: dict[str, list[tuple[list[float], float]]] = {first: [], second: []}
    for name in sides:
        sides[name](texts[:batch])
    for name in (first, second, second, first):
        parts[name].append(_timed(sides[name], texts, batch, seconds / 2))
    return {name: _rate(parts[name], batch) for name in sides}


def _concurrent_rate(
    call: Callable[[list[str]], object], texts: list[str], threads: int, seconds: float
) -> dict[str, float]:
    """Batch-1 calls from ``threads`` threads at once: total texts/s."""
    counts = [0] * threads
    stop = threading.Event()

    def work(index: int) -> None:
        i = index
        while not stop.is_set():
            call([texts[i % len(texts)]])
            counts[index] += 1
            i += threads

    workers = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
    start = time.perf_counter()
    for worker in workers:
        worker.start()
    time.sleep(seconds)
    stop.set()
    for worker in workers:
        worker.join()
    return {"texts_per_s": sum(counts) / (time.perf_counter() - start)}


@contextlib.contextmanager
def _triton(url: str | None, repository: Path) -> Iterator[tuple[str, float | None]]:
    if url:
        yield url, None
        return
    from shared.models.triton_server import TritonServer

    with TritonServer(repository, models=["text_encoder"]) as server:
        yield server.grpc_url, server.startup_seconds


def bench_encoder(
    url: str | None = None,
    repository: Path | None = None,
    seconds: float = 3.0,
    export: bool = False,
    max_length: int = 64,
) -> dict[str, dict[str, float]]:
    """Measure the encoder; returns ``{case: {metric: value}}`` (also what main prints)."""
    from shared.models.triton_client import TextEncoderClient

    repository = repository or triton_model_repository()
    results: dict[str, dict[str, float]] = {}
    if export:
        from shared.training.export import export_text_encoder

        with tempfile.TemporaryDirectory() as tmp:
            result = export_text_encoder(version=1, repository=Path(tmp), force=True)
        results["export"] = {"seconds": result.seconds}

    tokenizer = Tokenizer()
    texts = sample_texts(512)
    with _triton(url, repository) as (grpc_url, startup):
        if startup is not None:
            results["triton_start_to_ready"] = {"seconds": startup}
        client = TextEncoderClient(grpc_url, tokenizer, timeout_s=30.0)
        version = client.version()
        # In process on the engine the version's export chose, as Triton runs it.
        encoder = OnnxSentenceEncoder.for_version(repository / "text_encoder" / version)
        results["engine"] = {f"{encoder.engine} {encoder.precision}": 1.0}

        def remote(batch: list[str]) -> object:
            return client.embed(batch, max_length=max_length, batch_size=64)

        def local(batch: list[str]) -> object:
            return encoder.run(*tokenizer.encode(batch, max_length))

        shares = {}
        for batch in (1, 32):
            rates = _in_turns({"triton": remote, "inprocess": local}, texts, batch, seconds)
            results.update({f"{side}_batch{batch}": rates[side] for side in rates})
            shares[f"batch{batch}"] = (
                rates["triton"]["texts_per_s"] / rates["inprocess"]["texts_per_s"]
            )
        results["triton_batch1_8threads"] = _concurrent_rate(remote, texts, 8, seconds)
        results["triton_share_of_inprocess"] = shares
        client.close()
    return results


def main(argv: list[str] | None = None) -> int:
    """Print the benchmark as a small table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default=None, help="Triton gRPC host:port (default: start one)")
    parser.add_argument("--repository", type=Path, default=None)
    parser.add_argument("--seconds", type=float, default=3.0, help="per case")
    parser.add_argument("--export", action="store_true", help="also time an export")
    args = parser.parse_args(argv)
    from shared.bench.machine import machine, served_engines
    from shared.paths import triton_model_repository

    repository = args.repository or triton_model_repository()
    print(machine(served_engines(repository, {"text_encoder": "1"})).line())
    results = bench_encoder(args.url, args.repository, args.seconds, args.export)
    for case, metrics in results.items():
        values = ", ".join(f"{name} {value:,.2f}" for name, value in metrics.items())
        print(f"{case:<26} {values}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
