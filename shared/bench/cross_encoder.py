"""Benchmark of the cross-encoder: ``python -m shared.bench.cross_encoder
--checkpoint DIR [--queries N] [--repeats R] [--triton-url HOST:PORT] [--json OUT]``.

In one run, on realistic pairs (queries and product texts of the synthetic demo store
``var/demo-store-20000-s7/`` if present, else a generated one; each query's judged
products first, then others, 100 candidates a query):

- (a) the export: int8 (the graph the export's int8 ladder settled on) and the served
  engine and precision (the export's measured choice, e.g. OpenVINO bf16) against fp32
  onnxruntime: mean Spearman over the queries' candidate lists, and the speed of each
  on 100 pairs; then every candidate the export tried;
- (b) a rerank of 100 pairs through Triton (the published version, via
  ``CrossEncoderClient``; a TritonServer on a temporary repository unless
  ``--triton-url`` names one serving ``cross_encoder``) against PyTorch fp32 eager
  (``ShopsenseModel.load``, no_grad, dynamic padding, 2 threads). Tokenization counts
  on both sides.

Timings are **interleaved**: each round runs every contender once on the same query, in
a rotating order, so all of them see the same machine. This matters on a shared host,
where the throughput of the matrix units moves by up to 2x from second to second (a
bf16 matmul alone: 9 ms at best, 19 ms at the median); timing one contender's block
after the other's measured the neighbours as much as the engines. A speed ratio is the
median of the per-round ratios, with its interquartile range.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from shared.data.wands import iter_products, load_labels, load_queries
from shared.models.tokenization import Tokenizer
from shared.paths import state_dir

CANDIDATES = 100
MAX_LENGTH = 64
TARGET_RATIO = 3.3


def demo_pairs(
    n_queries: int, n_candidates: int = CANDIDATES
) -> tuple[list[tuple[str, list[str]]], str]:
    """``(query, candidate product texts)`` lists and where they came from."""
    store = state_dir() / "demo-store-20000-s7"
    if (store / "product.csv").is_file():
        products = {p.product_id: p.embedding_text() for p in iter_products(store)}
        queries = [(q.query_id, q.text) for q in load_queries(store)]
        labels = load_labels(store)
        source = str(store)
    else:
        from shared.data.synthetic import generate_store

        generated = generate_store(n_products=5000, n_queries=max(n_queries, 50), seed=7)
        products = {p.product_id: p.embedding_text() for p in generated.products}
        queries = [(q.query_id, q.text) for q in generated.queries]
        labels = {}
        for label in generated.labels:
            labels.setdefault(label.query_id, {})[label.product_id] = label.label
        source = "generate_store(5000 products, seed 7)"
    catalog = list(products)
    pairs = []
    for number, (query_id, text) in enumerate(queries[:n_queries]):
        ids = list(labels.get(query_id, {}))[:n_candidates]
        chosen = set(ids)
        step = 7919  # a prime: walks the catalog without repeating
        position = number * 104729
        while len(ids) < n_candidates:
            candidate = catalog[position % len(catalog)]
            position += step
            if candidate not in chosen:
                ids.append(candidate)
                chosen.add(candidate)
        pairs.append((text, [products[pid] for pid in ids]))
    return pairs, source


def interleaved_ms(
    calls: dict[str, Callable[[int], object]], rounds: int
) -> dict[str, list[float]]:
    """Wall times in milliseconds of each call, one per round, after one warm-up each.

    A call gets the round number (to pick its input); round ``r`` starts with the
    ``r``-th contender and goes on in order, so none always runs first.
    """
    names = list(calls)
    for name in names:
        calls[name](0)
    times: dict[str, list[float]] = {name: [] for name in names}
    for number in range(rounds):
        shift = number % len(names)
        for name in names[shift:] + names[:shift]:
            start = time.perf_counter()
            calls[name](number)
            times[name].append((time.perf_counter() - start) * 1000.0)
    return times


def paired_ratio(slow: list[float], fast: list[float]) -> tuple[float, float, float]:
    """Median and interquartile range of ``slow[r] / fast[r]`` over the rounds."""
    ratios = [a / b for a, b in zip(slow, fast, strict=True)]
    if len(ratios) == 1:
        return ratios[0], ratios[0], ratios[0]
    low, _, high = statistics.quantiles(ratios, n=4)
    return statistics.median(ratios), low, high


def run(
    checkpoint: Path,
    n_queries: int = 20,
    repeats: int = 30,
    triton_url: str | None = None,
) -> dict[str, float | str]:
    """Every figure of the benchmark, by name."""
    import torch

    from shared.models.onnx_runtime import OnnxModel
    from shared.models.triton_client import CrossEncoderClient
    from shared.models.triton_server import TritonServer
    from shared.training.engines import spearman
    from shared.training.export import export_checkpoint
    from shared.training.modules import ShopsenseModel
    from shared.training.publish import install_version, load_versions

    tokenizer = Tokenizer()
    pairs, source = demo_pairs(n_queries)
    results: dict[str, float | str] = {"pairs_from": source, "queries": len(pairs)}
    with tempfile.TemporaryDirectory(prefix="bench-cross-") as tmp:
        export_dir = Path(tmp) / "export"
        start = time.perf_counter()
        report = export_checkpoint(checkpoint, export_dir, check_inputs=pairs)
        results["export_s"] = time.perf_counter() - start
        results["fp32_max_abs_diff_vs_torch"] = report.fp32_max_abs_diff

        # (a) the served engine and precision vs fp32 onnxruntime on the same lists.
        fp32 = OnnxModel(export_dir / "model.fp32.onnx")
        served = OnnxModel.for_version(export_dir)
        encoded = [tokenizer.encode_pairs([q] * len(docs), docs, MAX_LENGTH) for q, docs in pairs]
        int8 = OnnxModel(export_dir / "model.int8.onnx")
        reference = [fp32.run(*e)[:, 0] for e in encoded]
        rhos = [spearman(int8.run(*e)[:, 0], r) for e, r in zip(encoded, reference, strict=True)]
        results["spearman_int8_fp32_mean"] = float(np.mean(rhos))
        results["spearman_int8_fp32_min"] = float(np.min(rhos))
        rhos = [spearman(served.run(*e)[:, 0], r) for e, r in zip(encoded, reference, strict=True)]
        results["served_engine"] = f"{served.engine} {served.precision}"
        results["spearman_served_fp32_mean"] = float(np.mean(rhos))
        results["spearman_served_fp32_min"] = float(np.min(rhos))
        times = interleaved_ms(
            {
                name: (lambda number, m=m: m.run(*encoded[number % len(encoded)]))
                for name, m in (("fp32", fp32), ("int8", int8), ("served", served))
            },
            repeats,
        )
        results["ort_fp32_100_ms"] = statistics.median(times["fp32"])
        results["ort_int8_100_ms"] = statistics.median(times["int8"])
        results["int8_speedup"] = paired_ratio(times["fp32"], times["int8"])[0]
        results["served_100_ms"] = statistics.median(times["served"])
        results["served_speedup"] = paired_ratio(times["fp32"], times["served"])[0]
        results["tokens_per_pair"] = int(encoded[0][0].shape[1])
        metric = next(iter(report.bar))
        results["candidates"] = [
            f"{c['engine']} {c['precision']}{' (' + c['note'] + ')' if c['note'] else ''}: "
            f"{c['check_ms']:.0f} ms, {metric} {c['agreement'][metric]:.4f}"
            f"{'' if c['admitted'] else ' (rejected)'}"
            for c in report.candidates
        ]

        # (b) PyTorch fp32 eager and Triton, both from raw texts, on the same query in
        # each round.
        torch.set_num_threads(2)
        model = ShopsenseModel.load(checkpoint)

        def torch_rerank(number: int) -> np.ndarray:
            query, docs = pairs[number % len(pairs)]
            ids, mask, types = tokenizer.encode_pairs([query] * len(docs), docs, MAX_LENGTH)
            with torch.no_grad():
                return model(
                    torch.from_numpy(ids), torch.from_numpy(mask), torch.from_numpy(types)
                ).numpy()

        server = None
        if triton_url is None:
            repository = Path(tmp) / "repository"
            install_version(repository, "cross_encoder", 1, export_dir)
            server = TritonServer(
                repository, models=["cross_encoder"], log_file=Path(tmp) / "triton.log"
            )
            start = time.perf_counter()
            server.start()
            results["triton_start_s"] = time.perf_counter() - start
            triton_url = server.grpc_url
            load_versions(triton_url, "cross_encoder", [1], repository=repository)
        try:
            client = CrossEncoderClient(triton_url, tokenizer, timeout_s=60.0)

            def triton_rerank(number: int) -> np.ndarray:
                query, docs = pairs[number % len(pairs)]
                return client.score(query, docs, max_length=MAX_LENGTH).scores

            times = interleaved_ms({"torch": torch_rerank, "triton": triton_rerank}, repeats)
            results["triton_version"] = client.score(*pairs[0]).version
            client.close()
        finally:
            if server is not None:
                server.stop()
    results["torch_fp32_100_ms"] = statistics.median(times["torch"])
    results["triton_100_ms"] = statistics.median(times["triton"])
    ratio, low, high = paired_ratio(times["torch"], times["triton"])
    results["torch_over_triton"] = ratio
    results["torch_over_triton_iqr"] = f"{low:.2f}-{high:.2f}"
    results["torch_over_triton_best"] = min(times["torch"]) / min(times["triton"])
    return results


def print_table(results: dict[str, float | str]) -> None:
    """The figures as an aligned two-column table."""
    rows = [
        ("pairs from", results["pairs_from"]),
        ("queries x candidates", f"{results['queries']} x {CANDIDATES}"),
        ("tokens per pair (first query, padded)", results["tokens_per_pair"]),
        ("export (fp32 + int8 + checks), s", f"{results['export_s']:.1f}"),
        ("onnxruntime fp32, 100 pairs, ms", f"{results['ort_fp32_100_ms']:.1f}"),
        (
            "Spearman int8 vs fp32, mean / min",
            f"{results['spearman_int8_fp32_mean']:.4f} / {results['spearman_int8_fp32_min']:.4f}",
        ),
        ("onnxruntime int8, 100 pairs, ms", f"{results['ort_int8_100_ms']:.1f}"),
        ("int8 speed-up over fp32", f"{results['int8_speedup']:.2f}x"),
        ("served engine (the export's choice)", results["served_engine"]),
        (
            "Spearman served vs fp32, mean / min",
            (
                f"{results['spearman_served_fp32_mean']:.4f} / "
                f"{results['spearman_served_fp32_min']:.4f}"
            ),
        ),
        ("served engine, 100 pairs, ms", f"{results['served_100_ms']:.1f}"),
        ("served speed-up over onnxruntime fp32", f"{results['served_speedup']:.2f}x"),
        ("PyTorch fp32 eager rerank of 100, median ms", f"{results['torch_fp32_100_ms']:.1f}"),
        (
            f"Triton rerank of 100 (v{results['triton_version']}), ms",
            f"{results['triton_100_ms']:.1f}",
        ),
        (
            f"PyTorch / Triton, median of rounds (target >= {TARGET_RATIO}x)",
            f"{results['torch_over_triton']:.2f}x",
        ),
        ("  interquartile range of the rounds", results["torch_over_triton_iqr"]),
        ("  fastest PyTorch / fastest Triton", f"{results['torch_over_triton_best']:.2f}x"),
    ]
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")
    print("export candidates (the check set, this machine):")
    for line in results["candidates"]:
        print(f"  {line}")


def latest_checkpoint(training_dir: Path) -> Path | None:
    """The newest cross-encoder checkpoint under ``training_dir`` (``make train``'s runs)."""
    found = [
        spec.parent
        for spec in Path(training_dir).glob("*/checkpoint/shopsense_model.json")
        if json.loads(spec.read_text(encoding="utf-8")).get("kind") == "cross_encoder"
    ]
    return max(found, key=lambda p: p.stat().st_mtime) if found else None


def main(argv: list[str] | None = None) -> int:
    """Command line entry point; returns the exit status."""
    from shared.settings import TrainerSettings

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--checkpoint",
        type=Path,
        default=None,
        help="a cross-encoder checkpoint (default: the newest one `make train` wrote)",
    )
    parser.add_argument("--queries", type=int, default=20, help="queries of 100 candidates")
    parser.add_argument(
        "--repeats", type=int, default=30, help="timed rounds (each contender once a round)"
    )
    parser.add_argument("--triton-url", default=None, help="a Triton serving cross_encoder")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args(argv)
    if args.queries < 1 or args.repeats < 1:
        parser.error("--queries and --repeats must be at least 1")
    checkpoint = args.checkpoint or latest_checkpoint(TrainerSettings.load().training_dir)
    if checkpoint is None:
        parser.error("no cross-encoder checkpoint found: run `make train` or pass --checkpoint")
    from shared.bench.machine import machine

    here = machine()
    print(here.line())
    results = run(checkpoint, args.queries, args.repeats, args.triton_url)
    print_table(results)
    if args.json:
        report = {"machine": here.as_json(), **results}
        args.json.write_text(json.dumps(report, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
