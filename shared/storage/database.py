"""One way to open the suite's database, SQLite for development and PostgreSQL in production.

Feedback, experiments, the model registry and the catalog share this engine factory so that
every table gets the same durability settings. The engine comes without tables: each store
creates and upgrades its own through its migration history (``shared.storage.migrate``)
when it is constructed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import sqlalchemy
from sqlalchemy import event
from sqlalchemy.engine import make_url

# Seconds a writer waits for SQLite's single write lock before failing with "database is locked".
SQLITE_BUSY_TIMEOUT_S = 30.0


SQLITE_CACHE_KIB = 65_536


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    try:
        # WAL: readers never block the writer, and a commit is one append to the log.
        cursor.execute("PRAGMA journal_mode=WAL")
        # FULL, not NORMAL: in WAL mode NORMAL does not fsync on commit, so a committed
        # transaction can vanish on power loss. The services reply only after a commit is
        # durable, so every commit must reach the disk.
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute(f"PRAGMA busy_timeout={int(SQLITE_BUSY_TIMEOUT_S * 1000)}")
        cursor.execute("PRAGMA foreign_keys=ON")
        # 64 MiB of page cache per connection instead of 2 MiB: the feedback table's five
        # B-trees outgrow 2 MiB after some 100,000 events, and then every insert waited on
        # page reads (21,000 events/s fell to 11,000 by the third 100,000).
        cursor.execute(f"PRAGMA cache_size=-{SQLITE_CACHE_KIB}")
    finally:
        cursor.close()


def create_db_engine(url: str) -> sqlalchemy.Engine:
    """An engine for ``url`` (any SQLAlchemy URL) with the suite's settings.

    SQLite: the parent folder is created, WAL with synchronous=FULL, a busy timeout so that
    concurrent writers queue instead of failing, and connections usable from the gRPC worker
    threads. PostgreSQL (``postgresql+psycopg://...``): a pooled engine that checks connections
    before use, so a database restart costs one retry instead of a failed call.
    """
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database or ""
        if database and database != ":memory:" and not database.startswith("file:"):
            Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        engine = sqlalchemy.create_engine(
            parsed,
            connect_args={"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_S},
        )
        event.listen(engine, "connect", _sqlite_pragmas)
    else:
        engine = sqlalchemy.create_engine(
            parsed, pool_pre_ping=True, pool_size=8, max_overflow=8, pool_recycle=1800
        )
    return engine
