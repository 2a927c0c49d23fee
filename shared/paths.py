"""Where things live on disk, each overridable by an environment variable."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def triton_model_repository() -> Path:
    """Triton's model repository. SHOPSENSE_TRITON_MODELS, default ``<repo>/triton_models``."""
    return Path(os.environ.get("SHOPSENSE_TRITON_MODELS", REPO_ROOT / "triton_models"))


def state_dir() -> Path:
    """Databases and indexes. SHOPSENSE_STATE_DIR, default ``<repo>/var``."""
    return Path(os.environ.get("SHOPSENSE_STATE_DIR", REPO_ROOT / "var"))


def shared_data_dir() -> Path:
    """The team's real data. SHOPSENSE_SHARED_DATA, default ``<repo>/../shared/data``."""
    return Path(os.environ.get("SHOPSENSE_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))
