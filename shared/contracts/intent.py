"""The intent contract (shopsense.intent.v1): what a query asks for, as the message the
gateway, retrieval and ranking read."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from shopsense.common.v1 import common_pb2


def intent_message(
    classes: Sequence[tuple[str, float]], attributes: Mapping[str, str], model_version: str
) -> common_pb2.Intent:
    """Classes with their probabilities (best first), the attribute values the query names,
    and the model that said so."""
    return common_pb2.Intent(
        classes=[common_pb2.IntentClass(product_class=c, probability=p) for c, p in classes],
        attributes=attributes,
        model_version=model_version,
    )


def intent_pairs(intent: common_pb2.Intent | None) -> list[tuple[str, float]]:
    """``(class, probability)`` pairs of an intent message (none for no message)."""
    if intent is None:
        return []
    return [(c.product_class, float(c.probability)) for c in intent.classes]
