"""Schema changes through Alembic: each store's tables are created and upgraded by its own
migration history, never by ``create_all`` or hand-written ``ALTER`` s.

Three histories (``shared/storage/migrations/<store>/``), each with its own version table
(``alembic_version_<store>``), because the stores may live in one database or in three:
``catalog`` (catalog_products, catalog_staging, catalog_meta, catalog_changes) on
``SHOPSENSE_CATALOG_DB_URL``; ``feedback`` (feedback_events, recommendation_served) on
``SHOPSENSE_FEEDBACK_DB_URL``; ``registry`` (training_jobs, model_versions, experiments,
scheduled_retrains) on ``SHOPSENSE_REGISTRY_DB_URL``. In Kubernetes all three share one
PostgreSQL database; embedded, each is its own SQLite file. One history per store means a
store's tables exist only where that store lives, and each advances on its own.

``upgrade(engine, store)`` brings the store to its newest revision. Replicas start
together, so it runs under a lock: a PostgreSQL transaction-level advisory lock (the
upgrade is one transaction: PostgreSQL's DDL is transactional), or an exclusive ``flock``
on a file beside a SQLite database. The second replica waits, then finds the schema
current and does nothing. A database made before these histories (no version table) is
adopted by each store's first revision, which creates only the tables that are missing
and brings existing ones to that revision's schema (see its docstring).
"""

from __future__ import annotations

import fcntl
import threading
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import sqlalchemy
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import text

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
STORES = ("catalog", "feedback", "registry")
# Alembic's ``context`` is one per process: two upgrades in one process take turns.
_PROCESS_LOCK = threading.Lock()


def version_table(store: str) -> str:
    """The table holding ``store``'s revision in its database."""
    return f"alembic_version_{store}"


def _config(store: str) -> Config:
    if store not in STORES:
        raise ValueError(f"store: one of {', '.join(STORES)} (got {store!r})")
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("path_separator", "os")
    config.set_main_option("version_locations", str(MIGRATIONS / store))
    config.attributes["store"] = store
    return config


def head(store: str) -> str:
    """The newest revision of ``store``'s history."""
    heads = ScriptDirectory.from_config(_config(store)).get_heads()
    if len(heads) != 1:
        raise RuntimeError(f"{store} migrations: expected one head, found {heads}")
    return heads[0]


def current(connection: sqlalchemy.Connection, store: str) -> str | None:
    """The revision ``store`` is at in ``connection`` 's database (None: not versioned)."""
    context = MigrationContext.configure(connection, opts={"version_table": version_table(store)})
    return context.get_current_revision()


@contextmanager
def _sqlite_file_lock(engine: sqlalchemy.Engine) -> Iterator[None]:
    database = engine.url.database or ""
    if not database or database == ":memory:" or database.startswith("file:"):
        yield
        return
    lock = Path(database).expanduser().with_name(Path(database).name + ".migrate-lock")
    lock.parent.mkdir(parents=True, exist_ok=True)
    with lock.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def upgrade(engine: sqlalchemy.Engine, store: str) -> None:
    """Bring ``store``'s tables in ``engine`` 's database to the newest revision, safe
    against other processes doing the same at the same moment."""
    config = _config(store)
    newest = head(store)
    # The common case (every start after the first) costs one SELECT and no lock.
    with engine.connect() as conn:
        if _has_version_table(conn, store) and current(conn, store) == newest:
            return
    postgres = engine.dialect.name == "postgresql"
    with (
        _PROCESS_LOCK,
        _sqlite_file_lock(engine) if not postgres else _nothing(),
        engine.connect() as conn,
    ):
        if postgres:
            # Released at commit; the key is the store's, so stores in one database
            # migrate independently.
            key = zlib.crc32(f"shopsense-migrate-{store}".encode())
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})
        config.attributes["connection"] = conn
        command.upgrade(config, "head")
        conn.commit()


def _has_version_table(conn: sqlalchemy.Connection, store: str) -> bool:
    return sqlalchemy.inspect(conn).has_table(version_table(store))


@contextmanager
def _nothing() -> Iterator[None]:
    yield
