"""Helpers the integration tests share: small catalogs, untrained exports and waiting for a
condition."""

from __future__ import annotations

import os
import time
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from prometheus_client.parser import text_string_to_metric_families

from shared.contracts.common import EMBEDDING_DIM
from shared.data.catalog import Product
from shared.data.synthetic import generate_store
from shared.paths import REPO_ROOT
from shared.runtime.suite import SERVICES, Suite
from shared.training.export import export_checkpoint

# The small synthetic store the modules that serve untrained-head models search.
SMALL_STORE = generate_store(n_products=300, n_queries=10, seed=5)
SMALL_STORE_CLASSES = sorted({p.product_class for p in SMALL_STORE.products})

# A SYNTHETIC home store of eight products the recommendation tests shop in.
HOME_CATALOG = [
    Product("mug-red", "Red ceramic coffee mug", product_class="Mugs", price=8.0),
    Product("mug-blue", "Blue ceramic tea mug", product_class="Mugs", price=9.0),
    Product("teapot", "Porcelain teapot with infuser", product_class="Teapots", price=30.0),
    Product("kettle", "Stainless steel electric kettle", product_class="Kettles", price=45.0),
    Product("sofa", "Grey velvet three seater sofa", product_class="Sofas", price=600.0),
    Product("cushion", "Velvet throw cushion for sofa", product_class="Cushions", price=20.0),
    Product("lamp", "Brass floor lamp", product_class="Lamps", price=90.0),
    Product("rug", "Wool area rug", product_class="Rugs", price=150.0),
]


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


def client_env(suite: Suite) -> dict[str, str]:
    """The environment a `.venv/bin/shopsense` command of the README runs in against
    ``suite``: its targets instead of the default ports, and this checkout's code even
    where .venv is an editable install of another one."""
    return {
        **os.environ,
        **{f"SHOPSENSE_{name.upper()}_TARGET": suite.address(name) for name in SERVICES},
        "SHOPSENSE_METRICS_TARGETS": suite.metrics_targets(),
        "SHOPSENSE_TRITON_URL": suite.endpoints().triton,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])),
        "HF_HUB_OFFLINE": "1",
    }


class ConstantEncoder:
    """The same unit vector for every text: a text encoder for servers whose tests do not
    search by meaning (an empty catalog, tokens, logs)."""

    def embed(
        self,
        texts: Sequence[str],
        max_length: int = 64,
        batch_size: int = 32,
        version: str | None = None,
    ) -> np.ndarray:
        vectors = np.zeros((len(texts), EMBEDDING_DIM), dtype=np.float32)
        vectors[:, 0] = 1.0
        return vectors

    def version(self) -> str:
        return "1"


Samples = dict[tuple[str, frozenset], float]


def scrape(port: int) -> Samples:
    """A /metrics endpoint on 127.0.0.1:``port`` over HTTP: sample name and labels -> value."""
    assert port, "no /metrics is served"
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
        text = reply.read().decode()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def metric(samples: Samples, name: str, **labels: str) -> float:
    """The sum of ``name``'s samples whose labels include ``labels`` (0 when none)."""
    wanted = set(labels.items())
    return sum(v for (n, got), v in samples.items() if n == name and wanted <= got)
