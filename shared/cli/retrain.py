"""`shopsense models retrain`: fine-tune the serving cross-encoder on the shoppers' feedback.

Asks the trainer for a cross_encoder job whose judgments come from the feedback store
(``StartTrainingRequest.feedback``: clicks, skips and purchases, position bias removed by
a fitted click model), prints what the judgments rest on, follows the job and prints the
new version's offline figures against the serving one.
"""

from __future__ import annotations

import argparse
from datetime import datetime
from pathlib import Path

import grpc
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from shopsense.trainer.v1 import trainer_service_pb2 as tpb
from shopsense.trainer.v1 import trainer_service_pb2_grpc

from shared.contracts.common import set_timestamps
from shared.rpc.clients import open_channel
from shared.runtime.catalog import demo_store_dir


def feedback_request(
    catalog: Path,
    since: datetime | None = None,
    overrides: dict[str, str] | None = None,
    publish: bool = False,
    min_impressions: int = 0,
) -> tpb.StartTrainingRequest:
    source = tpb.FeedbackSource(enabled=True, min_impressions=min_impressions)
    set_timestamps(source, since=since)
    return tpb.StartTrainingRequest(
        model="cross_encoder",
        dataset=str(catalog),
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


def follow(stub: trainer_service_pb2_grpc.TrainerServiceStub, job_id: str, console: Console):
    """Watch a job to its end with a progress bar; return its last snapshot."""
    columns = (
        TextColumn("{task.description:<14}"),
        BarColumn(bar_width=30),
        TextColumn("{task.fields[stage]:<16}"),
        TimeElapsedColumn(),
    )
    job = None
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task("cross_encoder", total=1.0, stage="queued")
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


def cmd_retrain(args: argparse.Namespace, console: Console, target: str) -> int:
    stub = trainer_service_pb2_grpc.TrainerServiceStub(open_channel(target))
    catalog = Path(args.data) if args.data else demo_store_dir()
    overrides = dict(item.split("=", 1) for item in args.set or [])
    since = datetime.fromisoformat(args.since) if args.since else None
    try:
        started = stub.StartTraining(
            feedback_request(catalog, since, overrides, args.publish), timeout=300
        )
        describe_feedback(started.feedback_data, console)
        job = follow(stub, started.job_id, console)
    except grpc.RpcError as exc:
        console.print(f"[red]{exc.code().name}[/red]: {exc.details()}")
        return 1
    if job is None or job.state != tpb.JOB_STATE_SUCCEEDED:
        console.print(
            f"[red]job {started.job_id} did not succeed[/red]: {job.error if job else ''}"
        )
        return 1
    offline = {
        k: v
        for k, v in sorted(job.metrics.items())
        if k.startswith(("offline/pipeline/", "offline/serving/"))
    }
    console.print(
        f"cross_encoder version {job.result_version} registered"
        + (" and serving" if args.publish else " (a CANDIDATE: experiment, then promote)")
    )
    if offline:
        console.print(
            "  ".join(f"{k.removeprefix('offline/')} {v:.4f}" for k, v in offline.items())
        )
    return 0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", help="the catalog folder (product.csv; default: the demo store)")
    parser.add_argument("--since", help="only feedback from this ISO time on")
    parser.add_argument("--publish", action="store_true", help="serve it once it passes")
    parser.add_argument("--set", action="append", metavar="NAME=VALUE", help="hyperparameter")
