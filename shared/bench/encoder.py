"""Benchmark of the text encoder: ``python -m shared.bench.encoder [--url HOST:PORT]``.

Prints embed throughput through Triton (gRPC + python backend + onnxruntime) at batch 1
and 32, and with 8 concurrent batch-1 clients (the dynamic batcher's case), next to the
in-process onnxruntime floor, tokenization included on both sides. Without ``--url`` it
starts its own Triton and reports start-to-ready time; ``--export`` also times an export.
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


def _rate(
    call: Callable[[list[str]], object], texts: list[str], batch: int, seconds: float
) -> dict[str, float]:
    """Repeat ``call`` on batches for about ``seconds``: texts/s and per-call p50/p99."""
    call(texts[:batch])  # warm-up
    latencies: list[float] = []
    start = time.perf_counter()
    offset = 0
    while time.perf_counter() - start < seconds or len(latencies) < 5:
        chunk = texts[offset : offset + batch]
        if len(chunk) < batch:
            offset, chunk = 0, texts[:batch]
        began = time.perf_counter()
        call(chunk)
        latencies.append(time.perf_counter() - began)
        offset += batch
    elapsed = time.perf_counter() - start
    ms = np.array(latencies) * 1000
    return {
        "texts_per_s": len(latencies) * batch / elapsed,
        "p50_ms": float(np.percentile(ms, 50)),
        "p99_ms": float(np.percentile(ms, 99)),
    }


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

        def remote(batch: list[str]) -> object:
            return client.embed(batch, max_length=max_length, batch_size=64)

        results["triton_batch1"] = _rate(remote, texts, 1, seconds)
        results["triton_batch32"] = _rate(remote, texts, 32, seconds)
        results["triton_batch1_8threads"] = _concurrent_rate(remote, texts, 8, seconds)
        client.close()

    # In process on the engine the version's export chose, as Triton runs it.
    encoder = OnnxSentenceEncoder.for_version(repository / "text_encoder" / version)
    results["engine"] = {f"{encoder.engine} {encoder.precision}": 1.0}

    def local(batch: list[str]) -> object:
        return encoder.run(*tokenizer.encode(batch, max_length))

    results["inprocess_batch1"] = _rate(local, texts, 1, seconds)
    results["inprocess_batch32"] = _rate(local, texts, 32, seconds)
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
