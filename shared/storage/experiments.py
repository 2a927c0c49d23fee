"""Experiment definitions and their states, in the suite's SQL database (the registry's).

One table, ``experiments``: the checked definition as JSON (immutable once created: a
changed experiment is a new one, or its numbers would mix two setups), the state and its
times. A partial unique index makes "at most one RUNNING experiment" a property of the
database, as the registry does for SERVING versions. Errors are the suite's domain
errors, so the trainer passes them straight to its callers.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from enum import StrEnum
from typing import Any

import sqlalchemy
from sqlalchemy import Index, Text, select, text
from sqlmodel import Field, Session, SQLModel

from shared.errors import AlreadyExists, FailedPrecondition, NotFound
from shared.storage.feedback import UTCDateTime
from shared.storage.migrate import upgrade
from shared.storage.registry import utc_now


class ExperimentState(StrEnum):
    """The proto's ExperimentState without the prefix."""

    DRAFT = "DRAFT"
    RUNNING = "RUNNING"
    STOPPED = "STOPPED"


class ExperimentRow(SQLModel, table=True):
    """One experiment: its definition (a JSON object: ``shared.experiments.assignment``'s
    ``to_dict``; this module does not read it) and its state."""

    __tablename__ = "experiments"  # type: ignore[assignment]
    __table_args__ = (
        Index(
            "uq_experiments_one_running",
            "state",
            unique=True,
            sqlite_where=text("state = 'RUNNING'"),
            postgresql_where=text("state = 'RUNNING'"),
        ),
    )

    name: str = Field(primary_key=True, max_length=64)
    definition_json: str = Field(sa_type=Text)
    # An ExperimentState value.
    state: str = Field(default=ExperimentState.DRAFT.value, index=True, max_length=16)
    created_at: datetime = Field(default_factory=utc_now, sa_type=UTCDateTime)
    started_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    stopped_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    stop_reason: str = Field(default="", sa_type=Text)

    @property
    def definition(self) -> dict[str, Any]:
        """The stored definition as a JSON object."""
        return json.loads(self.definition_json)

    @property
    def experiment_state(self) -> ExperimentState:
        return ExperimentState(self.state)


def _definition(definition: Mapping[str, Any]) -> str:
    return json.dumps(definition, sort_keys=True)


class ExperimentStore:
    """Reads and one-transaction state changes of experiments."""

    def __init__(self, engine: sqlalchemy.Engine) -> None:
        self._engine = engine
        upgrade(engine, "registry")  # the registry's history has this table

    def _session(self) -> Session:
        return Session(self._engine, expire_on_commit=False)

    def create(self, name: str, definition: Mapping[str, Any]) -> tuple[ExperimentRow, bool]:
        """Store a checked definition (a JSON object) as DRAFT under ``name``;
        ``(row, created)``.

        The same definition again returns the stored row (``created`` False), so a config
        file can be applied at every start; a different one under the name is
        AlreadyExists.
        """
        stored = _definition(definition)
        existing = self.find(name)
        if existing is not None:
            if existing.definition_json != stored:
                raise AlreadyExists(
                    f"experiment.name: {name!r} exists with another definition; "
                    "experiments do not change once created: use a new name"
                )
            return existing, False
        row = ExperimentRow(name=name, definition_json=stored)
        try:
            with self._session() as session, session.begin():
                session.add(row)
        except sqlalchemy.exc.IntegrityError:  # created by a concurrent call
            return self.create(name, definition)
        return row, True

    def find(self, name: str) -> ExperimentRow | None:
        with self._session() as session:
            return session.get(ExperimentRow, name)

    def get(self, name: str) -> ExperimentRow:
        row = self.find(name)
        if row is None:
            raise NotFound(f"name: no experiment called {name!r}")
        return row

    def list(self, state: ExperimentState | None = None) -> list[ExperimentRow]:
        """Newest first."""
        query = select(ExperimentRow).order_by(ExperimentRow.created_at.desc())  # type: ignore[attr-defined]
        if state is not None:
            query = query.where(ExperimentRow.state == state.value)
        with self._session() as session:
            return list(session.exec(query).scalars())  # type: ignore[call-overload]

    def running(self) -> ExperimentRow | None:
        rows = self.list(ExperimentState.RUNNING)
        return rows[0] if rows else None

    def start(self, name: str) -> ExperimentRow:
        """DRAFT -> RUNNING; FailedPrecondition naming the running one if another runs."""
        with self._session() as session, session.begin():
            row = session.get(ExperimentRow, name, with_for_update=True)
            if row is None:
                raise NotFound(f"name: no experiment called {name!r}")
            if row.state == ExperimentState.RUNNING.value:
                return row
            if row.state != ExperimentState.DRAFT.value:
                raise FailedPrecondition(
                    f"name: experiment {name!r} is {row.state}; only a DRAFT starts "
                    "(create a new one to run it again)"
                )
            other = session.exec(  # type: ignore[call-overload]
                select(ExperimentRow).where(ExperimentRow.state == ExperimentState.RUNNING.value)
            ).scalar_one_or_none()
            if other is not None:
                raise FailedPrecondition(
                    f"name: experiment {other.name!r} is running; stop it first "
                    "(one experiment runs at a time)"
                )
            row.state = ExperimentState.RUNNING.value
            row.started_at = utc_now()
            session.add(row)
        return row

    def stop(self, name: str, reason: str = "") -> ExperimentRow:
        """RUNNING -> STOPPED with the reason."""
        with self._session() as session, session.begin():
            row = session.get(ExperimentRow, name, with_for_update=True)
            if row is None:
                raise NotFound(f"name: no experiment called {name!r}")
            if row.state != ExperimentState.RUNNING.value:
                raise FailedPrecondition(f"name: experiment {name!r} is {row.state}, not RUNNING")
            row.state = ExperimentState.STOPPED.value
            row.stopped_at = utc_now()
            row.stop_reason = reason
            session.add(row)
        return row
