"""The recommend contract (shopsense.recommend.v1): a request checked field by field into
the recommender's ``RecQuery``, and its answer back as the response.

The rules are the ones the proto's comments state; each refusal is an InvalidArgument that
names the field. The gateway checks what routing needs (placement, shopper); the
recommendation service checks the whole request, filters against the catalog's attribute
names.
"""

from __future__ import annotations

import time

from shopsense.recommend.v1 import recommend_service_pb2 as pb

from shared.contracts.common import checked_shopper, count_or_default
from shared.contracts.feedback import check_id
from shared.contracts.retrieval import filters_from_proto
from shared.errors import InvalidArgument
from shared.models.versions import ascii_digits
from shared.recommendation.events import CART, PURCHASE, VIEW, Interaction
from shared.recommendation.recommender import (
    BUY_AGAIN,
    FREQUENTLY_BOUGHT_TOGETHER,
    RECOMMENDED_FOR_YOU,
    SEQUENCE_MODEL,
    SIMILAR_ITEMS,
    TRENDING,
    RecAnswer,
    RecQuery,
)
from shared.search.filters import Filters

DEFAULT_PAGE_SIZE = 10
MAX_PAGE_SIZE = 100
MAX_CONTEXT = 100
MAX_HISTORY = 10_000

PLACEMENT_NAMES = {
    pb.PLACEMENT_SIMILAR_ITEMS: SIMILAR_ITEMS,
    pb.PLACEMENT_FREQUENTLY_BOUGHT_TOGETHER: FREQUENTLY_BOUGHT_TOGETHER,
    pb.PLACEMENT_RECOMMENDED_FOR_YOU: RECOMMENDED_FOR_YOU,
    pb.PLACEMENT_TRENDING: TRENDING,
    pb.PLACEMENT_BUY_AGAIN: BUY_AGAIN,
}
_KINDS = {
    pb.INTERACTION_TYPE_UNSPECIFIED: VIEW,
    pb.INTERACTION_TYPE_VIEW: VIEW,
    pb.INTERACTION_TYPE_ADD_TO_CART: CART,
    pb.INTERACTION_TYPE_PURCHASE: PURCHASE,
}
_REASONS = {
    "bought_together": pb.REASON_KIND_BOUGHT_TOGETHER,
    "viewed_together": pb.REASON_KIND_VIEWED_TOGETHER,
    "similar": pb.REASON_KIND_SIMILAR,
    "because_you_viewed": pb.REASON_KIND_BECAUSE_YOU_VIEWED,
    "bought_before": pb.REASON_KIND_BOUGHT_BEFORE,
    "trending": pb.REASON_KIND_TRENDING,
}


def placement_name(placement: int) -> str:
    """The placement's name, or INVALID_ARGUMENT naming ``placement``."""
    if placement == pb.PLACEMENT_UNSPECIFIED:
        raise InvalidArgument("placement: required (not PLACEMENT_UNSPECIFIED)")
    name = PLACEMENT_NAMES.get(placement)
    if name is None:  # proto3 enums are open: a newer client's value arrives as a number
        raise InvalidArgument(f"placement: unknown placement {placement}")
    return name


def query_from_request(request: pb.RecommendRequest, known_attributes: set[str]) -> RecQuery:
    """The request checked into a ``RecQuery``; attribute filters must name one of
    ``known_attributes`` (the catalog's)."""
    placement = placement_name(request.placement)
    user, session = checked_shopper(request.user)
    if len(request.context_product_ids) > MAX_CONTEXT:
        raise InvalidArgument(
            f"context_product_ids: {len(request.context_product_ids)} ids exceeds the limit "
            f"of {MAX_CONTEXT}"
        )
    for i, pid in enumerate(request.context_product_ids):
        check_id(f"context_product_ids[{i}]", pid, required=True)
    if len(request.history) > MAX_HISTORY:
        raise InvalidArgument(
            f"history: {len(request.history)} events exceeds the limit of {MAX_HISTORY}"
        )
    page_size = count_or_default(request.page_size, "page_size", DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
    filters = Filters()
    if request.HasField("filters"):
        filters = filters_from_proto(request.filters, known_attributes)
    diversity = None
    if request.options.HasField("diversity"):
        diversity = request.options.diversity
        if not 0.0 <= diversity <= 1.0:  # NaN fails too
            raise InvalidArgument(f"options.diversity: must be between 0 and 1, got {diversity}")
    sequence_version = ""
    for kind, version in request.options.model_versions.items():
        if kind != SEQUENCE_MODEL:
            raise InvalidArgument(
                f"options.model_versions: {kind!r} is not pinned per request here "
                f"(only {SEQUENCE_MODEL!r})"
            )
        if not ascii_digits(version):
            raise InvalidArgument(
                f"options.model_versions[{kind!r}]: a version number, got {version!r}"
            )
        sequence_version = version
    return RecQuery(
        placement=placement,
        user=user,
        session=session,
        context=list(request.context_product_ids),
        history=_history(request),
        filters=filters,
        page_size=page_size,
        exclude_purchased=request.exclude_purchased,
        sources=list(dict.fromkeys(request.options.sources)),
        history_only=request.options.history_only,
        diversity=diversity,
        sequence_version=sequence_version,
    )


def _history(request: pb.RecommendRequest) -> list[Interaction]:
    """The request's history as interactions; events without a time are spaced one second
    apart after the latest stamped one (or now), in the order sent."""
    events: list[Interaction] = []
    stamped = [e.timestamp.ToSeconds() for e in request.history if e.HasField("timestamp")]
    clock = float(max(stamped)) if stamped else time.time() - len(request.history)
    for i, event in enumerate(request.history):
        check_id(f"history[{i}].product_id", event.product_id, required=True)
        kind = _KINDS.get(event.type)
        if kind is None:
            raise InvalidArgument(f"history[{i}].type: unknown interaction type {event.type}")
        if event.quantity < 0:
            raise InvalidArgument(f"history[{i}].quantity: must be >= 0")
        if event.HasField("timestamp"):
            at = event.timestamp.seconds + event.timestamp.nanos / 1e9
        else:
            clock += 1.0
            at = clock
        events.append(Interaction(event.product_id, kind, at, event.quantity or 1))
    return events


def response_from_answer(answer: RecAnswer, placement: int) -> pb.RecommendResponse:
    """The recommender's answer as the response (positions from 1)."""
    response = pb.RecommendResponse(
        placement=placement,
        fallback=pb.FALLBACK_TRENDING if answer.fallback else pb.FALLBACK_NONE,
        unknown_product_ids=answer.unknown,
        model_versions=answer.versions,
    )
    response.degraded.content = answer.content_degraded
    response.degraded.sequence = answer.sequence_degraded
    for position, item in enumerate(answer.items, start=1):
        response.items.append(
            pb.RecommendedItem(
                product_id=item.product.product_id,
                title=item.product.title,
                price=item.product.price,
                product_class=item.product.product_class,
                score=item.score,
                position=position,
                reason=pb.Reason(
                    kind=_REASONS[item.reason.kind],
                    text=item.reason.text,
                    product_ids=item.reason.product_ids,
                    product_class=item.reason.product_class,
                ),
                score_parts=[
                    pb.ScorePart(
                        source=part.source,
                        value=part.value,
                        weight=part.weight,
                        contribution=part.contribution,
                    )
                    for part in item.parts
                ],
            )
        )
    return response
