"""Triton's model repository as export and publish write it: a version folder's files, the
committed model folders a repository elsewhere copies, and the python-backend adapter.

Nothing here imports an inference engine: publishing runs in the trainer's RPC process,
which moves folders and talks to Triton but never runs a model.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import shared.models
from shared.models.versions import ascii_digits
from shared.paths import REPO_ROOT

# The committed model folder (config.pbtxt, configs/) that a repository elsewhere copies.
COMMITTED_REPOSITORY = REPO_ROOT / "triton_models"
# The adapter installed as each version's model.py (found, not imported: it loads onnxruntime).
ADAPTER_SOURCE = (Path(shared.models.__file__).parent / "triton_python_model.py").resolve()


def install_model_folder(model: str, repository: Path) -> Path:
    """Give ``<repository>/<model>/`` the committed config files it lacks.

    Only missing files are copied: a deployed repository's own edits (a pinned version
    policy during an experiment) survive a re-export.
    """
    model_dir = repository / model
    source = COMMITTED_REPOSITORY / model
    model_dir.mkdir(parents=True, exist_ok=True)
    if model_dir.resolve() != source.resolve():
        for item in source.iterdir():
            if ascii_digits(item.name):
                continue
            target = model_dir / item.name
            if item.is_dir():
                for file in item.rglob("*"):
                    copy = target / file.relative_to(item)
                    if file.is_file() and not copy.exists():
                        copy.parent.mkdir(parents=True, exist_ok=True)
                        shutil.copy2(file, copy)
            elif not target.exists():
                shutil.copy2(item, target)
    return model_dir
