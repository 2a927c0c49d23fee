"""`make eval`: the suite on the synthetic demo store, and intent on the real WANDS queries.

Uses the running suite when the gateway answers; otherwise starts one (as `make run`
does) and stops it afterwards. On the demo store's held-out judgments one table holds,
from the same run: the suite as it serves now (the fine-tuned versions once `make train`
published them), BM25 alone and dense alone through the same gateway, and the
foundation's pipeline (text_encoder version 1, zero-shot intent, features only) rebuilt
in this process from the same catalog. Then the model registry's report. Prints the
tables and writes them as JSON to ``<state>/eval/``. Figures on the demo store are
figures on synthetic data.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import grpc
from rich.console import Console

from shared.data.dataset import Query
from shared.data.wands import load_wands
from shared.evaluation.harness import SearchOutcome, evaluate
from shared.evaluation.remote import evaluate_gateway
from shared.paths import shared_data_dir, state_dir, triton_model_repository
from shared.runtime.catalog import DEMO_PRODUCTS, DEMO_SEED, ensure_demo_store, wait_for_intent
from shared.runtime.suite import Endpoints, running_suite
from shared.settings import ClientSettings

console = Console(width=200)
FOUNDATION = "foundation v1 (in-process)"


def foundation_system(pipeline) -> Callable[[Query], SearchOutcome]:
    """The foundation's pipeline as an evaluation system."""

    def search(query: Query) -> SearchOutcome:
        stages = pipeline.rank(query.text)
        return SearchOutcome(stages["pipeline"], stages["classes"])

    return search


def evaluate_all(endpoints: Endpoints, products: int, seed: int) -> None:
    from shared.training.offline_eval import LocalPipeline

    out = state_dir() / "eval"
    out.mkdir(parents=True, exist_ok=True)
    gateway, intent, retrieval = endpoints.gateway, endpoints.intent, endpoints.retrieval
    folder = ensure_demo_store(retrieval, products, seed, console.print)
    wait_for_intent(intent, retrieval)  # prototypes from the loaded catalog
    synthetic = load_wands(folder)
    synthetic.name = f"SYNTHETIC demo store ({products} products, seed {seed}), held-out queries"
    assert synthetic.products is not None
    # The foundation: text_encoder 1, zero-shot prototypes, features; the same catalog.
    foundation = LocalPipeline(
        synthetic.products,
        triton_model_repository() / "text_encoder" / "1",
        progress=console.print,
    )
    try:
        report = evaluate_gateway(synthetic, gateway)
        report.systems += evaluate(synthetic, {FOUNDATION: foundation_system(foundation)}).systems
        console.print(report.to_table())
        (out / "demo-store.json").write_text(report.to_json(), encoding="utf-8")
        real_dir = shared_data_dir() / "wands"
        if (real_dir / "query.csv").is_file():
            real = load_wands(real_dir)
            real.name = f"REAL WANDS queries ({real_dir})"
            report = evaluate_gateway(real, gateway)
            report.systems += evaluate(real, {FOUNDATION: foundation_system(foundation)}).systems
            console.print(report.to_table())
            (out / "wands-queries.json").write_text(report.to_json(), encoding="utf-8")
    finally:
        foundation.close()
    console.print(f"JSON reports in {out}")
    from shared.training.report import print_report

    try:
        print_report(endpoints.trainer, console)
    except grpc.RpcError as exc:
        console.print(f"model registry unavailable ({exc.code().name}): {exc.details()}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--products", type=int, default=DEMO_PRODUCTS)
    parser.add_argument("--seed", type=int, default=DEMO_SEED)
    args = parser.parse_args(argv)
    with running_suite(ClientSettings.load(), console.print) as suite:
        evaluate_all(suite, args.products, args.seed)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
