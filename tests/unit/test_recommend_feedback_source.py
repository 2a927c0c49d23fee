"""The recommendation service's reading of the feedback store (``FeedbackSource``): each
event once, a late-committed one still found, and a store without new events no longer
read again round after round once its newest events have settled (after the Online
Retail import the overlap held 57,000 events, parsed every 2 s, and the requests waited
for the GIL). A real SQLite store; the clock is the test's, and a counting wrapper
around the store shows how many rows each round fetched."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from services.recommend.sources import FeedbackSource
from shared.recommendation.events import Interaction
from shared.storage.database import create_db_engine
from shared.storage.feedback import FeedbackStore, StoredInteraction, ValidEvent

pytestmark = pytest.mark.unit

T0 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


class CountingStore:
    """The real store, counting the rows each read fetched."""

    def __init__(self, store: FeedbackStore) -> None:
        self.store = store
        self.fetched = 0

    def interaction_pages(
        self, after: tuple[datetime, str] | None, page: int
    ) -> Iterator[list[StoredInteraction]]:
        for rows in self.store.interaction_pages(after, page):
            self.fetched += len(rows)
            yield rows


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def at(self, seconds: float) -> None:
        self.now = T0 + timedelta(seconds=seconds)


@pytest.fixture
def store(tmp_path: Path) -> FeedbackStore:
    return FeedbackStore(create_db_engine(f"sqlite:///{tmp_path / 'feedback.db'}"))


def record(store: FeedbackStore, ids: list[str], received_s: float) -> None:
    """Purchases received ``received_s`` after T0 (one call: they share the time)."""
    received = T0 + timedelta(seconds=received_s)
    events = [
        ValidEvent(i, "purchase", received, received, f"p-{i}", user_id=f"u-{i}") for i in ids
    ]
    assert all(store.record(events))


def read(source: FeedbackSource) -> list[Interaction]:
    return [event for page in source.read() for event in page]


def test_an_idle_store_is_not_read_again_once_its_newest_events_settled(
    store: FeedbackStore,
) -> None:
    counting, clock = CountingStore(store), Clock()
    source = FeedbackSource(counting, now=lambda: clock.now)  # type: ignore[arg-type]
    record(store, [f"e{i}" for i in range(500)], 0.0)
    clock.at(1)
    assert len(read(source)) == 500
    # Within the overlap a late commit may still come: the window is read again.
    clock.at(3)
    counting.fetched = 0
    assert read(source) == []
    assert counting.fetched == 500
    # Every read from now on began more than OVERLAP after the events were received.
    clock.at(12)
    read(source)
    for seconds in (14, 16, 60):
        clock.at(seconds)
        counting.fetched = 0
        assert read(source) == []
        assert counting.fetched == 0, f"round at {seconds} s fetched old rows again"
    # New events are read, each once.
    record(store, ["late-1", "late-2"], 61.0)
    clock.at(62)
    assert [e.product_id for e in read(source)] == ["p-late-1", "p-late-2"]
    clock.at(63)
    assert read(source) == []


def test_an_event_committed_late_within_the_overlap_is_read_once(
    store: FeedbackStore,
) -> None:
    clock = Clock()
    source = FeedbackSource(store, now=lambda: clock.now)
    record(store, ["first"], 8.0)
    clock.at(9)
    assert [e.product_id for e in read(source)] == ["p-first"]
    # Received before the event already read, committed after that read.
    record(store, ["slow"], 5.0)
    clock.at(11)
    assert [e.product_id for e in read(source)] == ["p-slow"]
    clock.at(40)
    assert read(source) == []
    # After an idle spell, a late commit within OVERLAP of the last read is still found.
    record(store, ["next"], 45.0)
    clock.at(46)
    assert [e.product_id for e in read(source)] == ["p-next"]
    record(store, ["slow-2"], 44.0)
    clock.at(50)
    assert [e.product_id for e in read(source)] == ["p-slow-2"]
