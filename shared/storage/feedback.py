"""Shopper feedback events, stored once each (idempotent by event id) and durably.

The feedback service validates events and hands them here as ``ValidEvent``; this module
knows nothing of protobuf. Amounts are stored as integer micros (millionths of the currency
unit, as Google Ads does): exact on every backend (SQLite has no decimal type and would round
through a float) and fine for every ISO 4217 currency, whatever its number of minor digits.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, NamedTuple

import sqlalchemy
import sqlalchemy.exc
from sqlalchemy import BigInteger, DateTime, TypeDecorator, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Field, Session, SQLModel

from shared.storage.migrate import upgrade

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
    # Indexed: the recommender reads new events in received order (an increasing key is
    # appended at the index's end, so it costs ingestion little, unlike the random ids).
    received_at: datetime = Field(sa_type=UTCDateTime, index=True)
    # No index on the shopper or product columns: an insert into an index on a random key
    # touches a random page, and with three of them sustained ingestion fell from 62,000 to
    # 11,000 events/s by the 500,000th event (the pages a commit dirties grow with the
    # table). Reports and training scan; a privacy export or erasure scans too (rare).
    user_id: str | None = Field(default=None, max_length=MAX_ID_CHARS)
    session_id: str | None = Field(default=None, max_length=MAX_ID_CHARS)
    product_id: str = Field(max_length=MAX_ID_CHARS)
    attribution_token: str | None = Field(default=None)
    request_id: str | None = Field(default=None, index=True)
    arm: str | None = Field(default=None)
    # 1-based position for impressions; None when not given.
    # The experiment the token names ("" outside any) and, for interleaving, the arm
    # ("a"/"b") that placed the product at ``position``.
    experiment: str | None = Field(default=None, max_length=64)
    team: str | None = Field(default=None, max_length=1)
    # The query whose results the event is about (from the token); training reads it.
    query: str | None = Field(default=None)
    # True when the page's top results were shuffled (exploration); None otherwise.
    explored: bool | None = Field(default=None)
    position: int | None = Field(default=None)
    # Amount in millionths of ``currency`` (129.99 USD -> 129_990_000); None when not given.
    amount_micros: int | None = Field(default=None, sa_type=BigInteger)
    currency: str | None = Field(default=None, max_length=3)
    quantity: int = Field(default=1)
    # The recommendation placement the token names ("similar_items", ...); None for search.
    placement: str | None = Field(default=None, max_length=32)

    @property
    def amount(self) -> Decimal | None:
        """The exact amount in currency units."""
        if self.amount_micros is None:
            return None
        return Decimal(self.amount_micros) / MICROS_PER_UNIT


class ValidEvent(NamedTuple):
    """An event that passed validation, in storage terms (empty optional fields are None).

    A named tuple: the feedback path builds tens of thousands a second, and its fields are
    the table's columns in INSERT order."""

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
    experiment: str | None = None
    team: str | None = None
    query: str | None = None
    explored: bool | None = None
    position: int | None = None
    amount_micros: int | None = None
    currency: str | None = None
    quantity: int = 1
    placement: str | None = None

    def row(self) -> dict[str, Any]:
        """Column name to value, as the INSERT takes it."""
        return self._asdict()


class StoredInteraction(NamedTuple):
    """What the recommender reads of a stored click, cart or purchase."""

    event_id: str
    type: str
    occurred_at: datetime
    received_at: datetime
    user_id: str | None
    session_id: str | None
    product_id: str
    quantity: int


_TABLE: sqlalchemy.Table = FeedbackEvent.__table__  # type: ignore[assignment]


class ShopperErasure(SQLModel, table=True):
    """One id a shopper's erasure named, as :func:`erasure_key`, in the order erased.

    Feedback records it in the transaction that deletes the events; the trainer applies it
    to the training folders written before (shared/training/erasure.py), which say up to
    which ``id`` they are clean. Only the key is kept: the list must not itself hold the
    ids of the shoppers who asked to be forgotten."""

    __tablename__ = "shopper_erasures"  # type: ignore[assignment]

    id: int | None = Field(default=None, primary_key=True)
    key: str = Field(max_length=64)
    erased_at: datetime = Field(sa_type=UTCDateTime)


