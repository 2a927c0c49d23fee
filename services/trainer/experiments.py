"""ExperimentService, served by the trainer next to the registry the arms are checked against.

A definition is refused at configuration time, naming the field, when it is malformed or
pins a version that does not exist; starting loads every pinned version on Triton first,
so the gateway never routes a shopper to a version Triton cannot answer with. Definitions
also come from a TOML file (``SHOPSENSE_EXPERIMENTS_FILE``) applied when the trainer
starts, through the same checks.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import grpc
import sqlalchemy
import structlog
from shopsense.experiments.v1 import experiment_service_pb2 as pb
from shopsense.experiments.v1 import experiment_service_pb2_grpc as pb_grpc

from shared.contracts.experiments import STATE_NAMES, from_proto, report_message, row_to_proto
from shared.errors import FailedPrecondition, InvalidArgument, NotFound
from shared.experiments.assignment import Experiment, from_dict, read_file, to_dict, validate
from shared.experiments.guardrails import Limits, metric_breach
from shared.experiments.report import MIN_SHOPPERS, build_report
from shared.rpc import metrics
from shared.storage.database import create_db_engine
from shared.storage.experiments import ExperimentRow, ExperimentState, ExperimentStore
from shared.storage.feedback import FeedbackStore
from shared.storage.registry import ModelRegistry

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["ExperimentService"].full_name
_log = structlog.get_logger("shopsense.trainer.experiments")
_GUARD_STOPS = metrics.counter(
    "trainer",
    "shopsense_guard_rail_stops",
    "Experiments stopped by a guard rail (checked_by: trainer for CTR and conversion, "
    "gateway for latency and errors).",
    ("checked_by",),
)
_GUARD_STOPS.labels("trainer")

# What the servicer needs from the publisher: load versions of a model on Triton next to
# the serving one (raising FailedPrecondition or Unavailable), and the index's encoder.
LoadVersions = Callable[[str, set[int]], None]
IndexVersion = Callable[[], str]


def check_pins(
    experiment: Experiment,
    registry: ModelRegistry,
    index_version: IndexVersion,
    field_name: str = "experiment",
) -> None:
    """NotFound naming the arm's field when a pinned version is not registered;
    FailedPrecondition when a text_encoder pin is not the catalog index's version."""
    for i, arm in enumerate(experiment.arms):
        for model, version in arm.models.items():
            if not version:
                continue
            where = f"{field_name}.arms[{i}].models.{model}"
            try:
                registry.get_version(model, int(version))
            except NotFound:
                known = sorted(row.version for row in registry.list_versions(model))
                raise NotFound(
                    f"{where}: {model} has no registered version {version} "
                    f"(registered: {', '.join(map(str, known)) or 'none'})"
                ) from None
            if model == "text_encoder":
                current = index_version()
                if version != current:
                    raise FailedPrecondition(
                        f"{where}: the catalog index holds text_encoder {current or '(none)'} "
                        f"vectors, not {version}; one index serves at a time, so reindex "
                        "before pinning another encoder"
                    )


def experiment_of(row: ExperimentRow) -> Experiment:
    """The domain definition a stored row holds."""
    return from_dict(row.definition)


def _cannot_publish(model: str, version: int) -> None:
    raise FailedPrecondition(f"{model}: this trainer cannot publish versions")


