"""`make demo`: the closed loop, end to end, on the embedded defaults (SYNTHETIC shoppers).

1. Uses the running suite (or starts one, as `make run` does) and loads the demo store.
2. **Before**: simulated shoppers search the store as it serves now and send their
   impressions, clicks, carts and purchases to the feedback service.
3. **Retrain**: the trainer fits the click model on that feedback (position bias measured
   on the explored searches) and fine-tunes the serving cross-encoder into a CANDIDATE
   (``shopsense models retrain``).
4. **Experiment**: an A/B test, the serving versions against the candidate, with a new
   population of simulated shoppers; the guard rails watch it.
5. **Report**: per-arm rates with their intervals and p-values, printed and plotted
   (``var/reports/<experiment>.png``).
6. **Decide**: the candidate is promoted when its CTR or conversion rate is significantly
   higher and nothing is significantly lower; otherwise the experiment is stopped and the
   serving version stays.

With ``--continuous`` (``make demo DEMO_ARGS=--continuous``), steps 3 and 4 are the
trainer's own: its retraining schedule (``SHOPSENSE_RETRAIN_*``, on in the suite this demo
starts) notices the new feedback, retrains the cross-encoder, registers the candidate and
starts the A/B experiment itself; the demo only watches, then simulates, reports and
decides as above. A suite already running must have been started with the schedule on.

The shoppers are simulated (``shared.simulation.shoppers``): their hidden preferences are
the demo store's synthetic judgments, which never reach the suite. Every figure printed
is measured on them, and says so.
"""

from __future__ import annotations

import argparse
import contextlib
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import grpc
from rich.console import Console
from shopsense.experiments.v1 import experiment_service_pb2 as epb
from shopsense.experiments.v1 import experiment_service_pb2_grpc as epb_grpc
from shopsense.trainer.v1 import trainer_service_pb2 as tpb
from shopsense.trainer.v1 import trainer_service_pb2_grpc as tpb_grpc

from shared.cli.experiments import print_report
from shared.cli.retrain import describe_feedback, feedback_request, follow, offline_figures
from shared.cli.simulate import summary_table
from shared.data.dataset import Dataset
from shared.data.wands import load_wands
from shared.paths import state_dir
from shared.rpc.clients import open_channel
from shared.runtime.catalog import (
    DEMO_PRODUCTS,
    DEMO_SEED,
    demo_store_dir,
    ensure_demo_store,
    wait_for_intent,
)
from shared.runtime.experiments import stop_running
from shared.runtime.suite import Endpoints, Suite, is_serving, running_suite
from shared.settings import ClientSettings, GatewaySettings

console = Console(width=150)
# Fine-tuning on the feedback of a few thousand searches: one pass over the groups is
# about 3 minutes on 2 cores.
DEMO_HYPERPARAMETERS = {"epochs": "2", "eval_queries": "60"}
SIGNIFICANCE = 0.05
DECIDING = ("ctr", "conversion_rate")
# --continuous: how often the demo looks at the schedule, and how long it waits for it.
SCHEDULE_POLL_S = 2.0
SCHEDULE_WAIT_S = 600.0


def schedule_env(min_new_events: int) -> dict[str, str]:
    """The trainer's retraining schedule as --continuous turns it on in the suite it starts:
    the cross-encoder, from the demo store's catalog, with the demo's hyperparameters, its
    candidate in an A/B experiment with half the shoppers."""
    return {
        "SHOPSENSE_RETRAIN_MODELS": "cross_encoder",
        "SHOPSENSE_RETRAIN_CATALOG": str(demo_store_dir()),
        "SHOPSENSE_RETRAIN_MIN_NEW_EVENTS": str(min_new_events),
        "SHOPSENSE_RETRAIN_INTERVAL_S": "5",
        "SHOPSENSE_RETRAIN_HYPERPARAMETERS": ",".join(
            f"{k}={v}" for k, v in DEMO_HYPERPARAMETERS.items()
        ),
        "SHOPSENSE_RETRAIN_EXPERIMENT_SHARE": "0.5",
    }


@contextlib.contextmanager
def suite_for(args: argparse.Namespace, settings: ClientSettings) -> Iterator[Endpoints]:
    """The running suite (or one started here); with --continuous, one started with the
    retraining schedule on when none runs."""
    if not args.continuous or is_serving(settings.gateway_target):
        with running_suite(settings, console.print) as endpoints:
            yield endpoints
        return
    console.print("no suite running: starting one with the retraining schedule on")
    with Suite(extra_env=schedule_env(args.retrain_events)) as suite:
        yield suite.endpoints()


