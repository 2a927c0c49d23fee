"""Experiments between their messages (shopsense.experiments.v1) and the domain types."""

from __future__ import annotations

from shopsense.experiments.v1 import experiment_service_pb2 as pb

from shared.contracts.common import set_timestamps
from shared.errors import InvalidArgument
from shared.experiments.assignment import (
    AB,
    INTERLEAVING,
    PINNABLE_MODELS,
    Arm,
    Experiment,
    Pipeline,
    from_dict,
)
from shared.experiments.report import Report
from shared.experiments.stats import Estimate
from shared.storage.experiments import ExperimentRow

_TYPES = {
    pb.EXPERIMENT_TYPE_UNSPECIFIED: AB,
    pb.EXPERIMENT_TYPE_AB: AB,
    pb.EXPERIMENT_TYPE_INTERLEAVING: INTERLEAVING,
}
_TYPE_ENUM = {AB: pb.EXPERIMENT_TYPE_AB, INTERLEAVING: pb.EXPERIMENT_TYPE_INTERLEAVING}
STATES = {
    "DRAFT": pb.EXPERIMENT_STATE_DRAFT,
    "RUNNING": pb.EXPERIMENT_STATE_RUNNING,
    "STOPPED": pb.EXPERIMENT_STATE_STOPPED,
}
# The proto's state values back to the names above.
STATE_NAMES = {value: name for name, value in STATES.items()}
# An arm's personalised search: the message's enum and the domain's flag (None: default).
_PERSONALIZATION = {
    None: pb.PERSONALIZATION_UNSPECIFIED,
    True: pb.PERSONALIZATION_ON,
    False: pb.PERSONALIZATION_OFF,
}
_PERSONALIZE = {value: flag for flag, value in _PERSONALIZATION.items()}


def _personalize(value: int, field_name: str) -> bool | None:
    if value not in _PERSONALIZE:
        raise InvalidArgument(f"{field_name}: unknown personalization {value}")
    return _PERSONALIZE[value]


def from_proto(message: pb.Experiment, field_name: str = "experiment") -> Experiment:
    """The definition a message carries (unchecked: see ``assignment.validate``)."""
    kind = _TYPES.get(message.type)
    if kind is None:
        raise InvalidArgument(f"{field_name}.type: unknown experiment type {message.type}")
    fraction = message.targeting.traffic_fraction if message.HasField("targeting") else 0.0
    return Experiment(
        name=message.name,
        salt=message.salt,
        type=kind,
        arms=tuple(
            Arm(
                name=arm.name,
                share=arm.share,
                models={
                    model: getattr(arm.models, model)
                    for model in PINNABLE_MODELS
                    if getattr(arm.models, model)
                },
                pipeline=Pipeline(
                    rerank_depth=arm.pipeline.rerank_depth,
                    lexical_weight=arm.pipeline.lexical_weight,
                    dense_weight=arm.pipeline.dense_weight,
                    reverse_ranking=arm.pipeline.reverse_ranking,
                    personalize=_personalize(
                        arm.pipeline.personalization,
                        f"{field_name}.arms[{index}].pipeline.personalization",
                    ),
                ),
            )
            for index, arm in enumerate(message.arms)
        ),
        traffic_fraction=fraction or 1.0,
        signed_in_only=message.targeting.signed_in_only,
        description=message.description,
    )


def to_proto(experiment: Experiment) -> pb.Experiment:
    """The definition as a message (no state)."""
    return pb.Experiment(
        name=experiment.name,
        salt=experiment.salt,
        type=_TYPE_ENUM[experiment.type],
        description=experiment.description,
        targeting=pb.Targeting(
            traffic_fraction=experiment.traffic_fraction,
            signed_in_only=experiment.signed_in_only,
        ),
        arms=[
            pb.Arm(
                name=arm.name,
                share=arm.share,
                models=pb.ModelPins(**{m: arm.pinned(m) for m in PINNABLE_MODELS}),
                pipeline=pb.PipelineSettings(
                    rerank_depth=arm.pipeline.rerank_depth,
                    lexical_weight=arm.pipeline.lexical_weight,
                    dense_weight=arm.pipeline.dense_weight,
                    reverse_ranking=arm.pipeline.reverse_ranking,
                    personalization=_PERSONALIZATION[arm.pipeline.personalize],
                ),
            )
            for arm in experiment.arms
        ],
    )


def row_to_proto(row: ExperimentRow) -> pb.Experiment:
    """A stored experiment with its state and times."""
    message = to_proto(from_dict(row.definition))
    message.state = STATES[row.state]
    message.stop_reason = row.stop_reason
    set_timestamps(
        message, created_at=row.created_at, started_at=row.started_at, stopped_at=row.stopped_at
    )
    return message


def _interval(estimate: Estimate) -> pb.Interval:
    return pb.Interval(value=estimate.value, low=estimate.low, high=estimate.high)


def report_message(report: Report, experiment: pb.Experiment) -> pb.GetExperimentReportResponse:
    """A report as the RPC answers it (nan stays nan: the figure is undefined)."""
    message = pb.GetExperimentReportResponse(
        experiment=experiment,
        srm_p_value=report.srm_p_value,
        sample_ratio_mismatch=report.sample_ratio_mismatch,
        verdict=report.verdict,
    )
    for arm in report.arms:
        arm_message = message.arms.add(
            arm=arm.arm,
            shoppers=arm.shoppers,
            searches=arm.searches,
            impressions=arm.impressions,
            clicks=arm.clicks,
        )
        for metric in arm.metrics:
            metric_message = arm_message.metrics.add(
                name=metric.name, estimate=_interval(metric.estimate)
            )
            if metric.comparison is not None:
                metric_message.difference.CopyFrom(_interval(metric.comparison.difference))
                metric_message.relative_difference = metric.comparison.relative
                metric_message.p_value = metric.comparison.p_value
    if report.interleaving is not None:
        message.interleaving.CopyFrom(
            pb.InterleavingReport(
                wins=report.interleaving.wins,
                ties=report.interleaving.ties,
                preference_share=report.interleaving.preference_share,
                p_value=report.interleaving.p_value,
            )
        )
    return message
