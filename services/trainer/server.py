"""TrainerService: training jobs in worker processes, the model registry, publish and rollback.

Bad input is refused in the RPC, before a job exists: unknown model, hyperparameters unknown
or out of range, a dataset that is missing, empty, corrupt or lacks a class (fast checks, the
same code the worker runs). A job's worker reports back to ``JobRunner``; when it returns a
result, :meth:`ModelPublisher.register` numbers and registers the version (CANDIDATE) and, on
request, publishes it.

Publishing is all or nothing: the export is installed as ``<repository>/<model>/<version>/``,
Triton loads it next to the serving version, and only once it is READY does the registry
switch (one transaction); then the old version is unloaded (text_encoder: kept while retrieval
re-embeds the catalog with the new version). If Triton refuses, the old version keeps serving
and the registry is unchanged.
"""

from __future__ import annotations

import shutil
import threading
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc
import sqlalchemy
import structlog
from shopsense.experiments.v1 import experiment_service_pb2_grpc as experiment_pb_grpc
from shopsense.trainer.v1 import trainer_service_pb2 as pb
from shopsense.trainer.v1 import trainer_service_pb2_grpc as pb_grpc

from services.trainer.experiments import SERVICE_NAME as EXPERIMENT_SERVICE_NAME
from services.trainer.experiments import ExperimentServicer, experiment_of
from services.trainer.jobs import JobRunner, register_result
from shared.contracts.common import timestamp_or_none
from shared.errors import FailedPrecondition, InvalidArgument, ShopsenseError, Unavailable
from shared.experiments.guardrails import Limits
from shared.models.kinds import MODEL_KINDS, TEXT_ENCODER
from shared.models.versions import ascii_digits
from shared.rpc.server import ServerHandle, build_service
from shared.settings import TrainerSettings
from shared.storage.database import create_db_engine
from shared.storage.experiments import ExperimentStore
from shared.storage.registry import (
    JobStage,
    ModelRegistry,
    ModelVersion,
    TrainingJob,
    VersionStatus,
)

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["TrainerService"].full_name
MAX_LIST_JOBS = 1000
DEFAULT_LIST_JOBS = 20
# Seconds a watcher sleeps between checks that its client is still there.
WATCH_POLL_S = 1.0
# Feedback training: a query's impressions before it is trained on, and the fewest queries
# a job trains on (below that, a version would learn from noise).
DEFAULT_MIN_IMPRESSIONS = 10
MIN_FEEDBACK_QUERIES = 5
# Seconds between reconcile attempts while Triton is starting.
RECONCILE_RETRY_S = 2.0

_log = structlog.get_logger("shopsense.trainer")

# Reindex trigger: text_encoder version -> None, raising when retrieval did not accept it.
Reindexer = Callable[[int], None]


def job_message(job: TrainingJob) -> pb.Job:
    """The registry row as the proto's Job."""
    message = pb.Job(
        job_id=job.job_id,
        model=job.model,
        state=pb.JobState.Value(f"JOB_STATE_{job.state}"),
        stage=pb.JobStage.Value(f"JOB_STAGE_{job.stage}"),
        progress=job.progress,
        step=job.step,
        total_steps=job.total_steps,
        epoch=job.epoch,
        metrics=job.metrics,
        error=job.error,
        result_version=job.result_version or 0,
        dataset=job.dataset,
        hyperparameters=job.hyperparameters,
        parent_version=job.parent_version or 0,
        teacher_version=job.teacher_version or 0,
        publish=job.publish,
        cancel_requested=job.cancel_requested,
    )
    for name, value in (
        ("created_time", job.created_at),
        ("started_time", job.started_at),
        ("finished_time", job.finished_at),
    ):
        stamp = timestamp_or_none(value)
        if stamp is not None:
            getattr(message, name).CopyFrom(stamp)
    return message


def export_summary(report: Mapping[str, Any]) -> pb.ExportSummary:
    """Precision, largest difference and agreement out of an export report."""
    served = str(report.get("served", report.get("precision", "")))
    diff = report.get(
        "served_max_abs_diff", report.get(f"{served}_max_abs_diff", report.get("max_abs_diff"))
    )
    agreement_metrics = report.get("agreement") or {}
    bar = report.get("bar") or {}
    agreement = 0.0
    if isinstance(agreement_metrics, Mapping):
        metric = next(iter(bar), None) if isinstance(bar, Mapping) else None
        if metric is not None and metric in agreement_metrics:
            agreement = float(agreement_metrics[metric])
        elif agreement_metrics:
            agreement = min(float(v) for v in agreement_metrics.values())
    elif isinstance(agreement_metrics, int | float):
        agreement = float(agreement_metrics)
    return pb.ExportSummary(
        precision=served,
        max_abs_diff=float(diff or 0.0),
        agreement=agreement,
        engine=str(report.get("engine", "onnxruntime" if served else "")),
    )


