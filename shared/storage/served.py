"""The recommendation pages served, item by item, with each source's value: what the learned
blend (``shared.recommendation.blend``) joins the shoppers' impressions and clicks with.

Rows live in the feedback database beside the events they are joined with (by the
attribution token's request id). A row holds the page's request id, placement, time, and
for one item its product, 1-based position and the sources' values; no shopper id, so an
erasure has nothing to chase here. Rows older than the attribution window are pruned: no
feedback can credit their page any more.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import NamedTuple

import sqlalchemy
from sqlalchemy import delete, insert, select
from sqlmodel import Field, SQLModel

from shared.storage.feedback import MAX_ID_CHARS, FeedbackEvent, UTCDateTime
from shared.storage.migrate import upgrade


class ServedItem(SQLModel, table=True):
    """One item of one served recommendation page."""

    __tablename__ = "recommendation_served"  # type: ignore[assignment]

    id: int | None = Field(default=None, primary_key=True)
    request_id: str = Field(index=True, max_length=MAX_ID_CHARS)
    placement: str = Field(max_length=32)
    served_at: datetime = Field(sa_type=UTCDateTime, index=True)
    product_id: str = Field(max_length=MAX_ID_CHARS)
    position: int
    # {"source": value}: each source's normalised value for this item on this page.
    parts: str


class Served(NamedTuple):
    """A served item as the blend reads it, with what the shopper did."""

    placement: str
    position: int
    values: dict[str, float]
    clicked: bool


_TABLE: sqlalchemy.Table = ServedItem.__table__  # type: ignore[assignment]
_EVENTS: sqlalchemy.Table = FeedbackEvent.__table__  # type: ignore[assignment]


class ServedLog:
    """Writes served pages and reads them back joined with their feedback."""

    def __init__(self, engine: sqlalchemy.Engine) -> None:
        self._engine = engine
        upgrade(engine, "feedback")  # the feedback store's history has this table

    def add(
        self,
        pages: Iterable[tuple[str, str, datetime, Sequence[tuple[str, Mapping[str, float]]]]],
    ) -> int:
        """Store ``(request_id, placement, served_at, [(product_id, values), ...])`` pages
        (items in shown order); the rows written."""
        rows = [
            {
                "request_id": request_id,
                "placement": placement,
                "served_at": served_at,
                "product_id": product_id,
                "position": position,
                "parts": json.dumps(dict(values), separators=(",", ":")),
            }
            for request_id, placement, served_at, items in pages
            for position, (product_id, values) in enumerate(items, start=1)
        ]
        if rows:
            with self._engine.begin() as conn:
                conn.execute(insert(_TABLE), rows)
        return len(rows)

    def shown(self, since: datetime | None = None) -> list[Served]:
        """Every served item a shopper was shown (an impression event with the page's
        request id and the product), with whether they clicked it, oldest first; pages
        served before ``since`` left out. The position is the one served."""
        s, e = _TABLE.c, _EVENTS.c
        impressions = (
            select(e.request_id, e.product_id)
            .where(e.type == "impression", e.placement.is_not(None))
            .distinct()
            .subquery()
        )
        clicks = (
            select(e.request_id, e.product_id)
            .where(e.type == "click", e.placement.is_not(None))
            .distinct()
            .subquery()
        )
        query = (
            select(s.placement, s.position, s.parts, clicks.c.product_id)
            .join(
                impressions,
                (impressions.c.request_id == s.request_id)
                & (impressions.c.product_id == s.product_id),
            )
            .outerjoin(
                clicks,
                (clicks.c.request_id == s.request_id) & (clicks.c.product_id == s.product_id),
            )
            .order_by(s.id)
        )
        if since is not None:
            query = query.where(s.served_at >= since)
        with self._engine.connect() as conn:
            return [
                Served(placement, position, json.loads(parts), clicked is not None)
                for placement, position, parts, clicked in conn.execute(query)
            ]

    def prune(self, before: datetime) -> int:
        """Delete pages served before ``before``; the rows deleted."""
        with self._engine.begin() as conn:
            return int(conn.execute(delete(_TABLE).where(_TABLE.c.served_at < before)).rowcount)

    def count(self) -> int:
        with self._engine.connect() as conn:
            return int(
                conn.execute(select(sqlalchemy.func.count()).select_from(_TABLE)).scalar_one()
            )
