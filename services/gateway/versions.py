"""Which model versions the gateway asks for.

- ``intent_classifier`` and ``cross_encoder``: the version the registry (the trainer
  service) marks SERVING, re-read in the background; the last known answer stays in use
  while the trainer is unreachable, and "" (Triton's newest loaded version) before any.
- ``text_encoder``: the catalog index's version, which retrieval names in every answer;
  during a reindex it is the old version until the new vectors are swapped in, so a query
  is always embedded like the catalog it is compared with.
- the catalog's generation, which every change to it advances (the result cache's key).

- the running experiment (ExperimentService, on the trainer), re-read with the versions:
  its arms pin versions and pipeline settings; None when none runs. While the trainer is
  unreachable the last known experiment stays in force, so assignment does not flap.
"""

from __future__ import annotations

import threading

import grpc
import structlog
from shopsense.experiments.v1 import experiment_service_pb2, experiment_service_pb2_grpc
from shopsense.retrieval.v1 import retrieval_service_pb2, retrieval_service_pb2_grpc
from shopsense.trainer.v1 import trainer_service_pb2, trainer_service_pb2_grpc

from shared.contracts.experiments import from_proto
from shared.experiments.assignment import Experiment
from shared.models.kinds import CROSS_ENCODER, INTENT_CLASSIFIER
from shared.rpc.clients import open_channel

ROUTED_MODELS = (INTENT_CLASSIFIER, CROSS_ENCODER)
_log = structlog.get_logger("shopsense.gateway.versions")


class ModelVersions:
    """The versions to request, kept fresh by a background thread."""

    def __init__(self, trainer_target: str, retrieval_target: str, interval_s: float) -> None:
        trainer = open_channel(trainer_target)
        self._trainer = trainer_service_pb2_grpc.TrainerServiceStub(trainer)
        self._experiments = experiment_service_pb2_grpc.ExperimentServiceStub(trainer)
        self.experiment: Experiment | None = None
        self._retrieval = retrieval_service_pb2_grpc.RetrievalServiceStub(
            open_channel(retrieval_target)
        )
        self._interval_s = interval_s
        self.serving: dict[str, str] = dict.fromkeys(ROUTED_MODELS, "")
        self.text_encoder = ""
        # The catalog's generation (it grows with every change; -1 before the first read).
        self.catalog_generation = -1
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="model-versions", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def stop_experiment(self, name: str, reason: str) -> None:
        """Ask the trainer to stop experiment ``name`` (a guard rail tripped), in the
        background; re-read the running experiment once it answers."""

        def stop() -> None:
            try:
                self._experiments.StopExperiment(
                    experiment_service_pb2.StopExperimentRequest(name=name, reason=reason),
                    timeout=5.0,
                )
            except grpc.RpcError as exc:  # already stopped, or the trainer is away
                _log.warning("stop_experiment_failed", name=name, code=exc.code().name)
            self.refresh()

        threading.Thread(target=stop, name="guard-rail-stop", daemon=True).start()

    def saw_index_version(self, version: str) -> None:
        """Retrieval answered with this catalog version: embed the next queries with it."""
        if version and version != self.text_encoder:
            _log.info("text_encoder_version", version=version, previous=self.text_encoder)
            self.text_encoder = version

    def refresh(self) -> None:
        """Re-read the serving versions, the running experiment and the catalog's version
        and generation (errors are logged)."""
        for model in ROUTED_MODELS:
            try:
                reply = self._trainer.ListModelVersions(
                    trainer_service_pb2.ListModelVersionsRequest(model=model), timeout=2.0
                )
            except grpc.RpcError as exc:
                _log.debug("registry_unreachable", code=exc.code().name)
                break
            version = str(reply.serving_version) if reply.serving_version else ""
            if version != self.serving[model]:
                _log.info("serving_version", model=model, version=version)
                self.serving[model] = version
        try:
            reply = self._experiments.ListExperiments(
                experiment_service_pb2.ListExperimentsRequest(
                    state=experiment_service_pb2.EXPERIMENT_STATE_RUNNING
                ),
                timeout=2.0,
            )
        except grpc.RpcError as exc:
            _log.debug("experiments_unreachable", code=exc.code().name)
        else:
            running = from_proto(reply.experiments[0]) if reply.experiments else None
            if running != self.experiment:
                _log.info("experiment", name=running.name if running else None)
                self.experiment = running
        try:
            stats = self._retrieval.GetCatalogStats(
                retrieval_service_pb2.GetCatalogStatsRequest(), timeout=2.0
            )
        except grpc.RpcError as exc:
            _log.debug("retrieval_unreachable", code=exc.code().name)
        else:
            self.saw_index_version(stats.embedding_version)
            self.catalog_generation = stats.generation

    def _loop(self) -> None:
        while True:
            self.refresh()
            if self._stop.wait(self._interval_s):
                return
