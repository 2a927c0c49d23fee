"""`shopsense experiments ...`: define, list, start and stop experiments (the trainer's
ExperimentService)."""

from __future__ import annotations

import argparse
from pathlib import Path

import grpc
from rich.console import Console
from rich.table import Table
from shopsense.experiments.v1 import experiment_service_pb2 as pb
from shopsense.experiments.v1 import experiment_service_pb2_grpc as pb_grpc

from shared.contracts.experiments import STATE_NAMES, STATES, to_proto
from shared.errors import InvalidArgument
from shared.experiments.assignment import read_file
from shared.rpc.clients import open_channel
from shared.settings import ClientSettings


def table(experiments: list[pb.Experiment]) -> Table:
    """One row an arm: what it pins and sets."""
    out = Table(title="experiments")
    for column in ("experiment", "type", "state", "arm", "share", "pins", "pipeline"):
        out.add_column(column)
    for experiment in experiments:
        kind = "interleaving" if experiment.type == pb.EXPERIMENT_TYPE_INTERLEAVING else "A/B"
        for number, arm in enumerate(experiment.arms):
            pins = ", ".join(
                f"{model} {getattr(arm.models, model)}"
                for model in ("intent_classifier", "text_encoder", "cross_encoder")
                if getattr(arm.models, model)
            )
            p = arm.pipeline
            settings = [
                f"rerank_depth {p.rerank_depth}" if p.rerank_depth else "",
                f"fusion {p.lexical_weight:g}/{p.dense_weight:g}"
                if p.lexical_weight or p.dense_weight
                else "",
                "reversed" if p.reverse_ranking else "",
            ]
            first = number == 0
            out.add_row(
                experiment.name if first else "",
                kind if first else "",
                STATE_NAMES.get(experiment.state, "?") if first else "",
                arm.name,
                f"{arm.share:g}",
                pins or "serving",
                ", ".join(s for s in settings if s) or "defaults",
            )
    return out


def report_table(reply: pb.GetExperimentReportResponse) -> Table:
    """Per arm and metric: the value with its 95% interval, and the difference."""
    out = Table(title=f"experiment {reply.experiment.name}")
    for column in (
        "arm",
        "shoppers",
        "searches",
        "impressions",
        "clicks",
        "metric",
        "value [95% CI]",
        "vs first arm",
        "p",
    ):
        out.add_column(column)
    for arm in reply.arms:
        for number, metric in enumerate(arm.metrics):
            e, d = metric.estimate, metric.difference
            first = number == 0
            out.add_row(
                arm.arm if first else "",
                str(arm.shoppers) if first else "",
                str(arm.searches) if first else "",
                str(arm.impressions) if first else "",
                str(arm.clicks) if first else "",
                metric.name,
                f"{e.value:.4g} [{e.low:.4g}, {e.high:.4g}]",
                f"{d.value:+.4g} [{d.low:+.4g}, {d.high:+.4g}] ({metric.relative_difference:+.1%})"
                if metric.HasField("difference")
                else "",
                f"{metric.p_value:.3g}" if metric.HasField("difference") else "",
            )
    return out


def write_chart(reply: pb.GetExperimentReportResponse, path: Path) -> Path:
    """A PNG: one panel a metric, each arm's value with its 95% interval."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [m.name for m in reply.arms[0].metrics] if reply.arms else []
    figure, axes = plt.subplots(1, max(1, len(names)), figsize=(4 * max(1, len(names)), 3.5))
    axes = list(axes) if len(names) > 1 else [axes]
    for axis, index in zip(axes, range(len(names)), strict=False):
        arms = [a.arm for a in reply.arms]
        values = [a.metrics[index].estimate for a in reply.arms]
        axis.bar(arms, [v.value for v in values], color="#8fb3d9")
        axis.errorbar(
            arms,
            [v.value for v in values],
            yerr=[[v.value - v.low for v in values], [v.high - v.value for v in values]],
            fmt="none",
            ecolor="black",
            capsize=6,
        )
        axis.set_title(names[index])
    figure.suptitle(f"{reply.experiment.name}: {reply.verdict}", fontsize=9)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def print_report(
    reply: pb.GetExperimentReportResponse, console: Console, png: Path | None = None
) -> None:
    """The report's table, interleaving result, sample-ratio check, verdict (and chart)."""
    console.print(report_table(reply))
    if reply.HasField("interleaving"):
        il = reply.interleaving
        wins = ", ".join(f"{arm} {count}" for arm, count in il.wins.items())
        console.print(
            f"interleaving: searches won {wins}, ties {il.ties}; preference share "
            f"{il.preference_share:.3f}, p = {il.p_value:.3g}"
        )
    console.print(
        f"sample ratio mismatch: p = {reply.srm_p_value:.3g}"
        f"{' [red]MISMATCH[/red]' if reply.sample_ratio_mismatch else ''}"
    )
    console.print(f"verdict: [bold]{reply.verdict}[/bold]")
    if png is not None:
        console.print(f"chart: {write_chart(reply, png)}")


