"""Where things live on disk by default, and the tools' view of the overriding variables
(the services read the same variables through their settings records)."""

from __future__ import annotations

import os
from pathlib import Path

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
