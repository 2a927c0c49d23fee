"""The `shopsense` command line: run the suite, search, load catalogs, evaluate, manage
model versions and experiments."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time
from pathlib import Path

import grpc
from rich.console import Console
from rich.table import Table
from shopsense.common.v1 import common_pb2
from shopsense.search.v1 import search_service_pb2 as pb
from shopsense.search.v1 import search_service_pb2_grpc

from shared.cli.retrain import add_arguments as add_retrain_arguments
from shared.cli.retrain import cmd_retrain
from shared.rpc.clients import open_channel
from shared.runtime.catalog import DEMO_PRODUCTS, DEMO_SEED
from shared.settings import ClientSettings

# Piped or logged output is not cut to 80 columns (the experiment report is wide).
console = Console() if sys.stdout.isatty() else Console(width=160)


def _search_stub(target: str) -> search_service_pb2_grpc.SearchServiceStub:
    return search_service_pb2_grpc.SearchServiceStub(open_channel(target))


def build_search_request(args: argparse.Namespace) -> pb.SearchRequest:
    filters = common_pb2.Filters(product_classes=args.product_class or [])
    if args.price_min is not None:
        filters.price.min = args.price_min
    if args.price_max is not None:
        filters.price.max = args.price_max
    for item in args.attr or []:
        name, _, value = item.partition("=")
        filters.attributes.append(common_pb2.AttributeFilter(name=name, values=[value]))
    return pb.SearchRequest(
        query=args.query,
        user=common_pb2.UserContext(user_id=args.user, session_id=args.session),
        filters=filters,
        page_size=args.page_size,
    )


def cmd_search(args: argparse.Namespace) -> int:
    settings = ClientSettings.load()
    request = build_search_request(args)
    started = time.perf_counter()
    try:
        response = _search_stub(args.target or settings.gateway_target).Search(
            request, timeout=args.timeout
        )
    except grpc.RpcError as exc:
        console.print(f"[red]{exc.code().name}[/red]: {exc.details()}")
        return 1
    ms = (time.perf_counter() - started) * 1e3
    if args.json:
        from google.protobuf.json_format import MessageToDict

        print(json.dumps(MessageToDict(response), indent=2))
        return 0
    intent = ", ".join(
        f"{c.product_class} {c.probability:.0%}" for c in response.intent.classes[:3]
    )
    table = Table(title=f'"{args.query}": {response.total_size} results in {ms:.0f} ms')
    for column in ("#", "product", "title", "class", "price", "score", "found by"):
        table.add_column(column, overflow="fold")
    for r in response.results:
        table.add_row(
            str(r.position),
            r.product_id,
            r.title,
            r.product_class + (" *" if r.explanation.intent_match else ""),
            f"{r.price:,.2f}",
            f"{r.score:.3f}",
            "+".join(r.explanation.sources),
        )
    console.print(table)
    console.print(f"intent: {intent or '-'}   (* = matches the intent)")
    flags = [name for name in ("intent", "ranking", "dense") if getattr(response.degraded, name)]
    if flags:
        console.print(f"[yellow]degraded: {', '.join(flags)}[/yellow]")
    mv = response.model_versions
    console.print(
        f"models: intent={mv.intent or '-'} text_encoder={mv.text_encoder or '-'} "
        f"ranking={mv.ranking or '-'}   arm={response.experiment_arm}"
    )
    return 0


def _load_products(args: argparse.Namespace) -> list:
    if args.data:
        from shared.data.wands import load_wands

        dataset = load_wands(Path(args.data))
        if not dataset.products:
            raise SystemExit(f"{args.data}: no product.csv")
        return dataset.products
    from shared.data.synthetic import generate_store

    return generate_store(n_products=args.synthetic, seed=args.seed).products


def cmd_catalog_load(args: argparse.Namespace) -> int:
    from shared.runtime.catalog import upsert_products

    settings = ClientSettings.load()
    products = _load_products(args)
    started = time.perf_counter()
    reply = upsert_products(args.target or settings.retrieval_target, products)
    invalid = [r for r in reply.results if r.error]
    console.print(
        f"loaded {len(products) - len(invalid)} of {len(products)} products in "
        f"{time.perf_counter() - started:.1f} s; catalog size {reply.catalog_size}"
    )
    for r in invalid[:10]:
        console.print(f"[red]{r.product_id}[/red]: {r.error}")
    return 0 if not invalid else 1


def cmd_data_generate(args: argparse.Namespace) -> int:
    from shared.data.synthetic import generate_store, write_wands

    store = generate_store(n_products=args.products, n_queries=args.queries, seed=args.seed)
    write_wands(store, Path(args.out))
    console.print(
        f"wrote a synthetic store ({args.products} products, seed {args.seed}) to {args.out}"
    )
    return 0


def cmd_data_download(args: argparse.Namespace) -> int:
    from shared.data.download import download_wands

    download_wands(Path(args.dest))
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from shared.evaluation.remote import run_eval

    settings = ClientSettings.load()
    return run_eval(
        Path(args.data),
        Path(args.queries) if args.queries else None,
        args.target or settings.gateway_target,
        Path(args.json) if args.json else None,
        console,
    )


def cmd_up(args: argparse.Namespace) -> int:
    from shared.runtime.catalog import ensure_demo_store, wait_for_intent
    from shared.runtime.suite import Suite

    started = time.monotonic()
    suite = Suite()
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    console.print("starting Triton and the services ...")
    with suite:
        if not args.no_demo:
            ensure_demo_store(
                suite.address("retrieval"), args.demo_products, DEMO_SEED, console.print
            )
        wait_for_intent(suite.address("intent"), suite.address("retrieval"))
        assert suite.triton is not None
        metrics = ", ".join(f"{name} {port}" for name, port in suite.metrics_ports.items())
        console.print(
            f"[green]shopsense is ready[/green] in {time.monotonic() - started:.1f} s "
            f"(gateway {suite.address('gateway')}, Triton {suite.triton.grpc_url}, "
            f"logs in {suite.state / 'logs'})\n"
            f"metrics at http://127.0.0.1:PORT/metrics, PORT: {metrics}, "
            f"Triton {suite.triton.metrics_port}\n"
            'search it from another terminal:  .venv/bin/shopsense search "leather sofa"\n'
            "Ctrl-C stops everything."
        )
        stop.wait()
        console.print("stopping ...")
    return 0


def _trainer_stub(args: argparse.Namespace):  # -> TrainerServiceStub
    from shopsense.trainer.v1 import trainer_service_pb2_grpc

    target = args.target or ClientSettings.load().trainer_target
    return trainer_service_pb2_grpc.TrainerServiceStub(open_channel(target))


def cmd_models(args: argparse.Namespace) -> int:
    """The model registry: list, publish, roll back, report."""
    from shopsense.trainer.v1 import trainer_service_pb2 as tpb

    from shared.models.kinds import MODEL_KINDS
    from shared.training.report import print_report, version_table

    stub = _trainer_stub(args)
    try:
        if args.models_command == "list":
            for model in [args.model] if args.model else MODEL_KINDS:
                reply = stub.ListModelVersions(
                    tpb.ListModelVersionsRequest(model=model), timeout=10
                )
                versions = sorted(reply.versions, key=lambda v: v.version)
                console.print(version_table(model, versions) if versions else f"{model}: none")
        elif args.models_command == "publish":
            reply = stub.PublishVersion(
                tpb.PublishVersionRequest(model=args.model, version=args.version), timeout=300
            )
            console.print(
                f"{args.model}: version {reply.version.version} serving "
                f"(was {reply.previous_version or 'none'}) {reply.note}"
            )
        elif args.models_command == "rollback":
            reply = stub.RollbackVersion(
                tpb.RollbackVersionRequest(model=args.model, to_version=args.to or 0), timeout=300
            )
            console.print(
                f"{args.model}: version {reply.version.version} serving again, "
                f"{reply.rolled_back_version} rolled back {reply.note}"
            )
        elif args.models_command == "retrain":
            return cmd_retrain(args, console, args.target or ClientSettings.load().trainer_target)
        else:
            print_report(args.target or ClientSettings.load().trainer_target, console)
    except grpc.RpcError as exc:
        console.print(f"[red]{exc.code().name}[/red]: {exc.details()}")
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="shopsense", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    up = sub.add_parser("up", help="start Triton and every service; load the demo store if empty")
    up.add_argument("--demo-products", type=int, default=DEMO_PRODUCTS)
    up.add_argument(
        "--no-demo", action="store_true", help="leave an empty catalog empty (to import a store)"
    )
    up.set_defaults(func=cmd_up)

    search = sub.add_parser("search", help="search through the gateway and print a table")
    search.add_argument("query")
    search.add_argument("--user", default="")
    search.add_argument("--session", default="cli")
    search.add_argument("--page-size", type=int, default=10)
    search.add_argument("--class", dest="product_class", action="append")
    search.add_argument("--price-min", type=float)
    search.add_argument("--price-max", type=float)
    search.add_argument("--attr", action="append", help="attribute filter name=value")
    search.add_argument("--target", help="gateway address (default SHOPSENSE_GATEWAY_TARGET)")
    search.add_argument("--timeout", type=float, default=5.0)
    search.add_argument("--json", action="store_true")
    search.set_defaults(func=cmd_search)

    catalog = sub.add_parser("catalog", help="catalog operations").add_subparsers(
        dest="catalog_command", required=True
    )
    load = catalog.add_parser("load", help="upsert a WANDS-format catalog or a synthetic one")
    source = load.add_mutually_exclusive_group(required=True)
    source.add_argument("--data", help="a folder with WANDS product.csv")
    source.add_argument("--synthetic", type=int, metavar="N", help="generate N synthetic products")
    load.add_argument("--seed", type=int, default=DEMO_SEED)
    load.add_argument("--target", help="retrieval address (default SHOPSENSE_RETRIEVAL_TARGET)")
    load.set_defaults(func=cmd_catalog_load)

    data = sub.add_parser("data", help="datasets").add_subparsers(
        dest="data_command", required=True
    )
    gen = data.add_parser("generate", help="write the synthetic demo store in WANDS format")
    gen.add_argument("--out", required=True)
    gen.add_argument("--products", type=int, default=DEMO_PRODUCTS)
    gen.add_argument("--queries", type=int, default=500)
    gen.add_argument("--seed", type=int, default=DEMO_SEED)
    gen.set_defaults(func=cmd_data_generate)
    dl = data.add_parser(
        "download-wands", help="download WANDS from its public repository (online)"
    )
    dl.add_argument("dest")
    dl.set_defaults(func=cmd_data_download)

    ev = sub.add_parser("eval", help="evaluate the running suite on judged queries")
    ev.add_argument("--data", required=True, help="a WANDS-format folder (query.csv at least)")
    ev.add_argument("--queries", help="another query.csv to use instead of the folder's")
    ev.add_argument("--json", help="write the report as JSON here")
    ev.add_argument("--target", help="gateway address (default SHOPSENSE_GATEWAY_TARGET)")
    ev.set_defaults(func=cmd_eval)

    models = sub.add_parser("models", help="the model registry (trainer service)")
    models.add_argument("--target", help="trainer address (default SHOPSENSE_TRAINER_TARGET)")
    msub = models.add_subparsers(dest="models_command", required=True)
    listing = msub.add_parser("list", help="every version with its status and metrics")
    listing.add_argument("--model", help="one model (default: every kind)")
    publish = msub.add_parser("publish", help="serve a registered version")
    publish.add_argument("model")
    publish.add_argument("version", type=int)
    rollback = msub.add_parser("rollback", help="serve the version that served before")
    rollback.add_argument("model")
    rollback.add_argument("--to", type=int, help="a given version instead")
    msub.add_parser("report", help="the tables and the PNG chart")
    retrain = msub.add_parser(
        "retrain",
        help="fine-tune the serving cross_encoder (or --model sequence_recommender) on the "
        "shoppers' feedback",
    )
    add_retrain_arguments(retrain)
    models.set_defaults(func=cmd_models)

    from shared.cli.experiments import add_parser as add_experiments_parser

    add_experiments_parser(sub, console)

    from shared.cli.simulate import add_parser as add_simulate_parser

    add_simulate_parser(sub, console)

    from shared.cli.recs import add_parsers as add_recs_parsers

    add_recs_parsers(sub, console)

    from shared.cli.config import add_parser as add_config_parser

    add_config_parser(sub, console)

    from shared.cli.observe import add_parser as add_observe_parser

    add_observe_parser(sub, console)

    from shared.cli.bench import add_parser as add_bench_parser

    add_bench_parser(sub, console)

    from shared.cli.fuzz import add_parser as add_fuzz_parser

    add_fuzz_parser(sub, console)

    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