def _simulate(
    endpoints: Endpoints,
    args: argparse.Namespace,
    store: Dataset,
    seed: int,
    shoppers: int,
    prefix: str,
):
    from shared.simulation.shoppers import ShopperSimulator

    # Shoppers (and so event ids) of this run only: a second demo is not taken for a resend.
    simulator = ShopperSimulator(
        store, endpoints.gateway, endpoints.feedback, seed=seed, user_prefix=prefix
    )
    started = time.monotonic()
    summary = simulator.run(shoppers, args.searches, concurrency=args.concurrency)
    seconds = time.monotonic() - started
    searches = sum(c.searches for c in summary.arms.values())
    console.print(summary_table(summary, f"{shoppers} simulated shoppers, seed {seed} (SYNTHETIC)"))
    console.print(
        f"{searches} searches in {seconds:.0f} s ({searches / seconds:.1f}/s); events "
        f"accepted {summary.events_accepted}, rejected {summary.events_rejected}"
    )
    return summary


def decide(reply: epb.GetExperimentReportResponse) -> tuple[bool, str]:
    """Promote the second arm? Only on a significant gain in CTR or conversion, with no
    significant loss in any metric and no sample-ratio mismatch, above the minimum sample."""
    if reply.verdict.startswith("no verdict"):
        return False, reply.verdict
    if reply.sample_ratio_mismatch:
        return False, "sample ratio mismatch"
    treatment = reply.arms[1]
    gains, losses = [], []
    for metric in treatment.metrics:
        if metric.HasField("difference") and metric.p_value < SIGNIFICANCE:
            (gains if metric.difference.value > 0 else losses).append(metric.name)
    if losses:
        return False, f"{treatment.arm} is worse on {', '.join(losses)}"
    won = [name for name in gains if name in DECIDING]
    if not won:
        return False, "no significant gain in CTR or conversion"
    return True, f"{treatment.arm} is better on {', '.join(gains)}"


def run(args: argparse.Namespace) -> int:
    settings = ClientSettings.load()
    started = time.monotonic()
    with suite_for(args, settings) as endpoints:
        catalog = ensure_demo_store(endpoints.retrieval, DEMO_PRODUCTS, DEMO_SEED, console.print)
        store = load_wands(catalog)
        wait_for_intent(endpoints.intent, endpoints.retrieval)
        trainer = tpb_grpc.TrainerServiceStub(open_channel(endpoints.trainer))
        experiments = epb_grpc.ExperimentServiceStub(open_channel(endpoints.trainer))
        if args.continuous and not trainer.ListJobs(tpb.ListJobsRequest(), timeout=10).schedule:
            console.print(
                "[red]--continuous: the running trainer's retraining schedule is off[/red]; "
                "restart the suite with "
                + " ".join(f"{k}={v}" for k, v in schedule_env(args.retrain_events).items())
            )
            return 1
        for name in stop_running(experiments, "make demo"):
            console.print(f"stopped the running experiment {name}")
        serving = trainer.ListModelVersions(
            tpb.ListModelVersionsRequest(model="cross_encoder"), timeout=10
        ).serving_version
        console.rule("1. shoppers on the serving version")
        console.print(f"cross_encoder serving: {serving or 'none (features only)'}")
        since = datetime.now(UTC)
        run = since.strftime("%Y%m%d%H%M%S")
        _simulate(endpoints, args, store, args.seed, args.shoppers_before, f"demo{run}-before")

        if args.continuous:
            scheduled = _scheduled_experiment(trainer, experiments, since)
            if scheduled is None:
                return 1
            name, arm = scheduled
        else:
            created = _retrain_and_start(trainer, experiments, catalog, since, run)
            if created is None:
                return 1
            name, arm = created
        time.sleep(GatewaySettings.load().refresh_s + 1.0)  # the gateway re-reads it
        _simulate(endpoints, args, store, args.seed + 1, args.shoppers, f"demo{run}-ab")
        _report_and_decide(experiments, name, arm, serving)
    console.print(f"make demo finished in {time.monotonic() - started:.0f} s (SYNTHETIC shoppers)")
    return 0


def _retrain_and_start(
    trainer: tpb_grpc.TrainerServiceStub,
    experiments: epb_grpc.ExperimentServiceStub,
    catalog: Path,
    since: datetime,
    run: str,
) -> tuple[str, str] | None:
    """Steps 2 and 3 by hand: retrain on the feedback since ``since``, then create and
    start the A/B experiment; (experiment, the candidate's arm), None when training failed."""
    console.rule("2. retrain the cross-encoder on their feedback")
    try:
        reply = trainer.StartTraining(
            feedback_request(catalog, since, DEMO_HYPERPARAMETERS), timeout=300
        )
    except grpc.RpcError as exc:
        console.print(f"[red]{exc.code().name}[/red]: {exc.details()}")
        return None
    describe_feedback(reply.feedback_data, console)
    job = follow(trainer, reply.job_id, console)
    if job is None or job.state != tpb.JOB_STATE_SUCCEEDED:
        console.print(f"[red]training failed[/red]: {job.error if job else '?'}")
        return None
    version = job.result_version
    console.print(f"cross_encoder version {version} (CANDIDATE); {offline_figures(job)}")

    console.rule(f"3. A/B: serving against cross_encoder {version}")
    name = f"demo-ce{version}-{run}"
    definition = epb.Experiment(
        name=name,
        arms=[
            epb.Arm(name="serving", share=0.5),
            epb.Arm(
                name="retrained",
                share=0.5,
                models=epb.ModelPins(cross_encoder=str(version)),
            ),
        ],
    )
    experiments.CreateExperiment(epb.CreateExperimentRequest(experiment=definition), timeout=30)
    experiments.StartExperiment(epb.StartExperimentRequest(name=name), timeout=300)
    return name, "retrained"


