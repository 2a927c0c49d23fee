"""Shopper feedback events, stored once each (idempotent by event id) and durably.

The feedback service validates events and hands them here as ``ValidEvent``; this module
knows nothing of protobuf. Amounts are stored as integer micros (millionths of the currency
unit, as Google Ads does): exact on every backend (SQLite has no decimal type and would round
through a float) and fine for every ISO 4217 currency, whatever its number of minor digits.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import sqlalchemy
from sqlalchemy import BigInteger, DateTime, TypeDecorator, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Field, Session, SQLModel

# Limits the columns enforce; the service rejects longer values before they reach the database
# (on PostgreSQL one over-long value would otherwise fail the whole batch).
MAX_ID_CHARS = 128
MICROS_PER_UNIT = 1_000_000


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite would hand back naive ones)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("UTCDateTime: naive datetime; pass an aware one")
        value = value.astimezone(UTC)
        # SQLite stores text: keep it naive UTC so that values sort and compare as text.
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class FeedbackEvent(SQLModel, table=True):
    """One stored event. ``request_id`` and ``arm`` come from the verified attribution token."""

    __tablename__ = "feedback_events"  # type: ignore[assignment]

    event_id: str = Field(primary_key=True, max_length=MAX_ID_CHARS)
    # "impression", "click", "add_to_cart" or "purchase".
    type: str = Field(max_length=16)
    # When it happened (the client's clock) and when this service received it, both UTC.
    occurred_at: datetime = Field(sa_type=UTCDateTime)
    received_at: datetime = Field(sa_type=UTCDateTime)
    user_id: str | None = Field(default=None, index=True, max_length=MAX_ID_CHARS)
    session_id: str | None = Field(default=None, max_length=MAX_ID_CHARS)
    product_id: str = Field(index=True, max_length=MAX_ID_CHARS)
    attribution_token: str | None = Field(default=None)
    request_id: str | None = Field(default=None, index=True)
    arm: str | None = Field(default=None)
    # 1-based position for impressions; None when not given.
    position: int | None = Field(default=None)
    # Amount in millionths of ``currency`` (129.99 USD -> 129_990_000); None when not given.
    amount_micros: int | None = Field(default=None, sa_type=BigInteger)
    currency: str | None = Field(default=None, max_length=3)
    quantity: int = Field(default=1)

    @property
    def amount(self) -> Decimal | None:
        """The exact amount in currency units."""
        if self.amount_micros is None:
            return None
        return Decimal(self.amount_micros) / MICROS_PER_UNIT


@dataclass(frozen=True, slots=True)
class ValidEvent:
    """An event that passed validation, in storage terms (empty optional fields are None)."""

    event_id: str
    type: str
    occurred_at: datetime
    received_at: datetime
    product_id: str
    user_id: str | None = None
    session_id: str | None = None
    attribution_token: str | None = None
    request_id: str | None = None
    arm: str | None = None
    position: int | None = None
    amount_micros: int | None = None
    currency: str | None = None
    quantity: int = 1

    def row(self) -> dict[str, Any]:
        """Column name to value, as the INSERT takes it."""
        return {name: getattr(self, name) for name in self.__slots__}


_TABLE: sqlalchemy.Table = FeedbackEvent.__table__  # type: ignore[assignment]


class FeedbackStore:
    """Idempotent, durable writes of feedback events over any engine from ``create_db_engine``."""

    def __init__(self, engine: sqlalchemy.Engine) -> None:
        self._engine = engine
        dialect = engine.dialect.name
        if dialect == "sqlite":
            insert = sqlite.insert
        elif dialect == "postgresql":
            insert = postgresql.insert
        else:
            raise ValueError(f"feedback store: unsupported database {dialect!r}")
        # ON CONFLICT DO NOTHING makes concurrent writers of the same id safe without locks or
        # retries: exactly one insert wins, and RETURNING says which rows this call stored.
        self._insert = (
            insert(_TABLE)
            .on_conflict_do_nothing(index_elements=[_TABLE.c.event_id])
            .returning(_TABLE.c.event_id)
        )
        # create_db_engine created the tables imported before it ran; make sure of ours.
        SQLModel.metadata.create_all(engine, tables=[_TABLE])

    @property
    def engine(self) -> sqlalchemy.Engine:
        """The engine, so the owner can dispose it (and tests can inspect the database)."""
        return self._engine

    def ping(self) -> None:
        """Raise unless the database answers (the server is SERVING only once it does)."""
        with self._engine.connect() as conn:
            conn.execute(select(1))

    def record(self, events: Sequence[ValidEvent]) -> list[bool]:
        """Store ``events`` in one transaction; True where newly stored, False for a duplicate.

        Returns only after the commit. An id already stored, or repeated earlier in the same
        batch, is a duplicate. Rows go in sorted by id so that concurrent batches with
        overlapping ids take their row locks in the same order and cannot deadlock (PostgreSQL).
        """
        if not events:
            return []
        first_index: dict[str, int] = {}
        for index, event in enumerate(events):
            first_index.setdefault(event.event_id, index)
        rows = [
            events[i].row() for i in sorted(first_index.values(), key=lambda i: events[i].event_id)
        ]
        with self._engine.begin() as conn:
            # One executemany: SQLAlchemy splits it into multi-row INSERTs within the
            # dialect's parameter limit and gathers the RETURNING rows of every page.
            inserted = set(conn.execute(self._insert, rows).scalars())
        return [
            first_index[event.event_id] == index and event.event_id in inserted
            for index, event in enumerate(events)
        ]

    def count(self) -> int:
        """Number of stored events."""
        with self._engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(_TABLE)).scalar_one())

    def get(self, event_id: str) -> FeedbackEvent | None:
        """The stored event with this id, or None."""
        with Session(self._engine, expire_on_commit=False) as session:
            return session.get(FeedbackEvent, event_id)
