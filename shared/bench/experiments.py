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
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import numpy as np
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
from shared.ranking.features import FeatureScorer, Scored
from shared.rpc.clients import open_channel
from shared.runtime.catalog import DEMO_PRODUCTS, DEMO_SEED, ensure_demo_store, wait_for_intent
from shared.runtime.experiments import stop_running
from shared.runtime.suite import Endpoints, running_suite
from shared.settings import ClientSettings, FeedbackSettings, GatewaySettings, TrainerSettings
from shared.storage.database import create_db_engine
from shared.storage.feedback import FeedbackStore

if TYPE_CHECKING:
    from shared.recommendation.shoppers import Step
    from shared.simulation.shoppers import Shopper, Taste

console = Console(width=150)
NO_RERANK = epb.PipelineSettings(rerank_depth=-1)
POWER = 0.8
DRAWS = 200


def _stub(endpoints: Endpoints) -> epb_grpc.ExperimentServiceStub:
    return epb_grpc.ExperimentServiceStub(open_channel(endpoints.trainer))


def _start(
    stub: epb_grpc.ExperimentServiceStub, definition: epb.Experiment, refresh_s: float
) -> None:
    """Create and start the experiment, then wait until the gateways have re-read it."""
    stub.CreateExperiment(epb.CreateExperimentRequest(experiment=definition), timeout=30)
    stub.StartExperiment(epb.StartExperimentRequest(name=definition.name), timeout=300)
    time.sleep(refresh_s + 1.0)


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
    _start(stub, definition, refresh_s)
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
    _start(stub, personalization_definition(name), refresh_s)
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


# The offline check of personalised search: weights tried, and the profiles compared.
OFFLINE_WEIGHTS = (0.0, 0.05, 0.1, 0.2, 0.3, 0.5, 1.0)
OFFLINE_PROFILES = ("raw", "class-centred", "taste vectors", "attributes", "taste (oracle)")


@dataclass
class OfflineCell:
    """One profile at one weight over every simulated search (in the same order for every
    cell): each page's expected clicks, and how many of its products differ from the
    unpersonalised page's."""

    clicks: list[float] = field(default_factory=list)
    changed: int = 0
    impressions: int = 0

    @property
    def searches(self) -> int:
        return len(self.clicks)

    @property
    def ctr(self) -> float:
        return sum(self.clicks) / self.impressions if self.impressions else 0.0

    def add(self, expected: float, page: list[str], base: list[str]) -> None:
        """One search: its page's expected clicks, its page and the unpersonalised one."""
        self.clicks.append(expected)
        self.changed += len(set(page) - set(base))
        self.impressions += len(page)

    def lift_over(self, reference: OfflineCell) -> tuple[float, float]:
        """The relative difference in expected clicks with ``reference`` over the same
        searches, and the half-width of its 95% interval (paired by search)."""
        if reference.searches != self.searches or not sum(reference.clicks):
            raise ValueError("reference: not the same searches")
        differences = np.asarray(self.clicks) - np.asarray(reference.clicks)
        total = float(sum(reference.clicks))
        n = len(differences)
        spread = float(differences.std(ddof=1)) if n > 1 else 0.0
        return float(differences.sum()) / total, 1.96 * spread * np.sqrt(n) / total


def _scored_candidates(retrieval: object, intent: object, text: str, k: int) -> list[Scored]:
    """The query's candidates ordered by the features, as ranking orders them (no
    cross-encoder: the A/B's setting on the demo store)."""
    from shopsense.intent.v1 import intent_service_pb2 as ipb
    from shopsense.retrieval.v1 import retrieval_service_pb2 as rpb

    from shared.contracts.intent import intent_pairs
    from shared.contracts.ranking import rank_inputs

    found = intent.Classify(ipb.ClassifyRequest(query=text), timeout=30).intent
    candidates = retrieval.Retrieve(
        rpb.RetrieveRequest(query=text, k=k, intent=found), timeout=30
    ).candidates
    scorer = FeatureScorer.for_intent(found.model_version)
    return scorer.score(rank_inputs(candidates), dict(intent_pairs(found)), dict(found.attributes))


