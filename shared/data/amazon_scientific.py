"""The Amazon "Industrial and Scientific" sequential-recommendation files (2018 reviews),
in the leave-one-out format of the text-based recommendation papers (UniSRec, VQ-Rec,
Recformer), as ``../shared/data/amazon_scientific/`` holds them:

- ``Scientific.text``: ``item_id:token<TAB>text:token_seq`` (title, category path, brand);
- ``Scientific.item2index`` / ``Scientific.user2index``: original id -> index, no header;
- ``Scientific.train.inter``: ``user_id:token<TAB>item_id_list:token_seq<TAB>item_id:token``,
  every prefix of each shopper's training history with its next item;
- ``Scientific.valid.inter`` (and a test file in the same format, when one is given):
  each shopper's whole history before the held-out item, and that item.

Ids in ``.inter`` files are the indexes of ``item2index``. A shopper's training
sequence is their longest training prefix plus its next item (the other prefixes are
its own prefixes, so nothing is lost by training on every position of the longest).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

PREFIX = "Scientific"


class SequenceDataError(ValueError):
    """A file of the dataset is missing or malformed; the message names file and line."""


@dataclass(frozen=True, slots=True)
class NextItemCase:
    """One evaluation case: the shopper's history (item indexes, oldest first) and the
    item that came next."""

    user: int
    history: tuple[int, ...]
    target: int


@dataclass(frozen=True)
class SequenceDataset:
    """Items (index order), their texts, training sequences and the validation cases."""

    item_ids: tuple[str, ...]
    texts: tuple[str, ...]
    train: tuple[tuple[int, ...], ...]
    valid: tuple[NextItemCase, ...]
    fingerprint: str

    @property
    def num_items(self) -> int:
        return len(self.item_ids)


def _lines(path: Path) -> list[str]:
    if not path.is_file():
        raise SequenceDataError(f"{path}: missing")
    return path.read_text(encoding="utf-8").splitlines()


def _index(path: Path) -> dict[str, int]:
    out: dict[str, int] = {}
    for number, line in enumerate(_lines(path), start=1):
        if not line.strip():
            continue
        key, sep, value = line.partition("\t")
        if not sep or not value.strip().isdigit():
            raise SequenceDataError(f"{path}:{number}: expected 'id<TAB>index', got {line!r}")
        out[key] = int(value)
    return out


def read_cases(path: Path, num_items: int) -> list[NextItemCase]:
    """The rows of an ``.inter`` file (header row skipped), checked against the items."""
    cases: list[NextItemCase] = []
    for number, line in enumerate(_lines(path), start=1):
        if number == 1 and ":" in line:
            continue
        if not line.strip():
            continue
        parts = line.split("\t")
        try:
            user = int(parts[0])
            history = tuple(int(x) for x in parts[1].split())
            target = int(parts[2])
        except (IndexError, ValueError):
            raise SequenceDataError(
                f"{path}:{number}: expected 'user<TAB>items<TAB>item' of integers"
            ) from None
        bad = [i for i in (*history, target) if not 0 <= i < num_items]
        if bad:
            raise SequenceDataError(f"{path}:{number}: item index {bad[0]} is not in item2index")
        cases.append(NextItemCase(user, history, target))
    return cases


def load_sequences(folder: Path | str, prefix: str = PREFIX) -> SequenceDataset:
    """Read the dataset in ``folder``; raises :class:`SequenceDataError` naming the file."""
    folder = Path(folder)
    index = _index(folder / f"{prefix}.item2index")
    num_items = len(index)
    if sorted(index.values()) != list(range(num_items)):
        raise SequenceDataError(f"{folder / (prefix + '.item2index')}: indexes are not 0..n-1")
    item_ids = [""] * num_items
    for key, value in index.items():
        item_ids[value] = key
    texts = [""] * num_items
    for number, line in enumerate(_lines(folder / f"{prefix}.text"), start=1):
        if number == 1 and line.startswith("item_id"):
            continue
        key, _, text = line.partition("\t")
        if key in index:
            texts[index[key]] = text.strip()
    missing = sum(1 for t in texts if not t)
    if missing:
        raise SequenceDataError(f"{folder / (prefix + '.text')}: {missing} items have no text")
    longest: dict[int, tuple[int, ...]] = {}
    for case in read_cases(folder / f"{prefix}.train.inter", num_items):
        sequence = (*case.history, case.target)
        if len(sequence) > len(longest.get(case.user, ())):
            longest[case.user] = sequence
    valid = read_cases(folder / f"{prefix}.valid.inter", num_items)
    digest = hashlib.sha256()
    for name in ("item2index", "text", "train.inter", "valid.inter"):
        digest.update((folder / f"{prefix}.{name}").read_bytes())
    return SequenceDataset(
        item_ids=tuple(item_ids),
        texts=tuple(texts),
        train=tuple(longest[user] for user in sorted(longest)),
        valid=tuple(valid),
        fingerprint=digest.hexdigest()[:16],
    )