def version_message(row: ModelVersion) -> pb.ModelVersion:
    """The registry row as the proto's ModelVersion."""
    message = pb.ModelVersion(
        model=row.model,
        version=row.version,
        parent_version=row.parent_version or 0,
        data_fingerprint=row.data_fingerprint,
        hyperparameters=row.hyperparameters,
        dev_metrics=row.dev_metrics,
        offline_metrics=row.offline_metrics,
        training_seconds=row.training_seconds,
        export=export_summary(row.export_report),
        status=pb.VersionStatus.Value(f"VERSION_STATUS_{row.status}"),
        job_id=row.job_id,
    )
    for name, value in (("created_time", row.created_at), ("served_time", row.served_at)):
        stamp = timestamp_or_none(value)
        if stamp is not None:
            getattr(message, name).CopyFrom(stamp)
    return message


def check_model(model: str, field: str = "model") -> None:
    """InvalidArgument naming ``field`` unless ``model`` is a known model kind."""
    if not model:
        raise InvalidArgument(f"{field}: required, one of {', '.join(MODEL_KINDS)}")
    if model not in MODEL_KINDS:
        raise InvalidArgument(
            f"{field}: unknown model kind {model!r}; one of {', '.join(MODEL_KINDS)}"
        )


class PublishOutcome:
    """What a publish or rollback did."""

    def __init__(
        self,
        version: ModelVersion,
        previous: ModelVersion | None,
        reindex_started: bool = False,
        note: str = "",
    ) -> None:
        self.version = version
        self.previous = previous
        self.reindex_started = reindex_started
        self.note = note


