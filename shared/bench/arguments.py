"""The benchmarks' command-line arguments, light to import: ``shopsense bench ...``
(``shared.cli.bench``) parses them before any benchmark module (and its stubs and models)
is loaded, and ``python -m shared.bench.suite`` parses the same."""

from __future__ import annotations

import argparse


def add_search_arguments(parser: argparse.ArgumentParser) -> None:
    """``shopsense bench search``'s arguments (``shared.bench.suite``)."""
    parser.add_argument("--seconds", type=float, default=15.0, help="duration of each run")
    parser.add_argument(
        "--no-security", action="store_true", help="skip the TLS + API keys comparison"
    )
    parser.add_argument(
        "--json", metavar="OUT", default="", help="also write the figures to OUT as JSON"
    )


def add_rerank_arguments(parser: argparse.ArgumentParser) -> None:
    """``shopsense bench rerank``'s arguments (``shared.bench.rerank``)."""
    parser.add_argument(
        "--seconds", type=float, default=10.0, help="duration of each load run (1 and 8 clients)"
    )
    parser.add_argument(
        "--full",
        type=int,
        default=0,
        help="the full cross-encoder version (default: newest 6-layer)",
    )
    parser.add_argument(
        "--pruned",
        type=int,
        nargs="*",
        default=[],
        help="the pruned versions, a row each, the last also in the deadline and cache steps "
        "(default: the newest of each layer count below 6, most layers first)",
    )
    parser.add_argument(
        "--depth",
        type=int,
        default=50,
        help="candidates the last pruned version rescores: a step of its own when not 50, "
        "and the cap of the deadline and cache steps",
    )
    parser.add_argument("--pair-tokens", type=int, default=40, help="the shorter pair length")
    parser.add_argument(
        "--deadline-ms", type=float, default=100.0, help="the searches' deadline in the last steps"
    )
    parser.add_argument(
        "--queries", type=int, default=0, help="held-out queries for nDCG@10 (0: all)"
    )
    parser.add_argument(
        "--only",
        type=int,
        nargs="*",
        default=[],
        help="run only these steps (numbered as the table)",
    )
    parser.add_argument(
        "--json", metavar="OUT", default="", help="also write the figures to OUT as JSON"
    )
