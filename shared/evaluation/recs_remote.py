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
  products) and ``ALS`` (``implicit``), computed here from the orders before the split;
- with ``--diversity``, the served pipeline again at each MMR setting (the trade of recall
  for intra-list diversity). Every system's exposure concentration (top-1% share, Gini)
  and intra-list diversity are reported beside its accuracy; ``--png`` draws both.

The suite must hold no event at or after the split (the served pipeline would see the
future): the recommender's newest event is checked first.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from google.protobuf.timestamp_pb2 import Timestamp
from rich.console import Console
from rich.table import Table
from shopsense.common.v1 import common_pb2
from shopsense.recommend.v1 import recommend_service_pb2 as pb
from shopsense.recommend.v1 import recommend_service_pb2_grpc
from shopsense.retrieval.v1 import retrieval_service_pb2_grpc

from shared.contracts.retrieval import export_catalog
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
from shared.recommendation.recommender import DEFAULT_WEIGHTS, RECOMMENDED_FOR_YOU, SEQUENCE
from shared.rpc.clients import open_channel

K = 20
# The newest history events sent per request (the request's limit is 10,000).
MAX_HISTORY = 10_000
SOURCE_SYSTEMS = {"co-occurrence": ["co_purchase", "co_cart", "co_view"], "content": ["content"]}


def sequence_served(stub: recommend_service_pb2_grpc.RecommendServiceStub, case: EvalCase) -> bool:
    """Whether a sequence_recommender version answers RECOMMENDED_FOR_YOU now."""
    reply = stub.Recommend(for_you_request(case, [SEQUENCE]), timeout=30)
    return "sequence_recommender" in reply.model_versions


def for_you_request(
    case: EvalCase, sources: Sequence[str] = (), diversity: float | None = None
) -> pb.RecommendRequest:
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
        options=pb.RecommendOptions(sources=list(sources), history_only=True, diversity=diversity),
    )


def served_system(
    stub: recommend_service_pb2_grpc.RecommendServiceStub,
    sources: Sequence[str] = (),
    timeout_s: float = 10.0,
    diversity: float | None = None,
) -> Callable[[EvalCase], list[str]]:
    def recommend(case: EvalCase) -> list[str]:
        reply = stub.Recommend(for_you_request(case, sources, diversity), timeout=timeout_s)
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


@dataclass(frozen=True)
class RecsEvalRun:
    """What `shopsense recs eval` is asked: the data, the split, where the suite answers,
    where to write, and the diversity settings to sweep (each a "served" row of its own)."""

    data: Path
    split_at: datetime
    gateway_target: str
    recommend_target: str
    retrieval_target: str
    json_out: Path | None = None
    png_out: Path | None = None
    limit: int = 0
    diversities: tuple[float, ...] = ()


def text_vectors(retrieval_target: str) -> dict[str, np.ndarray]:
    """Every catalog product's text vector, as the suite holds it."""
    catalog = export_catalog(
        retrieval_service_pb2_grpc.RetrievalServiceStub(open_channel(retrieval_target))
    )
    if catalog.vectors is None:
        return {}
    return {p.product_id: v for p, v in zip(catalog.products, catalog.vectors, strict=True)}