class ExperimentServicer(pb_grpc.ExperimentServiceServicer):
    def __init__(
        self,
        store: ExperimentStore,
        registry: ModelRegistry,
        load_versions: LoadVersions,
        index_version: IndexVersion,
        feedback_url: str = "",
        publish: Callable[[str, int], object] | None = None,
    ) -> None:
        self._store = store
        self._registry = registry
        self._load = load_versions
        self._publish = publish or _cannot_publish
        self._index_version = index_version
        # Reports read the feedback store (the same database in production, another file
        # by default), opened at the first report so that a trainer never touches it
        # otherwise.
        self._feedback_url = feedback_url
        self._feedback: sqlalchemy.Engine | None = None
        self._feedback_lock = threading.Lock()

    def feedback_engine(self) -> sqlalchemy.Engine:
        if not self._feedback_url:
            raise FailedPrecondition("feedback: no feedback database is configured")
        with self._feedback_lock:
            if self._feedback is None:
                self._feedback = FeedbackStore(create_db_engine(self._feedback_url)).engine
            return self._feedback

    def close(self) -> None:
        """Release the feedback database, if a report opened it."""
        with self._feedback_lock:
            if self._feedback is not None:
                self._feedback.dispose()
                self._feedback = None

    def create(self, experiment: Experiment, field_name: str = "experiment") -> Experiment:
        experiment = validate(experiment, field_name)
        check_pins(experiment, self._registry, self._index_version, field_name)
        row, created = self._store.create(experiment.name, to_dict(experiment))
        if created:
            _log.info("experiment_created", name=experiment.name, arms=len(experiment.arms))
        return experiment_of(row)

    def start(self, name: str) -> None:
        row = self._store.get(name)
        running = self._store.running()
        if running is not None and running.name != name:
            raise FailedPrecondition(
                f"name: experiment {running.name!r} is running; stop it first "
                "(one experiment runs at a time)"
            )
        if row.experiment_state == ExperimentState.DRAFT:
            for model, versions in experiment_of(row).pins().items():
                if model != "text_encoder":  # loaded already: the index's version
                    self._load(model, versions)
        self._store.start(name)
        _log.info("experiment_started", name=name)

    def apply_file(self, path: Path) -> list[str]:
        """Create (and start, where ``start = true``) the file's experiments; their names.

        The file holds ``[[experiment]]`` tables in the shape of ``assignment.to_dict``
        plus an optional ``start``. A bad definition raises naming the file and field.
        """
        names = []
        for experiment, start in read_file(Path(path), "SHOPSENSE_EXPERIMENTS_FILE: "):
            where = f"{path}: experiment[{len(names)}]"
            experiment = self.create(experiment, where)
            names.append(experiment.name)
            row = self._store.get(experiment.name)
            if start and row.experiment_state == ExperimentState.DRAFT:
                self.start(experiment.name)
        return names

    # --- RPCs ----------------------------------------------------------------------------

    def CreateExperiment(
        self, request: pb.CreateExperimentRequest, context: grpc.ServicerContext
    ) -> pb.CreateExperimentResponse:
        if not request.HasField("experiment"):
            raise InvalidArgument("experiment: required")
        experiment = self.create(from_proto(request.experiment))
        return pb.CreateExperimentResponse(
            experiment=row_to_proto(self._store.get(experiment.name))
        )

    def GetExperiment(
        self, request: pb.GetExperimentRequest, context: grpc.ServicerContext
    ) -> pb.GetExperimentResponse:
        return pb.GetExperimentResponse(experiment=row_to_proto(self._store.get(request.name)))

    def ListExperiments(
        self, request: pb.ListExperimentsRequest, context: grpc.ServicerContext
    ) -> pb.ListExperimentsResponse:
        if request.state == pb.EXPERIMENT_STATE_UNSPECIFIED:
            state = None
        elif request.state in STATE_NAMES:
            state = ExperimentState(STATE_NAMES[request.state])
        else:
            raise InvalidArgument(f"state: unknown experiment state {request.state}")
        rows = self._store.list(state)
        return pb.ListExperimentsResponse(experiments=[row_to_proto(row) for row in rows])

    def StartExperiment(
        self, request: pb.StartExperimentRequest, context: grpc.ServicerContext
    ) -> pb.StartExperimentResponse:
        self.start(request.name)
        return pb.StartExperimentResponse(experiment=row_to_proto(self._store.get(request.name)))

    def GetExperimentReport(
        self, request: pb.GetExperimentReportRequest, context: grpc.ServicerContext
    ) -> pb.GetExperimentReportResponse:
        if request.min_shoppers < 0:
            raise InvalidArgument("min_shoppers: must be >= 0")
        row = self._store.get(request.name)
        report = build_report(
            self.feedback_engine(), experiment_of(row), request.min_shoppers or MIN_SHOPPERS
        )
        return report_message(report, row_to_proto(row))

    def check_guard_rails(self, limits: Limits) -> str | None:
        """Stop the running experiment when its report shows an arm hurting shoppers
        (``metric_breach``); return the reason, or None when nothing was stopped."""
        row = self._store.running()
        if row is None:
            return None
        report = build_report(self.feedback_engine(), experiment_of(row), limits.min_shoppers)
        reason = metric_breach(report, limits)
        if reason is None:
            return None
        try:
            self._store.stop(row.name, reason)
        except FailedPrecondition:  # stopped meanwhile
            return None
        _GUARD_STOPS.labels("trainer").inc()
        _log.warning("experiment_stopped", name=row.name, reason=reason)
        return reason

    def PromoteArm(
        self, request: pb.PromoteArmRequest, context: grpc.ServicerContext
    ) -> pb.PromoteArmResponse:
        row = self._store.get(request.name)
        if row.experiment_state == ExperimentState.DRAFT:
            raise FailedPrecondition(f"name: experiment {request.name!r} never ran")
        experiment = experiment_of(row)
        try:
            arm = experiment.arm(request.arm)
        except KeyError:
            names = ", ".join(a.name for a in experiment.arms)
            raise NotFound(f"arm: no arm {request.arm!r} in {request.name!r} ({names})") from None
        serving: dict[str, str] = {}
        for model, version in sorted(arm.models.items()):
            if version:
                self._publish(model, int(version))
                serving[model] = version
        if row.experiment_state == ExperimentState.RUNNING:
            self._store.stop(request.name, f"promoted arm {arm.name}")
        p = arm.pipeline
        settings = [
            f"SHOPSENSE_RERANK_DEPTH={p.rerank_depth}" if p.rerank_depth > 0 else "",
            "rerank depth -1 (features only)" if p.rerank_depth < 0 else "",
            f"fusion weights lexical {p.lexical_weight:g}, dense {p.dense_weight:g}"
            if p.fusion_weights
            else "",
        ]
        wanted = [s for s in settings if s]
        note = f"pipeline settings to apply by hand: {'; '.join(wanted)}" if wanted else ""
        _log.info("arm_promoted", name=request.name, arm=arm.name, serving=serving)
        return pb.PromoteArmResponse(
            experiment=row_to_proto(self._store.get(request.name)), serving=serving, note=note
        )

    def StopExperiment(
        self, request: pb.StopExperimentRequest, context: grpc.ServicerContext
    ) -> pb.StopExperimentResponse:
        row = self._store.stop(request.name, request.reason[:2000])
        _log.info("experiment_stopped", name=row.name, reason=row.stop_reason)
        return pb.StopExperimentResponse(experiment=row_to_proto(row))