class _ClickModelView:
    """The simulator's click model seen from outside: a product's probability of a click
    when examined, and a page's expected clicks, for one shopper and query."""

    def __init__(self, store: Dataset) -> None:
        from shared.simulation.shoppers import ClickModel

        self.model = ClickModel()
        self.attributes = {p.product_id: p.attributes for p in store.products}
        self.prices = {p.product_id: p.price for p in store.products}

    def attraction(self, pid: str, judged: dict[str, str], shopper: Shopper, taste: Taste) -> float:
        """As ``ShopperSimulator`` computes it for a search result."""
        from shared.simulation.shoppers import ATTRACTION

        value = ATTRACTION.get(judged.get(pid, "Irrelevant"), ATTRACTION["Irrelevant"])
        price = self.prices.get(pid, 0.0)
        if price > shopper.budget:
            value *= self.model.over_budget
        attributes = self.attributes.get(pid, {})
        liking = self.model.liking(attributes) * taste.liking(attributes, price)
        return min(0.95, value * liking)

    def expected(
        self, page: list[str], judged: dict[str, str], shopper: Shopper, taste: Taste
    ) -> float:
        return sum(
            self.model.examine(k) * self.attraction(pid, judged, shopper, taste)
            for k, pid in enumerate(page, 1)
        )


def _attribute_values(
    history: list[Step],
    ids: list[str],
    candidates: list[str],
    attributes: dict[str, dict[str, str]],
) -> list[float] | None:
    """The ``attributes`` profile (a diagnostic, not served): the history's attribute values
    (price aside) weighted as the profile weighs its steps; a candidate's value is the sum
    of its values' weights."""
    from shared.recommendation.shoppers import profile_weights

    liked: dict[tuple[str, str], float] = {}
    for step, weight in zip(history, profile_weights(history), strict=True):
        for pair in attributes.get(ids[step.item], {}).items():
            if pair[0] != "price":
                liked[pair] = liked.get(pair, 0.0) + weight
    if not liked:
        return None
    return [sum(liked.get(pair, 0.0) for pair in attributes.get(p, {}).items()) for p in candidates]


def personalization_offline(
    retrieval_target: str,
    intent_target: str,
    store: Dataset,
    shoppers: int,
    rounds: int,
    seed: int,
    weights: tuple[float, ...] = OFFLINE_WEIGHTS,
    candidates: int = 100,
) -> dict[tuple[str, float], OfflineCell]:
    """The offline check of personalised search on SYNTHETIC shoppers with individual tastes
    (the A/B's simulator and rounds), without an experiment: each shopper's searches ranked
    by the features (retrieval and intent of the running suite, ranking's code in process),
    then with the ``personal`` feature of each profile at each weight. A page's value is its
    **expected** clicks under the simulator's click model (position bias, relevance, budget,
    the population's and the shopper's taste), so no click dice add noise, and every
    profile is compared on the same searches. The shopper's history grows by clicks, carts
    and purchases drawn on the unpersonalised page, round by round (widgets are left out:
    histories are thinner than in the A/B). Profiles: ``raw`` (the mean of the text
    vectors, as before), ``class-centred`` (of the vectors less their class's mean),
    ``taste vectors`` (what the services compute: ``taste_vectors``), ``attributes`` (the
    history's attribute values counted: a diagnostic of what the history holds) and
    ``taste (oracle)`` (the hidden taste itself, scaled like the feature: the most any
    profile could do at that weight)."""
    from shopsense.intent.v1 import intent_service_pb2_grpc as ipb_grpc
    from shopsense.retrieval.v1 import retrieval_service_pb2_grpc as rpb_grpc

    from shared.contracts.retrieval import export_catalog
    from shared.ranking.personal import ProductVectors, add_personal, likeness
    from shared.recommendation.shoppers import class_centred, profile_vector, taste_vectors
    from shared.search.filters import normalize_value
    from shared.simulation.shoppers import ShopperSimulator

    retrieval = rpb_grpc.RetrievalServiceStub(open_channel(retrieval_target))
    intent = ipb_grpc.IntentServiceStub(open_channel(intent_target))
    catalog = export_catalog(retrieval)
    ids = [p.product_id for p in catalog.products]
    row_of = {pid: i for i, pid in enumerate(ids)}
    raw = np.asarray(catalog.vectors, dtype=np.float32)
    classes = [normalize_value(p.product_class) for p in catalog.products]
    products = catalog.products
    matrices = {
        "raw": raw,
        "class-centred": class_centred(raw, classes),
        "taste vectors": taste_vectors(raw, classes, lambda row: products[row].attributes),
    }
    held = {name: ProductVectors.of(ids, m, catalog.version, 0) for name, m in matrices.items()}
    # The simulator's targets are never called: it is used for its shoppers and tastes.
    simulator = ShopperSimulator(
        store, "127.0.0.1:9", "127.0.0.1:9", seed=seed, user_prefix="offline", tastes=True
    )
    clicks = _ClickModelView(store)
    texts = {q.query_id: q.text for q in store.queries}
    pages: dict[str, list[Scored]] = {}
    cells = {(p, w): OfflineCell() for p in OFFLINE_PROFILES for w in weights}

    for shopper in simulator.shoppers(shoppers):
        taste = simulator.taste(shopper)
        history: list[Step] = []
        for number in range(rounds):
            query_id = shopper.queries[number % len(shopper.queries)]
            text = texts[query_id]
            if text not in pages:
                pages[text] = _scored_candidates(retrieval, intent, text, candidates)
            ranked = pages[text]
            judged = store.labels.get(query_id, {})
            listed = [s.product_id for s in ranked]
            values: dict[str, list[float] | None] = {}
            for name, matrix in matrices.items():
                vector, _ = profile_vector(history, matrix)
                values[name] = None if vector is None else held[name].cosines(vector, listed)
            values["attributes"] = _attribute_values(history, ids, listed, clicks.attributes)
            values["taste (oracle)"] = [
                taste.liking(clicks.attributes.get(p, {}), clicks.prices.get(p, 0.0))
                for p in listed
            ]
            base = listed[: clicks.model.page_size]
            for (name, weight), cell in cells.items():
                page = base
                found = values[name]
                if found is not None and weight > 0:
                    scaled = dict(zip(listed, likeness(found), strict=True))
                    reordered = add_personal(ranked, scaled, weight)
                    page = [s.product_id for s in reordered[: clicks.model.page_size]]
                cell.add(clicks.expected(page, judged, shopper, taste), page, base)
            history += _history_of_round(clicks, base, judged, shopper, taste, row_of, seed, number)
    return cells


