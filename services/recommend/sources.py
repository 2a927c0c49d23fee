"""Where the recommender's inputs come from: the catalog snapshot (retrieval's
``ExportCatalog``, re-read when the catalog's generation changes) and new feedback events
(the feedback store, read in received order).

Reading the store: a cursor ``(received_at, event_id)`` moves forward, but each read goes
back ``OVERLAP`` (10 s) before it, because a transaction that committed late can hold
events received earlier than ones already read; ids read within that overlap are
remembered and skipped, so nothing is counted twice, and an event whose transaction
committed less than ``OVERLAP`` after it was received is not missed. By the same rule,
everything received ``OVERLAP`` before a read began had committed and was read then, so the
next read need not go back further than that. So a store without new events (after an
import, at night) is not read again every round: after the Online Retail import the
overlap held the import's last 10 s, 57,000 events parsed every 2 s, a third of a core and
the GIL the requests wait for. The rule compares received_at (the feedback service's
clock) with this service's: skew between the two shortens the overlap by as much.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import grpc
from shopsense.retrieval.v1 import retrieval_service_pb2 as retrieval_pb
from shopsense.retrieval.v1 import retrieval_service_pb2_grpc

from shared.contracts.retrieval import CatalogExport, export_catalog
from shared.errors import Unavailable
from shared.recommendation.events import Interaction, interaction_of
from shared.rpc.clients import open_channel
from shared.storage.feedback import FeedbackStore

OVERLAP = timedelta(seconds=10)
READ_PAGE = 50_000


class CatalogSource:
    """The catalog as retrieval holds it."""

    def __init__(self, target: str, timeout_s: float = 60.0) -> None:
        self._channel = open_channel(target)
        self._stub = retrieval_service_pb2_grpc.RetrievalServiceStub(self._channel)
        self._timeout_s = timeout_s

    def close(self) -> None:
        self._channel.close()

    def generation(self) -> int:
        try:
            reply = self._stub.GetCatalogStats(retrieval_pb.GetCatalogStatsRequest(), timeout=10.0)
        except grpc.RpcError as exc:
            raise Unavailable(f"retrieval service: {exc.details()}") from exc
        return reply.generation

    def snapshot(self) -> CatalogExport:
        try:
            return export_catalog(self._stub, self._timeout_s)
        except grpc.RpcError as exc:
            raise Unavailable(f"retrieval service: {exc.details()}") from exc


class FeedbackSource:
    """New clicks, carts and purchases from the feedback store, each once."""

    def __init__(
        self, store: FeedbackStore, now: Callable[[], datetime] = lambda: datetime.now(UTC)
    ) -> None:
        self._store = store
        self._cursor: tuple[datetime, str] | None = None
        self._recent: dict[str, datetime] = {}  # ids read where the next read starts
        # Every event received before this was read (OVERLAP before the last read began).
        self._settled: datetime | None = None
        self._now = now

    def read(self) -> Iterator[list[Interaction]]:
        """Pages of new interactions, each sorted by time, until the store has no more."""
        began = self._now()
        after = self._read_from()
        for rows in self._store.interaction_pages(after, READ_PAGE):
            page_end = (rows[-1].received_at, rows[-1].event_id)
            if self._cursor is None or page_end > self._cursor:
                self._cursor = page_end
            fresh = [row for row in rows if row.event_id not in self._recent]
            for row in fresh:
                self._recent[row.event_id] = row.received_at
            events = [e for e in map(interaction_of, fresh) if e is not None]
            if events:
                yield sorted(events, key=lambda event: event.at)
        self._settled = began - OVERLAP
        # Only the ids the next read can meet again (rebuilding 57,000 of them every round
        # took 36 ms of the GIL).
        start = self._read_from()
        if start is not None:
            self._recent = {k: v for k, v in self._recent.items() if v >= start[0]}

    def _read_from(self) -> tuple[datetime, str] | None:
        """The cursor ``OVERLAP`` back, but not back past what the last read settled
        (None: from the first event)."""
        if self._cursor is None:
            return None
        start = self._cursor[0] - OVERLAP
        if self._settled is None or self._settled <= start:
            return (start, "")
        if self._settled > self._cursor[0]:
            return self._cursor
        return (self._settled, "")