class ModelPublisher:
    """Registers results and moves versions onto Triton, one model at a time.

    ``repository`` is Triton's model repository folder as this machine sees it.
    """

    def __init__(
        self,
        registry: ModelRegistry,
        repository: Path,
        triton_url: str,
        reindex: Reindexer | None = None,
    ) -> None:
        self._registry = registry
        self._repository = Path(repository)
        self._triton_url = triton_url
        self._reindex = reindex
        self._locks: dict[str, threading.Lock] = {model: threading.Lock() for model in MODEL_KINDS}
        # Model -> versions a running experiment pins: kept loaded next to the serving one.
        self.pinned: Callable[[str], set[int]] = lambda model: set()

    # --- versions in the repository ------------------------------------------------------

    def exported_folder(self, model: str) -> Path | None:
        """The folder of what serves ``model`` now: its registered serving version's Triton
        folder (or export), else the repository's highest version (the base model)."""
        row = self._registry.serving_version(model)
        if row is not None:
            folder = self._repository / model / str(row.version)
            if folder.is_dir():
                return folder
            return Path(row.export_dir) if row.export_dir else None
        model_dir = self._repository / model
        versions = (
            sorted(
                (p for p in model_dir.iterdir() if ascii_digits(p.name) and p.is_dir()),
                key=lambda p: int(p.name),
            )
            if model_dir.is_dir()
            else []
        )
        return versions[-1] if versions else None

    def serving_exports(self) -> dict[str, str]:
        """Kind -> folder of the version serving now, for offline evaluation."""
        out: dict[str, str] = {}
        for model in MODEL_KINDS:
            folder = self.exported_folder(model)
            if folder is not None:
                out[model] = str(folder)
        return out

    def register(
        self,
        job: TrainingJob,
        result: Mapping[str, Any],
        set_stage: Callable[[JobStage], None],
    ) -> tuple[int, str]:
        """``JobRunner``'s ``on_result``: register the next version, publish it if asked."""
        from shared.training.publish import next_version

        set_stage(JobStage.PUBLISHING)
        with self._locks[job.model]:
            version = max(
                self._registry.max_version(job.model) + 1,
                next_version(self._repository, job.model),
            )
            register_result(self._registry, job, result, version)
        _log.info("version_registered", model=job.model, version=version, job_id=job.job_id)
        if not job.publish:
            return version, ""
        outcome = self.publish(job.model, version)
        return version, outcome.note

    # --- publish and rollback ------------------------------------------------------------

    def publish(self, model: str, version: int) -> PublishOutcome:
        """Serve ``version`` of ``model``; the serving one becomes RETIRED."""
        return self._serve(model, version, VersionStatus.RETIRED)

    def rollback(self, model: str, to_version: int = 0) -> PublishOutcome:
        """Serve an earlier version again; the serving one becomes ROLLED_BACK."""
        current = self._registry.serving_version(model)
        if current is None:
            raise FailedPrecondition(f"model: {model} has no registered serving version")
        if to_version == 0:
            previous = self._registry.previous_serving(model)
            if previous is None:
                raise FailedPrecondition(
                    f"to_version: no version of {model} served before version {current.version}"
                )
            to_version = previous.version
        elif to_version == current.version:
            raise FailedPrecondition(f"to_version: version {to_version} of {model} is serving")
        return self._serve(model, to_version, VersionStatus.ROLLED_BACK)

    def _serve(self, model: str, version: int, previous_becomes: VersionStatus) -> PublishOutcome:
        from shared.training import publish as triton

        with self._locks[model]:
            target = self._registry.get_version(model, version)
            current = self._registry.serving_version(model)
            if current is not None and current.version == version:
                return PublishOutcome(target, None, note=f"version {version} already serves")
            installed_now = self._install(model, version, target)
            try:
                loaded = triton.loaded_versions(self._triton_url, model)
            except Exception as exc:
                self._undo_install(model, version, installed_now)
                raise Unavailable(f"triton: unreachable at {self._triton_url}: {exc}") from exc
            old = [current.version] if current is not None else loaded
            try:
                triton.load_versions(
                    self._triton_url,
                    model,
                    sorted({version, *old}),
                    repository=self._repository,
                )
            except triton.ModelLoadError as exc:
                self._undo_install(model, version, installed_now)
                raise FailedPrecondition(f"version: {exc}") from exc
            except Exception as exc:
                self._undo_install(model, version, installed_now)
                raise Unavailable(f"triton: {exc}") from exc

            serving, previous = self._registry.promote(
                model, version, previous_becomes=previous_becomes
            )
            _log.info(
                "version_serving",
                model=model,
                version=version,
                previous=previous.version if previous else None,
            )
            notes: list[str] = []
            reindex_started = False
            if model == TEXT_ENCODER:
                # Retrieval's index holds vectors of the old version: keep it loaded until
                # the catalog is re-embedded with the new one.
                reindex_started, note = self._start_reindex(version)
                if note:
                    notes.append(note)
            elif set(old) - {version, *self.pinned(model)}:
                try:
                    triton.load_versions(
                        self._triton_url,
                        model,
                        sorted({version, *self.pinned(model)}),
                        repository=self._repository,
                    )
                except Exception as exc:
                    notes.append(f"the previous version is still loaded: {exc}")
            return PublishOutcome(serving, previous, reindex_started, "; ".join(notes))

    def _install(self, model: str, version: int, row: ModelVersion | None = None) -> bool:
        """Put the version's folder into the repository from its export unless it is there;
        True when installed now. FailedPrecondition when the export is gone."""
        from shared.training import publish as triton

        if (self._repository / model / str(version)).is_dir():
            return False
        row = row or self._registry.get_version(model, version)
        export_dir = Path(row.export_dir)
        if not row.export_dir or not export_dir.is_dir():
            raise FailedPrecondition(
                f"version: the export of {model} version {version} is gone "
                f"({row.export_dir or 'no folder recorded'}); retrain it"
            )
        triton.install_version(self._repository, model, version, export_dir)
        return True

    def _undo_install(self, model: str, version: int, installed_now: bool) -> None:
        if not installed_now:
            return
        from shared.training.publish import remove_version

        try:
            remove_version(self._repository, model, version)
        except OSError as exc:
            _log.warning("undo_install_failed", model=model, version=version, error=str(exc))

    def _start_reindex(self, version: int) -> tuple[bool, str]:
        if self._reindex is None:
            return False, f"start the catalog reindex with text_encoder version {version}"
        try:
            self._reindex(version)
        except Exception as exc:
            message = exc.details() if isinstance(exc, grpc.RpcError) else str(exc)
            _log.warning("reindex_not_started", version=version, error=message)
            return (
                False,
                f"retrieval did not start the catalog reindex ({message}): start it with "
                f"text_encoder version {version}",
            )
        return True, ""

    def load_alongside(self, model: str, versions: set[int]) -> None:
        """Install and load ``versions`` of ``model`` on Triton next to what it serves
        (an experiment's pins). FailedPrecondition when a version's export is gone or
        does not load; Unavailable when Triton cannot be reached."""
        from shared.training import publish as triton

        with self._locks[model]:
            installed = [version for version in sorted(versions) if self._install(model, version)]
            try:
                loaded = set(triton.loaded_versions(self._triton_url, model))
                triton.load_versions(
                    self._triton_url,
                    model,
                    sorted(loaded | versions),
                    repository=self._repository,
                )
            except triton.ModelLoadError as exc:
                for version in installed:
                    self._undo_install(model, version, True)
                raise FailedPrecondition(f"{model}: {exc}") from exc
            except Exception as exc:
                for version in installed:
                    self._undo_install(model, version, True)
                raise Unavailable(f"triton: {exc}") from exc

    # --- reconcile ------------------------------------------------------------------------

    def reconcile(self) -> list[str]:
        """Make Triton serve each model's registered serving version; the models not done."""
        from shared.training import publish as triton

        pending: list[str] = []
        for row in self._registry.serving_versions():
            with self._locks.setdefault(row.model, threading.Lock()):
                try:
                    self._install(row.model, row.version, row)
                    loaded = triton.loaded_versions(self._triton_url, row.model)
                    wanted = {row.version, *self.pinned(row.model)}
                    if not wanted <= set(loaded):
                        for version in sorted(wanted - {row.version}):
                            self._install(row.model, version)
                        triton.load_versions(
                            self._triton_url,
                            row.model,
                            sorted(wanted),
                            repository=self._repository,
                        )
                except Exception as exc:
                    _log.warning(
                        "reconcile_pending", model=row.model, version=row.version, error=str(exc)
                    )
                    pending.append(row.model)
        return pending