def _scheduled_experiment(
    trainer: tpb_grpc.TrainerServiceStub,
    experiments: epb_grpc.ExperimentServiceStub,
    since: datetime,
) -> tuple[str, str] | None:
    """Steps 2 and 3 by the trainer's schedule (--continuous): wait for the job it starts
    on the new feedback, follow it, then wait for the experiment it starts with the
    candidate; (experiment, the candidate's arm), None when it did not get that far."""
    console.rule("2. the retraining schedule notices the new feedback")
    deadline = time.monotonic() + SCHEDULE_WAIT_S
    job = None
    last = ""
    while job is None:
        reply = trainer.ListJobs(tpb.ListJobsRequest(model="cross_encoder", limit=5), timeout=10)
        for check in reply.schedule:
            seen = f"{check.new_events:,} of {check.min_new_events:,} new events: {check.decision}"
            if seen != last:
                console.print(f"schedule: {seen}")
                last = seen
        job = next(
            (
                j
                for j in reply.jobs
                if j.trigger.startswith("schedule:") and j.created_time.ToDatetime(UTC) >= since
            ),
            None,
        )
        if job is None:
            if time.monotonic() > deadline:
                console.print(f"[red]the schedule started no job in {SCHEDULE_WAIT_S:.0f} s[/red]")
                return None
            time.sleep(SCHEDULE_POLL_S)
    console.print(f"job {job.job_id} started by the {job.trigger}")
    done = follow(trainer, job.job_id, console)
    if done is None or done.state != tpb.JOB_STATE_SUCCEEDED:
        console.print(f"[red]training failed[/red]: {done.error if done else '?'}")
        return None
    version = done.result_version
    console.print(f"cross_encoder version {version} (CANDIDATE); {offline_figures(done)}")

    name = f"retrain-cross_encoder-v{version}"
    console.rule(f"3. A/B started by the schedule: serving against cross_encoder {version}")
    # The schedule starts it at its next check after the job: a wait of its own, not what
    # is left of step 2's (a training run outlasts that).
    deadline = time.monotonic() + SCHEDULE_WAIT_S
    while True:
        trigger = trainer.GetJob(tpb.GetJobRequest(job_id=job.job_id), timeout=10).job.trigger
        if "no experiment" in trigger:
            console.print(f"[red]the schedule started no experiment[/red]: {trigger}")
            return None
        if "experiment " + name in trigger:
            break
        if time.monotonic() > deadline:
            console.print(f"[red]no experiment {name} in {SCHEDULE_WAIT_S:.0f} s[/red]")
            return None
        time.sleep(SCHEDULE_POLL_S)
    console.print(trigger)
    return name, "candidate"


def _report_and_decide(
    experiments: epb_grpc.ExperimentServiceStub, name: str, arm: str, serving: int
) -> None:
    """Steps 4 and 5: print and plot the report, then promote ``arm`` or stop."""
    console.rule("4. the report")
    report = experiments.GetExperimentReport(epb.GetExperimentReportRequest(name=name), timeout=120)
    png = state_dir() / "reports" / f"{name}.png"
    print_report(report, console, png)
    current = experiments.GetExperiment(epb.GetExperimentRequest(name=name), timeout=10).experiment
    version = next(a.models.cross_encoder for a in current.arms if a.name == arm)
    console.rule("5. decision")
    if current.state == epb.EXPERIMENT_STATE_STOPPED:
        console.print(f"stopped by a guard rail: {current.stop_reason}")
        console.print(f"cross_encoder {serving or 'none'} keeps serving")
        return
    promote, why = decide(report)
    if promote:
        experiments.PromoteArm(epb.PromoteArmRequest(name=name, arm=arm), timeout=300)
        console.print(f"[green]promoted[/green] ({why}): cross_encoder {version} serves")
    else:
        experiments.StopExperiment(
            epb.StopExperimentRequest(name=name, reason=f"make demo: {why}"), timeout=30
        )
        console.print(f"not promoted ({why}); cross_encoder {serving or 'none'} serves")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shoppers-before", type=int, default=400)
    parser.add_argument("--shoppers", type=int, default=800, help="in the experiment")
    parser.add_argument("--searches", type=int, default=3, help="searches per shopper")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument(
        "--continuous",
        action="store_true",
        help="let the trainer's retraining schedule retrain and start the A/B (off: by hand)",
    )
    parser.add_argument(
        "--retrain-events",
        type=int,
        default=10_000,
        help="--continuous: new feedback events that start a retrain (a suite started here)",
    )
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
