"""What the recommender learns from: one shopper interaction, and the decay that weighs
interactions by age.

**Forward decay** (Cormode et al., ICDE 2009): an event at time ``t`` adds
``2 ** ((t - anchor) / half_life)`` instead of a weight that shrinks as the clock moves.
Every aggregate is then a plain sum that new events update in place, and comparing two
items' sums at any moment is the same as comparing their decayed weights at that moment
(the common factor ``2 ** -((now - anchor) / half_life)`` cancels). Weights are float64;
when the newest passes ``2 ** 256`` the owner rescales everything it holds by
``Decay.rescale`` (a store with decades of events stays finite).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from shared.storage.feedback import StoredInteraction

# Event kinds, weakest to strongest interest. Impressions are not interest: not ingested.
VIEW, CART, PURCHASE = 0, 1, 2
KIND_NAMES = ("view", "add_to_cart", "purchase")
KIND_OF_TYPE = {"click": VIEW, "add_to_cart": CART, "purchase": PURCHASE}
# Past this exponent (base 2) the owner rescales.
_RESCALE_AT = 256.0


@dataclass(frozen=True, slots=True)
class Interaction:
    """A shopper did something with a product.

    ``at`` is Unix seconds; ``basket`` groups the events of one visit or order (the session
    id, or a time gap: see ``ShopperStates``); ``user`` and ``session`` are the ids the
    event carried ("" when absent)."""

    product_id: str
    kind: int
    at: float
    quantity: int = 1
    user: str = ""
    session: str = ""


def interaction_of(row: StoredInteraction) -> Interaction | None:
    """A stored click, cart or purchase as an interaction (None for any other type)."""
    kind = KIND_OF_TYPE.get(row.type)
    if kind is None:
        return None
    return Interaction(
        product_id=row.product_id,
        kind=kind,
        at=row.occurred_at.timestamp(),
        quantity=row.quantity or 1,
        user=row.user_id or "",
        session=row.session_id or "",
    )


class Decay:
    """Forward-decay weights with one half-life, anchored at the first time seen."""

    def __init__(self, half_life_s: float) -> None:
        if not half_life_s > 0:
            raise ValueError("half_life_s must be > 0")
        self.half_life_s = half_life_s
        self.anchor: float | None = None

    def exponent(self, at: float) -> float:
        if self.anchor is None:
            self.anchor = at
        return (at - self.anchor) / self.half_life_s

    def weight(self, at: float) -> float:
        """The event's weight (2 ** exponent); see ``needs_rescale``."""
        return math.pow(2.0, self.exponent(at))

    def needs_rescale(self, at: float) -> bool:
        return self.anchor is not None and self.exponent(at) > _RESCALE_AT

    def rescale(self, at: float) -> float:
        """Move the anchor to ``at``; the factor every held weight must be multiplied by."""
        factor = math.pow(2.0, -self.exponent(at))
        self.anchor = at
        return factor
