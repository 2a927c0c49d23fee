"""Where the recommender's inputs come from: the catalog snapshot (retrieval's
``ExportCatalog``, re-read when the catalog's generation changes) and new feedback events
(the feedback store, read in received order).

Reading the store: a cursor ``(received_at, event_id)`` moves forward, but each read goes
back ``OVERLAP`` (10 s) before it, because a transaction that committed late can hold
events received earlier than ones already read; ids read within that overlap are
remembered and skipped, so nothing is counted twice, and an event whose transaction
committed less than ``OVERLAP`` after it was received is not missed.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta

import grpc
from shopsense.retrieval.v1 import retrieval_service_pb2 as retrieval_pb
from shopsense.retrieval.v1 import retrieval_service_pb2_grpc

from shared.contracts.retrieval import CatalogExport, export_catalog
from shared.errors import Unavailable
from shared.recommendation.events import KIND_OF_TYPE, Interaction
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

    def __init__(self, store: FeedbackStore) -> None:
        self._store = store
        self._cursor: tuple[datetime, str] | None = None
        self._recent: dict[str, datetime] = {}  # ids read within OVERLAP of the cursor

    def read(self) -> Iterator[list[Interaction]]:
        """Pages of new interactions, each sorted by time, until the store has no more."""
        after = None if self._cursor is None else (self._cursor[0] - OVERLAP, "")
        while True:
            rows = self._store.interactions_after(after, READ_PAGE)
            if not rows:
                break
            after = (rows[-1].received_at, rows[-1].event_id)
            if self._cursor is None or after > self._cursor:
                self._cursor = after
            fresh = [row for row in rows if row.event_id not in self._recent]
            for row in fresh:
                self._recent[row.event_id] = row.received_at
            if fresh:
                yield sorted(
                    (
                        Interaction(
                            product_id=row.product_id,
                            kind=KIND_OF_TYPE[row.type],
                            at=row.occurred_at.timestamp(),
                            quantity=row.quantity or 1,
                            user=row.user_id or "",
                            session=row.session_id or "",
                        )
                        for row in fresh
                        if row.type in KIND_OF_TYPE
                    ),
                    key=lambda event: event.at,
                )
            if len(rows) < READ_PAGE:
                break
        if self._cursor is not None:
            horizon = self._cursor[0] - OVERLAP
            self._recent = {k: v for k, v in self._recent.items() if v >= horizon}
