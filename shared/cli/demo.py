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

The shoppers are simulated (``shared.simulation.shoppers``): their hidden preferences are
the demo store's synthetic judgments, which never reach the suite. Every figure printed
is measured on them, and says so.
"""

from __future__ import annotations

import argparse
import time
from datetime import UTC, datetime

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
from shared.runtime.catalog import DEMO_PRODUCTS, DEMO_SEED, ensure_demo_store, wait_for_intent
from shared.runtime.experiments import stop_running
from shared.runtime.suite import Endpoints, running_suite
from shared.settings import ClientSettings, GatewaySettings

console = Console(width=150)
# Fine-tuning on the feedback of a few thousand searches: one pass over the groups is
# about 3 minutes on 2 cores.
DEMO_HYPERPARAMETERS = {"epochs": "2", "eval_queries": "60"}
SIGNIFICANCE = 0.05
DECIDING = ("ctr", "conversion_rate")


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
    with running_suite(settings, console.print) as endpoints:
        catalog = ensure_demo_store(endpoints.retrieval, DEMO_PRODUCTS, DEMO_SEED, console.print)
        store = load_wands(catalog)
        wait_for_intent(endpoints.intent, endpoints.retrieval)
        trainer = tpb_grpc.TrainerServiceStub(open_channel(endpoints.trainer))
        experiments = epb_grpc.ExperimentServiceStub(open_channel(endpoints.trainer))
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

        console.rule("2. retrain the cross-encoder on their feedback")
        try:
            reply = trainer.StartTraining(
                feedback_request(catalog, since, DEMO_HYPERPARAMETERS), timeout=300
            )
        except grpc.RpcError as exc:
            console.print(f"[red]{exc.code().name}[/red]: {exc.details()}")
            return 1
        describe_feedback(reply.feedback_data, console)
        job = follow(trainer, reply.job_id, console)
        if job is None or job.state != tpb.JOB_STATE_SUCCEEDED:
            console.print(f"[red]training failed[/red]: {job.error if job else '?'}")
            return 1
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
        time.sleep(GatewaySettings.load().refresh_s + 1.0)  # the gateway re-reads it
        _simulate(endpoints, args, store, args.seed + 1, args.shoppers, f"demo{run}-ab")

        console.rule("4. the report")
        report = experiments.GetExperimentReport(
            epb.GetExperimentReportRequest(name=name), timeout=120
        )
        png = state_dir() / "reports" / f"{name}.png"
        print_report(report, console, png)
        current = experiments.GetExperiment(
            epb.GetExperimentRequest(name=name), timeout=10
        ).experiment
        console.rule("5. decision")
        if current.state == epb.EXPERIMENT_STATE_STOPPED:
            console.print(f"stopped by a guard rail: {current.stop_reason}")
            console.print(f"cross_encoder {serving or 'none'} keeps serving")
        else:
            promote, why = decide(report)
            if promote:
                experiments.PromoteArm(
                    epb.PromoteArmRequest(name=name, arm="retrained"), timeout=300
                )
                console.print(f"[green]promoted[/green] ({why}): cross_encoder {version} serves")
            else:
                experiments.StopExperiment(
                    epb.StopExperimentRequest(name=name, reason=f"make demo: {why}"), timeout=30
                )
                console.print(f"not promoted ({why}); cross_encoder {serving or 'none'} serves")
    console.print(f"make demo finished in {time.monotonic() - started:.0f} s (SYNTHETIC shoppers)")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shoppers-before", type=int, default=400)
    parser.add_argument("--shoppers", type=int, default=800, help="in the experiment")
    parser.add_argument("--searches", type=int, default=3, help="searches per shopper")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--concurrency", type=int, default=4)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
