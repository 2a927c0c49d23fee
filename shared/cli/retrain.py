"""`shopsense models retrain`: fine-tune a serving model on the shoppers' feedback.

``--model cross_encoder`` (the default) asks the trainer for a cross_encoder job whose
judgments come from the feedback store (``StartTrainingRequest.feedback``: clicks, skips
and purchases, position bias removed by a fitted click model), prints what the judgments
rest on, follows the job and prints the new version's offline figures against the serving
one.

``--model sequence_recommender`` asks for a sequence_recommender job on each shopper's
views, carts and purchases in order, over the catalog and text vectors retrieval holds (no
catalog folder is needed), follows it and prints the candidate's Recall and NDCG at 10 and
50 on the held-out next events beside the serving version's on the same events.

``--schedule`` starts nothing: it prints the trainer's retraining schedule
(``SHOPSENSE_RETRAIN_*``, services/trainer/schedule.py), its latest check of each model,
and the recent jobs with what started them.
"""

from __future__ import annotations

import argparse
from datetime import datetime
from pathlib import Path

import grpc
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from shopsense.trainer.v1 import trainer_service_pb2 as tpb
from shopsense.trainer.v1 import trainer_service_pb2_grpc

from shared.contracts.common import set_timestamps
from shared.models.kinds import CROSS_ENCODER, SEQUENCE_RECOMMENDER
from shared.rpc.clients import open_channel
from shared.runtime.catalog import demo_store_dir

# The kinds that learn from feedback, as --model offers them.
RETRAIN_MODELS = (CROSS_ENCODER, SEQUENCE_RECOMMENDER)
# A sequence_recommender's offline figures (shared.training.job names them).
NEXT_ITEM_METRICS = ("recall@10", "ndcg@10", "recall@50", "ndcg@50")


def feedback_request(
    catalog: Path | None,
    since: datetime | None = None,
    overrides: dict[str, str] | None = None,
    publish: bool = False,
    min_impressions: int = 0,
    model: str = CROSS_ENCODER,
) -> tpb.StartTrainingRequest:
    """StartTraining for ``model`` on the feedback since ``since``; ``catalog`` is the
    cross_encoder's product.csv folder (a sequence_recommender reads retrieval's)."""
    source = tpb.FeedbackSource(enabled=True, min_impressions=min_impressions)
    set_timestamps(source, since=since)
    return tpb.StartTrainingRequest(
        model=model,
        dataset=str(catalog.resolve()) if catalog is not None and model == CROSS_ENCODER else "",
        hyperparameters=overrides or {},
        publish=publish,
        feedback=source,
    )


def describe_feedback(summary: tpb.FeedbackDataSummary, console: Console) -> None:
    how = "measured on explored searches" if summary.examination_measured else "assumed (1/k)"
    console.print(
        f"feedback: {summary.pages:,} result pages, {summary.impressions:,} impressions, "
        f"{summary.clicks:,} clicks -> {summary.queries} queries, {summary.judgments:,} "
        f"judgments ({summary.dataset})"
    )
    shown = " ".join(f"{x:.2f}" for x in summary.examination[:10])
    console.print(
        f"position bias {how}: examination(k) = k^-{summary.eta:.2f} "
        f"({summary.explored_clicks} clicks on explored pages); positions 1-10: {shown}"
    )


def follow(
    stub: trainer_service_pb2_grpc.TrainerServiceStub,
    job_id: str,
    console: Console,
    model: str = CROSS_ENCODER,
):
    """Watch a job to its end with a progress bar; return its last snapshot."""
    columns = (
        TextColumn("{task.description:<14}"),
        BarColumn(bar_width=30),
        TextColumn("{task.fields[stage]:<16}"),
        TimeElapsedColumn(),
    )
    job = None
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task(model, total=1.0, stage="queued")
        for update in stub.WatchJob(tpb.WatchJobRequest(job_id=job_id)):
            job = update.job
            stage = tpb.JobStage.Name(job.stage).removeprefix("JOB_STAGE_").lower()
            progress.update(task, completed=job.progress, stage=stage.replace("_", " "))
    return job


def offline_figures(job: tpb.Job) -> str:
    """The candidate's offline pipeline figures and the serving version's beside them."""
    shown = sorted(
        (k.removeprefix("offline/"), v)
        for k, v in job.metrics.items()
        if k.startswith(("offline/pipeline/", "offline/serving/"))
    )
    return "offline: " + ("  ".join(f"{k} {v:.4f}" for k, v in shown) or "none")


