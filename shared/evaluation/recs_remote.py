"""`shopsense recs eval`: next-basket recommendation on a store's real orders, through the
running suite and against the baselines, in one run.

Every identified customer with purchases on both sides of ``split_at`` is a case
(``recs.next_basket_cases``): the history is what they bought before it, sent in the
request (``RECOMMENDED_FOR_YOU``, an anonymous evaluation session, the stored state
ignored), the target is their first basket after it. Systems:

- ``served``: the recommendation pipeline through the gateway's Recommend;
- ``co-occurrence`` and ``content``: the same pipeline with one kind of source only
  (``RecommendOptions.sources``), the item-item and text-neighbour baselines;
- ``popularity`` (the 30 days before the split), ``buy again`` (the shopper's most bought
  products) and ``ALS`` (``implicit``), computed here from the orders before the split.

The suite must hold no event at or after the split (the served pipeline would see the
future): the recommender's newest event is checked first.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path

from google.protobuf.timestamp_pb2 import Timestamp
from rich.console import Console
from rich.table import Table
from shopsense.common.v1 import common_pb2
from shopsense.recommend.v1 import recommend_service_pb2 as pb
from shopsense.recommend.v1 import recommend_service_pb2_grpc

from shared.data.online_retail import load_online_retail
from shared.errors import FailedPrecondition
from shared.evaluation.recs import (
    ALSBaseline,
    BuyAgain,
    EvalCase,
    Popularity,
    SystemScores,
    next_basket_cases,
    score_system,
)
from shared.rpc.clients import open_channel

K = 20
# The newest history events sent per request (the request's limit is 10,000).
MAX_HISTORY = 10_000
SOURCE_SYSTEMS = {"co-occurrence": ["co_purchase", "co_cart", "co_view"], "content": ["content"]}


def for_you_request(case: EvalCase, sources: Sequence[str] = ()) -> pb.RecommendRequest:
    """RECOMMENDED_FOR_YOU for the case's shopper as an anonymous session, the history in
    the request (the newest ``MAX_HISTORY`` purchases), the stored state ignored."""
    history = []
    for item in case.history[-MAX_HISTORY:]:
        stamp = Timestamp()
        stamp.FromDatetime(item.at)
        history.append(
            pb.HistoryEvent(
                product_id=item.product_id,
                type=pb.INTERACTION_TYPE_PURCHASE,
                timestamp=stamp,
                quantity=item.quantity,
            )
        )
    return pb.RecommendRequest(
        placement=pb.PLACEMENT_RECOMMENDED_FOR_YOU,
        user=common_pb2.UserContext(session_id=f"recs-eval-{case.shopper}"),
        history=history,
        page_size=K,
        options=pb.RecommendOptions(sources=list(sources), history_only=True),
    )


def served_system(
    stub: recommend_service_pb2_grpc.RecommendServiceStub,
    sources: Sequence[str] = (),
    timeout_s: float = 10.0,
) -> Callable[[EvalCase], list[str]]:
    def recommend(case: EvalCase) -> list[str]:
        reply = stub.Recommend(for_you_request(case, sources), timeout=timeout_s)
        return [item.product_id for item in reply.items]

    return recommend


def check_no_leak(recommend_target: str, split_at: datetime) -> None:
    """FailedPrecondition when the recommender holds an event at or after the split."""
    stub = recommend_service_pb2_grpc.RecommendServiceStub(open_channel(recommend_target))
    stats = stub.GetRecommenderStats(pb.GetRecommenderStatsRequest(), timeout=10)
    if stats.HasField("newest_event"):
        newest = stats.newest_event.ToDatetime(tzinfo=UTC)
        if newest >= split_at:
            raise FailedPrecondition(
                f"the suite holds events up to {newest.isoformat()}, at or after the split "
                f"{split_at.isoformat()}: import with --until {split_at.date().isoformat()} "
                "into an empty state folder"
            )


def run_recs_eval(
    data: Path,
    split_at: datetime,
    gateway_target: str,
    recommend_target: str,
    json_out: Path | None,
    console: Console,
    limit: int = 0,
) -> list[SystemScores]:
    check_no_leak(recommend_target, split_at)
    store = load_online_retail(data)
    cases = next_basket_cases(store.lines, split_at)
    if limit:
        cases = cases[:limit]
    new_products = {p for p, first in store.first_sold.items() if first >= split_at}
    stub = recommend_service_pb2_grpc.RecommendServiceStub(open_channel(gateway_target))
    started = time.monotonic()
    als = ALSBaseline(store.lines, split_at)
    als_fit_s = time.monotonic() - started
    systems: dict[str, Callable[[EvalCase], Sequence[str]]] = {
        "served": served_system(stub),
        **{name: served_system(stub, sources) for name, sources in SOURCE_SYSTEMS.items()},
        "popularity (30 days)": Popularity(store.lines, split_at).recommend,
        "buy again": BuyAgain().recommend,
        "ALS": als.recommend,
    }
    scores = []
    for name, system in systems.items():
        started = time.monotonic()
        scored = score_system(
            name, system, cases, new_products=new_products, catalog_size=len(store.products)
        )
        scores.append(scored)
        console.print(f"{name}: {len(cases)} cases in {time.monotonic() - started:.1f} s")
    baselines = [s for s in scores if s.name != "served"]
    best = max(baselines, key=lambda s: s.recall_at_20)
    served = scores[0]
    popularity = next(s for s in scores if s.name.startswith("popularity"))
    table = Table(title=f"next basket after {split_at.date()} ({len(cases)} customers)")
    for column in ("system", "Recall@20", "NDCG@20", "HitRate@10", "coverage", "new-product R@20"):
        table.add_column(column)
    for s in scores:
        table.add_row(
            s.name,
            f"{s.recall_at_20:.4f}",
            f"{s.ndcg_at_20:.4f}",
            f"{s.hit_rate_at_10:.4f}",
            f"{s.coverage:.3f}",
            f"{s.new_product_recall:.4f}",
        )
    console.print(table)
    ratio = served.recall_at_20 / best.recall_at_20 if best.recall_at_20 else float("inf")
    console.print(
        f"served / best baseline ({best.name}) Recall@20: {ratio:.2f}x; new-product recall "
        f"{served.new_product_recall:.4f} against popularity's {popularity.new_product_recall:.4f}"
    )
    if json_out is not None:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(
            json.dumps(
                {
                    "split_at": split_at.isoformat(),
                    "cases": len(cases),
                    "products": len(store.products),
                    "new_products": len(new_products),
                    "als_fit_s": round(als_fit_s, 2),
                    "best_baseline": best.name,
                    "served_over_best_recall_at_20": round(ratio, 4),
                    "systems": [asdict(s) for s in scores],
                },
                indent=2,
            )
        )
    return scores
