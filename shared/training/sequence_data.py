"""``sequence_recommender`` training folders: what the shoppers viewed, carted and bought,
in order, over the catalog's text vectors.

A folder holds four files:

- ``items.json``: the catalog's product ids in row order;
- ``item-vectors.npy``: float32 ``[products, d]``, their text vectors as retrieval holds
  them (the text encoder version is in ``dataset.json``);
- ``histories.jsonl``: one line per shopper, ``{"events": [[row, kind, unix_seconds], ...],
  "shoppers": [erasure key, ...]}`` oldest first (kind 0 view, 1 cart, 2 purchase, as
  ``shared.recommendation.events``). No shopper id is written: events are grouped by user
  id (else session id) in memory. Yet a shopper's whole history is theirs (a sequence of
  purchases can name its buyer), so the line carries the erasure keys of the ids its events
  had (shared.storage.feedback.erasure_key), and a shopper's erasure removes it
  (shared/training/erasure.py);
- ``dataset.json``: the counts, the text encoder version, a fingerprint of the other
  three files (same data, same fingerprint, whatever order the events were read in) and
  the newest erasure the folder is clean of (``erasures_through``).

Cleaning on the way in: an event on a product the catalog does not hold is dropped (there
is no text vector to read it by); an event that repeats the one before it (same product,
same kind: a reload, a double click) is dropped, the first of the run kept; a shopper
keeps the newest ``max_events``; a shopper left with one event is not written (nothing
follows it to learn from).

Loading holds out dev cases leave-last-out, as the sequential recommendation papers do
(at most ``max_dev`` shoppers, sampled with a fixed seed): a shopper's last event on a
product new to them, after at least two events, is the target, and it leaves their
training history. The history a case reads ends before the target's basket (purchases
less than a minute apart, as an order's lines), since the model predicts a basket from
the state before it. "New" because the full-ranking protocol
(``shared.training.sequence.rank_targets``) removes the history's products from the
ranking: a shopper who viewed, carted then bought a product ends on a repeat that could
only count as a miss, so their view of it is the target, and the cart and purchase after
it leave the training history too (they would give the target away).

This module imports numpy only; the torch-backed corpus types are imported when a folder is
loaded for training, so the trainer's RPC process can write and check folders.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from shared.recommendation.events import Interaction
from shared.recommendation.sequence_inputs import NUM_KINDS, basket_sources, gap_buckets
from shared.storage.feedback import erasure_keys
from shared.training.data import DatasetError

if TYPE_CHECKING:
    from shared.training.sequence import History, SequenceCorpus

ITEMS_FILE = "items.json"
VECTORS_FILE = "item-vectors.npy"
HISTORIES_FILE = "histories.jsonl"
# dataset.json's key: the newest erasure (feedback store id) this folder is clean of.
ERASURES_THROUGH = "erasures_through"
INFO_FILE = "dataset.json"
FORMAT = 1
# Events a shopper keeps (the newest); the shopper tower reads at most history_length
# (50 by default) of them, the rest are more positions to learn from.
DEFAULT_MAX_EVENTS = 200
# Dev cases held out at most, and the seed that picks them when there are more.
DEFAULT_MAX_DEV = 5000
DEV_SEED = 17
# Events before a held-out one (what the dev case reads, and what trains).
MIN_DEV_HISTORY = 2

# One event as written: (catalog row, kind, Unix seconds).
Event = tuple[int, int, float]


class SequenceDatasetError(DatasetError):
    """A sequence training folder cannot be used; the message names the file."""


@dataclass(frozen=True)
class SequenceData:
    """A folder as read, before any split: products, vectors, histories and dataset.json."""

    item_keys: list[str]
    vectors: np.ndarray
    histories: list[list[Event]]
    info: dict[str, Any]


def held_out(events: Sequence[Event]) -> tuple[int, int] | None:
    """``(cut, position)``: the event a dev case holds out of this history and where its
    history ends. The event is the last one on a product new to the shopper before its
    basket (purchases within a minute, ``shared.recommendation.sequence_inputs``); the
    history ends where that basket starts, so the case asks what comes after a basket,
    as the model is trained to. None when fewer than ``MIN_DEV_HISTORY`` events come
    before every such basket (see the module docstring)."""
    if len(events) <= MIN_DEV_HISTORY:
        return None
    rows = np.array([row for row, _, _ in events], dtype=np.int64)
    kinds = np.array([[kind for _, kind, _ in events]], dtype=np.int64)
    gaps = gap_buckets([at for _, _, at in events], len(events))[None, :]
    starts = basket_sources(kinds, gaps, np.ones_like(kinds))[0] + 1
    for position in range(len(events) - 1, MIN_DEV_HISTORY - 1, -1):
        cut = int(starts[position])
        if cut >= MIN_DEV_HISTORY and rows[position] not in rows[:cut]:
            return cut, position
    return None


def holds_out(events: Sequence[Event]) -> bool:
    """Whether this history gives a dev case (:func:`held_out`)."""
    return held_out(events) is not None


def keyed_shopper_histories(
    interactions: Iterable[Interaction],
    rows: dict[str, int],
    max_events: int = DEFAULT_MAX_EVENTS,
) -> tuple[list[list[Event]], list[list[str]], dict[str, int]]:
    """Each shopper's cleaned events (see the module docstring), shoppers ordered by their
    first event; each history's erasure keys (of every user and session id its events
    carried: shared.storage.feedback.erasure_key), in the same order; and how many events
    and shoppers each rule dropped."""
    if max_events < 2:
        raise ValueError(f"max_events: must be >= 2, got {max_events}")
    dropped = {
        "unknown_product": 0,
        "no_shopper_id": 0,
        "repeats": 0,
        "beyond_max_events": 0,
        "single_event_shoppers": 0,
    }
    by_shopper: dict[str, list[tuple[float, int, int]]] = {}
    keys_of: dict[str, set[str]] = {}
    read = 0
    for event in interactions:
        read += 1
        if not 0 <= event.kind < NUM_KINDS:
            raise ValueError(f"interactions: kind {event.kind} is not one of 0..{NUM_KINDS - 1}")
        # Keys only group events here; they are never written (only erasure keys are).
        key = f"u:{event.user}" if event.user else f"s:{event.session}" if event.session else ""
        if not key:
            dropped["no_shopper_id"] += 1
            continue
        row = rows.get(event.product_id)
        if row is None:
            dropped["unknown_product"] += 1
            continue
        by_shopper.setdefault(key, []).append((float(event.at), event.kind, row))
        keys_of.setdefault(key, set()).update(erasure_keys(event.user, event.session))
    keyed: list[tuple[list[Event], list[str]]] = []
    for key, events in by_shopper.items():
        # Oldest first; at the same instant a view comes before a cart before a purchase.
        events.sort(key=lambda e: (e[0], e[1]))
        cleaned: list[Event] = []
        for at, kind, row in events:
            if cleaned and cleaned[-1][0] == row and cleaned[-1][1] == kind:
                dropped["repeats"] += 1
                continue
            cleaned.append((row, kind, at))
        if len(cleaned) > max_events:
            dropped["beyond_max_events"] += len(cleaned) - max_events
            cleaned = cleaned[-max_events:]
        if len(cleaned) < 2:
            dropped["single_event_shoppers"] += 1
            continue
        keyed.append((cleaned, sorted(keys_of[key])))
    keyed.sort(key=lambda pair: (pair[0][0][2], pair[0], pair[1]))
    counts = {"interactions": read, "shoppers_seen": len(by_shopper), **dropped}
    return [h for h, _ in keyed], [k for _, k in keyed], counts


def write_sequence_dataset(
    folder: Path | str,
    interactions: Iterable[Interaction],
    catalog_ids: Sequence[str],
    catalog_vectors: np.ndarray,
    text_encoder_version: str,
    max_events: int = DEFAULT_MAX_EVENTS,
    erasures_through: int = 0,
) -> dict[str, Any]:
    """Write ``interactions`` over the catalog (ids and text vectors, row for row) as a
    training folder; returns what ``dataset.json`` holds.

    Each history's line also names its shopper by erasure keys (``"shoppers"``), and
    ``dataset.json`` the newest erasure the events were read after (``erasures_through``:
    the feedback store's ``last_erasure()`` before reading): the trainer applies later ones
    (shared/training/erasure.py).

    ``dataset.json`` is written last: a folder without it is an interrupted write.
    """
    ids = [str(p) for p in catalog_ids]
    vectors = np.asarray(catalog_vectors, dtype=np.float32)
    if not ids:
        raise ValueError("catalog_ids: the catalog is empty")
    if vectors.ndim != 2 or vectors.shape[0] != len(ids):
        raise ValueError(
            f"catalog_vectors: must be [{len(ids)}, d] (one row a product), got {vectors.shape}"
        )
    rows: dict[str, int] = {}
    for row, product in enumerate(ids):
        if rows.setdefault(product, row) != row:
            raise ValueError(f"catalog_ids: product {product!r} appears twice")
    histories, keys, counts = keyed_shopper_histories(interactions, rows, max_events)

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / ITEMS_FILE).write_text(json.dumps(ids), encoding="utf-8")
    np.save(folder / VECTORS_FILE, np.ascontiguousarray(vectors))
    with (folder / HISTORIES_FILE).open("w", encoding="utf-8") as out:
        for events, shoppers in zip(histories, keys, strict=True):
            out.write(history_line(events, shoppers))
    info: dict[str, Any] = {
        "format": FORMAT,
        "products": len(ids),
        "dimension": int(vectors.shape[1]),
        "text_encoder_version": str(text_encoder_version),
        "shoppers": len(histories),
        "events": sum(len(h) for h in histories),
        "dev_eligible": sum(holds_out(h) for h in histories),
        "max_events": max_events,
        "dropped": {k: v for k, v in counts.items() if k not in ("interactions", "shoppers_seen")},
        "interactions": counts["interactions"],
        "shoppers_seen": counts["shoppers_seen"],
        "fingerprint": folder_fingerprint(folder),
        ERASURES_THROUGH: erasures_through,
    }
    (folder / INFO_FILE).write_text(json.dumps(info, indent=2), encoding="utf-8")
    return info


def history_line(events: Sequence[Event], shoppers: Sequence[str]) -> str:
    """One line of histories.jsonl: the events and the shopper's erasure keys."""
    record = {"events": [list(e) for e in events], "shoppers": list(shoppers)}
    return json.dumps(record, separators=(",", ":")) + "\n"


def folder_fingerprint(folder: Path) -> str:
    """sha256 of the products, their vectors and the histories, as written."""
    digest = hashlib.sha256()
    for name in (ITEMS_FILE, VECTORS_FILE, HISTORIES_FILE):
        digest.update(name.encode())
        with (folder / name).open("rb") as source:
            for block in iter(lambda: source.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def is_sequence_dataset(folder: Path | str) -> bool:
    """Whether ``folder`` looks like a sequence training folder (it has histories.jsonl)."""
    return (Path(folder) / HISTORIES_FILE).is_file()


def _required(folder: Path, name: str) -> Path:
    path = folder / name
    if not path.is_file():
        raise SequenceDatasetError(f"{path}: missing (a sequence training folder holds it)")
    return path


def _read_items(path: Path) -> list[str]:
    try:
        items = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SequenceDatasetError(f"{path}: not JSON ({exc})") from exc
    if not isinstance(items, list) or not all(isinstance(p, str) for p in items):
        raise SequenceDatasetError(f"{path}: must be a JSON list of product ids (strings)")
    if not items:
        raise SequenceDatasetError(f"{path}: no products")
    seen: set[str] = set()
    for product in items:
        if product in seen:
            raise SequenceDatasetError(f"{path}: product id {product!r} appears twice")
        seen.add(product)
    return items


def _read_vectors(path: Path, products: int) -> np.ndarray:
    try:
        vectors = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise SequenceDatasetError(f"{path}: not a .npy array ({exc})") from exc
    if vectors.ndim != 2 or vectors.shape[0] != products or vectors.shape[1] < 1:
        raise SequenceDatasetError(
            f"{path}: shape {vectors.shape} does not match the {products} products of "
            f"{ITEMS_FILE} (one row a product)"
        )
    if not np.issubdtype(vectors.dtype, np.floating):
        raise SequenceDatasetError(f"{path}: dtype {vectors.dtype} is not a float type")
    vectors = vectors.astype(np.float32)
    if not np.isfinite(vectors).all():
        raise SequenceDatasetError(f"{path}: holds values that are not finite")
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    if (norms == 0).any():
        row = int(np.flatnonzero(norms[:, 0] == 0)[0])
        raise SequenceDatasetError(f"{path}: row {row} is all zeros (no text vector)")
    # The model reads unit vectors (retrieval's already are: then this changes nothing).
    return vectors / norms


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _read_histories(path: Path, products: int) -> list[list[Event]]:
    shape = '{"events": [[row, kind, unix_seconds], ...]}'
    histories: list[list[Event]] = []
    with path.open(encoding="utf-8") as lines:
        try:
            numbered = list(enumerate(lines, start=1))
        except UnicodeDecodeError as exc:
            raise SequenceDatasetError(f"{path}: not UTF-8 text ({exc})") from exc
    for number, line in numbered:
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise SequenceDatasetError(f"{where}: not JSON ({exc.msg})") from exc
        events = record.get("events") if isinstance(record, dict) else None
        if not isinstance(events, list):
            raise SequenceDatasetError(f"{where}: must be {shape}")
        history: list[Event] = []
        for i, event in enumerate(events):
            if not isinstance(event, list) or len(event) != 3:
                raise SequenceDatasetError(f"{where}: event {i} must be [row, kind, unix_seconds]")
            row, kind, at = event
            if not _is_int(row) or not 0 <= row < products:
                raise SequenceDatasetError(
                    f"{where}: event {i}: row {row!r} is not a row of {ITEMS_FILE} "
                    f"(0..{products - 1})"
                )
            if not _is_int(kind) or not 0 <= kind < NUM_KINDS:
                raise SequenceDatasetError(
                    f"{where}: event {i}: kind {kind!r} is not 0 (view), 1 (cart) or 2 (purchase)"
                )
            if not isinstance(at, int | float) or isinstance(at, bool) or not math.isfinite(at):
                raise SequenceDatasetError(f"{where}: event {i}: time {at!r} is not Unix seconds")
            if history and at < history[-1][2]:
                raise SequenceDatasetError(f"{where}: event {i}: events must be oldest first")
            history.append((row, kind, float(at)))
        histories.append(history)
    return histories


def read_sequence_dataset(folder: Path | str) -> SequenceData:
    """The folder's four files, checked; SequenceDatasetError naming the file (and line)
    that is missing or malformed. numpy only: the trainer's RPC process checks with it."""
    folder = Path(folder)
    if not folder.is_dir():
        raise SequenceDatasetError(f"{folder}: not a folder")
    info_path = _required(folder, INFO_FILE)
    items = _read_items(_required(folder, ITEMS_FILE))
    vectors = _read_vectors(_required(folder, VECTORS_FILE), len(items))
    histories = _read_histories(_required(folder, HISTORIES_FILE), len(items))
    try:
        info = json.loads(info_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SequenceDatasetError(f"{info_path}: not JSON ({exc})") from exc
    if not isinstance(info, dict):
        raise SequenceDatasetError(f"{info_path}: must be a JSON object")
    fingerprint = folder_fingerprint(folder)
    recorded = info.get("fingerprint")
    if recorded is not None and recorded != fingerprint:
        raise SequenceDatasetError(
            f"{info_path}: fingerprint {recorded} does not match the folder's files "
            f"({fingerprint}): they changed after it was written"
        )
    info = {**info, "fingerprint": fingerprint}
    info.setdefault("text_encoder_version", "")
    return SequenceData(items, vectors, histories, info)


def _history(events: Sequence[Event]) -> History:
    from shared.training.sequence import History

    times = [at for _, _, at in events]
    return History(
        tuple(row for row, _, _ in events),
        tuple(kind for _, kind, _ in events),
        tuple(int(g) for g in gap_buckets(times, len(times))),
    )


def load_sequence_dataset(
    folder: Path | str, max_dev: int = DEFAULT_MAX_DEV, seed: int = DEV_SEED
) -> tuple[SequenceCorpus, dict[str, Any]]:
    """The folder as a training corpus with its leave-last-out dev cases (module
    docstring), and ``dataset.json``'s content with the split's counts."""
    from shared.training.sequence import DevCase, SequenceCorpus

    if max_dev < 1:
        raise ValueError(f"max_dev: must be >= 1, got {max_dev}")
    data = read_sequence_dataset(folder)
    targets = {i: held_out(events) for i, events in enumerate(data.histories)}
    eligible = [i for i, span in targets.items() if span is not None]
    if len(eligible) > max_dev:
        eligible = sorted(random.Random(seed).sample(eligible, max_dev))
    held_out_shoppers = set(eligible)
    train: list[History] = []
    dev: list[DevCase] = []
    for i, events in enumerate(data.histories):
        span = targets[i]
        if i in held_out_shoppers and span is not None:
            cut, position = span
            dev.append(DevCase(_history(events[:cut]), events[position][0]))
            events = events[:cut]
        if len(events) >= 2:
            train.append(_history(events))
    info = {**data.info, "train_histories": len(train), "dev_cases": len(dev)}
    return SequenceCorpus(list(data.item_keys), data.vectors, train, dev), info
