"""`shopsense eval`: every query through the running gateway, as a storefront sends it.

The baselines go through the same gateway and harness in the same run, switched by
``SearchOptions``: BM25 only (lexical retrieval, no intent, no ranking) and dense only
(dense retrieval, no intent, no ranking).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import grpc
from rich.console import Console
from shopsense.common.v1 import common_pb2
from shopsense.search.v1 import search_service_pb2 as pb
from shopsense.search.v1 import search_service_pb2_grpc

from shared.data.dataset import Dataset, Query
from shared.data.wands import load_queries, load_wands
from shared.evaluation.harness import EvalReport, SearchOutcome, evaluate
from shared.rpc.clients import open_channel

PAGE_SIZE = 100  # Recall@100 needs 100 results

SYSTEMS: dict[str, pb.SearchOptions] = {
    "hybrid (suite)": pb.SearchOptions(),
    "bm25 only": pb.SearchOptions(
        retrieval_mode=common_pb2.RETRIEVAL_MODE_LEXICAL, skip_intent=True, skip_ranking=True
    ),
    "dense only": pb.SearchOptions(
        retrieval_mode=common_pb2.RETRIEVAL_MODE_DENSE, skip_intent=True, skip_ranking=True
    ),
}


def gateway_system(
    stub: search_service_pb2_grpc.SearchServiceStub, options: pb.SearchOptions, timeout_s: float
) -> Callable[[Query], SearchOutcome]:
    def search(query: Query) -> SearchOutcome:
        reply = stub.Search(
            pb.SearchRequest(
                query=query.text,
                user=common_pb2.UserContext(session_id=f"eval-{query.query_id}"),
                page_size=PAGE_SIZE,
                options=options,
            ),
            timeout=timeout_s,
        )
        return SearchOutcome(
            [r.product_id for r in reply.results], [c.product_class for c in reply.intent.classes]
        )

    return search


def evaluate_gateway(
    dataset: Dataset,
    target: str,
    systems: dict[str, pb.SearchOptions] | None = None,
    timeout_s: float = 10.0,
    progress: bool = True,
) -> EvalReport:
    stub = search_service_pb2_grpc.SearchServiceStub(open_channel(target))
    chosen = systems or (
        SYSTEMS if dataset.labels else {"hybrid (suite)": SYSTEMS["hybrid (suite)"]}
    )
    return evaluate(
        dataset,
        {name: gateway_system(stub, options, timeout_s) for name, options in chosen.items()},
        progress=progress,
    )


def run_eval(
    data: Path, queries: Path | None, target: str, json_out: Path | None, console: Console
) -> int:
    dataset = load_wands(data)
    if queries is not None:
        dataset.queries = load_queries(queries)
    try:
        report = evaluate_gateway(dataset, target)
    except grpc.RpcError as exc:
        console.print(f"[red]{exc.code().name}[/red]: {exc.details()} (is the suite running?)")
        return 1
    console.print(report.to_table())
    if json_out is not None:
        json_out.write_text(report.to_json(), encoding="utf-8")
    return 0
