"""`shopsense import` (a store's catalog and past orders) and `shopsense recs` (ask for
recommendations; evaluate them on real orders)."""

from __future__ import annotations

import argparse
import time
from datetime import UTC, datetime
from pathlib import Path

import grpc
from rich.console import Console
from rich.table import Table

from shared.errors import ShopsenseError
from shared.rpc.clients import open_channel
from shared.settings import ClientSettings

PLACEMENTS = ("similar", "bought-together", "for-you", "trending", "buy-again")


def _date(value: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not an ISO date: {value!r}") from exc
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def add_parsers(sub: argparse._SubParsersAction, console: Console) -> None:
    imp = sub.add_parser("import", help="import a store's catalog and past orders")
    isub = imp.add_subparsers(dest="import_command", required=True)
    retail = isub.add_parser("online-retail", help="the UCI Online Retail store (real orders)")
    retail.add_argument("--data", required=True, help="the online_retail folder (parquet files)")
    retail.add_argument(
        "--until", type=_date, help="import orders before this date only (ISO; default all)"
    )
    retail.set_defaults(func=lambda args: cmd_import_online_retail(args, console))

    recs = sub.add_parser("recs", help="recommendations: ask, evaluate")
    rsub = recs.add_subparsers(dest="recs_command", required=True)
    ask = rsub.add_parser("get", help="recommendations for a placement, as a table")
    ask.add_argument("placement", choices=PLACEMENTS)
    ask.add_argument("--user", default="")
    ask.add_argument("--session", default="cli")
    ask.add_argument("--product", action="append", default=[], help="a context product id")
    ask.add_argument("--page-size", type=int, default=10)
    ask.add_argument("--target", help="gateway address (default SHOPSENSE_GATEWAY_TARGET)")
    ask.set_defaults(func=lambda args: cmd_recs_get(args, console))
    ev = rsub.add_parser("eval", help="next-basket evaluation on real orders, with baselines")
    ev.add_argument("--data", required=True, help="the online_retail folder (parquet files)")
    ev.add_argument("--split-at", required=True, type=_date, help="ISO date of the split")
    ev.add_argument("--json", help="write the report as JSON here")
    ev.add_argument("--png", help="draw the diversity trade-off and the exposure here")
    ev.add_argument(
        "--diversity",
        default="",
        help="comma-separated MMR settings (0 to 1) to run the served pipeline at as well",
    )
    ev.add_argument("--limit", type=int, default=0, help="the first N customers only")
    ev.add_argument("--target", help="gateway address (default SHOPSENSE_GATEWAY_TARGET)")
    ev.set_defaults(func=lambda args: cmd_recs_eval(args, console))
    bench = rsub.add_parser(
        "bench",
        help="offline: the fine-tuned sequence_recommender vs SASRec-ID (Amazon Scientific)",
    )
    from shared.bench.sequence import add_arguments, run_from_args

    add_arguments(bench)
    bench.set_defaults(func=lambda args: run_from_args(args, console))


def cmd_import_online_retail(args: argparse.Namespace, console: Console) -> int:
    from shared.data.online_retail import load_online_retail
    from shared.runtime.online_retail import import_store, wait_for_recommender

    settings = ClientSettings.load()
    store = load_online_retail(Path(args.data))
    try:
        summary = import_store(
            store, settings.retrieval_target, settings.feedback_target, args.until, console.print
        )
        console.print(
            f"imported {summary.products} products and {summary.accepted} purchase events "
            f"({summary.duplicates} already stored, {summary.rejected} rejected) in "
            f"{summary.seconds:.1f} s"
        )
        started = time.monotonic()
        stats = wait_for_recommender(settings.recommend_target, summary.accepted)
    except grpc.RpcError as exc:
        console.print(f"[red]{exc.code().name}[/red]: {exc.details()}")
        return 1
    console.print(
        f"the recommender holds {stats.events_read} events, {stats.shoppers} shoppers and "
        f"{stats.pairs} product pairs ({time.monotonic() - started:.1f} s after the import)"
    )
    return 0 if summary.rejected == 0 and summary.rejected_products == 0 else 1


_PLACEMENT_ENUMS = {
    "similar": "PLACEMENT_SIMILAR_ITEMS",
    "bought-together": "PLACEMENT_FREQUENTLY_BOUGHT_TOGETHER",
    "for-you": "PLACEMENT_RECOMMENDED_FOR_YOU",
    "trending": "PLACEMENT_TRENDING",
    "buy-again": "PLACEMENT_BUY_AGAIN",
}


def cmd_recs_get(args: argparse.Namespace, console: Console) -> int:
    from shopsense.common.v1 import common_pb2
    from shopsense.recommend.v1 import recommend_service_pb2 as pb
    from shopsense.recommend.v1 import recommend_service_pb2_grpc

    target = args.target or ClientSettings.load().gateway_target
    stub = recommend_service_pb2_grpc.RecommendServiceStub(open_channel(target))
    try:
        reply = stub.Recommend(
            pb.RecommendRequest(
                placement=pb.Placement.Value(_PLACEMENT_ENUMS[args.placement]),
                user=common_pb2.UserContext(user_id=args.user, session_id=args.session),
                context_product_ids=args.product,
                page_size=args.page_size,
            ),
            timeout=10,
        )
    except grpc.RpcError as exc:
        console.print(f"[red]{exc.code().name}[/red]: {exc.details()}")
        return 1
    title = args.placement + (" (trending fallback)" if reply.fallback else "")
    table = Table(title=title)
    for column in ("#", "product", "title", "price", "score", "why"):
        table.add_column(column, overflow="fold")
    for item in reply.items:
        table.add_row(
            str(item.position),
            item.product_id,
            item.title,
            f"{item.price:,.2f}",
            f"{item.score:.3f}",
            item.reason.text,
        )
    console.print(table)
    if reply.unknown_product_ids:
        console.print(f"not in the catalog: {', '.join(reply.unknown_product_ids)}")
    console.print(f"arm={reply.experiment_arm}")
    return 0


def cmd_recs_eval(args: argparse.Namespace, console: Console) -> int:
    from shared.evaluation.recs_remote import RecsEvalRun, run_recs_eval

    settings = ClientSettings.load()
    try:
        diversities = tuple(float(d) for d in args.diversity.split(",") if d.strip())
    except ValueError:
        console.print(f"[red]--diversity[/red]: not numbers: {args.diversity!r}")
        return 2
    try:
        run_recs_eval(
            RecsEvalRun(
                data=Path(args.data),
                split_at=args.split_at,
                gateway_target=args.target or settings.gateway_target,
                recommend_target=settings.recommend_target,
                retrieval_target=settings.retrieval_target,
                json_out=Path(args.json) if args.json else None,
                png_out=Path(args.png) if args.png else None,
                limit=args.limit,
                diversities=diversities,
            ),
            console,
        )
    except ShopsenseError as exc:
        console.print(f"[red]{type(exc).__name__}[/red]: {exc.message}")
        return 1
    except grpc.RpcError as exc:
        console.print(f"[red]{exc.code().name}[/red]: {exc.details()}")
        return 1
    return 0
