"""`make bench-experiments`: what the experiment machinery decides, on SYNTHETIC shoppers.

Against the running suite (started here when none runs), with the demo store and the
seeded shopper simulator (``shared.simulation.shoppers``; hidden preferences are the demo
store's synthetic judgments):

1. **A/A**: ``--aa-seeds`` experiments (20), each with two identical arms, its own salt and
   its own ``--aa-shoppers`` simulated shoppers. Counts how many show a significant (p <
   0.05) difference in CTR and in conversion rate: about 5% is what a correct test gives.
2. **Good against bad**: the serving ranking against the same ranking reversed, once as an
   A/B test and once as team-draft interleaving, ``--shoppers`` simulated shoppers each.
   Prints both reports' verdicts, and how many shoppers each design needs to detect the
   difference 80% of the time (resampling the shoppers it logged, 200 draws a size), and
   the ratio of the two.
3. **Guard rails**: whether the trainer stopped the reversed arm, with its reason.

To keep the runs short on 2 cores, every arm here ranks with the features alone
(``rerank_depth = -1``, no cross-encoder): the statistics are what is measured, and a
reversed ranking is bad whatever ranked it first.
"""

from __future__ import annotations

import argparse
import random
import time
from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, datetime

from rich.console import Console
from rich.table import Table
from shopsense.experiments.v1 import experiment_service_pb2 as epb
from shopsense.experiments.v1 import experiment_service_pb2_grpc as epb_grpc

from shared.contracts.experiments import from_proto
from shared.data.dataset import Dataset
from shared.data.wands import load_wands
from shared.experiments.assignment import Experiment
from shared.experiments.report import SIGNIFICANCE, Collected, collect, wins_of
from shared.experiments.stats import compare, preference_test, ratio_estimate
from shared.rpc.clients import open_channel
from shared.runtime.catalog import DEMO_PRODUCTS, DEMO_SEED, ensure_demo_store, wait_for_intent
from shared.runtime.experiments import stop_running
from shared.runtime.suite import Endpoints, running_suite
from shared.settings import ClientSettings, FeedbackSettings, GatewaySettings, TrainerSettings
from shared.storage.database import create_db_engine
from shared.storage.feedback import FeedbackStore

console = Console(width=150)
NO_RERANK = epb.PipelineSettings(rerank_depth=-1)
POWER = 0.8
DRAWS = 200


def _stub(endpoints: Endpoints) -> epb_grpc.ExperimentServiceStub:
    return epb_grpc.ExperimentServiceStub(open_channel(endpoints.trainer))


def _run_experiment(
    endpoints: Endpoints,
    definition: epb.Experiment,
    store: Dataset,
    shoppers: int,
    searches: int,
    seed: int,
    concurrency: int,
    refresh_s: float,
    guard_wait_s: float = 0.0,
) -> epb.Experiment:
    """Create, start, simulate, give the guard rails ``guard_wait_s`` to act, and stop
    (unless a guard rail did); the final state."""
    from shared.simulation.shoppers import ShopperSimulator

    stub = _stub(endpoints)
    stub.CreateExperiment(epb.CreateExperimentRequest(experiment=definition), timeout=30)
    stub.StartExperiment(epb.StartExperimentRequest(name=definition.name), timeout=300)
    time.sleep(refresh_s + 1.0)
    simulator = ShopperSimulator(
        store,
        endpoints.gateway,
        endpoints.feedback,
        seed=seed,
        user_prefix=definition.name,
    )
    simulator.run(shoppers, searches, concurrency=concurrency)
    deadline = time.monotonic() + guard_wait_s  # the trainer's guard rail looks every 30 s
    while time.monotonic() < deadline:
        state = stub.GetExperiment(epb.GetExperimentRequest(name=definition.name), timeout=10)
        if state.experiment.state != epb.EXPERIMENT_STATE_RUNNING:
            break
        time.sleep(1.0)
    state = stub.GetExperiment(epb.GetExperimentRequest(name=definition.name), timeout=10)
    if state.experiment.state == epb.EXPERIMENT_STATE_RUNNING:
        stub.StopExperiment(
            epb.StopExperimentRequest(name=definition.name, reason="bench done"), timeout=30
        )
    return stub.GetExperiment(epb.GetExperimentRequest(name=definition.name), timeout=10).experiment


def _ab_p(units_a: list, units_b: list, metric: tuple[str, str]) -> float:
    num, den = metric
    a = ratio_estimate([u.total(num) for u in units_a], [u.total(den) for u in units_a])
    b = ratio_estimate([u.total(num) for u in units_b], [u.total(den) for u in units_b])
    return compare(a, b).p_value


