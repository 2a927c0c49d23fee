"""StartTraining's feedback source, as a training folder under the trainer's training dir:

- cross_encoder: the shoppers' clicks, skips and purchases on search results, next to the
  catalog (``shared.training.clicks`` fits and writes it);
- sequence_recommender: each shopper's views, carts and purchases in order, over the
  catalog and text vectors retrieval exports (``shared.training.sequence_data`` writes it).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy
from shopsense.trainer.v1 import trainer_service_pb2 as pb

from shared.contracts.retrieval import CatalogExport
from shared.contracts.trainer import (
    feedback_data_summary,
    feedback_window,
    sequence_data_summary,
)
from shared.errors import FailedPrecondition, InvalidArgument
from shared.recommendation.events import Interaction, interaction_of
from shared.storage.feedback import FeedbackStore
from shared.training.clicks import fit_click_model, read_impressions, write_click_dataset
from shared.training.erasure import write_click_index
from shared.training.sequence_data import write_sequence_dataset

# A query's impressions before it is trained on, and the fewest queries a job trains on
# (below that, a version would learn from noise).
DEFAULT_MIN_IMPRESSIONS = 10
MIN_FEEDBACK_QUERIES = 5
# The fewest shoppers with two or more events on catalog products a sequence job trains
# on, and the fewest held-out next events it is measured on.
MIN_SEQUENCE_SHOPPERS = 20
MIN_SEQUENCE_DEV_CASES = 1
# Interactions read from the feedback store per query.
READ_PAGE = 50_000


def feedback_dataset(
    source: pb.FeedbackSource,
    catalog: Path,
    feedback_engine: Callable[[], sqlalchemy.Engine] | None,
    training_dir: Path | None,
) -> tuple[Path, pb.FeedbackDataSummary]:
    """Judgments from the feedback store written as a folder under ``training_dir`` with
    the catalog of ``catalog``, and what they were built from; FailedPrecondition saying
    what is missing, InvalidArgument naming a bad field."""
    if feedback_engine is None or training_dir is None:
        raise FailedPrecondition("feedback: no feedback database is configured")
    if source.min_impressions < 0:
        raise InvalidArgument("feedback.min_impressions: must be >= 0")
    if not (catalog / "product.csv").is_file():
        raise InvalidArgument(f"dataset: {catalog} has no product.csv (the catalog)")
    since, until = feedback_window(source)
    # Read before the impressions: later erasures are applied by the trainer's sweep.
    erasures_through = FeedbackStore(feedback_engine()).last_erasure()
    impressions, pages = read_impressions(feedback_engine(), since, until)
    fit = fit_click_model(impressions, pages)
    final = training_dir / f"feedback-{_stamp()}"
    # Written under a hidden name and renamed once indexed: the erasure sweep never sees a
    # judgments folder without its index.
    folder = final.with_name(f".{final.name}.writing")
    queries, judgments = write_click_dataset(
        fit, catalog, folder, source.min_impressions or DEFAULT_MIN_IMPRESSIONS
    )
    if queries < MIN_FEEDBACK_QUERIES:
        shutil.rmtree(folder, ignore_errors=True)
        raise FailedPrecondition(
            f"feedback: {queries} queries have enough impressions and a click to train on "
            f"(need {MIN_FEEDBACK_QUERIES}); the window holds {fit.pages} result pages, "
            f"{fit.impressions} impressions and {fit.clicks} clicks"
        )
    try:
        write_click_index(folder, feedback_engine(), since, until, erasures_through)
        folder.rename(final)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return final, feedback_data_summary(fit, queries, judgments, final)


def _stamp() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")


def read_interactions(
    engine: sqlalchemy.Engine, since: datetime | None, until: datetime | None
) -> Iterator[Interaction]:
    """The store's clicks, carts and purchases that occurred in ``[since, until)``, in the
    order the store received them (the folder's writer sorts each shopper's by time)."""
    for rows in FeedbackStore(engine).interaction_pages(None, READ_PAGE):
        for row in rows:
            if (since is not None and row.occurred_at < since) or (
                until is not None and row.occurred_at >= until
            ):
                continue
            event = interaction_of(row)
            if event is not None:
                yield event


def sequence_feedback_dataset(
    source: pb.FeedbackSource,
    feedback_engine: Callable[[], sqlalchemy.Engine] | None,
    catalog: Callable[[], CatalogExport] | None,
    training_dir: Path | None,
) -> tuple[Path, pb.FeedbackDataSummary, dict[str, Any]]:
    """The shoppers' histories in the window over retrieval's catalog, written as a
    sequence folder under ``training_dir``; the folder, the summary StartTraining answers
    and ``dataset.json``'s content. FailedPrecondition naming the counts when too few
    shoppers did two things (or nothing is held out to measure on), or when no feedback
    database or retrieval is configured, or the catalog has no text vectors."""
    if feedback_engine is None or training_dir is None:
        raise FailedPrecondition("feedback: no feedback database is configured")
    if catalog is None:
        raise FailedPrecondition("feedback: no retrieval service is configured (the catalog)")
    since, until = feedback_window(source)
    engine = feedback_engine()
    export = catalog()
    if not export.products:
        raise FailedPrecondition("feedback: retrieval's catalog is empty: nothing to recommend")
    if export.vectors is None:
        raise FailedPrecondition(
            "feedback: retrieval's catalog has no text vectors (a sequence_recommender reads "
            "products by them); wait for its embedding to finish"
        )
    folder = training_dir / f"sequence-feedback-{_stamp()}"
    # Read before the events: an erasure after it may or may not be in them, and is applied
    # to the folder by the trainer's next sweep (shared/training/erasure.py).
    erasures_through = FeedbackStore(engine).last_erasure()
    info = write_sequence_dataset(
        folder,
        read_interactions(engine, since, until),
        [p.product_id for p in export.products],
        export.vectors,
        export.version,
        erasures_through=erasures_through,
    )
    problem = sequence_data_problem(info["shoppers"], info["dev_eligible"])
    if problem:
        shutil.rmtree(folder, ignore_errors=True)
        dropped = info["dropped"]
        raise FailedPrecondition(
            f"feedback: {problem}; the window holds {info['interactions']} views, carts and "
            f"purchases of {info['shoppers_seen']} shoppers, {dropped['unknown_product']} of "
            f"them on products not in the catalog ({info['products']} products) and "
            f"{dropped['repeats']} repeats"
        )
    return folder, sequence_data_summary(folder, info), info


def sequence_data_problem(shoppers: int, dev_eligible: int) -> str:
    """Why a sequence folder with ``shoppers`` histories (two or more events each) and
    ``dev_eligible`` events to hold out is too small to train on; "" when it is not."""
    if shoppers < MIN_SEQUENCE_SHOPPERS:
        return (
            f"{shoppers} shoppers have 2 or more events on catalog products "
            f"(need {MIN_SEQUENCE_SHOPPERS})"
        )
    if dev_eligible < MIN_SEQUENCE_DEV_CASES:
        return (
            f"{dev_eligible} shoppers have an event to hold out for measuring (a product new "
            f"to them after 2 or more events; need {MIN_SEQUENCE_DEV_CASES})"
        )
    return ""
