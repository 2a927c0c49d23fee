"""What the services need from a text encoder, so a unit under test can take a fake."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np


class TextEncoder(Protocol):
    def embed(
        self, texts: Sequence[str], max_length: int = 64, batch_size: int = 32
    ) -> np.ndarray: ...

    def version(self) -> str: ...
