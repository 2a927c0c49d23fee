"""Fetch the full WANDS files from Wayfair's public GitHub repository.

The team's machines hold only WANDS's queries; a user who is online gets the
products and the 233k judgments with ``download_wands(dest)`` and then evaluates
exactly as on the synthetic store (``load_wands(dest)``).
"""

from __future__ import annotations

import shutil
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

WANDS_RAW_BASE = "https://raw.githubusercontent.com/wayfair/WANDS/main/dataset/"
WANDS_FILES = ("product.csv", "query.csv", "label.csv")

Opener = Callable[[str], BinaryIO]


def wands_urls(base: str = WANDS_RAW_BASE) -> dict[str, str]:
    """File name -> raw download URL of each WANDS file."""
    return {name: base + name for name in WANDS_FILES}


def _urlopen(url: str) -> BinaryIO:
    return urllib.request.urlopen(url, timeout=60)


def download_wands(dest: Path, opener: Opener = _urlopen, overwrite: bool = False) -> list[Path]:
    """Download product.csv, query.csv and label.csv into ``dest``; returns their paths.

    Each file is written to a temporary name and renamed when complete, so an
    interrupted download never leaves a truncated file that looks finished. Files
    already present are kept unless ``overwrite``.
    """
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    written = []
    for name, url in wands_urls().items():
        target = dest / name
        if target.exists() and not overwrite:
            written.append(target)
            continue
        partial = target.with_suffix(target.suffix + ".part")
        with opener(url) as response, partial.open("wb") as out:
            shutil.copyfileobj(response, out, length=1 << 20)
        partial.replace(target)
        written.append(target)
    return written