def next_item_table(job: tpb.Job) -> Table:
    """A sequence_recommender job's offline figures: the candidate's row, and the serving
    version's on the same held-out events when one serves."""
    cases = int(job.metrics.get("data/dev_cases", 0))
    table = Table(title=f"next event of {cases:,} shoppers held out (full ranking)")
    table.add_column("version")
    for name in NEXT_ITEM_METRICS:
        table.add_column(name.replace("recall", "Recall").replace("ndcg", "NDCG"), justify="right")
    rows = (
        (f"candidate {job.result_version}", "offline/next_item/"),
        ("serving", "offline/serving/next_item/"),
    )
    for label, prefix in rows:
        values = [job.metrics.get(prefix + name) for name in NEXT_ITEM_METRICS]
        if all(v is None for v in values):
            table.add_row(f"{label}: none", *("-" for _ in values))
        else:
            table.add_row(label, *(f"{v:.4f}" if v is not None else "-" for v in values))
    return table


def schedule_tables(reply: tpb.ListJobsResponse) -> tuple[Table, Table]:
    """The retraining schedule's latest checks, and the jobs with what started each."""
    checks = Table(title="retraining schedule (SHOPSENSE_RETRAIN_*)")
    for column in ("model", "checked", "new events", "since", "decision"):
        checks.add_column(column, justify="right" if column == "new events" else "left")
    for check in reply.schedule:
        checked = (
            check.checked_time.ToDatetime().strftime("%H:%M:%S")
            if check.HasField("checked_time")
            else "-"
        )
        since = (
            check.since_time.ToDatetime().isoformat(timespec="seconds")
            if check.HasField("since_time")
            else "the first event"
        )
        checks.add_row(
            check.model,
            checked,
            f"{check.new_events:,} of {check.min_new_events:,}",
            since,
            check.decision,
        )
    jobs = Table(title="recent jobs")
    for column in ("job", "model", "state", "version", "started by"):
        jobs.add_column(column)
    for job in reply.jobs:
        jobs.add_row(
            job.job_id[:8],
            job.model,
            tpb.JobState.Name(job.state).removeprefix("JOB_STATE_"),
            str(job.result_version or "-"),
            job.trigger or "StartTraining",
        )
    return checks, jobs


def cmd_retrain(args: argparse.Namespace, console: Console, target: str) -> int:
    stub = trainer_service_pb2_grpc.TrainerServiceStub(open_channel(target))
    if getattr(args, "schedule", False):
        try:
            reply = stub.ListJobs(tpb.ListJobsRequest(limit=10), timeout=10)
        except grpc.RpcError as exc:
            console.print(f"[red]{exc.code().name}[/red]: {exc.details()}")
            return 1
        if not reply.schedule:
            console.print("the retraining schedule is off (SHOPSENSE_RETRAIN_MODELS is empty)")
        for table in schedule_tables(reply):
            console.print(table)
        return 0
    model = getattr(args, "model", None) or CROSS_ENCODER
    sequence = model == SEQUENCE_RECOMMENDER
    catalog = None if sequence else Path(args.data) if args.data else demo_store_dir()
    if sequence and args.data:
        console.print(f"--data: not read for a {model} (it reads retrieval's catalog)")
    overrides = dict(item.split("=", 1) for item in args.set or [])
    since = datetime.fromisoformat(args.since) if args.since else None
    try:
        started = stub.StartTraining(
            feedback_request(catalog, since, overrides, args.publish, model=model), timeout=300
        )
        if sequence:
            data = started.feedback_data
            console.print(
                f"feedback: {data.shoppers:,} shoppers' histories, {data.events:,} events over "
                f"{data.products:,} products, {data.dev_eligible:,} with a held-out next "
                f"product ({data.dataset})"
            )
        else:
            describe_feedback(started.feedback_data, console)
        job = follow(stub, started.job_id, console, model)
    except grpc.RpcError as exc:
        console.print(f"[red]{exc.code().name}[/red]: {exc.details()}")
        return 1
    if job is None or job.state != tpb.JOB_STATE_SUCCEEDED:
        console.print(
            f"[red]job {started.job_id} did not succeed[/red]: {job.error if job else ''}"
        )
        return 1
    console.print(
        f"{model} version {job.result_version} registered"
        + (" and serving" if args.publish else " (a CANDIDATE: experiment, then promote)")
    )
    if sequence:
        console.print(next_item_table(job))
        return 0
    offline = {
        k: v
        for k, v in sorted(job.metrics.items())
        if k.startswith(("offline/pipeline/", "offline/serving/"))
    }
    if offline:
        console.print(
            "  ".join(f"{k.removeprefix('offline/')} {v:.4f}" for k, v in offline.items())
        )
    return 0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model",
        choices=RETRAIN_MODELS,
        default=CROSS_ENCODER,
        help="the model to retrain (default: cross_encoder)",
    )
    parser.add_argument(
        "--data",
        help="the catalog folder (product.csv; default: the demo store); cross_encoder only",
    )
    parser.add_argument("--since", help="only feedback from this ISO time on")
    parser.add_argument("--publish", action="store_true", help="serve it once it passes")
    parser.add_argument("--set", action="append", metavar="NAME=VALUE", help="hyperparameter")
    parser.add_argument(
        "--schedule",
        action="store_true",
        help="start nothing: print the retraining schedule's checks and the recent jobs",
    )
