"""Result randomisation on a small share of searches, so that position bias can be measured.

Shoppers click the top of a page more whatever it shows, so clicks mix relevance with
position. Where a ranking always puts a product at the same place, no amount of logging
can tell the two apart; on a search whose top results were shuffled, relevance no longer
depends on position, and the click model the trainer fits (``shared.training.clicks``)
learns how much each position is looked at from them (Joachims, Swaminathan and
Schnabel, WSDM 2017). The share is ``SHOPSENSE_EXPLORE_RATE`` (default 5%); the shuffle
is seeded by the shopper and the request, so the next page and a repeated search see the
same order.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import TypeVar

from shared.experiments.interleaving import seed_for

T = TypeVar("T")
_SCALE = 1_000_000


def explores(rate: float, shopper: str, fingerprint: str) -> bool:
    """Whether this shopper's search (``fingerprint``) gets its top results shuffled."""
    if rate <= 0.0:
        return False
    return seed_for("explore", shopper, fingerprint) % _SCALE < rate * _SCALE


def shuffle_top(items: Sequence[T], depth: int, shopper: str, fingerprint: str) -> list[T]:
    """``items`` with the first ``depth`` in a seeded random order, the rest as they were."""
    head = list(items[:depth])
    random.Random(seed_for("explore-order", shopper, fingerprint)).shuffle(head)
    return head + list(items[depth:])
