"""`make train`: fine-tune the three models on the demo store through the trainer service.

Uses the running suite (or starts one), loads the demo store, writes its synthetic
training queries (the held-out eval queries excluded), then asks the TrainerService for
one job per model, in this order:

1. ``cross_encoder`` (graded judgments + BM25 hard negatives);
2. ``text_encoder`` (contrastive, BM25 hard negatives, distilled from the new
   cross-encoder); publishing it starts the catalog reindex, watched to the swap;
3. ``intent_classifier`` (labelled queries + pseudo-queries from titles).

``--set cross_encoder.layers=N`` trains a pruned cross-encoder: the serving one's first N
layers, distilled from it (``distill_weight``), e.g. ``--models cross_encoder --set
cross_encoder.layers=3 --set cross_encoder.freeze_layers=1 --set
cross_encoder.distill_weight=1``.

Each job is watched with a progress bar and published when its export checks and offline
evaluation pass. Ends with the registry's table and the report (``make eval`` prints it
again with the held-out figures).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from shopsense.retrieval.v1 import retrieval_service_pb2 as rpb
from shopsense.retrieval.v1 import retrieval_service_pb2_grpc
from shopsense.trainer.v1 import trainer_service_pb2 as tpb
from shopsense.trainer.v1 import trainer_service_pb2_grpc

from shared.paths import state_dir
from shared.rpc.clients import open_channel
from shared.runtime.catalog import DEMO_PRODUCTS, DEMO_SEED, ensure_demo_store, wait_for_intent
from shared.runtime.suite import Endpoints, running_suite
from shared.settings import ClientSettings, TrainerSettings

console = Console(width=160)
ORDER = ("cross_encoder", "text_encoder", "intent_classifier")
DEMO_TRAINING_QUERIES = 3000


@dataclass(frozen=True)
class Trained:
    """One finished job."""

    model: str
    version: int
    seconds: float
    dev_metrics: Mapping[str, float]


class TrainingFailed(RuntimeError):
    """A job ended FAILED or CANCELLED."""


def training_store_dir(products: int = DEMO_PRODUCTS, seed: int = DEMO_SEED) -> Path:
    """Where the demo store's synthetic training queries are written."""
    return state_dir() / f"demo-train-{products}-s{seed}"


def ensure_training_store(products: int, seed: int, say: Callable[[str], None]) -> Path:
    """The synthetic training dataset of the demo store (written once)."""
    from shared.data.synthetic import write_synthetic_training_store

    folder = training_store_dir(products, seed)
    if not (folder / "label.csv").is_file():
        say(f"writing the SYNTHETIC training queries of the demo store to {folder}")
        write_synthetic_training_store(
            folder, n_products=products, seed=seed, n_queries=DEMO_TRAINING_QUERIES
        )
    return folder


def _stage(job: tpb.Job) -> str:
    return tpb.JobStage.Name(job.stage).removeprefix("JOB_STAGE_").lower().replace("_", " ")


def run_job(
    stub: trainer_service_pb2_grpc.TrainerServiceStub,
    request: tpb.StartTrainingRequest,
    progress: Progress,
) -> tpb.Job:
    """Start one job and follow it to its end with a progress bar."""
    started = stub.StartTraining(request, timeout=120)
    task = progress.add_task(request.model, total=1.0, stage="queued", info="")
    job = started.job
    for update in stub.WatchJob(tpb.WatchJobRequest(job_id=started.job_id)):
        job = update.job
        shown = {k: v for k, v in job.metrics.items() if "loss" in k or k.startswith("dev")}
        info = " ".join(f"{k} {v:.3f}" for k, v in sorted(shown.items())[:4])
        steps = f"step {job.step}/{job.total_steps} " if job.total_steps else ""
        progress.update(
            task, completed=job.progress, stage=_stage(job), info=f"{steps}{info}".strip()
        )
    if job.state != tpb.JOB_STATE_SUCCEEDED:
        raise TrainingFailed(
            f"{request.model}: job {job.job_id} ended {tpb.JobState.Name(job.state)}: {job.error}"
        )
    progress.update(task, completed=1.0, stage=f"version {job.result_version} published")
    return job


