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

A cross_encoder's judgments folder (``feedback-*``) holds per-query aggregates, not a
shopper's rows; but a query is something a shopper typed (their name, their address), and
its gains carry their clicks. So ``erasure.json`` lists, for each query, the erasure keys
of the shoppers whose searches showed it, and an erasure removes every query the shopper
contributed to (query.csv and its label.csv rows): more than their share, never less. A
popular query comes back in the next folder, written from the store without them.

Folders written before erasure keys existed carry none: they are reported (``unkeyed``),
not guessed at; delete them (their jobs' versions keep their metrics in the registry).
"""

from __future__ import annotations

import csv
import io
import json
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy

from shared.storage.feedback import FeedbackStore
from shared.training.clicks import query_shoppers
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
    queries_removed: int = 0
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


# A judgments folder's index: {"erasures_through": id, "queries": {query_id: [keys]}}.
CLICK_INDEX_FILE = "erasure.json"


def write_click_index(
    folder: Path, engine: sqlalchemy.Engine, since: Any, until: Any, through: int
) -> None:
    """Index the judgments folder just written from the store (window ``since``-``until``)
    by the shoppers behind each of its queries; ``through``: the store's ``last_erasure()``
    read before its impressions were."""
    written = {row["query_id"] for row in _tsv(folder / "query.csv")[1]}
    shoppers = query_shoppers(engine, since, until)
    queries = {qid: sorted(shoppers.get(qid, ())) for qid in sorted(written)}
    index = {ERASURES_THROUGH: through, "queries": queries}
    _replace(folder / CLICK_INDEX_FILE, json.dumps(index, separators=(",", ":")))


def _tsv(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with path.open(encoding="utf-8", newline="") as source:
        reader = csv.DictReader(source, delimiter="\t")
        return list(reader.fieldnames or ()), list(reader)


def _write_tsv(path: Path, columns: list[str], rows: list[dict[str, str]]) -> None:
    out = io.StringIO()
    writer = csv.DictWriter(out, columns, delimiter="\t", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    _replace(path, out.getvalue())


def _erase_queries(folder: Path, index: dict[str, Any], keys: set[str], through: int) -> int:
    """Remove the queries any of ``keys`` contributed to; how many went."""
    queries: dict[str, list[str]] = index["queries"]
    gone = {qid for qid, shoppers in queries.items() if keys.intersection(shoppers)}
    if gone:
        for name in ("label.csv", "query.csv"):  # labels first: no label without its query
            columns, rows = _tsv(folder / name)
            _write_tsv(folder / name, columns, [r for r in rows if r["query_id"] not in gone])
    index = {
        ERASURES_THROUGH: through,
        "queries": {qid: s for qid, s in queries.items() if qid not in gone},
        "erased_queries": int(index.get("erased_queries", 0)) + len(gone),
    }
    _replace(folder / CLICK_INDEX_FILE, json.dumps(index, separators=(",", ":")))
    return len(gone)


def _click_index(folder: Path) -> dict[str, Any] | None:
    try:
        index = json.loads((folder / CLICK_INDEX_FILE).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return index if isinstance(index, dict) else None


def apply_erasures(training_dir: Path, store: Callable[[], FeedbackStore]) -> Sweep:
    """Apply the erasure list to every folder written from feedback directly under
    ``training_dir`` (sequence folders and judgments folders). ``store`` is called only
    when a keyed folder exists (a trainer that never wrote one never opens the feedback
    database for this)."""
    sweep = Sweep()
    # (folder, its mark's holder, whether it is a sequence folder)
    folders: list[tuple[Path, dict[str, Any], bool]] = []
    if not training_dir.is_dir():
        return sweep
    for folder in sorted(p for p in training_dir.iterdir() if p.is_dir()):
        if (folder / HISTORIES_FILE).is_file():
            info = _read_info(folder)
            if info is None:
                continue  # being written (dataset.json comes last): read after the mark
            if not isinstance(info.get(ERASURES_THROUGH), int):
                sweep.unkeyed.append(folder.name)
                continue
            folders.append((folder, info, True))
        elif (folder / "label.csv").is_file() and folder.name.startswith("feedback-"):
            # Renamed into place once indexed (services/trainer/feedback_data.py): no index
            # means written before erasure keys existed.
            index = _click_index(folder)
            if index is None or not isinstance(index.get(ERASURES_THROUGH), int):
                sweep.unkeyed.append(folder.name)
                continue
            folders.append((folder, index, False))
    sweep.folders = len(folders)
    if not folders:
        return sweep
    feedback = store()
    sweep.through = feedback.last_erasure()
    stale = [f for f in folders if f[1][ERASURES_THROUGH] < sweep.through]
    if not stale:
        return sweep
    erasures = feedback.erasures_after(min(mark[ERASURES_THROUGH] for _, mark, _ in stale))
    for folder, mark, sequence in stale:
        keys = {key for number, key in erasures if number > mark[ERASURES_THROUGH]}
        if sequence:
            removed = _erase(folder, mark, keys, sweep.through)
            sweep.histories_removed += removed
        else:
            removed = _erase_queries(folder, mark, keys, sweep.through)
            sweep.queries_removed += removed
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