_ERASURES: sqlalchemy.Table = ShopperErasure.__table__  # type: ignore[assignment]


def erasure_key(kind: str, value: str) -> str:
    """How an id (``kind`` "u" for a user id, "s" for a session id) is named in the erasure
    list and in the training folders written from feedback: 32 hex of SHA-256. It keeps the
    id itself out of files; it is no anonymisation (a guessed id can be checked), so the
    folders stay as private as the feedback store."""
    return hashlib.sha256(f"shopsense-shopper\0{kind}:{value}".encode()).hexdigest()[:32]


def erasure_keys(user_id: str, session_id: str) -> list[str]:
    """The keys an erasure of ``user_id`` or ``session_id`` (either matches) names."""
    return [erasure_key(k, v) for k, v in (("u", user_id), ("s", session_id)) if v]


_COLUMNS = ValidEvent._fields
# SQLite keeps datetimes as text in SQLAlchemy's format (naive UTC), read back by UTCDateTime.
_SQLITE_TIME = "%Y-%m-%d %H:%M:%S.%f"
# Bound parameters per statement, under SQLite's smallest default limit (999).
_SQLITE_VARIABLES = 900


_OCCURRED = _COLUMNS.index("occurred_at")
_RECEIVED = _COLUMNS.index("received_at")


