"""Helpers the integration tests share: untrained exports and waiting for a condition."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path

from shared.data.catalog import Product
from shared.data.synthetic import generate_store
from shared.training.export import export_checkpoint

# The small synthetic store the modules that serve untrained-head models search.
SMALL_STORE = generate_store(n_products=300, n_queries=10, seed=5)
SMALL_STORE_CLASSES = sorted({p.product_class for p in SMALL_STORE.products})


def export_untrained(
    tmp: Path, name: str, products: Sequence[Product], seed: int = 7, **spec: object
) -> Path:
    """Export a model of ``spec`` with the base weights and a fresh (seeded) head.

    Its export check set is 4 product titles against 8 product texts: quick, and enough
    to exercise every engine the export measures.
    """
    import torch

    from shared.training.modules import ModelSpec, ShopsenseModel

    torch.manual_seed(seed)
    checkpoint = ShopsenseModel.pretrained(ModelSpec(**spec)).save(tmp / f"ckpt-{name}")
    checks = [(p.title, [q.embedding_text() for q in products[:8]]) for p in products[:4]]
    out = tmp / f"export-{name}"
    export_checkpoint(checkpoint, out, check_inputs=checks)
    return out


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    """Poll ``condition`` every 0.1 s; TimeoutError naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(0.1)
