"""Deterministic experiment-arm assignment from a shopper id.

The same id and salt always land in the same arm, across requests and restarts of every
service: the bucket is the first 8 bytes of SHA-256(salt + ":" + id), taken modulo 10,000.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

BUCKETS = 10_000


@dataclass(frozen=True)
class Arm:
    name: str
    share: float  # fraction of traffic, the shares of an experiment sum to 1


@dataclass(frozen=True)
class Experiment:
    name: str
    salt: str
    arms: Sequence[Arm]


# With no experiment configured every shopper is in one arm.
NO_EXPERIMENT = Experiment(name="none", salt="", arms=(Arm("control", 1.0),))


def bucket(unit_id: str, salt: str) -> int:
    digest = hashlib.sha256(f"{salt}:{unit_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % BUCKETS


def assign(experiment: Experiment, user_id: str, session_id: str) -> str:
    """The arm for a shopper: by user id when signed in, else by session id."""
    unit = user_id or session_id
    b = bucket(unit, experiment.salt)
    edge = 0.0
    for arm in experiment.arms:
        edge += arm.share * BUCKETS
        if b < edge:
            return arm.name
    return experiment.arms[-1].name
