"""Two retrieval replicas over one catalog database (PostgreSQL, as in Kubernetes, and one
SQLite file): a write through either is served by the other within the follow interval,
with the same rows (tie-break order) on both; and how long that takes, measured.

Real gRPC servers on port 0, a real Triton embedding with MiniLM, a real database. The
replicas follow the catalog's change log every ``SHOPSENSE_RETRIEVAL_FOLLOW_S`` (1 s, the
default), so an upsert through A is served by B after at most about that long plus the
time B takes to apply it.
"""

from __future__ import annotations

import dataclasses
import random
import statistics
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from shopsense.retrieval.v1 import retrieval_service_pb2 as rpb
from shopsense.retrieval.v1 import retrieval_service_pb2_grpc

from shared.data.synthetic import generate_store
from shared.models.triton_client import TextEncoderClient
from shared.runtime.catalog import upsert_products
from tests.integration.conftest import Stack

pytestmark = pytest.mark.integration

Stub = retrieval_service_pb2_grpc.RetrievalServiceStub
FOLLOW_S = 1.0
# Upserts measured; the bound a shopper may count on: the interval plus the apply time.
UPSERTS = 20
SERVED_WITHIN_S = FOLLOW_S + 1.5
STORE = generate_store(n_products=30, n_queries=2, seed=7).products
BACKENDS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgresql", id="postgresql", marks=pytest.mark.postgres),
]


@pytest.fixture(scope="module")
def encoder(triton_server, tokenizer) -> TextEncoderClient:
    return TextEncoderClient(triton_server.grpc_url, tokenizer)


@pytest.fixture(params=BACKENDS)
def catalog_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'shared' / 'catalog.db'}"
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture
def replicas(
    start_stack: Callable[..., Stack], triton_server, encoder, catalog_url: str
) -> Iterator[tuple[Stack, Stack]]:
    """Replica A holding the first 10 products, then replica B started over the same
    database (it loads them), each with a state folder of its own."""

    def start() -> Stack:
        return start_stack(
            ["retrieval"],
            triton_url=triton_server.grpc_url,
            only={"retrieval": {"catalog_db_url": catalog_url, "follow_s": FOLLOW_S}},
            using={"retrieval": {"encoder": encoder}},
        )

    a = start()
    a.load_catalog(STORE[:10])
    b = start()
    with a, b:
        yield a, b


def found(stub: Stub, product_id: str) -> bool:
    reply = stub.GetProducts(rpb.GetProductsRequest(product_ids=[product_id]), timeout=5)
    return [p.product_id for p in reply.products] == [product_id]


def seconds_until(check: Callable[[], bool], limit_s: float) -> float:
    """Seconds until ``check()`` holds (polled every 5 ms); fails past ``limit_s``."""
    start = time.perf_counter()
    while not check():
        elapsed = time.perf_counter() - start
        assert elapsed < limit_s, f"not served by the other replica after {elapsed:.2f} s"
        time.sleep(0.005)
    return time.perf_counter() - start


def retrieve_ids(stub: Stub, query: str) -> list[str]:
    reply = stub.Retrieve(rpb.RetrieveRequest(query=query, k=10), timeout=10)
    return [c.product.product_id for c in reply.candidates]


def stats(stub: Stub) -> rpb.GetCatalogStatsResponse:
    return stub.GetCatalogStats(rpb.GetCatalogStatsRequest(), timeout=5)


def test_a_write_through_one_replica_is_served_by_the_other(
    replicas: tuple[Stack, Stack], catalog_url: str
) -> None:
    a, b = replicas
    stub_a, stub_b = a.stub("retrieval", Stub), b.stub("retrieval", Stub)
    assert stats(stub_b).product_count == 10  # B loaded A's products at start

    # Upserts through A, each a product with a word of its own: B serves it by id and by
    # that word. The time is from A's reply to B's first answer with it. A random pause
    # before each upsert, so that they do not all start just after one of B's polls.
    waits = []
    pause = random.Random(13)
    for i in range(UPSERTS):
        time.sleep(pause.uniform(0, FOLLOW_S))
        word = f"zephyrwood{i}"
        product = dataclasses.replace(
            STORE[10 + i], product_id=f"rep-{i}", title=f"{word} {STORE[10 + i].title}"
        )
        upsert_products(a.address("retrieval"), [product], progress=False)
        waits.append(
            seconds_until(lambda pid=product.product_id: found(stub_b, pid), SERVED_WITHIN_S)
        )
        assert retrieve_ids(stub_b, word)[0] == product.product_id
    backend = catalog_url.split(":", 1)[0]
    print(
        f"\n[{backend}] upsert through A served by B after: p50 "
        f"{statistics.median(waits) * 1000:.0f} ms, max {max(waits) * 1000:.0f} ms "
        f"over {UPSERTS} upserts (follow every {FOLLOW_S:g} s)"
    )

    # A change of an existing product, and a delete, likewise.
    changed = dataclasses.replace(STORE[0], title="quillfeather armchair")
    upsert_products(a.address("retrieval"), [changed], progress=False)
    seconds_until(
        lambda: retrieve_ids(stub_b, "quillfeather")[:1] == [changed.product_id], SERVED_WITHIN_S
    )
    deleted = stub_a.DeleteProducts(rpb.DeleteProductsRequest(product_ids=["rep-3"]), timeout=5)
    assert [r.status for r in deleted.results] == [rpb.ITEM_STATUS_DELETED]
    seconds_until(lambda: not found(stub_b, "rep-3"), SERVED_WITHIN_S)

    # A write through B (rows allocated after A's, no clash) is served by A.
    upsert_products(b.address("retrieval"), [STORE[29]], progress=False)
    seconds_until(lambda: found(stub_a, STORE[29].product_id), SERVED_WITHIN_S)

    # Both replicas agree: size, generation, and the order of every result (ties broken
    # by row, so the rows are the same).
    seconds_until(lambda: stats(stub_a).generation == stats(stub_b).generation, SERVED_WITHIN_S)
    assert (
        stats(stub_a).product_count == stats(stub_b).product_count == 10 + UPSERTS - 1 + 1
    )  # one deleted, one through B
    for query in ("sofa", "lamp", "zephyrwood7 rug", "table"):
        assert retrieve_ids(stub_a, query) == retrieve_ids(stub_b, query)


def test_production_refuses_a_catalog_of_its_own(tmp_path: Path) -> None:
    from services.retrieval.server import create_server
    from shared.settings import RetrievalSettings

    settings = RetrievalSettings.load(
        {"SHOPSENSE_MODE": "production", "SHOPSENSE_RETRIEVAL_LISTEN": "127.0.0.1:0"},
        state_dir=tmp_path,
    )
    with pytest.raises(ValueError, match="SHOPSENSE_CATALOG_DB_URL: production needs"):
        create_server(settings)
    assert not (tmp_path / "catalog.db").exists()  # refused before opening anything