def run_recs_eval(run: RecsEvalRun, console: Console) -> list[SystemScores]:
    check_no_leak(run.recommend_target, run.split_at)
    store = load_online_retail(run.data)
    cases = next_basket_cases(store.lines, run.split_at)
    if run.limit:
        cases = cases[: run.limit]
    new_products = {p for p, first in store.first_sold.items() if first >= run.split_at}
    vectors = text_vectors(run.retrieval_target)
    stub = recommend_service_pb2_grpc.RecommendServiceStub(open_channel(run.gateway_target))
    started = time.monotonic()
    als = ALSBaseline(store.lines, run.split_at)
    als_fit_s = time.monotonic() - started
    sequence_systems: dict[str, Callable[[EvalCase], Sequence[str]]] = {}
    if cases and sequence_served(stub, cases[0]):
        # A trained sequence_recommender serves: alone, and the blend without it.
        others = [s for s in DEFAULT_WEIGHTS[RECOMMENDED_FOR_YOU] if s != SEQUENCE]
        sequence_systems = {
            "served without the sequence model": served_system(stub, others),
            "sequence model only (the same path)": served_system(stub, [SEQUENCE]),
        }
    systems: dict[str, Callable[[EvalCase], Sequence[str]]] = {
        "served": served_system(stub),
        **{f"served, diversity {d:g}": served_system(stub, diversity=d) for d in run.diversities},
        **sequence_systems,
        **{name: served_system(stub, sources) for name, sources in SOURCE_SYSTEMS.items()},
        "popularity (30 days)": Popularity(store.lines, run.split_at).recommend,
        "buy again": BuyAgain().recommend,
        "ALS": als.recommend,
    }
    scores = []
    for name, system in systems.items():
        started = time.monotonic()
        scored = score_system(
            name,
            system,
            cases,
            new_products=new_products,
            catalog_size=len(store.products),
            vectors=vectors,
        )
        scores.append(scored)
        console.print(f"{name}: {len(cases)} cases in {time.monotonic() - started:.1f} s")
    baselines = [s for s in scores if not s.name.startswith("served")]
    best = max(baselines, key=lambda s: s.recall_at_20)
    served = scores[0]
    popularity = next(s for s in scores if s.name.startswith("popularity"))
    table = Table(title=f"next basket after {run.split_at.date()} ({len(cases)} customers)")
    columns = ("system", "Recall@20", "NDCG@20", "HitRate@10", "coverage", "new-product R@20")
    for column in (*columns, "top-1% share", "Gini", "diversity"):
        table.add_column(column)
    for s in scores:
        table.add_row(
            s.name,
            f"{s.recall_at_20:.4f}",
            f"{s.ndcg_at_20:.4f}",
            f"{s.hit_rate_at_10:.4f}",
            f"{s.coverage:.3f}",
            f"{s.new_product_recall:.4f}",
            f"{s.top1_share:.3f}",
            f"{s.gini:.3f}",
            f"{s.intra_list_diversity:.3f}",
        )
    console.print(table)
    ratio = served.recall_at_20 / best.recall_at_20 if best.recall_at_20 else float("inf")
    console.print(
        f"served / best baseline ({best.name}) Recall@20: {ratio:.2f}x; new-product recall "
        f"{served.new_product_recall:.4f} against popularity's {popularity.new_product_recall:.4f}"
    )
    if run.json_out is not None:
        run.json_out.parent.mkdir(parents=True, exist_ok=True)
        run.json_out.write_text(
            json.dumps(
                {
                    "split_at": run.split_at.isoformat(),
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
    if run.png_out is not None:
        plot(scores, run.png_out, f"Online Retail, next basket after {run.split_at.date()}")
        console.print(f"chart: {run.png_out}")
    return scores


def plot(scores: Sequence[SystemScores], out: Path, title: str) -> None:
    """Two panels: Recall@20 against intra-list diversity (the served pipeline at each
    diversity setting joined by a line, the baselines as points), and each system's exposure
    concentration (top-1% share and Gini)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    served = [s for s in scores if s.name.startswith("served")]
    others = [s for s in scores if not s.name.startswith("served")]
    figure, (trade, exposure) = plt.subplots(1, 2, figsize=(13, 5))
    trade.plot(
        [s.intra_list_diversity for s in served],
        [s.recall_at_20 for s in served],
        "o-",
        label="served (diversity 0 and up)",
    )
    for s in others:
        trade.plot(s.intra_list_diversity, s.recall_at_20, "s", label=s.name)
    trade.set_xlabel("intra-list diversity (1 - cosine of texts)")
    trade.set_ylabel("Recall@20")
    trade.legend(fontsize=8)
    trade.set_title("relevance against variety")
    names = [s.name for s in scores]
    positions = np.arange(len(scores))
    exposure.bar(positions - 0.2, [s.top1_share for s in scores], 0.4, label="top-1% share")
    exposure.bar(positions + 0.2, [s.gini for s in scores], 0.4, label="Gini")
    exposure.set_xticks(positions, names, rotation=35, ha="right", fontsize=8)
    exposure.set_title("exposure concentration (lower: spread wider)")
    exposure.legend(fontsize=8)
    figure.suptitle(title)
    figure.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, dpi=110)
    plt.close(figure)
