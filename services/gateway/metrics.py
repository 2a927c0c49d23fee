"""The gateway's own metrics, beside the RPC counts every server keeps (shared.rpc.metrics):
how searches degrade and by what, each experiment arm's latency and failures, and the
guard rails that stop an experiment. The alert rules (deploy/components/observability)
divide these by the searches answered, ``shopsense_search_arm_seconds_count``.
"""

from __future__ import annotations

from collections.abc import Sequence

from shopsense.search.v1 import search_service_pb2 as pb

from services.gateway.pipeline import ArmRun
from services.gateway.routing import Route
from shared.rpc import metrics

SERVICE = "gateway"
# The Degraded fields: intent or ranking failed or were late, dense retrieval was skipped
# (the encoder failed), the shopper's profile was missing.
CAUSES = ("intent", "ranking", "dense", "personalization")


class SearchMetrics:
    """Counts one answered (or failed) search into the gateway's registry."""

    def __init__(self) -> None:
        self._arm_seconds = metrics.histogram(
            SERVICE,
            "shopsense_search_arm_seconds",
            "Answered searches by experiment and arm: seconds from the request to the answer.",
            ("experiment", "arm"),
        )
        self._arm_errors = metrics.counter(
            SERVICE,
            "shopsense_search_arm_errors",
            "Failures of an arm's own hops (what the guard rails count; not the caller's "
            "short deadline): intent or ranking degraded, or retrieval failing the search.",
            ("experiment", "arm", "hop"),
        )
        self._degraded = metrics.counter(
            SERVICE,
            "shopsense_searches_degraded",
            "Answered searches with at least one degraded part.",
        )
        self._causes = metrics.counter(
            SERVICE,
            "shopsense_search_degradations",
            "Degraded parts of answered searches, by cause (a search may count under two).",
            ("cause",),
        )
        self._stops = metrics.counter(
            SERVICE,
            "shopsense_guard_rail_stops",
            "Experiments stopped by a guard rail (checked_by: gateway for latency and "
            "errors, trainer for CTR and conversion).",
            ("checked_by",),
        )
        # Every cause shows from the start (at 0), so a rate over it is never "no data".
        for cause in CAUSES:
            self._causes.labels(cause)
        self._stops.labels("gateway")

    def answered(
        self, where: Route, seconds: float, degraded: pb.Degraded, runs: Sequence[ArmRun]
    ) -> None:
        experiment, arm = where.experiment_name, where.arm_name
        self._arm_seconds.labels(experiment, arm).observe(seconds)
        for run in runs:
            for hop in run.model_failures:
                self._arm_errors.labels(experiment, arm, hop).inc()
        causes = [cause for cause in CAUSES if getattr(degraded, cause)]
        if causes:
            self._degraded.inc()
            for cause in causes:
                self._causes.labels(cause).inc()

    def failed(self, where: Route, hop: str) -> None:
        """A search the arm could not answer (retrieval unavailable or late)."""
        self._arm_errors.labels(where.experiment_name, where.arm_name, hop).inc()

    def guard_rail_stopped(self) -> None:
        self._stops.labels("gateway").inc()
