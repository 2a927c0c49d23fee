"""Alembic migrations: the migrated schema is the models' schema on SQLite and PostgreSQL,
a database made by the code before migrations is adopted, and replicas may migrate at once."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlmodel import SQLModel

import services.trainer.schedule  # noqa: F401  (its table is in the registry's history)
from shared.storage import migrate
from shared.storage.catalog import CatalogStore, catalog_metadata
from shared.storage.database import create_db_engine
from shared.storage.experiments import ExperimentStore
from shared.storage.feedback import FeedbackStore
from shared.storage.registry import ModelRegistry
from shared.storage.served import ServedLog

pytestmark = pytest.mark.unit

# The tables each history owns (SQLModel's metadata holds the feedback and registry ones).
TABLES = {
    "catalog": {"catalog_products", "catalog_staging", "catalog_meta", "catalog_changes"},
    "feedback": {"feedback_events", "recommendation_served"},
    "registry": {"training_jobs", "model_versions", "experiments", "scheduled_retrains"},
}


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'state.db'}"
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture
def engine(url: str) -> Iterator[sqlalchemy.Engine]:
    engine = create_db_engine(url)
    yield engine
    engine.dispose()


def _diff(engine: sqlalchemy.Engine, store: str) -> list[object]:
    metadata = catalog_metadata() if store == "catalog" else SQLModel.metadata
    with engine.connect() as conn:
        context = MigrationContext.configure(
            conn,
            opts={
                "compare_type": True,
                "include_object": lambda obj, name, kind, _reflected, _other: (
                    kind != "table" or name in TABLES[store]
                ),
            },
        )
        return list(compare_metadata(context, metadata))


@pytest.mark.parametrize("store", migrate.STORES)
def test_the_migrated_schema_is_the_models_schema(engine: sqlalchemy.Engine, store: str) -> None:
    migrate.upgrade(engine, store)
    assert _diff(engine, store) == []
    names = set(sqlalchemy.inspect(engine).get_table_names())
    assert TABLES[store] | {migrate.version_table(store)} <= names
    with engine.connect() as conn:
        assert migrate.current(conn, store) == migrate.head(store)


def test_stores_sharing_one_database_keep_their_own_revisions(engine: sqlalchemy.Engine) -> None:
    FeedbackStore(engine)
    ServedLog(engine)
    ModelRegistry(engine)
    ExperimentStore(engine)
    names = set(sqlalchemy.inspect(engine).get_table_names())
    assert TABLES["feedback"] | TABLES["registry"] <= names
    assert not TABLES["catalog"] & names  # the catalog's tables only where the catalog is
    with engine.connect() as conn:
        assert migrate.current(conn, "feedback") == migrate.head("feedback")
        assert migrate.current(conn, "registry") == migrate.head("registry")
        assert migrate.current(conn, "catalog") is None


def test_replicas_starting_together_migrate_once(url: str) -> None:
    engines = [create_db_engine(url) for _ in range(4)]
    # The file exists (in WAL mode) before the replicas start: four first connections
    # switching a new file to WAL at once is SQLite's own race, not the migrations'.
    with engines[0].connect():
        pass
    errors: list[BaseException] = []

    def start(engine: sqlalchemy.Engine) -> None:
        try:
            FeedbackStore(engine)
            ModelRegistry(engine)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=start, args=(e,)) for e in engines]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    assert _diff(engines[0], "feedback") == [] and _diff(engines[0], "registry") == []
    for e in engines:
        e.dispose()


# The first release's feedback table, as the code before the hand-written ALTERs made it:
# no experiment/team/query/explored/placement columns, indexes on shopper and product.
_OLD_FEEDBACK = """
CREATE TABLE feedback_events (
    event_id VARCHAR(128) NOT NULL PRIMARY KEY, type VARCHAR(16) NOT NULL,
    occurred_at DATETIME NOT NULL, received_at DATETIME NOT NULL,
    user_id VARCHAR(128), session_id VARCHAR(128), product_id VARCHAR(128) NOT NULL,
    attribution_token VARCHAR, request_id VARCHAR, arm VARCHAR, position INTEGER,
    amount_micros BIGINT, currency VARCHAR(3), quantity INTEGER NOT NULL);
CREATE INDEX ix_feedback_events_user_id ON feedback_events (user_id);
CREATE INDEX ix_feedback_events_product_id ON feedback_events (product_id);
CREATE INDEX ix_feedback_events_request_id ON feedback_events (request_id);
INSERT INTO feedback_events VALUES ('e1', 'click', '2026-01-01 10:00:00.000000',
    '2026-01-01 10:00:01.000000', 'u1', NULL, 'p1', NULL, NULL, NULL, NULL, NULL, NULL, 1);
"""


def test_a_feedback_database_from_before_migrations_is_upgraded_in_place(tmp_path: Path) -> None:
    path = tmp_path / "feedback.db"
    with sqlite3.connect(path) as conn:
        conn.executescript(_OLD_FEEDBACK)
    engine = create_db_engine(f"sqlite:///{path}")
    store = FeedbackStore(engine)
    assert _diff(engine, "feedback") == []  # columns added, old indexes gone, new one made
    assert [e.event_id for e in store.interactions_after(None, 10)] == ["e1"]  # data kept
    engine.dispose()


def test_databases_made_by_the_previous_code_are_adopted(tmp_path: Path) -> None:
    """The stores as the code before migrations left them (every table by ``create_all``,
    no version table): opening them with this code adopts them, data kept."""
    old = sqlalchemy.create_engine(f"sqlite:///{tmp_path / 'old.db'}")
    SQLModel.metadata.create_all(old)
    old_catalog = ("catalog_products", "catalog_staging", "catalog_meta")
    catalog_metadata().create_all(old, tables=[catalog_metadata().tables[t] for t in old_catalog])
    with old.begin() as conn:
        conn.exec_driver_sql(
            "INSERT INTO catalog_meta (key, value) VALUES ('embedding_version', 'v7')"
        )
    old.dispose()
    url = f"sqlite:///{tmp_path / 'old.db'}"
    engine = create_db_engine(url)
    FeedbackStore(engine)
    ModelRegistry(engine)
    for store in ("feedback", "registry"):
        assert _diff(engine, store) == []
    catalog = CatalogStore.open(url, 4)
    assert catalog.load().version == "v7"
    assert _diff(catalog.engine, "catalog") == []
    catalog.close()
    engine.dispose()
