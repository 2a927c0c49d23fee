"""`make bench-recommend`: Recommend through the running suite against the same pipeline in
one process (the floor), on the real Online Retail store.

Needs a suite holding the store (`shopsense import online-retail --until SPLIT`). The
requests are the evaluation's (`shopsense recs eval`): RECOMMENDED_FOR_YOU for every
customer with orders on both sides of the split, their history in the request, and
FREQUENTLY_BOUGHT_TOGETHER on each one's latest product. The floor builds a Recommender
in this process from the same orders and the suite's own catalog snapshot (retrieval's
vectors), and answers the same requests through the same contract code, without RPC.
Closed-loop clients at concurrency 1 and 8; p50, p99, throughput and the suite-to-floor
ratio of the p50s. Prints the CPU's instruction sets.
"""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime
from pathlib import Path

import grpc
from rich.console import Console
from rich.table import Table
from shopsense.common.v1 import common_pb2
from shopsense.recommend.v1 import recommend_service_pb2 as pb
from shopsense.recommend.v1 import recommend_service_pb2_grpc
from shopsense.retrieval.v1 import retrieval_service_pb2_grpc

from shared.bench.load import closed_loop
from shared.bench.machine import machine, newest_versions, served_engines
from shared.contracts.recommend import query_from_request, response_from_answer
from shared.contracts.retrieval import export_catalog
from shared.data.online_retail import load_online_retail
from shared.evaluation.recs import next_basket_cases
from shared.evaluation.recs_remote import for_you_request
from shared.paths import triton_model_repository
from shared.recommendation.events import PURCHASE, Interaction
from shared.recommendation.recommender import Recommender, RecommenderOptions
from shared.rpc.clients import open_channel
from shared.runtime.online_retail import session_of
from shared.settings import ClientSettings, RecommendSettings

console = Console(width=160)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default=str(Path("..") / "shared" / "data" / "online_retail"))
    parser.add_argument("--split-at", default="2011-06-01")
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--json", help="write the figures as JSON here")
    args = parser.parse_args(argv)
    split_at = datetime.fromisoformat(args.split_at).replace(tzinfo=UTC)
    settings = ClientSettings.load()
    here = machine(
        served_engines(triton_model_repository(), newest_versions(triton_model_repository()))
    )
    console.print(here.line())
    stub = recommend_service_pb2_grpc.RecommendServiceStub(open_channel(settings.gateway_target))
    store = load_online_retail(Path(args.data))
    cases = next_basket_cases(store.lines, split_at)
    requests = [for_you_request(case) for case in cases]
    requests += [
        pb.RecommendRequest(
            placement=pb.PLACEMENT_FREQUENTLY_BOUGHT_TOGETHER,
            user=common_pb2.UserContext(session_id=f"bench-{case.shopper}"),
            context_product_ids=[case.history[-1].product_id],
            page_size=20,
        )
        for case in cases
    ]
    requests = requests[::2] + requests[1::2]  # both kinds early in every run

    floor = Recommender(RecommenderOptions.from_settings(RecommendSettings.load()))
    catalog = export_catalog(
        retrieval_service_pb2_grpc.RetrievalServiceStub(open_channel(settings.retrieval_target))
    )
    floor.set_catalog(catalog.products, catalog.vectors, catalog.generation, catalog.version)
    floor.ingest(
        Interaction(
            line.product_id,
            PURCHASE,
            line.at.timestamp(),
            line.quantity,
            line.customer_id,
            session_of(line),
        )
        for line in store.lines
        if line.at < split_at
    )

    def in_process(request: pb.RecommendRequest) -> object:
        answer = floor.recommend(query_from_request(request, floor.attribute_names()))
        return response_from_answer(answer, request.placement)

    def through_suite(request: pb.RecommendRequest) -> object:
        return stub.Recommend(request, timeout=10)

    try:
        through_suite(requests[0])
    except grpc.RpcError as exc:
        console.print(f"[red]{exc.code().name}[/red]: {exc.details()} (is the suite running?)")
        return 1
    figures: dict[str, dict[str, float]] = {}
    for concurrency in (1, 8):
        for name, call in (("suite", through_suite), ("in process", in_process)):
            closed_loop(call, requests[:50], concurrency, 1.0)  # warm up
            figures[f"{name} c{concurrency}"] = closed_loop(
                call, requests, concurrency, args.seconds
            )
    table = Table(title=f"Recommend on Online Retail ({len(store.products)} products)")
    for column in ("", "requests", "p50 ms", "p99 ms", "per s"):
        table.add_column(column)
    for name, row in figures.items():
        table.add_row(
            name,
            str(row["requests"]),
            f"{row['p50_ms']:.2f}",
            f"{row['p99_ms']:.2f}",
            f"{row['per_s']:.0f}",
        )
    console.print(table)
    for concurrency in (1, 8):
        suite, floor_row = figures[f"suite c{concurrency}"], figures[f"in process c{concurrency}"]
        console.print(
            f"concurrency {concurrency}: suite-to-floor p50 "
            f"{suite['p50_ms'] / floor_row['p50_ms']:.2f}x, p99 "
            f"{suite['p99_ms'] / floor_row['p99_ms']:.2f}x"
        )
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": here.as_json(), **figures}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
