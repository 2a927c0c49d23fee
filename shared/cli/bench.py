"""`shopsense bench search [--seconds S] [--json OUT]`: Search through the suite against the
same pipeline in one process (``shared.bench.suite``; ``make bench`` runs it).
`shopsense bench rerank`: Search with the cross-encoder on, step by step
(``shared.bench.rerank``; ``make bench-rerank``). The other benchmarks keep their make
targets (``make help``)."""

from __future__ import annotations

import argparse

from rich.console import Console

from shared.bench.arguments import add_rerank_arguments, add_search_arguments


def add_parser(sub: argparse._SubParsersAction, console: Console) -> None:
    bench = sub.add_parser("bench", help="benchmarks that print numbers (and write JSON)")
    kinds = bench.add_subparsers(dest="bench_command", required=True)
    search = kinds.add_parser(
        "search",
        help="Search through the suite against the in-process floor, at 1 and 8 clients; "
        "then with TLS and API keys",
    )
    add_search_arguments(search)
    search.set_defaults(func=_bench_search)
    rerank = kinds.add_parser(
        "rerank",
        help="Search with the cross-encoder on, step by step (shorter pairs, a pruned model, "
        "the depth from the deadline, the result cache): latency, throughput, nDCG@10",
    )
    add_rerank_arguments(rerank)
    rerank.set_defaults(func=_bench_rerank)


def _bench_search(args: argparse.Namespace) -> int:
    from shared.bench.suite import bench_search

    return bench_search(args)


def _bench_rerank(args: argparse.Namespace) -> int:
    from shared.bench.rerank import bench_rerank

    return bench_rerank(args)