def _history_of_round(
    clicks: _ClickModelView,
    page: list[str],
    judged: dict[str, str],
    shopper: Shopper,
    taste: Taste,
    row_of: dict[str, int],
    seed: int,
    number: int,
) -> list[Step]:
    """What the shopper did on ``page`` (clicks, carts, purchases drawn by the simulator's
    click model, seeded), as steps of their history."""
    from shared.recommendation.events import CART as CART_KIND
    from shared.recommendation.events import PURCHASE, VIEW
    from shared.recommendation.shoppers import Step
    from shared.simulation.shoppers import BUY, CART

    rng = random.Random(f"{seed}/offline/{shopper.user_id}/{number}")
    steps: list[Step] = []
    for k, pid in enumerate(page, 1):
        examined_click = clicks.model.examine(k) * clicks.attraction(pid, judged, shopper, taste)
        if rng.random() >= examined_click or pid not in row_of:
            continue
        kind = VIEW
        if rng.random() < CART.get(judged.get(pid, "Irrelevant"), CART["Irrelevant"]):
            kind = PURCHASE if rng.random() < BUY else CART_KIND
        steps.append(Step(row_of[pid], kind, float(number), 1, str(number)))
    return steps


# The served configuration before class-centring: the raw profile at weight 0.1.
OFFLINE_BEFORE = ("raw", 0.1)


def offline_table(cells: dict[tuple[str, float], OfflineCell], title: str) -> Table:
    """The offline check as one row a profile and weight: expected CTR, its lift over the
    unpersonalised page and over the configuration before (raw profile, weight 0.1), each
    with its paired 95% interval, and products changed on a page."""
    table = Table(title=title)
    for column in (
        "profile",
        "weight",
        "expected CTR",
        "lift [95% CI]",
        "vs raw at 0.1 (before)",
        "changed in top 10",
    ):
        table.add_column(column)
    unpersonalised = next((c for (_, w), c in cells.items() if w == 0.0), None)
    before = cells.get(OFFLINE_BEFORE)

    def lift(cell: OfflineCell, reference: OfflineCell | None) -> str:
        if reference is None or not cell.searches or cell.clicks == reference.clicks:
            return "-"
        value, margin = cell.lift_over(reference)
        return f"{value:+.1%} [{value - margin:+.1%}, {value + margin:+.1%}]"

    for (name, weight), cell in cells.items():
        table.add_row(
            name,
            f"{weight:g}",
            f"{cell.ctr:.4f}",
            lift(cell, unpersonalised),
            lift(cell, before),
            f"{cell.changed / cell.searches:.2f}" if cell.searches else "-",
        )
    return table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--aa-seeds", type=int, default=20)
    parser.add_argument("--aa-shoppers", type=int, default=120)
    parser.add_argument("--shoppers", type=int, default=300)
    parser.add_argument("--searches", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--skip-aa", action="store_true")
    args = parser.parse_args(argv)
    from shared.bench.machine import machine

    console.print(machine().line())
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
