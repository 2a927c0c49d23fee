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
