"""Ranked results of repeated searches, kept for a while: head queries repeat, and a hit
skips the embedding, intent, retrieval and the cross-encoder.

What is kept is a search's arm runs (intent, candidates, ranked order, versions), before
they are arranged, paged and signed, so exploration, paging and attribution stay per
request. The key (:func:`search_key`) holds everything that decides the runs: the query as
the services read it, the filters and options, how deep the page goes (candidates asked,
results explained), the arms with their pins and pipeline settings, the serving model
versions, the catalog index's encoder version and the catalog's generation. A publish
changes the serving versions and a catalog change the generation; the gateway re-reads
both every ``SHOPSENSE_GATEWAY_REFRESH_S``, and its searches miss from then on. Entries
also expire after ``SHOPSENSE_RESULT_CACHE_TTL_S`` (the ranking features that move with
feedback, such as popularity, are at most that old), and the least recently used go beyond
``SHOPSENSE_RESULT_CACHE_ENTRIES`` (0 turns the cache off).

Never kept: searches an arm personalises (the shopper's profile decides them) and runs
that degraded or failed (an intent or ranking hiccup is not served after it passed).
Not seen: model versions loaded into Triton by hand, outside the registry (without a
trainer the gateway asks for Triton's newest); turn the cache off there.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable, Mapping, Sequence

from shopsense.search.v1 import search_service_pb2 as pb

from services.gateway.pipeline import ArmRun
from services.gateway.routing import Route
from shared.rpc import metrics

OUTCOMES = ("hit", "miss", "not_cached")


def search_key(
    where: Route,
    request: pb.SearchRequest,
    query: str,
    k: int,
    explain_top: int,
    serving: Mapping[str, str],
    index_version: str,
    catalog_generation: int,
) -> tuple[Hashable, ...]:
    """Everything that decides a search's arm runs (not the shopper, not the page's offset
    beyond how deep it goes)."""
    return (
        query,
        request.filters.SerializeToString(deterministic=True),
        request.options.SerializeToString(deterministic=True),
        k,
        explain_top,
        where.experiment_name,
        repr(tuple(where.arms)),
        tuple(sorted(serving.items())),
        index_version,
        catalog_generation,
    )


def cacheable(runs: Sequence[ArmRun]) -> bool:
    """Whether runs may be served again: no arm degraded or failed."""
    return all(
        not run.model_failures and not run.degraded.ListFields() and run.candidates for run in runs
    )


class ResultCache:
    """Arm runs by :func:`search_key`, least recently used first out, each for ``ttl_s``.
    Thread-safe; a kept run is never changed again (hits share it read-only)."""

    def __init__(
        self, entries: int, ttl_s: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.entries, self.ttl_s = entries, ttl_s
        self._clock = clock
        self._kept: OrderedDict[Hashable, tuple[float, list[ArmRun]]] = OrderedDict()
        self._lock = threading.Lock()
        self._outcomes = metrics.counter(
            "gateway",
            "shopsense_search_result_cache",
            "Searches by what the ranked-result cache did: hit, miss (then kept unless "
            "degraded) or not_cached (personalised, or the cache is off).",
            ("outcome",),
        )
        for outcome in OUTCOMES:
            self._outcomes.labels(outcome)

    def __len__(self) -> int:
        return len(self._kept)

    def get(self, key: Hashable) -> list[ArmRun] | None:
        """The kept runs under ``key`` (counted as a hit), or None (a miss)."""
        now = self._clock()
        with self._lock:
            found = self._kept.get(key)
            if found is not None and found[0] > now:
                self._kept.move_to_end(key)
                self._outcomes.labels("hit").inc()
                return found[1]
            if found is not None:
                del self._kept[key]
        self._outcomes.labels("miss").inc()
        return None

    def put(self, key: Hashable, runs: list[ArmRun]) -> None:
        """Keep ``runs`` under ``key`` when :func:`cacheable`."""
        if self.entries < 1 or not cacheable(runs):
            return
        expires = self._clock() + self.ttl_s
        with self._lock:
            self._kept[key] = (expires, runs)
            self._kept.move_to_end(key)
            while len(self._kept) > self.entries:
                self._kept.popitem(last=False)

    def skipped(self) -> None:
        """Count a search the cache could not serve (personalised, or the cache is off)."""
        self._outcomes.labels("not_cached").inc()
