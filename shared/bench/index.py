"""In-process benchmark of the retrieval engine: ``python -m shared.bench.index``.

Builds an index from random unit vectors and synthetic product titles (a Zipf-like mix of
colours, materials, styles, classes and made-up brand names) and prints timings: upsert
throughput through ``CatalogIndex`` (SQLite included), reload time, BM25 and dense query
latency on the bare indexes, and full ``retrieve`` p50/p99 with and without filters.
``--no-catalog`` skips SQLite and benchmarks only the bare indexes (use it for 1,000,000).
"""

from __future__ import annotations

import argparse
import contextlib
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from shared.data.catalog import Product
from shared.search.bm25 import BM25Index
from shared.search.catalog_index import CatalogIndex
from shared.search.filters import Filters
from shared.search.retrieval import RetrieveOptions
from shared.search.text import analyze
from shared.search.vectors import VectorIndex

COLOURS = [
    "grey",
    "gray",
    "white",
    "black",
    "blue",
    "navy",
    "green",
    "beige",
    "brown",
    "red",
    "pink",
    "yellow",
    "teal",
    "gold",
]
MATERIALS = [
    "oak",
    "walnut",
    "pine",
    "velvet",
    "leather",
    "linen",
    "cotton",
    "metal",
    "glass",
    "marble",
    "wicker",
]
STYLES = [
    "modern",
    "rustic",
    "farmhouse",
    "industrial",
    "coastal",
    "traditional",
    "mid-century",
    "glam",
]
CLASSES = [
    ("Sofas", "sofa"),
    ("Accent Chairs", "accent chair"),
    ("Bar Stools", "bar stool"),
    ("Area Rugs", "rug"),
    ("Beds", "bed"),
    ("Coffee & Cocktail Tables", "coffee table"),
    ("Dressers & Chests", "dresser"),
    ("Dining Chairs", "dining chair"),
    ("Wall Décor", "wall decor"),
    ("Office Chairs", "office chair"),
    ("Table Lamps", "table lamp"),
    ("Bookcases", "bookcase"),
    ("Outdoor Rugs", "outdoor rug"),
    ("Headboards", "headboard"),
    ("Curtains & Drapes", "curtain"),
    ("Bathroom Vanities", "vanity"),
]
SIZES = ["84''", '72"', "3-seat", "2 drawer", "5 drawer", "18x18", "queen", "king", "24 inch"]
SYLLABLES = [
    "ka",
    "lo",
    "ve",
    "ra",
    "mi",
    "sto",
    "an",
    "del",
    "ber",
    "tol",
    "ven",
    "ish",
    "oro",
    "ly",
    "mar",
    "co",
]


