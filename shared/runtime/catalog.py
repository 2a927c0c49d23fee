"""Loading a catalog into the retrieval service, as a storefront's import job would."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TextIO

from shopsense.retrieval.v1 import retrieval_service_pb2 as pb
from shopsense.retrieval.v1 import retrieval_service_pb2_grpc

from shared.contracts.common import product_to_proto
from shared.data.catalog import Product
from shared.data.synthetic import generate_store, write_wands
from shared.paths import state_dir
from shared.rpc.clients import open_channel
from shared.runtime.progress import CountProgress

MESSAGE_SIZE = 128
CHUNK_SIZE = 1024


def catalog_size(target: str, timeout_s: float = 10.0) -> int:
    stub = retrieval_service_pb2_grpc.RetrievalServiceStub(open_channel(target))
    return stub.GetCatalogStats(pb.GetCatalogStatsRequest(), timeout=timeout_s).product_count


def upsert_products(
    target: str,
    products: Sequence[Product],
    progress: bool = True,
    chunk: int = CHUNK_SIZE,
    timeout_s: float = 600.0,
    stream: TextIO | None = None,
) -> pb.UpsertProductsResponse:
    """Upsert through UpsertProducts: one stream per chunk of 1,024 products (messages of
    128), so the progress moves when the server has really embedded and stored them
    and a failure loses at most one chunk's work.

    ``progress`` shows the products embedded of the total, the rate and the time left on
    ``stream`` (default standard error): a bar on a terminal, else a line every 10 s."""
    stub = retrieval_service_pb2_grpc.RetrievalServiceStub(open_channel(target))
    merged = pb.UpsertProductsResponse()
    with CountProgress(
        len(products), "embedding catalog", "products", stream=stream, enabled=progress
    ) as bar:
        for start in range(0, len(products), chunk):
            part = products[start : start + chunk]
            messages = (
                pb.UpsertProductsRequest(
                    products=[product_to_proto(p) for p in part[i : i + MESSAGE_SIZE]]
                )
                for i in range(0, len(part), MESSAGE_SIZE)
            )
            reply = stub.UpsertProducts(messages, timeout=timeout_s)
            merged.results.extend(reply.results)
            merged.catalog_size = reply.catalog_size
            bar.advance(len(part))
    return merged


DEMO_PRODUCTS = 20_000
DEMO_SEED = 7


def demo_store_dir(products: int = DEMO_PRODUCTS, seed: int = DEMO_SEED) -> Path:
    return state_dir() / f"demo-store-{products}-s{seed}"


def ensure_demo_store(
    retrieval_target: str,
    products: int = DEMO_PRODUCTS,
    seed: int = DEMO_SEED,
    say: Callable[[str], None] = print,
) -> Path:
    """Load the synthetic demo store when the catalog is empty; its WANDS files (queries and
    judgments for `shopsense eval`) are written to the returned folder either way."""
    folder = demo_store_dir(products, seed)
    store = None
    if not (folder / "label.csv").is_file():
        store = generate_store(n_products=products, seed=seed)
        write_wands(store, folder)
    if catalog_size(retrieval_target) == 0:
        say(f"the catalog is empty: loading the synthetic demo store ({products} products)")
        store = store or generate_store(n_products=products, seed=seed)
        upsert_products(retrieval_target, store.products)
    return folder


def wait_for_intent(intent_target: str, retrieval_target: str, timeout_s: float = 90.0) -> str:
    """Block until intent answers for the catalog as it is: with the fine-tuned classifier
    (which does not depend on the catalog), or with prototypes of the catalog's current
    generation (intent refreshes them on a timer). Returns the intent model version;
    TimeoutError otherwise."""
    from shopsense.intent.v1 import intent_service_pb2, intent_service_pb2_grpc

    retrieval = retrieval_service_pb2_grpc.RetrievalServiceStub(open_channel(retrieval_target))
    intent = intent_service_pb2_grpc.IntentServiceStub(open_channel(intent_target))
    generation = retrieval.GetCatalogStats(pb.GetCatalogStatsRequest(), timeout=10).generation
    wanted = f"prototypes-g{generation}"
    deadline = time.monotonic() + timeout_s
    while True:
        reply = intent.Classify(intent_service_pb2.ClassifyRequest(query="sofa"), timeout=10)
        served = reply.intent.model_version
        if served == wanted or served.startswith("intent_classifier/"):
            return served
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"intent still serves {reply.intent.model_version}, not {wanted}, "
                f"after {timeout_s:.0f} s"
            )
        time.sleep(0.5)
