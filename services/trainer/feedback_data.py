"""StartTraining's feedback source: the shoppers' clicks, skips and purchases written as a
training folder next to the catalog (``shared.training.clicks`` fits and writes it)."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy
from shopsense.trainer.v1 import trainer_service_pb2 as pb

from shared.contracts.trainer import feedback_data_summary, feedback_window
from shared.errors import FailedPrecondition, InvalidArgument
from shared.training.clicks import fit_click_model, read_impressions, write_click_dataset

# A query's impressions before it is trained on, and the fewest queries a job trains on
# (below that, a version would learn from noise).
DEFAULT_MIN_IMPRESSIONS = 10
MIN_FEEDBACK_QUERIES = 5


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
    impressions, pages = read_impressions(feedback_engine(), since, until)
    fit = fit_click_model(impressions, pages)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
    folder = training_dir / f"feedback-{stamp}"
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
    return folder, feedback_data_summary(fit, queries, judgments, folder)