def synthetic_products(n: int, seed: int = 0) -> list[Product]:
    """Products that look enough like a furniture catalog to give BM25 realistic postings."""
    rng = np.random.default_rng(seed)
    brands = [
        "".join(rng.choice(SYLLABLES, size=rng.integers(2, 4))).capitalize()
        for _ in range(max(50, n // 20))
    ]
    zipf = lambda m: (int(rng.zipf(1.3)) - 1) % m  # noqa: E731
    out = []
    for i in range(n):
        cls, noun = CLASSES[zipf(len(CLASSES))]
        colour = COLOURS[zipf(len(COLOURS))]
        material = MATERIALS[zipf(len(MATERIALS))]
        style = STYLES[zipf(len(STYLES))]
        brand = (
            brands[zipf(len(brands))] if rng.random() < 0.5 else brands[rng.integers(len(brands))]
        )
        size = SIZES[rng.integers(len(SIZES))] if rng.random() < 0.4 else ""
        title = f"{brand} {size} {style} {material} {noun}".replace("  ", " ")
        out.append(
            Product(
                product_id=f"p{i}",
                title=title,
                description=f"A {colour} {noun} in {material} with a {style} look.",
                product_class=cls,
                category=f"Furniture / {cls}",
                attributes={"colour": colour, "material": material, "style": style},
                price=float(np.round(rng.uniform(20, 2000), 2)),
                rating=float(np.round(rng.uniform(0, 5), 1)),
                review_count=int(rng.integers(0, 500)),
            )
        )
    return out


def unit_vectors(n: int, dim: int, seed: int = 1) -> np.ndarray:
    """Random L2-normalised float32 vectors (the benchmark never runs an encoder)."""
    rng = np.random.default_rng(seed)
    out = np.empty((n, dim), dtype=np.float32)
    for s in range(0, n, 65536):  # in blocks, to keep float64 temporaries small
        v = rng.standard_normal((min(65536, n - s), dim), dtype=np.float32)
        out[s : s + len(v)] = v / np.linalg.norm(v, axis=1, keepdims=True)
    return out


def queries(n: int, seed: int = 2) -> list[str]:
    """3-word shopper-like queries (colour/material/style + class noun)."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        noun = CLASSES[rng.integers(len(CLASSES))][1].split()[-1]
        a = COLOURS[rng.integers(len(COLOURS))]
        b = (MATERIALS + STYLES)[rng.integers(len(MATERIALS) + len(STYLES))]
        out.append(f"{a} {b} {noun}")
    return out


def _timings(fn: Callable[[int], object], n: int) -> tuple[float, float]:
    """p50 and p99 of ``fn(i)`` in milliseconds over ``n`` calls (after 5 warm-ups)."""
    for i in range(5):
        fn(i)
    times = np.empty(n)
    for i in range(n):
        t = time.perf_counter()
        fn(i)
        times[i] = time.perf_counter() - t
    return float(np.percentile(times, 50) * 1e3), float(np.percentile(times, 99) * 1e3)


def _blas_kernel() -> str:
    """The BLAS library and CPU kernel numpy uses: a generic kernel triples dense latency."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return "unknown (threadpoolctl not installed)"
    infos = [i for i in threadpool_info() if i.get("user_api") == "blas"]
    return ", ".join(f"{i['internal_api']} {i.get('architecture')}" for i in infos) or "unknown"


@contextlib.contextmanager
def _blas_threads(n: int) -> Iterator[None]:
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # the timings are then at numpy's default thread count
        yield
        return
    with threadpool_limits(limits=n):
        yield


def _line(name: str, p50: float, p99: float) -> None:
    print(f"  {name:<40} p50 {p50:8.3f} ms   p99 {p99:8.3f} ms")


def bench_bare(products: list[Product], vecs: np.ndarray, qs: list[str], qv: np.ndarray) -> None:
    """BM25Index and VectorIndex alone: build time and query latency."""
    n = len(products)
    t = time.perf_counter()
    term_lists = [analyze(p.lexical_text()) for p in products]
    t_an = time.perf_counter() - t
    bm25 = BM25Index()
    t = time.perf_counter()
    bm25.add_many(range(n), term_lists)
    t_bm = time.perf_counter() - t
    vec = VectorIndex(vecs.shape[1])
    t = time.perf_counter()
    vec.set_many(np.arange(n), vecs)
    t_vec = time.perf_counter() - t
    print(f"bare indexes, {n:,} products")
    print(
        f"  analyze {t_an:.2f} s ({n / t_an:,.0f}/s), BM25 add_many {t_bm:.2f} s, vectors {t_vec:.2f} s"
    )
    terms = [analyze(q) for q in qs]
    _line(
        "BM25 search_terms (3 words, k=200)",
        *_timings(lambda i: bm25.search_terms(terms[i % len(terms)], 200), 200),
    )
    _line("BM25 search incl. analyze", *_timings(lambda i: bm25.search(qs[i % len(qs)], 200), 200))
    mask = np.zeros(n, dtype=bool)
    mask[::10] = True
    _line(
        "BM25 search, 10% mask",
        *_timings(lambda i: bm25.search_terms(terms[i % len(terms)], 200, mask), 200),
    )
    reps = 200 if n <= 100_000 else 30
    _line("dense search (k=200)", *_timings(lambda i: vec.search(qv[i % len(qv)], 200), reps))
    _line(
        "dense search, 10% mask", *_timings(lambda i: vec.search(qv[i % len(qv)], 200, mask), reps)
    )
    rows = np.random.default_rng(3).choice(n, size=min(1000, n), replace=False)
    t = time.perf_counter()
    for r in rows.tolist():
        bm25.remove(r)
    for r in rows.tolist():
        bm25.add_terms(r, term_lists[r])
    dt = time.perf_counter() - t
    print(f"  BM25 incremental remove+add: {dt / len(rows) * 1e6:.0f} us per document")


def bench_catalog(
    products: list[Product], vecs: np.ndarray, qs: list[str], qv: np.ndarray, batch: int
) -> None:
    """CatalogIndex with SQLite: upsert throughput, reload, retrieve latency."""
    n = len(products)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "catalog.db"
        index = CatalogIndex.open(path, dim=vecs.shape[1])
        t = time.perf_counter()
        for s in range(0, n, batch):
            index.upsert(products[s : s + batch], vecs[s : s + batch], "bench-v1")
        dt = time.perf_counter() - t
        print(f"CatalogIndex, {n:,} products (SQLite WAL at {path.stat().st_size / 2**20:.0f} MiB)")
        print(f"  upsert: {dt:.2f} s, {n / dt:,.0f} products/s (batches of {batch})")
        t = time.perf_counter()
        # The same version: an index holds one text encoder version at a time.
        index.upsert(products[:batch], vecs[:batch], "bench-v1")
        print(f"  re-upsert of {batch} existing products: {(time.perf_counter() - t) * 1e3:.0f} ms")
        index.close()
        t = time.perf_counter()
        index = CatalogIndex.open(path, dim=vecs.shape[1])
        print(f"  reopen (load {len(index):,} products): {time.perf_counter() - t:.2f} s")
        intent = [("Sofas", 0.8), ("Accent Chairs", 0.1)]
        no_filter = Filters()
        some = Filters(price_max=500.0, attributes={"colour": ["grey", "gray"]})
        hybrid = RetrieveOptions(filters=no_filter, intent=intent)
        filtered = RetrieveOptions(filters=some, intent=intent)
        lexical = RetrieveOptions(filters=no_filter, mode="lexical")
        dense = RetrieveOptions(filters=no_filter, mode="dense")
        _line(
            "retrieve hybrid (k=200)",
            *_timings(lambda i: index.retrieve(qs[i % len(qs)], qv[i % len(qv)], hybrid), 200),
        )
        _line(
            "retrieve hybrid + filters",
            *_timings(lambda i: index.retrieve(qs[i % len(qs)], qv[i % len(qv)], filtered), 200),
        )
        _line(
            "retrieve lexical",
            *_timings(lambda i: index.retrieve(qs[i % len(qs)], None, lexical), 200),
        )
        _line(
            "retrieve dense",
            *_timings(lambda i: index.retrieve("", qv[i % len(qv)], dense), 200),
        )
        index.close()


def main(argv: list[str] | None = None) -> None:
    """Parse arguments and print the timings."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--products", type=int, default=20_000)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--batch", type=int, default=500, help="products per upsert call")
    parser.add_argument("--threads", type=int, default=1, help="BLAS threads (default 1)")
    parser.add_argument("--no-catalog", action="store_true", help="bare indexes only, no SQLite")
    args = parser.parse_args(argv)
    from shared.bench.machine import machine

    print(machine().line())
    t = time.perf_counter()
    products = synthetic_products(args.products)
    vecs = unit_vectors(args.products, args.dim)
    qs = queries(100)
    qv = unit_vectors(100, args.dim, seed=4)
    print(
        f"generated {args.products:,} products in {time.perf_counter() - t:.1f} s; BLAS threads {args.threads}"
    )
    kernel = _blas_kernel()
    print(f"BLAS: {kernel}")
    if "Prescott" in kernel:
        print(
            "  note: generic OpenBLAS kernel; export OPENBLAS_CORETYPE=Haswell for ~3x dense speed"
        )
    with _blas_threads(args.threads):
        bench_bare(products, vecs, qs, qv)
        if not args.no_catalog:
            bench_catalog(products, vecs, qs, qv, args.batch)


if __name__ == "__main__":
    main()
