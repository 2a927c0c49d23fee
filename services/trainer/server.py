"""TrainerService: training jobs in worker processes, the model registry, publish and rollback.

Bad input is refused in the RPC, before a job exists: unknown model, hyperparameters unknown
or out of range, a dataset that is missing, empty, corrupt or lacks a class (fast checks, the
same code the worker runs). The cross_encoder and the sequence_recommender can learn from the
shoppers' feedback instead (``services/trainer/feedback_data.py`` writes the folder); a
sequence_recommender trains on a sequence folder (``shared.training.sequence_data``) only.
A job's worker reports back to ``JobRunner``; when it returns a result,
:meth:`ModelPublisher.register` numbers and registers the version (CANDIDATE) and, on
request, publishes it (services/trainer/publisher.py). With ``SHOPSENSE_RETRAIN_MODELS`` set,
a schedule starts the same jobs when enough new feedback has arrived
(services/trainer/schedule.py); ListJobs shows why and what it did.

This process never imports torch: training, export and offline evaluation run in the
workers (``shared.training.job``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import grpc
import sqlalchemy
import structlog
from shopsense.experiments.v1 import experiment_service_pb2_grpc as experiment_pb_grpc
from shopsense.trainer.v1 import trainer_service_pb2 as pb
from shopsense.trainer.v1 import trainer_service_pb2_grpc as pb_grpc

from services.trainer.background import (
    erasures_in_background,
    guard_in_background,
    log_sweep,
    reconcile_in_background,
    retrain_in_background,
)
from services.trainer.experiments import SERVICE_NAME as EXPERIMENT_SERVICE_NAME
from services.trainer.experiments import ExperimentServicer, experiment_of
from services.trainer.feedback_data import (
    feedback_dataset,
    sequence_data_problem,
    sequence_feedback_dataset,
)
from services.trainer.jobs import JobRunner
from services.trainer.publisher import ModelPublisher, Reindexer
from services.trainer.retrieval import RetrievalClient
from services.trainer.schedule import RetrainPolicy, RetrainScheduler, ScheduledRuns
from shared.contracts.retrieval import CatalogExport
from shared.contracts.trainer import check_model, job_message, version_message
from shared.errors import FailedPrecondition, InvalidArgument, ShopsenseError, Unavailable
from shared.models.kinds import CROSS_ENCODER, SEQUENCE_RECOMMENDER
from shared.paths import confined
from shared.rpc.server import ServerHandle, build_service, check_production
from shared.rpc.tls import TlsFiles
from shared.settings import TrainerSettings
from shared.storage.database import create_db_engine
from shared.storage.experiments import ExperimentStore
from shared.storage.registry import ModelRegistry, TrainingJob, VersionStatus
from shared.training.data import DatasetError, load_training_data
from shared.training.erasure import ErasureSweeper
from shared.training.hyperparams import DISTILLED_KINDS, HyperparameterError, Hyperparameters
from shared.training.sequence_data import (
    HISTORIES_FILE,
    holds_out,
    is_sequence_dataset,
    read_sequence_dataset,
)

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["TrainerService"].full_name
MAX_LIST_JOBS = 1000
DEFAULT_LIST_JOBS = 20
# Seconds a watcher sleeps between checks that its client is still there.
WATCH_POLL_S = 1.0
# The kinds StartTraining.feedback can train.
FEEDBACK_MODELS = (CROSS_ENCODER, SEQUENCE_RECOMMENDER)

_log = structlog.get_logger("shopsense.trainer")


class TrainerServicer(pb_grpc.TrainerServiceServicer):
    """The RPCs over a registry, a job runner and a publisher (all passed in)."""

    def __init__(
        self,
        registry: ModelRegistry,
        runner: JobRunner,
        publisher: ModelPublisher,
        feedback_engine: Callable[[], sqlalchemy.Engine] | None = None,
        training_dir: Path | None = None,
        catalog: Callable[[], CatalogExport] | None = None,
        runs: ScheduledRuns | None = None,
        schedule: RetrainScheduler | None = None,
        data_roots: Sequence[Path] = (),
        erasures: ErasureSweeper | None = None,
    ) -> None:
        """``data_roots``: the folders a request's dataset must lie under (none: every
        dataset is refused; SHOPSENSE_DATA_ROOT in the server)."""
        self._registry = registry
        self._runner = runner
        self._publisher = publisher
        self._feedback_engine = feedback_engine
        self._training_dir = training_dir
        # Retrieval's catalog with its text vectors (a sequence_recommender's feedback data).
        self._catalog = catalog
        # The jobs the retraining schedule started (their trigger), and the schedule when on.
        self._runs = runs
        self._schedule = schedule
        self._data_roots = tuple(data_roots)
        # Applies shoppers' erasures to the feedback folders before a job reads one.
        self._erasures = erasures

    def _jobs_message(self, jobs: list[TrainingJob]) -> list[pb.Job]:
        """The jobs as Job messages, with the trigger of those the schedule started."""
        triggers = self._runs.triggers(j.job_id for j in jobs) if self._runs else {}
        messages = []
        for job in jobs:
            message = job_message(job)
            message.trigger = triggers.get(job.job_id, "")
            messages.append(message)
        return messages

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
        check_model(request.model)
        overrides = dict(request.hyperparameters)
        try:
            Hyperparameters.for_kind(request.model, overrides)
        except HyperparameterError as exc:
            raise InvalidArgument(str(exc)) from exc
        if request.feedback.enabled and request.model not in FEEDBACK_MODELS:
            raise InvalidArgument(
                f"feedback: only the {' and the '.join(FEEDBACK_MODELS)} learn from feedback, "
                f"not the {request.model}"
            )
        if request.parent_version < 0:
            raise InvalidArgument("parent_version: must be >= 0")
        if request.teacher_version < 0:
            raise InvalidArgument("teacher_version: must be >= 0")
        if request.teacher_version and request.model not in DISTILLED_KINDS:
            # Before the data: a feedback folder is not written for a request refused anyway.
            raise InvalidArgument(
                f"teacher_version: only a {' or a '.join(DISTILLED_KINDS)} distils, "
                f"not a {request.model}"
            )
        if request.model == SEQUENCE_RECOMMENDER:
            dataset, summary = self._sequence_dataset(request)
        else:
            dataset, summary = self._text_dataset(request)

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
            teacher_checkpoint = self._checkpoint(
                "cross_encoder", request.teacher_version, "teacher_version"
            )

        if self._erasures is not None and self._erasures.covers(dataset):
            try:
                log_sweep(self._erasures.sweep())
            except Exception as exc:
                raise Unavailable(
                    "feedback: the erasure list could not be read, so the training folder "
                    "may still hold erased shoppers; retry"
                ) from exc
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

    def _text_dataset(
        self, request: pb.StartTrainingRequest
    ) -> tuple[Path, pb.FeedbackDataSummary | None]:
        """A text model's WANDS folder (with feedback: the judgments written from it)."""
        if not request.dataset:
            raise InvalidArgument(
                "dataset: required (a folder with product.csv, query.csv, label.csv)"
            )
        # INVALID_ARGUMENT, not PERMISSION_DENIED: no caller may name a path outside the root,
        # so it is the argument that is wrong, whoever sends it.
        dataset = confined(request.dataset, self._data_roots, "dataset")
        if not dataset.is_dir():
            raise InvalidArgument(f"dataset: {request.dataset} is not a folder")
        summary = None
        if request.feedback.enabled:
            dataset, summary = feedback_dataset(
                request.feedback, dataset, self._feedback_engine, self._training_dir
            )
        try:
            load_training_data(dataset, kind=request.model)
        except DatasetError as exc:
            raise InvalidArgument(f"dataset: {exc}") from exc
        return dataset, summary

    def _sequence_dataset(
        self, request: pb.StartTrainingRequest
    ) -> tuple[Path, pb.FeedbackDataSummary | None]:
        """A sequence_recommender's folder: written from the feedback store over retrieval's
        catalog (``dataset`` is then not read), or ``dataset`` when it is one."""
        if request.feedback.enabled:
            folder, summary, info = sequence_feedback_dataset(
                request.feedback, self._feedback_engine, self._catalog, self._training_dir
            )
            _log.info(
                "sequence_feedback_data",
                dataset=str(folder),
                shoppers=info["shoppers"],
                events=info["events"],
                products=info["products"],
            )
            return folder, summary
        dataset = (
            confined(request.dataset, self._data_roots, "dataset") if request.dataset else None
        )
        if dataset is None or not is_sequence_dataset(dataset):
            raise InvalidArgument(
                f"dataset: a {SEQUENCE_RECOMMENDER} trains on the shoppers' feedback "
                f"(feedback.enabled) or on a folder holding {HISTORIES_FILE} "
                f"(shared.training.sequence_data); got {request.dataset or 'none'}"
            )
        try:
            data = read_sequence_dataset(dataset)
        except DatasetError as exc:
            raise InvalidArgument(f"dataset: {exc}") from exc
        problem = sequence_data_problem(
            sum(len(h) >= 2 for h in data.histories), sum(holds_out(h) for h in data.histories)
        )
        if problem:
            raise InvalidArgument(f"dataset: {dataset}: {problem}")
        return dataset, None

    @staticmethod
    def _job_id(job_id: str) -> str:
        if not job_id:
            raise InvalidArgument("job_id: required")
        return job_id

    def GetJob(
        self, request: pb.GetJobRequest, context: grpc.ServicerContext | None
    ) -> pb.GetJobResponse:
        job, _ = self._runner.snapshot(self._job_id(request.job_id))
        return pb.GetJobResponse(job=self._jobs_message([job])[0])

    def WatchJob(
        self, request: pb.WatchJobRequest, context: grpc.ServicerContext | None
    ) -> Iterator[pb.WatchJobResponse]:
        job_id = self._job_id(request.job_id)
        job, revision = self._runner.snapshot(job_id)
        first = self._jobs_message([job])[0]
        trigger = first.trigger  # read once: the schedule records it as the job starts
        yield pb.WatchJobResponse(job=first)
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
                message = job_message(job)
                message.trigger = trigger
                yield pb.WatchJobResponse(job=message)

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
        schedule = self._schedule.status(request.model) if self._schedule else []
        return pb.ListJobsResponse(jobs=self._jobs_message(live), schedule=schedule)

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
    defaults to calling retrieval at ``settings.retrieval_target``. With
    ``settings.retrain_models``, the retraining schedule runs in the background too.
    """
    policy = RetrainPolicy.from_settings(settings)  # a bad value stops the start, named
    check_production(
        settings,
        [SERVICE_NAME, EXPERIMENT_SERVICE_NAME],
        databases=registry is None and runner is None,
    )
    if runner is not None:
        registry = runner.registry
    # What this call opens, closed in reverse if starting fails, else when the server stops.
    with contextlib.ExitStack() as opened:
        if registry is None:
            registry = ModelRegistry(create_db_engine(settings.registry_db_url))
            opened.callback(registry.engine.dispose)
        retrieval = RetrievalClient(settings.retrieval_target)
        opened.callback(retrieval.close)
        publisher = ModelPublisher(
            registry,
            settings.triton_models,
            settings.triton_urls or settings.triton_url,
            reindex if reindex is not None else retrieval.reindex,
            tls=TlsFiles.from_settings(settings),
        )
        if runner is None:
            runner = JobRunner(registry, settings.training_dir, on_result=publisher.register)
            opened.callback(runner.close)
        registry.ping()
        runner.recover("trainer restarted")
        store = ExperimentStore(registry.engine)
        publisher.pinned = lambda model: _running_pins(store, model)
        experiments = ExperimentServicer(
            store,
            registry,
            publisher.load_alongside,
            retrieval.index_version,
            feedback_url=settings.feedback_db_url,
            publish=publisher.publish,
        )
        opened.callback(experiments.close)
        runs = ScheduledRuns(registry.engine)
        sweeper = (
            ErasureSweeper(Path(settings.training_dir), experiments.feedback_engine)
            if settings.feedback_db_url
            else None
        )
        schedule = None
        if policy.models:
            schedule = RetrainScheduler(
                policy,
                registry,
                experiments.feedback_engine,
                lambda request: servicer.StartTraining(request, None),
                runs,
                experiments,
                store,
            )
        servicer = TrainerServicer(
            registry,
            runner,
            publisher,
            feedback_engine=experiments.feedback_engine,
            training_dir=Path(settings.training_dir),
            catalog=retrieval.catalog,
            runs=runs,
            schedule=schedule,
            data_roots=settings.data_root,
            erasures=sweeper,
        )
        if settings.experiments_file:
            names = experiments.apply_file(Path(settings.experiments_file))
            _log.info("experiments_file_applied", path=settings.experiments_file, experiments=names)

        def register(server: grpc.Server) -> None:
            pb_grpc.add_TrainerServiceServicer_to_server(servicer, server)
            experiment_pb_grpc.add_ExperimentServiceServicer_to_server(experiments, server)

        handle = build_service(settings, register, [SERVICE_NAME, EXPERIMENT_SERVICE_NAME])
        handle.on_stop(opened.pop_all().close)
    reconcile_in_background(handle, publisher)
    if settings.guard_interval_s > 0 and settings.feedback_db_url:
        guard_in_background(handle, experiments, settings)
    if schedule is not None:
        retrain_in_background(handle, schedule)
        _log.info(
            "retrain_schedule_on",
            models=list(policy.models),
            min_new_events=policy.min_new_events,
            interval_s=policy.interval_s,
            experiment_share=policy.experiment_share,
        )
    if sweeper is not None:
        erasures_in_background(handle, sweeper, settings.erasure_interval_s)
    handle.mark_serving()
    return handle