def _sqlite_rows(events: Sequence[ValidEvent]) -> list[tuple[Any, ...]]:
    """The INSERT's parameter tuples, in ``_COLUMNS`` order, datetimes as SQLite text."""
    times: dict[datetime, str] = {}  # a call's events share received_at, often occurred_at

    def text(value: datetime) -> str:
        found = times.get(value)
        if found is None:
            found = times[value] = value.astimezone(UTC).strftime(_SQLITE_TIME)
        return found

    rows = []
    for event in events:
        values = list(event)
        values[_OCCURRED] = text(event.occurred_at)
        values[_RECEIVED] = text(event.received_at)
        rows.append(tuple(values))
    return rows


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
        upgrade(engine, "feedback")
        self._sqlite = dialect == "sqlite"

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
        order = sorted(first_index.values(), key=lambda i: events[i].event_id)
        if self._sqlite:
            inserted = self._record_sqlite([events[i] for i in order])
        else:
            rows = [events[i].row() for i in order]
            with self._engine.begin() as conn:
                # One executemany: SQLAlchemy splits it into multi-row INSERTs within the
                # dialect's parameter limit and gathers the RETURNING rows of every page.
                inserted = set(conn.execute(self._insert, rows).scalars())
        return [
            first_index[event.event_id] == index and event.event_id in inserted
            for index, event in enumerate(events)
        ]

    def _record_sqlite(self, events: Sequence[ValidEvent]) -> set[str]:
        """SQLite's fast path: the ids already stored are read, the others inserted, in one
        IMMEDIATE transaction (the write lock is taken first, so no other writer can slip
        in between). It skips SQLAlchemy's per-value processing, which cost three times
        the insert itself; the values are written in the same text form it writes."""
        ids = [event.event_id for event in events]
        insert = (
            f"INSERT INTO {_TABLE.name} ({', '.join(_COLUMNS)}) "
            f"VALUES ({', '.join('?' * len(_COLUMNS))})"
        )
        connection = self._engine.raw_connection()
        try:
            cursor = connection.cursor()
            cursor.execute("BEGIN IMMEDIATE")
            try:
                stored: set[str] = set()
                for start in range(0, len(ids), _SQLITE_VARIABLES):
                    chunk = ids[start : start + _SQLITE_VARIABLES]
                    cursor.execute(
                        f"SELECT event_id FROM {_TABLE.name} "
                        f"WHERE event_id IN ({', '.join('?' * len(chunk))})",
                        chunk,
                    )
                    stored.update(row[0] for row in cursor.fetchall())
                cursor.executemany(
                    insert, _sqlite_rows([e for e in events if e.event_id not in stored])
                )
                cursor.execute("COMMIT")
            except BaseException:
                cursor.execute("ROLLBACK")
                raise
        finally:
            connection.close()
        return set(ids) - stored

    def _shopper_clause(self, user_id: str, session_id: str) -> Any:
        clauses = []
        if user_id:
            clauses.append(_TABLE.c.user_id == user_id)
        if session_id:
            clauses.append(_TABLE.c.session_id == session_id)
        if not clauses:
            raise ValueError("user_id or session_id is required")
        return sqlalchemy.or_(*clauses)

    def shopper_events(self, user_id: str = "", session_id: str = "") -> list[FeedbackEvent]:
        """The events of a user id or a session id (either matches), oldest first."""
        query = (
            select(FeedbackEvent)
            .where(self._shopper_clause(user_id, session_id))
            .order_by(_TABLE.c.occurred_at, _TABLE.c.event_id)
        )
        with Session(self._engine, expire_on_commit=False) as session:
            return list(session.exec(query).scalars())  # type: ignore[call-overload]

    def delete_shopper(self, user_id: str = "", session_id: str = "") -> int:
        """Delete the events of a user id or a session id; how many were deleted. The same
        transaction adds the ids to the erasure list (even when no event was left: a
        training folder may hold some from before), so no folder outlives a committed
        erasure unnoticed."""
        clause = self._shopper_clause(user_id, session_id)
        now = datetime.now(UTC)
        with self._engine.begin() as conn:
            result = conn.execute(_TABLE.delete().where(clause))
            conn.execute(
                _ERASURES.insert(),
                [{"key": key, "erased_at": now} for key in erasure_keys(user_id, session_id)],
            )
            return int(result.rowcount or 0)

    def last_erasure(self) -> int:
        """The id of the newest erasure (0: none yet): a folder written from events read
        after this holds none of the shoppers erased up to it."""
        with self._engine.connect() as conn:
            return int(conn.execute(select(func.max(_ERASURES.c.id))).scalar() or 0)

    def erasures_after(self, after: int) -> list[tuple[int, str]]:
        """``(id, key)`` of the erasures after id ``after``, oldest first."""
        query = select(_ERASURES.c.id, _ERASURES.c.key).where(_ERASURES.c.id > after)
        with self._engine.connect() as conn:
            return [(int(i), str(k)) for i, k in conn.execute(query.order_by(_ERASURES.c.id))]

    def interactions_after(
        self, after: tuple[datetime, str] | None, limit: int
    ) -> list[StoredInteraction]:
        """Up to ``limit`` clicks, carts and purchases received after ``after`` (a
        ``(received_at, event_id)`` cursor; None: from the first), in that order."""
        c = _TABLE.c
        query = select(
            c.event_id,
            c.type,
            c.occurred_at,
            c.received_at,
            c.user_id,
            c.session_id,
            c.product_id,
            c.quantity,
        ).where(c.type != "impression")
        if after is not None:
            query = query.where(sqlalchemy.tuple_(c.received_at, c.event_id) > after)
        query = query.order_by(c.received_at, c.event_id).limit(limit)
        with self._engine.connect() as conn:
            return [StoredInteraction(*row) for row in conn.execute(query)]

    def interaction_pages(
        self, after: tuple[datetime, str] | None, page: int
    ) -> Iterator[list[StoredInteraction]]:
        """:meth:`interactions_after` page after page, from ``after`` until the store has
        no more (a short page is the last)."""
        while True:
            rows = self.interactions_after(after, page)
            if rows:
                yield rows
            if len(rows) < page:
                return
            after = (rows[-1].received_at, rows[-1].event_id)

    def count(self) -> int:
        """Number of stored events."""
        with self._engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(_TABLE)).scalar_one())

    def get(self, event_id: str) -> FeedbackEvent | None:
        """The stored event with this id, or None."""
        with Session(self._engine, expire_on_commit=False) as session:
            return session.get(FeedbackEvent, event_id)