def cmd_experiments(args: argparse.Namespace, console: Console) -> int:
    stub = pb_grpc.ExperimentServiceStub(
        open_channel(args.target or ClientSettings.load().trainer_target)
    )
    try:
        if args.experiments_command == "create":
            for experiment, start in read_file(Path(args.file)):
                message = to_proto(experiment)
                reply = stub.CreateExperiment(
                    pb.CreateExperimentRequest(experiment=message), timeout=30
                )
                state = STATE_NAMES.get(reply.experiment.state, "?")
                console.print(f"{reply.experiment.name}: {state}")
                # As when the trainer applies the file: only a DRAFT is started.
                if start and reply.experiment.state == pb.EXPERIMENT_STATE_DRAFT:
                    stub.StartExperiment(pb.StartExperimentRequest(name=message.name), timeout=300)
                    console.print(f"{message.name}: running")
        elif args.experiments_command == "list":
            state = STATES[args.state.upper()] if args.state else pb.EXPERIMENT_STATE_UNSPECIFIED
            reply = stub.ListExperiments(pb.ListExperimentsRequest(state=state), timeout=10)
            console.print(table(list(reply.experiments)) if reply.experiments else "none")
        elif args.experiments_command == "start":
            stub.StartExperiment(pb.StartExperimentRequest(name=args.name), timeout=300)
            console.print(f"{args.name}: running")
        elif args.experiments_command == "report":
            reply = stub.GetExperimentReport(
                pb.GetExperimentReportRequest(name=args.name, min_shoppers=args.min_shoppers),
                timeout=120,
            )
            print_report(reply, console, Path(args.png) if args.png else None)
        elif args.experiments_command == "promote":
            reply = stub.PromoteArm(pb.PromoteArmRequest(name=args.name, arm=args.arm), timeout=300)
            serving = ", ".join(f"{m} {v}" for m, v in sorted(reply.serving.items())) or "none"
            console.print(f"{args.name}: arm {args.arm} promoted (serving now: {serving})")
            if reply.note:
                console.print(reply.note)
        elif args.experiments_command == "stop":
            reply = stub.StopExperiment(
                pb.StopExperimentRequest(name=args.name, reason=args.reason or "by hand"),
                timeout=30,
            )
            console.print(f"{args.name}: stopped ({reply.experiment.stop_reason})")
    except grpc.RpcError as exc:
        console.print(f"[red]{exc.code().name}[/red]: {exc.details()}")
        return 1
    except InvalidArgument as exc:
        console.print(f"[red]INVALID_ARGUMENT[/red]: {exc}")
        return 1
    return 0


def add_parser(sub: argparse._SubParsersAction, console: Console) -> None:
    experiments = sub.add_parser("experiments", help="online experiments (trainer service)")
    experiments.add_argument("--target", help="trainer address (default SHOPSENSE_TRAINER_TARGET)")
    esub = experiments.add_subparsers(dest="experiments_command", required=True)
    create = esub.add_parser(
        "create", help="create the experiments of a TOML file (and start those with start=true)"
    )
    create.add_argument("file")
    listing = esub.add_parser("list", help="experiments and their arms")
    listing.add_argument("--state", choices=["draft", "running", "stopped"])
    start = esub.add_parser("start", help="start a DRAFT experiment")
    start.add_argument("name")
    report = esub.add_parser("report", help="per-arm rates with intervals, p-values, verdict")
    report.add_argument("name")
    report.add_argument("--min-shoppers", type=int, default=0, help="default 100")
    report.add_argument("--png", help="also write a chart here")
    promote = esub.add_parser(
        "promote", help="serve an arm's pinned versions and stop the experiment"
    )
    promote.add_argument("name")
    promote.add_argument("arm")
    stop = esub.add_parser("stop", help="stop the running experiment")
    stop.add_argument("name")
    stop.add_argument("--reason")
    experiments.set_defaults(func=lambda args: cmd_experiments(args, console))