def wait_for_reindex(retrieval: str, version: int, progress: Progress) -> None:
    """Follow the catalog reindex to the new text_encoder version until it is swapped in."""
    stub = retrieval_service_pb2_grpc.RetrievalServiceStub(open_channel(retrieval))
    task = progress.add_task("catalog reindex", total=1.0, stage="embedding", info="")
    while True:
        status = stub.GetReindexStatus(rpb.GetReindexStatusRequest(), timeout=10).status
        total = max(1, status.products_total)
        progress.update(
            task,
            completed=status.products_embedded / total,
            info=f"{status.products_embedded}/{status.products_total} products",
        )
        if status.index_version == str(version):
            progress.update(task, completed=1.0, stage=f"serving version {version}")
            return
        if status.state in (rpb.REINDEX_STATE_FAILED, rpb.REINDEX_STATE_CANCELLED):
            raise TrainingFailed(f"catalog reindex to version {version} failed: {status.error}")
        if status.state != rpb.REINDEX_STATE_RUNNING:  # not started (retrieval was down)
            stub.ReindexCatalog(
                rpb.ReindexCatalogRequest(text_encoder_version=str(version)), timeout=30
            )
        time.sleep(1.0)


def train_all(
    endpoints: Endpoints,
    dataset: Path,
    models: Sequence[str] = ORDER,
    overrides: Mapping[str, Mapping[str, str]] | None = None,
) -> list[Trained]:
    """Train, publish and (for the text encoder) reindex each model in turn."""
    stub = trainer_service_pb2_grpc.TrainerServiceStub(open_channel(endpoints.trainer))
    done: list[Trained] = []
    columns = (
        TextColumn("{task.description:<18}"),
        BarColumn(bar_width=30),
        TextColumn("{task.percentage:>3.0f}%"),
        TimeElapsedColumn(),
        TextColumn("{task.fields[stage]:<22} {task.fields[info]}"),
    )
    with Progress(*columns, console=console) as progress:
        for model in models:
            teacher = 0
            pruned = model == "cross_encoder" and (overrides or {}).get(model, {}).get("layers")
            if model == "text_encoder" or pruned:
                teacher = stub.ListModelVersions(
                    tpb.ListModelVersionsRequest(model="cross_encoder"), timeout=10
                ).serving_version
            job = run_job(
                stub,
                tpb.StartTrainingRequest(
                    model=model,
                    dataset=str(dataset.resolve()),
                    hyperparameters=dict((overrides or {}).get(model, {})),
                    teacher_version=teacher,
                    publish=True,
                ),
                progress,
            )
            seconds = job.finished_time.ToDatetime() - job.started_time.ToDatetime()
            dev = {k: v for k, v in job.metrics.items() if not k.startswith("offline")}
            done.append(Trained(model, job.result_version, seconds.total_seconds(), dev))
            if model == "text_encoder":
                wait_for_reindex(endpoints.retrieval, job.result_version, progress)
    return done


def parse_overrides(items: Sequence[str]) -> dict[str, dict[str, str]]:
    """``model.name=value`` items -> {model: {name: value}}; a bare ``name=value`` applies
    to every model."""
    out: dict[str, dict[str, str]] = {m: {} for m in ORDER}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"--set {item!r}: expected name=value or model.name=value")
        model, dot, name = key.rpartition(".")
        for target in [model] if dot else ORDER:
            if target not in out:
                raise SystemExit(f"--set {item!r}: unknown model {target!r}")
            out[target][name] = value
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="*", default=list(ORDER), choices=ORDER)
    parser.add_argument("--products", type=int, default=DEMO_PRODUCTS)
    parser.add_argument("--seed", type=int, default=DEMO_SEED)
    parser.add_argument("--set", action="append", default=[], metavar="[MODEL.]NAME=VALUE")
    args = parser.parse_args(argv)
    overrides = parse_overrides(args.set)
    started = time.monotonic()
    with running_suite(ClientSettings.load(), console.print) as endpoints:
        ensure_demo_store(endpoints.retrieval, args.products, args.seed, console.print)
        wait_for_intent(endpoints.intent, endpoints.retrieval)
        dataset = ensure_training_store(args.products, args.seed, console.print)
        trained = train_all(endpoints, dataset, args.models, overrides)
        from shared.training.report import print_report

        print_report(endpoints.trainer, console, TrainerSettings.load().training_dir)
    for t in trained:
        console.print(f"{t.model}: version {t.version} trained in {t.seconds:.0f} s")
    console.print(f"make train finished in {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
