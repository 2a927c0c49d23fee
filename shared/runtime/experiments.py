"""Driving a running suite's experiments from a client: what the demo, the benchmarks
and the tests share."""

from __future__ import annotations

from shopsense.experiments.v1 import experiment_service_pb2 as pb
from shopsense.experiments.v1 import experiment_service_pb2_grpc as pb_grpc


def stop_running(stub: pb_grpc.ExperimentServiceStub, reason: str) -> list[str]:
    """Stop the running experiment, if any (one runs at a time); the names stopped."""
    running = stub.ListExperiments(
        pb.ListExperimentsRequest(state=pb.EXPERIMENT_STATE_RUNNING), timeout=10
    ).experiments
    for experiment in running:
        stub.StopExperiment(
            pb.StopExperimentRequest(name=experiment.name, reason=reason), timeout=10
        )
    return [experiment.name for experiment in running]