def ab_power(collected: Collected, arms: tuple[str, str], n: int, rng: random.Random) -> float:
    """Share of draws of ``n`` shoppers (n/2 an arm, without replacement) whose CTR
    difference is significant."""
    a, b = (list(collected.shoppers[name].values()) for name in arms)
    half = n // 2
    if half > min(len(a), len(b)):
        return float("nan")
    hits = 0
    for _ in range(DRAWS):
        p = _ab_p(rng.sample(a, half), rng.sample(b, half), ("clicks", "impressions"))
        hits += p < SIGNIFICANCE
    return hits / DRAWS


def interleaving_power(collected: Collected, n: int, rng: random.Random) -> float:
    """Share of draws of ``n`` shoppers whose preference test is significant."""
    by_unit: dict[str, list[str]] = defaultdict(list)
    for request, unit in collected.request_unit.items():
        by_unit[unit].append(request)
    units = sorted(by_unit)
    if n > len(units):
        return float("nan")
    hits = 0
    for _ in range(DRAWS):
        drawn = rng.sample(units, n)
        clicks = {r: collected.team_clicks[r] for u in drawn for r in by_unit[u]}
        won_a, won_b, _ = wins_of(clicks)
        hits += preference_test(won_a, won_b)[1] < SIGNIFICANCE
    return hits / DRAWS


def needed(
    power_at: Callable[[int], float], sizes: list[int]
) -> tuple[int | None, list[tuple[int, float]]]:
    """The smallest size whose power reaches 80%, and the curve."""
    curve = []
    for size in sizes:
        power = power_at(size)
        if power != power:  # nan: more than was logged
            break
        curve.append((size, power))
        if power >= POWER:
            return size, curve
    return None, curve


def personalization_definition(name: str) -> epb.Experiment:
    """An A/B of search without and with the shopper's profile as a ranking feature."""
    return epb.Experiment(
        name=name,
        description="personalised search against unpersonalised (SYNTHETIC shoppers)",
        arms=[
            epb.Arm(
                name="unpersonalised",
                share=0.5,
                pipeline=epb.PipelineSettings(personalization=epb.PERSONALIZATION_OFF),
            ),
            epb.Arm(
                name="personalised",
                share=0.5,
                pipeline=epb.PipelineSettings(personalization=epb.PERSONALIZATION_ON),
            ),
        ],
    )