def retrieval_reindexer(target: str, timeout_s: float = 10.0) -> Reindexer:
    """A Reindexer calling RetrievalService.ReindexCatalog at ``target``."""

    def reindex(version: int) -> None:
        from shopsense.retrieval.v1 import retrieval_service_pb2 as rpb
        from shopsense.retrieval.v1 import retrieval_service_pb2_grpc as rpb_grpc

        from shared.rpc.clients import open_channel

        channel = open_channel(target)
        try:
            rpb_grpc.RetrievalServiceStub(channel).ReindexCatalog(
                rpb.ReindexCatalogRequest(text_encoder_version=str(version)), timeout=timeout_s
            )
        finally:
            channel.close()

    return reindex


class TrainerServicer(pb_grpc.TrainerServiceServicer):
    """The RPCs over a registry, a job runner and a publisher (all passed in)."""

    def __init__(
        self,
        registry: ModelRegistry,
        runner: JobRunner,
        publisher: ModelPublisher,
        feedback_engine: Callable[[], sqlalchemy.Engine] | None = None,
        training_dir: Path | None = None,
    ) -> None:
        self._registry = registry
        self._runner = runner
        self._publisher = publisher
        self._feedback_engine = feedback_engine
        self._training_dir = training_dir

    def _feedback_dataset(
        self, source: pb.FeedbackSource, catalog: Path
    ) -> tuple[Path, pb.FeedbackDataSummary]:
        """Judgments from the feedback store written as a training folder (see
        shared.training.clicks), or FailedPrecondition saying what is missing."""
        from shared.training.clicks import fit_click_model, read_impressions, write_click_dataset

        if self._feedback_engine is None or self._training_dir is None:
            raise FailedPrecondition("feedback: no feedback database is configured")
        if source.min_impressions < 0:
            raise InvalidArgument("feedback.min_impressions: must be >= 0")
        if not (catalog / "product.csv").is_file():
            raise InvalidArgument(f"dataset: {catalog} has no product.csv (the catalog)")
        since = source.since.ToDatetime(UTC) if source.HasField("since") else None
        until = source.until.ToDatetime(UTC) if source.HasField("until") else None
        if since and until and until <= since:
            raise InvalidArgument("feedback.until: must be after feedback.since")
        impressions, pages = read_impressions(self._feedback_engine(), since, until)
        fit = fit_click_model(impressions, pages)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
        folder = self._training_dir / f"feedback-{stamp}"
        queries, judgments = write_click_dataset(
            fit, catalog, folder, source.min_impressions or DEFAULT_MIN_IMPRESSIONS
        )
        summary = pb.FeedbackDataSummary(
            pages=fit.pages,
            impressions=fit.impressions,
            clicks=fit.clicks,
            queries=queries,
            judgments=judgments,
            examination=fit.examination,
            eta=fit.eta,
            examination_measured=fit.measured,
            explored_clicks=fit.explored_clicks,
            dataset=str(folder),
        )
        if queries < MIN_FEEDBACK_QUERIES:
            shutil.rmtree(folder, ignore_errors=True)
            raise FailedPrecondition(
                f"feedback: {queries} queries have enough impressions and a click to train on "
                f"(need {MIN_FEEDBACK_QUERIES}); the window holds {fit.pages} result pages, "
                f"{fit.impressions} impressions and {fit.clicks} clicks"
            )
        return folder, summary

    def _checkpoint(self, model: str, version: int, field: str) -> str:
        row = self._registry.get_version(model, version)
        if not row.checkpoint_dir or not Path(row.checkpoint_dir).is_dir():
            raise FailedPrecondition(
                f"{field}: the checkpoint of {model} version {version} is gone"
            )
        return row.checkpoint_dir

    def StartTraining(
        self, request: pb.StartTrainingRequest, context: grpc.ServicerContext | None
    ) -> pb.StartTrainingResponse:
        from shared.training.data import DatasetError, load_training_data
        from shared.training.hyperparams import HyperparameterError, Hyperparameters

        check_model(request.model)
        overrides = dict(request.hyperparameters)
        try:
            Hyperparameters.for_kind(request.model, overrides)
        except HyperparameterError as exc:
            raise InvalidArgument(str(exc)) from exc
        if not request.dataset:
            raise InvalidArgument(
                "dataset: required (a folder with product.csv, query.csv, label.csv)"
            )
        dataset = Path(request.dataset)
        if not dataset.is_dir():
            raise InvalidArgument(f"dataset: {request.dataset} is not a folder")
        summary = None
        if request.feedback.enabled:
            if request.model != "cross_encoder":
                raise InvalidArgument(
                    f"feedback: only the cross_encoder learns from feedback, not {request.model}"
                )
            dataset, summary = self._feedback_dataset(request.feedback, dataset)
        try:
            load_training_data(dataset, kind=request.model)
        except DatasetError as exc:
            raise InvalidArgument(f"dataset: {exc}") from exc
        if request.parent_version < 0:
            raise InvalidArgument("parent_version: must be >= 0")
        if request.teacher_version < 0:
            raise InvalidArgument("teacher_version: must be >= 0")

        parent: int | None = request.parent_version or None
        init_checkpoint = None
        if parent is None:
            serving = self._registry.serving_version(request.model)
            if serving is not None and serving.checkpoint_dir:
                parent = serving.version
        if parent is not None:
            init_checkpoint = self._checkpoint(request.model, parent, "parent_version")
        teacher_checkpoint = None
        if request.teacher_version:
            if request.model != TEXT_ENCODER:
                raise InvalidArgument(
                    f"teacher_version: only a text_encoder distils, not a {request.model}"
                )
            teacher_checkpoint = self._checkpoint(
                "cross_encoder", request.teacher_version, "teacher_version"
            )

        job = self._runner.submit(
            request.model,
            str(dataset.resolve()),
            overrides,
            parent_version=parent,
            teacher_version=request.teacher_version or None,
            publish=request.publish,
            init_checkpoint=init_checkpoint,
            teacher_checkpoint=teacher_checkpoint,
            serving_exports=self._publisher.serving_exports(),
        )
        return pb.StartTrainingResponse(
            job_id=job.job_id, job=job_message(job), feedback_data=summary
        )

    @staticmethod
    def _job_id(job_id: str) -> str:
        if not job_id:
            raise InvalidArgument("job_id: required")
        return job_id

    def GetJob(
        self, request: pb.GetJobRequest, context: grpc.ServicerContext | None
    ) -> pb.GetJobResponse:
        job, _ = self._runner.snapshot(self._job_id(request.job_id))
        return pb.GetJobResponse(job=job_message(job))

    def WatchJob(
        self, request: pb.WatchJobRequest, context: grpc.ServicerContext | None
    ) -> Iterator[pb.WatchJobResponse]:
        job_id = self._job_id(request.job_id)
        job, revision = self._runner.snapshot(job_id)
        yield pb.WatchJobResponse(job=job_message(job))
        while not job.job_state.terminal:
            if context is not None and not context.is_active():
                return
            if self._runner.closed:
                raise Unavailable("trainer: shutting down; watch again after the restart")
            if not self._runner.wait_for_change(job_id, revision, WATCH_POLL_S):
                continue
            latest, revision = self._runner.snapshot(job_id)
            if latest != job:
                job = latest
                yield pb.WatchJobResponse(job=job_message(job))

    def CancelJob(
        self, request: pb.CancelJobRequest, context: grpc.ServicerContext | None
    ) -> pb.CancelJobResponse:
        job = self._runner.cancel(self._job_id(request.job_id))
        return pb.CancelJobResponse(job=job_message(job))

    def ListJobs(
        self, request: pb.ListJobsRequest, context: grpc.ServicerContext | None
    ) -> pb.ListJobsResponse:
        if request.model:
            check_model(request.model)
        if request.limit < 0 or request.limit > MAX_LIST_JOBS:
            raise InvalidArgument(f"limit: must be in [0, {MAX_LIST_JOBS}]")
        jobs = self._registry.list_jobs(request.model or None, request.limit or DEFAULT_LIST_JOBS)
        live = []
        for job in jobs:
            if job.job_state.terminal:
                live.append(job)
            else:
                try:
                    live.append(self._runner.snapshot(job.job_id)[0])
                except ShopsenseError:
                    live.append(job)
        return pb.ListJobsResponse(jobs=[job_message(job) for job in live])

    def ListModelVersions(
        self, request: pb.ListModelVersionsRequest, context: grpc.ServicerContext | None
    ) -> pb.ListModelVersionsResponse:
        check_model(request.model)
        rows = self._registry.list_versions(request.model)
        serving = next((r.version for r in rows if r.status == VersionStatus.SERVING.value), 0)
        return pb.ListModelVersionsResponse(
            versions=[version_message(r) for r in rows], serving_version=serving
        )

    def PublishVersion(
        self, request: pb.PublishVersionRequest, context: grpc.ServicerContext | None
    ) -> pb.PublishVersionResponse:
        check_model(request.model)
        if request.version < 1:
            raise InvalidArgument("version: required (>= 1)")
        outcome = self._publisher.publish(request.model, request.version)
        return pb.PublishVersionResponse(
            version=version_message(outcome.version),
            previous_version=outcome.previous.version if outcome.previous else 0,
            reindex_started=outcome.reindex_started,
            note=outcome.note,
        )

    def RollbackVersion(
        self, request: pb.RollbackVersionRequest, context: grpc.ServicerContext | None
    ) -> pb.RollbackVersionResponse:
        check_model(request.model)
        if request.to_version < 0:
            raise InvalidArgument("to_version: must be >= 0 (0: the previous serving version)")
        outcome = self._publisher.rollback(request.model, request.to_version)
        return pb.RollbackVersionResponse(
            version=version_message(outcome.version),
            rolled_back_version=outcome.previous.version if outcome.previous else 0,
            reindex_started=outcome.reindex_started,
            note=outcome.note,
        )


