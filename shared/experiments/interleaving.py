"""Team-draft interleaving (Radlinski, Kurup and Joachims, CIKM 2008).

Two rankings are merged like captains picking teams: in each round a coin decides which
arm picks first, and each arm adds its best item not yet in the list. A click on an item
is credited to the arm that picked it; over many impressions the arm whose picks get more
clicks is preferred. Both arms place their own top items near the top, so the comparison
needs far fewer shoppers than an A/B test of the same two rankings.

The coins come from a seed, so a request and the request for its next page (same
shopper, same query) see the same merged list.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Sequence

TEAM_A, TEAM_B = "a", "b"


def seed_for(*parts: str) -> int:
    """A stable 64-bit seed from text parts (shopper, query, salt)."""
    digest = hashlib.sha256("\x1f".join(parts).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big")


def team_draft(
    ranking_a: Sequence[str], ranking_b: Sequence[str], seed: int, limit: int | None = None
) -> tuple[list[str], str]:
    """The merged list and, per item, the team that picked it (``"a"``/``"b"``).

    Items are ids; each appears once. The merge stops at ``limit`` items or when both
    rankings are used up; an arm whose ranking is used up stops picking.
    """
    rng = random.Random(seed)
    merged: list[str] = []
    teams: list[str] = []
    taken: set[str] = set()
    count = {TEAM_A: 0, TEAM_B: 0}
    cursor = {TEAM_A: 0, TEAM_B: 0}
    rankings = {TEAM_A: ranking_a, TEAM_B: ranking_b}
    size = len(set(ranking_a) | set(ranking_b))
    limit = size if limit is None else min(limit, size)

    def next_free(team: str) -> str | None:
        ranking = rankings[team]
        while cursor[team] < len(ranking) and ranking[cursor[team]] in taken:
            cursor[team] += 1
        return ranking[cursor[team]] if cursor[team] < len(ranking) else None

    while len(merged) < limit:
        if count[TEAM_A] < count[TEAM_B]:
            team = TEAM_A
        elif count[TEAM_B] < count[TEAM_A]:
            team = TEAM_B
        else:
            team = TEAM_A if rng.random() < 0.5 else TEAM_B
        item = next_free(team)
        if item is None:  # this arm is used up: the other picks
            team = TEAM_B if team == TEAM_A else TEAM_A
            item = next_free(team)
            if item is None:
                break
        merged.append(item)
        teams.append(team)
        taken.add(item)
        count[team] += 1
    return merged, "".join(teams)