def personalization_ab(
    endpoints: Endpoints,
    store: Dataset,
    name: str,
    shoppers: int,
    searches: int,
    seed: int,
    concurrency: int,
    refresh_s: float,
    round_pause_s: float = 3.0,
) -> tuple[epb.GetExperimentReportResponse, object]:
    """Personalised against unpersonalised search on SYNTHETIC shoppers with individual
    tastes and recommendation widgets, against the running suite: create, start, let the
    gateways see it, simulate (in rounds), stop; the experiment's report and the
    simulator's own summary."""
    from shared.simulation.shoppers import ShopperSimulator

    stub = _stub(endpoints)
    stop_running(stub, "personalisation A/B")
    stub.CreateExperiment(
        epb.CreateExperimentRequest(experiment=personalization_definition(name)), timeout=30
    )
    stub.StartExperiment(epb.StartExperimentRequest(name=name), timeout=300)
    time.sleep(refresh_s + 1.0)
    simulator = ShopperSimulator(
        store,
        endpoints.gateway,
        endpoints.feedback,
        seed=seed,
        user_prefix=name,
        tastes=True,
        widgets=True,
        round_pause_s=round_pause_s,
    )
    try:
        summary = simulator.run(shoppers, searches, concurrency=concurrency)
    finally:
        state = stub.GetExperiment(epb.GetExperimentRequest(name=name), timeout=10)
        if state.experiment.state == epb.EXPERIMENT_STATE_RUNNING:
            stub.StopExperiment(
                epb.StopExperimentRequest(name=name, reason="personalisation A/B done"),
                timeout=30,
            )
    report = stub.GetExperimentReport(epb.GetExperimentReportRequest(name=name), timeout=120)
    return report, summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--aa-seeds", type=int, default=20)
    parser.add_argument("--aa-shoppers", type=int, default=120)
    parser.add_argument("--shoppers", type=int, default=300)
    parser.add_argument("--searches", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--skip-aa", action="store_true")
    args = parser.parse_args(argv)
    settings = ClientSettings.load()
    stamp = datetime.now(UTC).strftime("%m%d%H%M%S")
    started = time.monotonic()
    with running_suite(settings, console.print) as endpoints:
        folder = ensure_demo_store(endpoints.retrieval, DEMO_PRODUCTS, DEMO_SEED, console.print)
        wait_for_intent(endpoints.intent, endpoints.retrieval)
        stop_running(_stub(endpoints), "bench")
        engine = FeedbackStore(create_db_engine(FeedbackSettings.load().feedback_db_url)).engine
        run = {
            "shoppers": args.shoppers,
            "searches": args.searches,
            "concurrency": args.concurrency,
            "refresh_s": GatewaySettings.load().refresh_s,
            "store": load_wands(folder),
        }

        if not args.skip_aa:
            console.rule(f"1. A/A: {args.aa_seeds} experiments, {args.aa_shoppers} shoppers each")
            table = Table(title="A/A (SYNTHETIC shoppers)")
            for column in ("seed", "shoppers a/b", "CTR a", "CTR b", "p CTR", "p conversion"):
                table.add_column(column)
            significant = {"ctr": 0, "conversion": 0}
            for seed in range(args.aa_seeds):
                name = f"aa-{stamp}-{seed}"
                definition = epb.Experiment(
                    name=name,
                    arms=[
                        epb.Arm(name="a", share=0.5, pipeline=NO_RERANK),
                        epb.Arm(name="b", share=0.5, pipeline=NO_RERANK),
                    ],
                )
                final = _run_experiment(
                    endpoints, definition, **{**run, "shoppers": args.aa_shoppers}, seed=1000 + seed
                )
                collected = collect(engine, from_proto(final))
                a, b = (list(collected.shoppers[x].values()) for x in ("a", "b"))
                p_ctr = _ab_p(a, b, ("clicks", "impressions"))
                p_conv = _ab_p(a, b, ("purchases", "searches"))
                significant["ctr"] += p_ctr < SIGNIFICANCE
                significant["conversion"] += p_conv < SIGNIFICANCE
                ctr_a = sum(u.clicks for u in a) / max(1, sum(u.impressions for u in a))
                ctr_b = sum(u.clicks for u in b) / max(1, sum(u.impressions for u in b))
                table.add_row(
                    str(seed),
                    f"{len(a)}/{len(b)}",
                    f"{ctr_a:.4f}",
                    f"{ctr_b:.4f}",
                    f"{p_ctr:.3f}",
                    f"{p_conv:.3f}",
                )
            console.print(table)
            console.print(
                f"A/A: significant at p < 0.05 in {significant['ctr']} of {args.aa_seeds} for "
                f"CTR and {significant['conversion']} of {args.aa_seeds} for conversion rate "
                f"(a correct test: about {0.05 * args.aa_seeds:.0f})"
            )

        console.rule("2. serving against reversed: A/B and interleaving")
        rng = random.Random(7)
        sizes = [4, 6, 8, 10, 12, 16, 20, 24, 30, 40, 50, 60, 80, 100, 140, 200, 300, 400]
        results = {}
        for kind in ("ab", "interleaving"):
            name = f"rev-{kind}-{stamp}"
            definition = epb.Experiment(
                name=name,
                type=epb.EXPERIMENT_TYPE_INTERLEAVING
                if kind == "interleaving"
                else epb.EXPERIMENT_TYPE_AB,
                arms=[
                    epb.Arm(name="serving", share=0.5, pipeline=NO_RERANK),
                    epb.Arm(
                        name="reversed",
                        share=0.5,
                        pipeline=epb.PipelineSettings(rerank_depth=-1, reverse_ranking=True),
                    ),
                ],
            )
            final = _run_experiment(
                endpoints,
                definition,
                **run,
                seed=2000 + len(results),
                guard_wait_s=TrainerSettings.load().guard_interval_s + 5.0,
            )
            report = _stub(endpoints).GetExperimentReport(
                epb.GetExperimentReportRequest(name=name), timeout=120
            )
            experiment: Experiment = from_proto(final)
            collected = collect(engine, experiment)
            if kind == "ab":
                size, curve = needed(
                    lambda n, c=collected: ab_power(c, ("serving", "reversed"), n, rng), sizes
                )
            else:
                size, curve = needed(lambda n, c=collected: interleaving_power(c, n, rng), sizes)
            results[kind] = size
            console.print(f"[bold]{kind}[/bold]: verdict: {report.verdict}")
            console.print(
                f"  stopped: {final.stop_reason}"
                if final.stop_reason != "bench done"
                else "  no guard rail tripped"
            )
            console.print("  power by shoppers: " + ", ".join(f"{n}: {p:.0%}" for n, p in curve))
            console.print(
                f"  shoppers for 80% power: {size if size else '> ' + str(curve[-1][0] if curve else 0)}"
            )
        if results.get("ab") and results.get("interleaving"):
            console.print(
                f"[bold]interleaving needs {results['ab'] / results['interleaving']:.1f}x fewer "
                f"shoppers than A/B[/bold] ({results['interleaving']} against {results['ab']}; "
                "SYNTHETIC shoppers)"
            )
    console.print(f"bench-experiments finished in {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
