"""`make eval`: the suite on the synthetic demo store, and intent on the real WANDS queries.

Uses the running suite when the gateway answers; otherwise starts one (as `make run`
does) and stops it afterwards. Prints the tables and writes them as JSON to
``<state>/eval/``. Figures on the demo store are figures on synthetic data.
"""

from __future__ import annotations

import argparse

from rich.console import Console

from shared.cli.catalog import DEMO_PRODUCTS, DEMO_SEED, ensure_demo_store, wait_for_intent
from shared.cli.suite import running_suite
from shared.data.wands import load_wands
from shared.evaluation.remote import evaluate_gateway
from shared.paths import shared_data_dir, state_dir
from shared.settings import load as load_settings

console = Console(width=160)


def evaluate_all(gateway: str, intent: str, retrieval: str, products: int, seed: int) -> None:
    out = state_dir() / "eval"
    out.mkdir(parents=True, exist_ok=True)
    folder = ensure_demo_store(retrieval, products, seed, console.print)
    wait_for_intent(intent, retrieval)  # prototypes from the loaded catalog
    synthetic = load_wands(folder)
    synthetic.name = f"SYNTHETIC demo store ({products} products, seed {seed})"
    report = evaluate_gateway(synthetic, gateway)
    console.print(report.to_table())
    (out / "demo-store.json").write_text(report.to_json(), encoding="utf-8")
    real_dir = shared_data_dir() / "wands"
    if (real_dir / "query.csv").is_file():
        real = load_wands(real_dir)
        real.name = f"REAL WANDS queries ({real_dir})"
        report = evaluate_gateway(real, gateway)
        console.print(report.to_table())
        (out / "wands-queries.json").write_text(report.to_json(), encoding="utf-8")
    console.print(f"JSON reports in {out}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--products", type=int, default=DEMO_PRODUCTS)
    parser.add_argument("--seed", type=int, default=DEMO_SEED)
    args = parser.parse_args(argv)
    with running_suite(load_settings(), console.print) as suite:
        evaluate_all(suite.gateway, suite.intent, suite.retrieval, args.products, args.seed)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
