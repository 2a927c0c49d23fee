"""Retrieval at catalog scale on both backends: ``python -m shared.bench.scale``.

One SYNTHETIC catalog (``shared.bench.index``'s furniture-like titles, and clustered unit
vectors: ``--clusters`` topic centres plus noise, so that an approximate index has the
structure real embeddings have; uniform random vectors have none) is upserted through
``CatalogIndex`` into a SQLite catalog store, then served by each backend in turn:

* **memory, exact**: the in-process index as the upserts built it (BM25, exact dense);
* **memory, HNSW**: the same store reopened with the HNSW threshold (``--ann-threshold``,
  the service's default): the graph is built in the background after the load, and timed
  once attached (skipped for smaller catalogs);
* **milvus**: the same store opened with a milvus-lite engine, which builds its collection
  from the store (FLAT below 100,000 products, IVF_FLAT above), then reopened (reused).

For each: the ingest or open time, how much this process grew (and the milvus-lite server
process's resident memory), Retrieve p50/p99 (hybrid, hybrid with filters, dense; k=200),
and Recall@100 of the dense top 100 against exact search, plus the overlap of the hybrid
top 100 with the exact one's. Figures are on synthetic data.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from shared.search.catalog_index import CatalogIndex
from shared.search.filters import Filters
from shared.search.milvus import MilvusEngine
from shared.search.retrieval import RetrieveOptions
from shared.search.vectors import ANN_THRESHOLD

from .index import _timings, queries, synthetic_products

DENSE = RetrieveOptions(mode="dense", k=100, dense_k=100)
HYBRID = RetrieveOptions(k=200, intent=[("Sofas", 0.8)])
FILTERED = RetrieveOptions(
    k=200, filters=Filters(price_max=500.0, attributes={"colour": ["grey", "gray"]})
)


def clustered_vectors(n: int, dim: int, clusters: int, seed: int, noise: float = 0.6) -> np.ndarray:
    """Unit vectors around ``clusters`` random centres (float32, in blocks); the centres
    are the same for every ``seed``, the draws around them are not."""
    centres = np.random.default_rng(0).standard_normal((clusters, dim), dtype=np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    rng = np.random.default_rng(seed)
    out = np.empty((n, dim), dtype=np.float32)
    for start in range(0, n, 65_536):
        m = min(65_536, n - start)
        v = centres[rng.integers(clusters, size=m)]
        v = v + noise * rng.standard_normal((m, dim), dtype=np.float32) / np.sqrt(dim)
        out[start : start + m] = v / np.linalg.norm(v, axis=1, keepdims=True)
    return out


def rss_mib(pid: int) -> float:
    """Resident memory of process ``pid`` in MiB (0 if gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def children(pid: int) -> list[int]:
    """Every descendant process of ``pid`` (the milvus-lite server runs as one)."""
    out, todo = [], [pid]
    while todo:
        parent = todo.pop()
        try:
            found = Path(f"/proc/{parent}/task/{parent}/children").read_text().split()
        except OSError:
            continue
        out += [int(c) for c in found]
        todo += [int(c) for c in found]
    return out


def serve_figures(
    index: CatalogIndex, qs: list[str], qv: np.ndarray, reps: int
) -> dict[str, tuple[float, float]]:
    """p50/p99 of each retrieve kind, in ms."""
    return {
        "hybrid": _timings(
            lambda i: index.retrieve(qs[i % len(qs)], qv[i % len(qv)], HYBRID), reps
        ),
        "hybrid + filters": _timings(
            lambda i: index.retrieve(qs[i % len(qs)], qv[i % len(qv)], FILTERED), reps
        ),
        "dense": _timings(lambda i: index.retrieve("", qv[i % len(qv)], DENSE), reps),
    }


def top_ids(index: CatalogIndex, text: str, vec: np.ndarray, options: RetrieveOptions) -> list[str]:
    return [c.product.product_id for c in index.retrieve(text, vec, options).candidates[:100]]


def _quality(
    index: CatalogIndex,
    qs: list[str],
    qv: np.ndarray,
    exact_dense: list[list[str]],
    exact_hybrid: list[list[str]],
) -> tuple[float, float]:
    """Dense Recall@100 against exact search, and the hybrid top 100's overlap with the
    exact backend's."""
    recall = np.mean(
        [
            len(set(top_ids(index, "", v, DENSE)) & set(e)) / 100
            for v, e in zip(qv, exact_dense, strict=True)
        ]
    )
    overlap = np.mean(
        [
            len(set(top_ids(index, q, v, HYBRID)) & set(e)) / 100
            for q, v, e in zip(qs, qv, exact_hybrid, strict=True)
        ]
    )
    return float(recall), float(overlap)


def main(argv: list[str] | None = None) -> None:
    """Parse arguments, build the catalog, print each backend's figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--products", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--clusters", type=int, default=2_000)
    parser.add_argument("--batch", type=int, default=2_000, help="products per upsert call")
    parser.add_argument("--queries", type=int, default=200, help="timed retrieves per kind")
    parser.add_argument(
        "--ann-threshold",
        type=int,
        default=ANN_THRESHOLD,
        help="the HNSW step's threshold (default the service's; the step is skipped below it)",
    )
    parser.add_argument(
        "--backends",
        nargs="+",
        choices=("hnsw", "milvus"),
        default=["hnsw", "milvus"],
        help="steps after the exact in-process one",
    )
    parser.add_argument("--dir", type=Path, help="work folder (default: a temporary one)")
    args = parser.parse_args(argv)
    from shared.bench.machine import machine

    print(machine().line())
    print(f"SYNTHETIC catalog: {args.products:,} products, {args.dim}-d vectors around "
          f"{args.clusters:,} centres")  # fmt: skip
    t = time.perf_counter()
    products = synthetic_products(args.products)
    vectors = clustered_vectors(args.products, args.dim, args.clusters, seed=1)
    qs = queries(args.queries)
    qv = clustered_vectors(args.queries, args.dim, args.clusters, seed=2)
    print(
        f"generated in {time.perf_counter() - t:.0f} s; this process {rss_mib(os.getpid()):,.0f} MiB"
    )
    me = os.getpid()
    rows = []
    with tempfile.TemporaryDirectory(prefix="shopsense-scale-") as tmp:
        work = args.dir or Path(tmp)
        store = work / "catalog.db"
        base = rss_mib(me)
        index = CatalogIndex.open(store, dim=args.dim, ann_threshold=None)
        t = time.perf_counter()
        for start in range(0, args.products, args.batch):
            end = start + args.batch
            index.upsert(products[start:end], vectors[start:end], "bench-v1")
        ingest = time.perf_counter() - t
        figures = serve_figures(index, qs, qv, args.queries)
        grown = rss_mib(me) - base
        exact_dense = [top_ids(index, "", v, DENSE) for v in qv]
        exact_hybrid = [top_ids(index, q, v, HYBRID) for q, v in zip(qs, qv, strict=True)]
        rows.append(("memory, exact", ingest, grown, 0.0, figures, 1.0, 1.0))
        print(f"memory, exact: ingest {ingest:.0f} s ({args.products / ingest:,.0f} products/s "
              f"through upserts, SQLite store included); the process grew {grown:,.0f} MiB")  # fmt: skip
        index.close()
        del index

        if "hnsw" in args.backends and args.products >= args.ann_threshold:
            base = rss_mib(me)
            t = time.perf_counter()
            index = CatalogIndex.open(store, dim=args.dim, ann_threshold=args.ann_threshold)
            opened = time.perf_counter() - t
            while not index.approximate:  # the graph is built in the background
                assert not index._ann_error, index._ann_error
                time.sleep(0.2)
            built = time.perf_counter() - t - opened
            figures = serve_figures(index, qs, qv, args.queries)
            grown = rss_mib(me) - base
            recall, overlap = _quality(index, qs, qv, exact_dense, exact_hybrid)
            rows.append(("memory, HNSW", opened + built, grown, 0.0, figures, recall, overlap))
            print(f"memory, HNSW: open {opened:.0f} s (load; searches exact), then the graph "
                  f"built in the background in {built:.0f} s; the process grew {grown:,.0f} MiB")  # fmt: skip
            index.close()
            del index

        if "milvus" in args.backends:
            base = rss_mib(me)
            t = time.perf_counter()
            engine = MilvusEngine(work / "milvus" / "engine.db")
            index = CatalogIndex.open(store, dim=args.dim, engine=engine, ann_threshold=None)
            build = time.perf_counter() - t
            figures = serve_figures(index, qs, qv, args.queries)
            server = sum(rss_mib(pid) for pid in children(me))
            grown = rss_mib(me) - base
            recall, overlap = _quality(index, qs, qv, exact_dense, exact_hybrid)
            kind, params = engine.index_type(args.products)
            print(f"milvus (milvus-lite, dense index {kind} {params}): open {build:.0f} s "
                  f"(load + collection build, {args.products / build:,.0f} products/s); the "
                  f"process grew {grown:,.0f} MiB, the milvus-lite server {server:,.0f} MiB")  # fmt: skip
            rows.append(("milvus", build, grown, server, figures, recall, overlap))
            index.close()
            t = time.perf_counter()
            index = CatalogIndex.open(
                store, dim=args.dim, engine=MilvusEngine(work / "milvus" / "engine.db")
            )
            print(f"milvus reopen (collection reused): {time.perf_counter() - t:.1f} s")
            index.close()

    print()
    print("| backend | ingest or open s | memory MiB (process growth + engine server) | "
          "hybrid p50/p99 ms | + filters p50/p99 ms | dense p50/p99 ms | "
          "dense Recall@100 vs exact | hybrid top-100 overlap with exact |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|")
    for name, seconds, mib, server_mib, figures, recall, overlap in rows:
        cells = " | ".join(f"{p50:.1f} / {p99:.1f}" for p50, p99 in figures.values())
        print(f"| {name} | {seconds:.0f} | {mib:,.0f} + {server_mib:,.0f} | {cells} | "
              f"{recall:.3f} | {overlap:.3f} |")  # fmt: skip


if __name__ == "__main__":
    main()
