"""`shopsense simulate`: seeded simulated shoppers against the running suite."""

from __future__ import annotations

import argparse
from pathlib import Path

import grpc
from rich.console import Console
from rich.table import Table

from shared.runtime.catalog import demo_store_dir
from shared.settings import ClientSettings
from shared.simulation.shoppers import Summary


def summary_table(summary: Summary, title: str) -> Table:
    """The simulator's own counts, one row an arm."""
    table = Table(title=title)
    for column in ("arm", "searches", "impressions", "clicks", "CTR", "carts", "purchases"):
        table.add_column(column)
    table.add_column("revenue")
    for arm, c in sorted(summary.arms.items()):
        ctr = c.clicks / c.impressions if c.impressions else 0.0
        table.add_row(
            arm,
            str(c.searches),
            str(c.impressions),
            str(c.clicks),
            f"{ctr:.3f}",
            str(c.carts),
            str(c.purchases),
            f"{c.revenue:,.2f}",
        )
    return table


def cmd_simulate(args: argparse.Namespace, console: Console) -> int:
    from shared.data.wands import load_wands
    from shared.simulation.shoppers import ShopperSimulator

    settings = ClientSettings.load()
    folder = Path(args.data) if args.data else demo_store_dir()
    if not (folder / "label.csv").is_file():
        console.print(f"[red]INVALID_ARGUMENT[/red]: --data: {folder} has no label.csv")
        return 1
    if args.personalization_ab:
        return _personalization_ab(args, console, settings, folder)
    if args.personalization_offline:
        return _personalization_offline(args, console, settings, folder)
    simulator = ShopperSimulator(
        load_wands(folder),
        args.gateway or settings.gateway_target,
        args.feedback or settings.feedback_target,
        seed=args.seed,
        tastes=args.tastes,
        widgets=args.widgets,
    )
    try:
        summary = simulator.run(args.shoppers, args.searches, concurrency=args.concurrency)
    except grpc.RpcError as exc:
        console.print(f"[red]{exc.code().name}[/red]: {exc.details()}")
        return 1
    console.print(
        summary_table(summary, f"{args.shoppers} simulated shoppers, seed {args.seed} (SYNTHETIC)")
    )
    console.print(
        f"events sent {summary.events_sent}: accepted {summary.events_accepted}, "
        f"duplicates {summary.events_duplicate}, rejected {summary.events_rejected}"
        + (f" {dict(summary.rejections)}" if summary.rejections else "")
    )
    return 0 if summary.events_rejected == 0 else 1


def _personalization_ab(
    args: argparse.Namespace, console: Console, settings: ClientSettings, folder: Path
) -> int:
    """``--personalization-ab``: the A/B of personalised search on SYNTHETIC shoppers with
    individual tastes and widgets, against the running suite; prints the report."""
    from datetime import UTC, datetime

    from shared.bench.experiments import personalization_ab
    from shared.cli.experiments import print_report
    from shared.data.wands import load_wands
    from shared.runtime.suite import Endpoints
    from shared.settings import GatewaySettings

    name = args.name or f"personal-search-{datetime.now(UTC):%m%d%H%M%S}"
    endpoints = Endpoints(
        gateway=args.gateway or settings.gateway_target,
        feedback=args.feedback or settings.feedback_target,
        trainer=settings.trainer_target,
        retrieval=settings.retrieval_target,
        intent=settings.intent_target,
        triton=settings.triton_url,
    )
    try:
        report, summary = personalization_ab(
            endpoints,
            load_wands(folder),
            name,
            args.shoppers,
            args.searches,
            args.seed,
            args.concurrency,
            GatewaySettings.load().refresh_s,
        )
    except grpc.RpcError as exc:
        console.print(f"[red]{exc.code().name}[/red]: {exc.details()}")
        return 1
    console.print(
        summary_table(
            summary,
            f"{args.shoppers} simulated shoppers with individual tastes, {args.searches} "
            f"rounds, seed {args.seed} (SYNTHETIC; the simulator's own counts, searches only "
            "in CTR)",
        )
    )
    for arm, c in sorted(summary.arms.items()):
        console.print(
            f"{arm}: widgets {c.widgets}, widget impressions {c.widget_impressions}, "
            f"widget clicks {c.widget_clicks} (SYNTHETIC)"
        )
    console.print(f"experiment report (SYNTHETIC shoppers; searches and widgets): {name}")
    print_report(report, console, Path(args.png) if args.png else None)
    return 0


def _personalization_offline(
    args: argparse.Namespace, console: Console, settings: ClientSettings, folder: Path
) -> int:
    """``--personalization-offline``: the offline check of personalised search (expected
    clicks of each profile at each weight; SYNTHETIC shoppers), against the running suite's
    retrieval and intent; no experiment, no events."""
    from shared.bench.experiments import offline_table, personalization_offline
    from shared.data.wands import load_wands

    try:
        cells = personalization_offline(
            settings.retrieval_target,
            settings.intent_target,
            load_wands(folder),
            args.shoppers,
            args.searches,
            args.seed,
        )
    except grpc.RpcError as exc:
        console.print(f"[red]{exc.code().name}[/red]: {exc.details()}")
        return 1
    console.print(
        offline_table(
            cells,
            f"offline check of personalised search: {args.shoppers} simulated shoppers with "
            f"individual tastes, {args.searches} rounds, seed {args.seed} (SYNTHETIC; expected "
            "search CTR, features only; lift against the unpersonalised page, paired 95% CI)",
        )
    )
    return 0


def add_parser(sub: argparse._SubParsersAction, console: Console) -> None:
    simulate = sub.add_parser(
        "simulate", help="seeded simulated shoppers search and send feedback through the suite"
    )
    simulate.add_argument("--shoppers", type=int, default=100)
    simulate.add_argument("--searches", type=int, default=2, help="searches per shopper")
    simulate.add_argument("--seed", type=int, default=1)
    simulate.add_argument(
        "--concurrency", type=int, default=4, help="shoppers searching at once (default 4)"
    )
    simulate.add_argument(
        "--tastes",
        action="store_true",
        help="shoppers with individual tastes (style, colour, material, price band), in rounds",
    )
    simulate.add_argument(
        "--widgets",
        action="store_true",
        help="with --tastes: shoppers also see recommendation widgets and click by taste",
    )
    simulate.add_argument(
        "--personalization-ab",
        action="store_true",
        help="A/B of personalised against unpersonalised search on shoppers with tastes and "
        "widgets (creates, runs and stops an experiment; prints its report)",
    )
    simulate.add_argument(
        "--personalization-offline",
        action="store_true",
        help="offline check of personalised search: each profile at each weight, expected "
        "clicks of shoppers with tastes (no experiment, no events)",
    )
    simulate.add_argument("--name", help="the A/B's experiment name (default: timestamped)")
    simulate.add_argument("--png", help="with --personalization-ab: also chart the report here")
    simulate.add_argument("--data", help="a WANDS folder with labels (default: the demo store)")
    simulate.add_argument("--gateway", help="default SHOPSENSE_GATEWAY_TARGET")
    simulate.add_argument("--feedback", help="default SHOPSENSE_FEEDBACK_TARGET")
    simulate.set_defaults(func=lambda args: cmd_simulate(args, console))
