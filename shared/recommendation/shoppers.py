"""Each shopper's state: their recent interactions and baskets, kept current from new
events and dropped on erasure.

A state is keyed by the user id when the event has one, else by the session id; a
session seen with a user id is remembered with that user, so erasing the user erases
those sessions' states too. A basket is the events of one session id or, without one,
events less than ``basket_gap_s`` apart. Nothing here is aggregated across shoppers.

A shopper's **profile** (``profile_vector``) is computed from the state when asked, never
stored: the kind- and recency-weighted mean of the text vectors of their newest products,
so an erased state has no profile left anywhere.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from shared.recommendation.events import CART, PURCHASE, VIEW

# The profile reads a shopper's newest interactions, each weighted by what it says about
# interest (the recommender's seed weights) and by age: half as much per PROFILE_HALF_LIFE_S
# before their newest one (relative to it: the weights' common factor cancels when the
# mean is normalised, so "now" is not needed and an imported past reads the same).
PROFILE_STEPS = 50
PROFILE_HALF_LIFE_S = 7 * 86400.0
PROFILE_KIND_WEIGHTS: Mapping[int, float] = {VIEW: 0.2, CART: 0.5, PURCHASE: 1.0}


@dataclass(slots=True)
class Step:
    """One interaction in a shopper's state (``item``: an ``ItemIds`` index)."""

    item: int
    kind: int
    at: float
    quantity: int
    basket: str


@dataclass
class ShopperState:
    """A shopper's most recent interactions, oldest first, at most ``limit``."""

    limit: int
    steps: deque[Step] = field(default_factory=deque)
    gap_baskets: int = 0

    def basket_of(self, session: str, at: float, gap_s: float) -> str:
        if session:
            return "s:" + session
        last = self.steps[-1] if self.steps else None
        if last is None or not last.basket.startswith("g:") or at - last.at > gap_s:
            self.gap_baskets += 1
        return f"g:{self.gap_baskets}"

    def append(self, step: Step) -> None:
        steps = self.steps
        if steps and step.at < steps[-1].at:  # a late event: keep the order by time
            ordered = sorted([*steps, step], key=lambda s: s.at)
            steps.clear()
            steps.extend(ordered)
        else:
            steps.append(step)
        while len(steps) > self.limit:
            steps.popleft()

    def context(self, step: Step, window_s: float, limit: int) -> Iterator[Step]:
        """The steps before ``step`` (the newest first) within ``window_s``, at most
        ``limit`` distinct items."""
        seen: set[int] = set()
        for earlier in reversed(self.steps):
            if earlier is step:
                continue
            if step.at - earlier.at > window_s or len(seen) >= limit:
                return
            if earlier.item not in seen:
                seen.add(earlier.item)
                yield earlier


class ShopperStates:
    """Every shopper's state, by user id or session id."""

    def __init__(self, history_limit: int, basket_gap_s: float) -> None:
        self.history_limit = history_limit
        self.basket_gap_s = basket_gap_s
        self._states: dict[str, ShopperState] = {}
        # session id -> the user id it was seen with; user id -> those sessions.
        self._user_of_session: dict[str, str] = {}
        self._sessions_of_user: dict[str, set[str]] = {}

    def __len__(self) -> int:
        return len(self._states)

    @staticmethod
    def key(user: str, session: str) -> str:
        return "u:" + user if user else "s:" + session

    def state_for_event(self, user: str, session: str) -> ShopperState:
        if user and session and self._user_of_session.get(session) != user:
            self._user_of_session[session] = user
            self._sessions_of_user.setdefault(user, set()).add(session)
        key = self.key(user, session)
        state = self._states.get(key)
        if state is None:
            state = self._states[key] = ShopperState(self.history_limit)
        return state

    def steps(self, user: str, session: str) -> list[Step]:
        """The shopper's stored steps, oldest first: the user's, and the session's own when
        it is a separate state (browsing before signing in)."""
        found: list[Step] = []
        if user and (state := self._states.get("u:" + user)) is not None:
            found.extend(state.steps)
        if session and (state := self._states.get("s:" + session)) is not None:
            found.extend(state.steps)
        found.sort(key=lambda s: s.at)
        return found

    def forget(self, user: str, session: str) -> int:
        """Drop the shopper's states: the user's, the session's and the user's sessions'.
        How many states were dropped."""
        keys = set()
        if user:
            keys.add("u:" + user)
            for seen in self._sessions_of_user.pop(user, set()):
                keys.add("s:" + seen)
                self._user_of_session.pop(seen, None)
        if session:
            keys.add("s:" + session)
            owner = self._user_of_session.pop(session, None)
            if owner is not None:
                self._sessions_of_user.get(owner, set()).discard(session)
        return sum(self._states.pop(key, None) is not None for key in keys)

    def holds(self, shopper_id: str) -> bool:
        """Whether any state or mapping still names ``shopper_id`` (erasure checks)."""
        return (
            "u:" + shopper_id in self._states
            or "s:" + shopper_id in self._states
            or shopper_id in self._user_of_session
            or shopper_id in self._sessions_of_user
        )


@dataclass(frozen=True)
class Profile:
    """A shopper's profile: an L2-normalised vector in the catalog's text-vector space
    (``version``: its text_encoder version), or ``vector`` None with ``steps`` 0."""

    vector: np.ndarray | None
    version: str
    steps: int


def profile_weights(
    steps: Sequence[Step],
    half_life_s: float = PROFILE_HALF_LIFE_S,
    kind_weights: Mapping[int, float] = PROFILE_KIND_WEIGHTS,
) -> list[float]:
    """Each step's weight in the profile: its kind's weight, halved per ``half_life_s``
    before the newest step."""
    if not steps:
        return []
    newest = max(step.at for step in steps)
    return [
        kind_weights.get(step.kind, 0.0) * math.pow(2.0, -(newest - step.at) / half_life_s)
        for step in steps
    ]


def profile_vector(
    steps: Sequence[Step], vectors: np.ndarray | None, limit: int = PROFILE_STEPS
) -> tuple[np.ndarray | None, int]:
    """The weighted mean of the newest ``limit`` steps' item vectors (rows of ``vectors``),
    L2-normalised, and how many steps it read; ``(None, 0)`` when no step has a vector."""
    if vectors is None or not len(vectors):
        return None, 0
    usable = [s for s in steps if s.item < len(vectors) and vectors[s.item].any()][-limit:]
    if not usable:
        return None, 0
    weights = np.asarray(profile_weights(usable), dtype=np.float32)
    mean = weights @ vectors[[s.item for s in usable]]
    norm = float(np.linalg.norm(mean))
    if not norm > 0:
        return None, 0
    return (mean / np.float32(norm)).astype(np.float32), len(usable)
