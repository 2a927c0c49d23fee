"""`make bench-rerank`: Search with the cross-encoder on, step by step, in one table.

Each step is a suite started here on copies of the state's databases (catalog, registry,
feedback), so that the steps differ only in what their row says, and each serves the
cross-encoder version its row names (published in that copy's registry):

0. features only: no cross-encoder (the reference the cross-encoder must beat);
1. full: the fine-tuned cross-encoder (``--full``, default the newest 6-layer version),
   rescoring 50 candidates, pairs of 64 tokens: the pipeline before this issue;
2. + shorter pairs: ``--pair-tokens`` (SHOPSENSE_PAIR_MAX_TOKENS);
3. + pruned: a pruned, distilled version, one row each (``--pruned V ...``, default the
   newest of each layer count below 6, most layers first; ``make train`` with ``--set
   cross_encoder.layers=N`` trains one);
   then, with ``--depth`` other than 50, the last of them rescoring that many candidates;
4. + deadline: the last pruned version (at most ``--depth`` candidates), every search with
   a ``--deadline-ms`` deadline; ranking cuts the head to what fits it;
5. + result cache: the same, with queries repeating as head queries do (drawn with
   probability proportional to 1/rank over the held-out queries: Zipf, s = 1) and the
   gateway's result cache used.

Each row: Search p50 and p99 at 1 client, searches/s and p99 at 8 clients (closed loop,
``--seconds`` each), errors (late searches count), and nDCG@10 on the held-out queries
of the SYNTHETIC demo store (every query once, with the step's deadline). The machine
line comes first. ``--only N ...`` runs those steps alone; ``--json OUT`` writes the rows.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table
from shopsense.trainer.v1 import trainer_service_pb2 as tpb
from shopsense.trainer.v1 import trainer_service_pb2_grpc

from shared.bench.suite import bench_gateway, copy_databases
from shared.data.wands import load_wands
from shared.evaluation.remote import SYSTEMS, evaluate_gateway
from shared.experiments.assignment import MAX_RERANK_DEPTH
from shared.models.layout import SPEC_FILE
from shared.paths import state_dir, triton_model_repository
from shared.rpc.clients import open_channel
from shared.runtime.catalog import DEMO_PRODUCTS, DEMO_SEED, demo_store_dir, wait_for_intent
from shared.runtime.suite import Suite

console = Console(width=180)
FULL_LAYERS = 6
FULL_DEPTH = 50  # candidates the cross-encoder rescored before this issue
LONG_DEADLINE_S = 10.0
SUITE = "hybrid (suite)"


@dataclass(frozen=True)
class Step:
    """One row: what the suite serves and how it is asked."""

    name: str
    cross_encoder: int  # the version to serve; 0: none (features only)
    pair_tokens: int = 64
    depth: int = FULL_DEPTH  # candidates the cross-encoder rescores
    deadline_s: float = LONG_DEADLINE_S
    cached: bool = False


def cross_encoder_versions(repository: Path) -> dict[int, int]:
    """The installed cross-encoder versions and their transformer layers."""
    found = {}
    for spec in (repository / "cross_encoder").glob(f"[0-9]*/{SPEC_FILE}"):
        layers = json.loads(spec.read_text(encoding="utf-8")).get("layers", FULL_LAYERS)
        found[int(spec.parent.name)] = int(layers)
    return found


def steps(args: argparse.Namespace, versions: dict[int, int]) -> list[Step]:
    """The table's steps, with the versions chosen (SystemExit naming what is missing).

    One "pruned" row per pruned version (``--pruned``, default the newest of each layer
    count, most layers first); the deadline and cache steps serve the last of them.
    """
    full = args.full or max((v for v, n in versions.items() if n == FULL_LAYERS), default=0)
    pruned = list(args.pruned) or [
        max(v for v, n in versions.items() if n == layers)
        for layers in sorted({n for n in versions.values() if n < FULL_LAYERS}, reverse=True)
    ]
    if not full:
        raise SystemExit("no fine-tuned cross-encoder installed: run `make train` first")
    if not pruned:
        raise SystemExit(
            "no pruned cross-encoder installed: run `.venv/bin/python -m shared.cli.train "
            "--models cross_encoder --set cross_encoder.layers=3 --set "
            "cross_encoder.freeze_layers=1 --set cross_encoder.distill_weight=1` first"
        )
    tokens, deadline, last = args.pair_tokens, args.deadline_ms / 1000.0, pruned[-1]
    depth = args.depth
    if not 1 <= depth <= MAX_RERANK_DEPTH:
        raise SystemExit(f"--depth: {depth} is not between 1 and {MAX_RERANK_DEPTH}")
    return [
        Step("features only (no cross-encoder)", 0),
        Step(f"full cross-encoder v{full}, depth {FULL_DEPTH}, pairs 64 tokens", full),
        Step(f"+ pairs of {tokens} tokens", full, tokens),
        *(
            Step(f"+ pruned to {versions.get(v, '?')} layers, distilled (v{v})", v, tokens)
            for v in pruned
        ),
        *(
            [Step(f"+ rescoring the top {depth} (v{last})", last, tokens, depth)]
            if depth != FULL_DEPTH
            else []
        ),
        Step(
            f"+ depth from a {args.deadline_ms:.0f} ms deadline (v{last}, at most {depth})",
            last,
            tokens,
            depth,
            deadline,
        ),
        Step("+ result cache, head queries repeating", last, tokens, depth, deadline, cached=True),
    ]


def zipf_draws(queries: list[str], count: int, seed: int = 0) -> list[str]:
    """``count`` queries drawn with probability proportional to 1/rank (s = 1)."""
    weights = 1.0 / np.arange(1, len(queries) + 1)
    rng = np.random.default_rng(seed)
    picks = rng.choice(len(queries), size=count, p=weights / weights.sum())
    return [queries[i] for i in picks]


def run_step(
    step: Step, state: Path, folder: Path, queries: list[str], seconds: float, dataset
) -> dict:  # type: ignore[no-untyped-def]
    """Start the step's suite on copies of ``state``'s databases and measure it."""
    copy_databases(state, folder)
    env = {
        "SHOPSENSE_PAIR_MAX_TOKENS": str(step.pair_tokens),
        "SHOPSENSE_GATEWAY_REFRESH_S": "0.5",
        "SHOPSENSE_RERANK_DEPTH": str(step.depth) if step.cross_encoder else "0",
    }
    with Suite(state=folder, ephemeral_ports=True, extra_env=env) as suite:
        if step.cross_encoder:
            with open_channel(suite.address("trainer")) as channel:
                trainer_service_pb2_grpc.TrainerServiceStub(channel).PublishVersion(
                    tpb.PublishVersionRequest(model="cross_encoder", version=step.cross_encoder),
                    timeout=120,
                )
        wait_for_intent(suite.address("intent"), suite.address("retrieval"))
        gateway = suite.address("gateway")
        load = zipf_draws(queries, 4000) if step.cached else queries
        # Warm up every hop (and, with the gateway's refresh, the serving version).
        bench_gateway(gateway, queries[:20], 1, 3.0, fresh=True)
        one = bench_gateway(
            gateway, load, 1, seconds, fresh=not step.cached, timeout_s=step.deadline_s
        )
        eight = bench_gateway(
            gateway, load, 8, seconds, fresh=not step.cached, timeout_s=step.deadline_s
        )
        report = evaluate_gateway(
            dataset, gateway, {SUITE: SYSTEMS[SUITE]}, timeout_s=step.deadline_s, progress=False
        )
    system = report.systems[0]
    return {
        "step": step.name,
        **asdict(step),
        "p50_ms_1": round(one["p50_ms"], 2),
        "p99_ms_1": round(one["p99_ms"], 2),
        "per_second_8": round(eight["qps"], 2),
        "p99_ms_8": round(eight["p99_ms"], 2),
        "errors": one["errors"] + eight["errors"],
        "searches": one["n"] + eight["n"],
        "ranking_ms_1": round(one["hops_ms"].get("ranking", 0.0), 2),
        "ndcg@10": round(system.ndcg_at_10 or 0.0, 4),
        "eval_errors": system.errors,
        "repeat_share": round(1 - len(set(load)) / len(load), 3) if step.cached else 0.0,
    }


def bench_rerank(args: argparse.Namespace) -> int:
    """``shopsense bench rerank``: every step's row, printed (and written to ``--json``)."""
    from shared.bench.machine import machine, served_engines

    state = state_dir()
    repository = triton_model_repository()
    if not (state / "catalog.db").is_file():
        raise SystemExit(f"no catalog in {state}: run `make run` (then `make train`) first")
    chosen = steps(args, cross_encoder_versions(repository))
    numbers = args.only or range(len(chosen))
    dataset = load_wands(demo_store_dir(DEMO_PRODUCTS, DEMO_SEED))
    if args.queries:
        dataset.queries = dataset.queries[: args.queries]
    queries = [q.text for q in dataset.queries]
    versions = {"cross_encoder": str(chosen[-1].cross_encoder)}
    here = machine(served_engines(repository, versions))
    console.print(here.line())
    rows = []
    with tempfile.TemporaryDirectory(prefix="shopsense-bench-rerank-") as tmp:
        for number in numbers:
            step = chosen[number]
            console.print(f"step {number}: {step.name}: starting its suite")
            rows.append(
                run_step(step, state, Path(tmp) / str(number), queries, args.seconds, dataset)
            )
    table = Table(
        title=f"Search with the cross-encoder, step by step: SYNTHETIC demo store "
        f"({DEMO_PRODUCTS} products, {len(queries)} held-out queries), {args.seconds:.0f} s each"
    )
    columns = (
        "step",
        "p50 ms",
        "p99 ms",
        "searches/s at 8",
        "p99 ms at 8",
        "ranking ms",
        "errors",
        "nDCG@10",
    )
    for column in columns:
        table.add_column(column, justify="left" if column == "step" else "right")
    for row in rows:
        table.add_row(
            row["step"], f"{row['p50_ms_1']:.1f}", f"{row['p99_ms_1']:.1f}",
            f"{row['per_second_8']:.1f}", f"{row['p99_ms_8']:.1f}", f"{row['ranking_ms_1']:.1f}",
            f"{row['errors']}/{row['searches']}", f"{row['ndcg@10']:.4f}",
        )  # fmt: skip
    console.print(table)
    repeats = [row["repeat_share"] for row in rows if row["cached"]]
    console.print(
        "nDCG@10 is every held-out query once, with the step's deadline"
        + (f"; the cached step's load repeats {repeats[0]:.0%} of its searches" if repeats else "")
    )
    if args.json:
        report = {"benchmark": "rerank", "machine": here.as_json(), "steps": rows}
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
        console.print(f"wrote {args.json}")
    return 0