def _running_pins(store: ExperimentStore, model: str) -> set[int]:
    """Versions of ``model`` the running experiment pins (none when none runs)."""
    row = store.running()
    return experiment_of(row).pins().get(model, set()) if row is not None else set()


def catalog_index_version(target: str, timeout_s: float = 5.0) -> Callable[[], str]:
    """A function asking retrieval at ``target`` for the catalog index's encoder version."""

    def index_version() -> str:
        from shopsense.retrieval.v1 import retrieval_service_pb2 as rpb
        from shopsense.retrieval.v1 import retrieval_service_pb2_grpc as rpb_grpc

        from shared.rpc.clients import open_channel

        channel = open_channel(target)
        try:
            stats = rpb_grpc.RetrievalServiceStub(channel).GetCatalogStats(
                rpb.GetCatalogStatsRequest(), timeout=timeout_s
            )
        except grpc.RpcError as exc:
            raise Unavailable(
                f"retrieval: cannot read the catalog's version: {exc.details()}"
            ) from exc
        finally:
            channel.close()
        return stats.embedding_version

    return index_version


def _reconcile_in_background(handle: ServerHandle, publisher: ModelPublisher) -> None:
    """Retry until Triton serves every registered serving version (Triton may be starting)."""
    stop = threading.Event()
    handle.on_stop(stop.set)

    def loop() -> None:
        while not stop.is_set():
            try:
                pending = publisher.reconcile()
            except Exception as exc:  # the registry or Triton still starting
                _log.warning("reconcile_failed", error=str(exc))
                pending = ["?"]
            if not pending:
                _log.info("reconciled")
                return
            stop.wait(RECONCILE_RETRY_S)

    threading.Thread(target=loop, name="trainer-reconcile", daemon=True).start()


