"""A shopper's erasure, applied to the training folders written from their feedback.

Feedback's DeleteShopperEvents deletes the events and, in the same transaction, adds the
erased ids' keys to the erasure list in the feedback database
(``FeedbackStore.delete_shopper``). The folders are the trainer's: it wrote them under its
training dir (``services/trainer/feedback_data.py``), possibly in another pod than
feedback, so the trainer applies the list, from the database both read: at start, every
SHOPSENSE_ERASURE_INTERVAL_S, and before it submits a job that reads such a folder.

Each folder's ``dataset.json`` says through which erasure it is clean (``erasures_through``,
set when it was written to the newest erasure before its events were read). Applying
removes the lines of a sequence folder's ``histories.jsonl`` that carry a later erasure's
key, updates the counts and fingerprint, then advances ``erasures_through``: durable (the
list is in the database; files are replaced by rename, the mark last, so an interrupted
rewrite is done again) and idempotent (a line once removed is not there to remove again).

Folders written before erasure keys existed carry none: they are reported (``unkeyed``),
not guessed at; delete them (their jobs' versions keep their metrics in the registry).
Feedback judgments folders (``feedback-*``, cross_encoder) hold per-query aggregates
with no shopper rows: they are not rewritten (see the trainer's README section).
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy

from shared.storage.feedback import FeedbackStore
from shared.training.sequence_data import (
    ERASURES_THROUGH,
    HISTORIES_FILE,
    INFO_FILE,
    folder_fingerprint,
    holds_out,
)


@dataclass
class Sweep:
    """What one pass did."""

    folders: int = 0
    rewritten: list[str] = field(default_factory=list)
    histories_removed: int = 0
    unkeyed: list[str] = field(default_factory=list)
    through: int = 0


def _read_info(folder: Path) -> dict[str, Any] | None:
    try:
        info = json.loads((folder / INFO_FILE).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return info if isinstance(info, dict) else None


def _replace(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` by a rename: a reader sees the old file or the new one."""
    temporary = path.with_name(f".{path.name}.erasing")
    temporary.write_text(text, encoding="utf-8")
    os.replace(temporary, path)


def _erase(folder: Path, info: dict[str, Any], keys: set[str], through: int) -> int:
    """Remove the histories carrying any of ``keys``; mark the folder clean through
    ``through``; how many histories went."""
    path = folder / HISTORIES_FILE
    kept: list[str] = []
    removed = events = dev = 0
    for line in path.read_text(encoding="utf-8").splitlines(keepends=True):
        if not line.strip():
            continue
        record = json.loads(line)
        if keys.intersection(record.get("shoppers", ())):
            removed += 1
            continue
        kept.append(line)
        history = [tuple(e) for e in record["events"]]
        events += len(history)
        dev += holds_out(history)
    if removed:
        _replace(path, "".join(kept))
    info = {
        **info,
        "shoppers": len(kept),
        "events": events,
        "dev_eligible": dev,
        "fingerprint": folder_fingerprint(folder),
        "erased_histories": int(info.get("erased_histories", 0)) + removed,
        ERASURES_THROUGH: through,
    }
    _replace(folder / INFO_FILE, json.dumps(info, indent=2))
    return removed


def apply_erasures(training_dir: Path, store: Callable[[], FeedbackStore]) -> Sweep:
    """Apply the erasure list to every sequence folder directly under ``training_dir``.
    ``store`` is called only when a keyed folder exists (a trainer that never wrote one
    never opens the feedback database for this)."""
    sweep = Sweep()
    folders: list[tuple[Path, dict[str, Any]]] = []
    if not training_dir.is_dir():
        return sweep
    for folder in sorted(p for p in training_dir.iterdir() if p.is_dir()):
        if not (folder / HISTORIES_FILE).is_file():
            continue
        info = _read_info(folder)
        if info is None:
            continue  # being written (dataset.json comes last): its events were read after
        if not isinstance(info.get(ERASURES_THROUGH), int):
            sweep.unkeyed.append(folder.name)
            continue
        folders.append((folder, info))
    sweep.folders = len(folders)
    if not folders:
        return sweep
    feedback = store()
    sweep.through = feedback.last_erasure()
    stale = [(f, info) for f, info in folders if info[ERASURES_THROUGH] < sweep.through]
    if not stale:
        return sweep
    erasures = feedback.erasures_after(min(info[ERASURES_THROUGH] for _, info in stale))
    for folder, info in stale:
        keys = {key for number, key in erasures if number > info[ERASURES_THROUGH]}
        removed = _erase(folder, info, keys, sweep.through)
        sweep.histories_removed += removed
        if removed:
            sweep.rewritten.append(folder.name)
    return sweep


class ErasureSweeper:
    """:func:`apply_erasures` over one training dir, one pass at a time (the schedule, the
    background loop and StartTraining may ask together)."""

    def __init__(self, training_dir: Path, feedback_engine: Callable[[], sqlalchemy.Engine]):
        self._training_dir = Path(training_dir)
        self._engine = feedback_engine
        self._store: FeedbackStore | None = None
        self._lock = threading.Lock()

    def _feedback(self) -> FeedbackStore:
        if self._store is None:
            self._store = FeedbackStore(self._engine())
        return self._store

    def covers(self, folder: Path) -> bool:
        """Whether ``folder`` is one this sweeper keeps clean (written under its dir)."""
        return Path(folder).resolve().parent == self._training_dir.resolve()

    def sweep(self) -> Sweep:
        with self._lock:
            return apply_erasures(self._training_dir, self._feedback)
