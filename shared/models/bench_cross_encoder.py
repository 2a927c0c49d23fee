"""Benchmark of the cross-encoder: ``python -m shared.models.bench_cross_encoder
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
  on both sides; medians over repetitions.
"""

from __future__ import annotations

import argparse
import itertools
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


def median_ms(call: Callable[[], object], repeats: int) -> float:
    """Median wall time of ``call`` in milliseconds, after one warm-up call."""
    call()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append((time.perf_counter() - start) * 1000.0)
    return statistics.median(times)


def run(
    checkpoint: Path,
    n_queries: int = 20,
    repeats: int = 10,
    triton_url: str | None = None,
) -> dict[str, float | str]:
    """Every figure of the benchmark, by name."""
    import torch

    from shared.models.export import export_checkpoint, spearman
    from shared.models.onnx_runtime import OnnxModel
    from shared.models.publish import install_version, load_versions
    from shared.models.triton_client import CrossEncoderClient
    from shared.models.triton_server import TritonServer
    from shared.training.modules import ShopsenseModel

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
        results["ort_fp32_100_ms"] = median_ms(lambda: fp32.run(*encoded[0]), repeats)
        results["ort_int8_100_ms"] = median_ms(lambda: int8.run(*encoded[0]), repeats)
        results["int8_speedup"] = results["ort_fp32_100_ms"] / results["ort_int8_100_ms"]
        results["served_100_ms"] = median_ms(lambda: served.run(*encoded[0]), repeats)
        results["served_speedup"] = results["ort_fp32_100_ms"] / results["served_100_ms"]
        results["tokens_per_pair"] = int(encoded[0][0].shape[1])
        metric = next(iter(report.bar))
        results["candidates"] = [
            f"{c['engine']} {c['precision']}{' (' + c['note'] + ')' if c['note'] else ''}: "
            f"{c['check_ms']:.0f} ms, {metric} {c['agreement'][metric]:.4f}"
            f"{'' if c['admitted'] else ' (rejected)'}"
            for c in report.candidates
        ]

        # (b) PyTorch fp32 eager, then Triton, both from raw texts, cycling the queries.
        torch.set_num_threads(2)
        queries = itertools.cycle(pairs)
        model = ShopsenseModel.load(checkpoint)

        def torch_rerank() -> np.ndarray:
            query, docs = next(queries)
            ids, mask, types = tokenizer.encode_pairs([query] * len(docs), docs, MAX_LENGTH)
            with torch.no_grad():
                return model(
                    torch.from_numpy(ids), torch.from_numpy(mask), torch.from_numpy(types)
                ).numpy()

        results["torch_fp32_100_ms"] = median_ms(torch_rerank, repeats)

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

            queries = itertools.cycle(pairs)  # the same queries as PyTorch

            def triton_rerank() -> np.ndarray:
                query, docs = next(queries)
                return client.score(query, docs, max_length=MAX_LENGTH).scores

            results["triton_100_ms"] = median_ms(triton_rerank, repeats)
            results["triton_version"] = client.score(*pairs[0]).version
            client.close()
        finally:
            if server is not None:
                server.stop()
    results["torch_over_triton"] = results["torch_fp32_100_ms"] / results["triton_100_ms"]
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
        ("PyTorch fp32 eager rerank of 100, ms", f"{results['torch_fp32_100_ms']:.1f}"),
        (
            f"Triton rerank of 100 (v{results['triton_version']}), ms",
            f"{results['triton_100_ms']:.1f}",
        ),
        (f"PyTorch / Triton (target >= {TARGET_RATIO}x)", f"{results['torch_over_triton']:.2f}x"),
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
    from shared.settings import load as load_settings

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--checkpoint",
        type=Path,
        default=None,
        help="a cross-encoder checkpoint (default: the newest one `make train` wrote)",
    )
    parser.add_argument("--queries", type=int, default=20, help="queries of 100 candidates")
    parser.add_argument("--repeats", type=int, default=10, help="timed runs per figure")
    parser.add_argument("--triton-url", default=None, help="a Triton serving cross_encoder")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args(argv)
    if args.queries < 1 or args.repeats < 1:
        parser.error("--queries and --repeats must be at least 1")
    checkpoint = args.checkpoint or latest_checkpoint(load_settings().training_dir)
    if checkpoint is None:
        parser.error("no cross-encoder checkpoint found: run `make train` or pass --checkpoint")
    results = run(checkpoint, args.queries, args.repeats, args.triton_url)
    print_table(results)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
