"""Where things live on disk by default, and the tools' view of the overriding variables
(the services read the same variables through their settings records); and the one rule for
a path a request names (:func:`confined`): under a data root, through no symbolic link."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from shared.errors import InvalidArgument

DATA_ROOT_ENV = "SHOPSENSE_DATA_ROOT"

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_STATE_DIR = REPO_ROOT / "var"
DEFAULT_TRITON_MODELS = REPO_ROOT / "triton_models"
DEFAULT_SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


def triton_model_repository() -> Path:
    """Triton's model repository. SHOPSENSE_TRITON_MODELS, default ``<repo>/triton_models``."""
    return Path(os.environ.get("SHOPSENSE_TRITON_MODELS") or DEFAULT_TRITON_MODELS)


def state_dir() -> Path:
    """Databases, indexes, logs. SHOPSENSE_STATE_DIR, default ``<repo>/var``."""
    return Path(os.environ.get("SHOPSENSE_STATE_DIR") or DEFAULT_STATE_DIR)


def shared_data_dir() -> Path:
    """The team's real data. SHOPSENSE_SHARED_DATA, default ``<repo>/../shared/data``."""
    return Path(os.environ.get("SHOPSENSE_SHARED_DATA") or DEFAULT_SHARED_DATA)


def confined(raw: str, roots: Sequence[Path], field: str) -> Path:
    """The real path of ``raw``, a path a request names, when it lies under one of ``roots``
    and no symbolic link lies below that root (in the path, or among a folder's entries);
    InvalidArgument naming ``field`` otherwise.

    The roots are the operator's (SHOPSENSE_DATA_ROOT): they may themselves sit behind a
    link (``/data`` mounted elsewhere) and are named either way. Below a root the path must
    be what it says: a link there could point anywhere the trainer can read, so any link is
    refused rather than followed and checked (a link's target can change after the check).
    Relative paths and ``..`` are refused: the caller's working folder is not the trainer's.
    """
    if "\x00" in raw:
        raise InvalidArgument(f"{field}: contains a NUL character")
    path = Path(raw)
    if not path.is_absolute():
        raise InvalidArgument(f"{field}: {raw} is not an absolute path")
    if ".." in path.parts:
        raise InvalidArgument(f"{field}: {raw} has a '..' component (name the folder itself)")
    lexical = Path(os.path.normpath(path))
    real = Path(os.path.realpath(lexical))
    for root in roots:
        root_real = Path(os.path.realpath(root))
        for base in (Path(os.path.normpath(os.path.abspath(root))), root_real):
            if lexical != base and base not in lexical.parents:
                continue
            if real != root_real / lexical.relative_to(base):
                raise InvalidArgument(
                    f"{field}: {raw} passes through a symbolic link (refused below the data "
                    "root: name the real folder)"
                )
            _refuse_linked_entries(real, raw, field)
            return real
    shown = os.pathsep.join(str(r) for r in roots)
    raise InvalidArgument(
        f"{field}: {raw} is outside the data root ({shown}; {DATA_ROOT_ENV} sets it)"
    )


def _refuse_linked_entries(folder: Path, raw: str, field: str) -> None:
    """A dataset folder's files are read by name (product.csv, histories.jsonl, ...): none
    may be a link out of the root."""
    if not folder.is_dir():
        return
    with os.scandir(folder) as entries:
        for entry in entries:
            if entry.is_symlink():
                raise InvalidArgument(
                    f"{field}: {raw} holds a symbolic link, {entry.name} (refused: copy the "
                    "file into the folder)"
                )


class DataRoots(tuple[Path, ...]):
    """The data root's folders; shown as SHOPSENSE_DATA_ROOT is written (``shopsense config``)."""

    def __str__(self) -> str:
        return os.pathsep.join(str(root) for root in self)

    __repr__ = __str__


def parse_roots(raw: str) -> DataRoots:
    """SHOPSENSE_DATA_ROOT: folders separated by ``os.pathsep`` (':'), like PATH."""
    roots = DataRoots(Path(part).expanduser() for part in raw.split(os.pathsep) if part.strip())
    if not roots:
        raise ValueError("expected one folder or more, separated by ':'")
    return roots