def _guard_in_background(
    handle: ServerHandle, experiments: ExperimentServicer, settings: TrainerSettings
) -> None:
    """Check the running experiment's report against the guard rails every
    ``guard_interval_s`` (shared/experiments/guardrails.py)."""
    stop = threading.Event()
    handle.on_stop(stop.set)
    limits = Limits(alpha=settings.guard_alpha, min_shoppers=settings.guard_min_shoppers)

    def loop() -> None:
        while not stop.wait(settings.guard_interval_s):
            try:
                experiments.check_guard_rails(limits)
            except Exception as exc:  # the feedback store away: try again next time
                _log.warning("guard_rail_check_failed", error=str(exc))

    threading.Thread(target=loop, name="trainer-guard-rails", daemon=True).start()


def create_server(
    settings: TrainerSettings,
    runner: JobRunner | None = None,
    registry: ModelRegistry | None = None,
    reindex: Reindexer | None = None,
) -> ServerHandle:
    """Start the trainer on ``settings.listen`` (port 0 picks a free one).

    Opens the registry at ``settings.registry_db_url`` unless ``registry`` (or ``runner``) is
    given, marks jobs a previous trainer left running FAILED, reconciles Triton with the
    registry in the background, and reports SERVING once the registry answers. ``reindex``
    defaults to calling retrieval at ``settings.retrieval_target``.
    """
    if runner is not None:
        registry = runner.registry
    owns_engine = registry is None
    if registry is None:
        registry = ModelRegistry(create_db_engine(settings.registry_db_url))
    publisher = ModelPublisher(
        registry,
        settings.triton_models,
        settings.triton_url,
        reindex if reindex is not None else retrieval_reindexer(settings.retrieval_target),
    )
    owns_runner = runner is None
    if runner is None:
        runner = JobRunner(registry, settings.training_dir, on_result=publisher.register)
    try:
        registry.ping()
        runner.recover("trainer restarted")
    except Exception:
        if owns_engine:
            registry.engine.dispose()
        raise
    store = ExperimentStore(registry.engine)
    publisher.pinned = lambda model: _running_pins(store, model)
    experiments = ExperimentServicer(
        store,
        registry,
        publisher.load_alongside,
        catalog_index_version(settings.retrieval_target),
        feedback_url=settings.feedback_db_url,
        publish=publisher.publish,
    )
    servicer = TrainerServicer(
        registry,
        runner,
        publisher,
        feedback_engine=experiments.feedback_engine,
        training_dir=Path(settings.training_dir),
    )
    if settings.experiments_file:
        try:
            names = experiments.apply_file(Path(settings.experiments_file))
        except Exception:
            if owns_runner:
                runner.close()
            if owns_engine:
                registry.engine.dispose()
            raise
        _log.info("experiments_file_applied", path=settings.experiments_file, experiments=names)

    def register(server: grpc.Server) -> None:
        pb_grpc.add_TrainerServiceServicer_to_server(servicer, server)
        experiment_pb_grpc.add_ExperimentServiceServicer_to_server(experiments, server)

    handle = build_service(settings, register, [SERVICE_NAME, EXPERIMENT_SERVICE_NAME])
    if owns_runner:
        handle.on_stop(runner.close)
    if owns_engine:
        handle.on_stop(registry.engine.dispose)
    handle.on_stop(experiments.close)
    _reconcile_in_background(handle, publisher)
    if settings.guard_interval_s > 0 and settings.feedback_db_url:
        _guard_in_background(handle, experiments, settings)
    handle.mark_serving()
    return handle
