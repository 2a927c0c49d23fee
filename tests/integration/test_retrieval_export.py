"""ExportCatalog through a real retrieval server on port 0, a real Triton embedding with
MiniLM and a real catalog file: pages in product id order, the index's own vectors, one
snapshot per call whatever is upserted meanwhile, and its limits.

The catalog is upserted out of id order, so an export in insertion (or row) order shows.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from pathlib import Path

import grpc
import numpy as np
import pytest
from shopsense.common.v1 import common_pb2
from shopsense.retrieval.v1 import retrieval_service_pb2 as rpb
from shopsense.retrieval.v1 import retrieval_service_pb2_grpc

from services.retrieval.server import PRODUCT_MAX_TOKENS
from shared.contracts.common import EMBEDDING_DIM, embedding_to_proto
from shared.data.catalog import Product
from shared.data.synthetic import generate_store
from shared.models.triton_client import TextEncoderClient
from shared.runtime.catalog import upsert_products
from tests.integration.conftest import Stack

pytestmark = pytest.mark.integration

_STORE = generate_store(n_products=8, n_queries=2, seed=5).products
# Five products upserted in this (not the id) order, and three more for the changes.
CATALOG = [
    dataclasses.replace(p, product_id=pid)
    for p, pid in zip(_STORE[:5], ["sku-c", "sku-a", "sku-e", "sku-b", "sku-d"], strict=True)
]
EXTRA = [
    dataclasses.replace(p, product_id=pid)
    for p, pid in zip(_STORE[5:], ["sku-f", "sku-g", "sku-h"], strict=True)
]
CATALOG_IDS = sorted(p.product_id for p in CATALOG)

Stub = retrieval_service_pb2_grpc.RetrievalServiceStub


@pytest.fixture(scope="module")
def encoder(triton_server, tokenizer) -> TextEncoderClient:
    return TextEncoderClient(triton_server.grpc_url, tokenizer)


@pytest.fixture(scope="module")
def start_retrieval(start_stack, triton_server, encoder) -> Callable[[Sequence[Product]], Stack]:
    """A retrieval server of its own (its own catalog file) holding ``products``."""

    def start(products: Sequence[Product]) -> Stack:
        stack = start_stack(
            ["retrieval"],
            triton_url=triton_server.grpc_url,
            using={"retrieval": {"encoder": encoder}},
        )
        if products:
            stack.load_catalog(products)
        return stack

    return start


@pytest.fixture(scope="module")
def catalog(start_retrieval) -> Stub:
    """The five products, never changed (tests that change a catalog start their own)."""
    return start_retrieval(CATALOG).stub("retrieval", Stub)


def export(stub: Stub, **request: object) -> list[rpb.ExportCatalogResponse]:
    return list(stub.ExportCatalog(rpb.ExportCatalogRequest(**request), timeout=30))


def ids_of(messages: Sequence[rpb.ExportCatalogResponse]) -> list[str]:
    return [e.product.product_id for m in messages for e in m.products]


def generation_of(stub: Stub) -> int:
    return stub.GetCatalogStats(rpb.GetCatalogStatsRequest(), timeout=10).generation


def test_pages_hold_whole_records_in_id_order_with_the_total_in_each(catalog: Stub):
    messages = export(catalog, page_size=2)
    assert [len(m.products) for m in messages] == [2, 2, 1]
    assert ids_of(messages) == CATALOG_IDS
    assert [m.total_size for m in messages] == [5, 5, 5]
    assert {m.catalog_generation for m in messages} == {generation_of(catalog)}
    assert {m.embedding_version for m in messages} == {"1"}
    stored = catalog.GetProducts(rpb.GetProductsRequest(product_ids=CATALOG_IDS), timeout=10)
    exported = [e.product for m in messages for e in m.products]
    assert exported == list(stored.products)
    assert all(p.description for p in exported)  # the whole record, unlike Retrieve's
    assert all(len(e.embedding) == 0 for m in messages for e in m.products)  # not asked

    default = export(catalog)  # page_size 0: the default of 500
    assert len(default) == 1 and ids_of(default) == CATALOG_IDS


def test_embeddings_are_the_vectors_the_index_searches(
    catalog: Stub, encoder: TextEncoderClient, engine_atol, exported_model_repository: Path
):
    messages = export(catalog, include_embeddings=True, page_size=3)
    exported = {e.product.product_id: np.asarray(e.embedding) for m in messages for e in m.products}
    assert list(exported) == CATALOG_IDS and messages[0].embedding_version == "1"
    for vector in exported.values():
        assert vector.shape == (EMBEDDING_DIM,)
        assert float(vector @ vector) == pytest.approx(1.0, abs=1e-5)

    # The index scores a query vector against its own vectors: querying with a product's
    # exported vector gives 1 for itself and the exported inner product for the others.
    for pid, vector in exported.items():
        reply = catalog.Retrieve(
            rpb.RetrieveRequest(
                query="anything",
                query_embedding=embedding_to_proto(vector, messages[0].embedding_version),
                mode=common_pb2.RETRIEVAL_MODE_DENSE,
                k=len(exported),
            ),
            timeout=10,
        )
        scores = {c.product.product_id: c.dense_score for c in reply.candidates}
        assert reply.candidates[0].product.product_id == pid
        assert scores[pid] == pytest.approx(1.0, abs=1e-5)
        for other, score in scores.items():
            assert score == pytest.approx(float(exported[other] @ vector), abs=1e-5)

    # And they are the text encoder's embeddings of the products.
    by_id = {p.product_id: p for p in CATALOG}
    texts = [by_id[pid].embedding_text() for pid in exported]
    expected = encoder.embed(texts, max_length=PRODUCT_MAX_TOKENS)
    atol = engine_atol(exported_model_repository / "text_encoder" / "1")
    np.testing.assert_allclose(np.stack(list(exported.values())), expected, atol=atol)


def test_an_upsert_during_the_stream_is_not_seen_by_it(start_retrieval):
    stack = start_retrieval(CATALOG)
    stub = stack.stub("retrieval", Stub)
    stream = stub.ExportCatalog(
        rpb.ExportCatalogRequest(page_size=1, include_embeddings=True), timeout=30
    )
    first = next(stream)  # the snapshot is taken before the first message
    last_id = CATALOG_IDS[-1]
    renamed = dataclasses.replace(
        next(p for p in CATALOG if p.product_id == last_id), title="Renamed during the export"
    )
    reply = upsert_products(stack.address("retrieval"), [renamed, EXTRA[0]], progress=False)
    assert [r.error for r in reply.results] == ["", ""]
    messages = [first, *stream]

    assert ids_of(messages) == CATALOG_IDS  # no sku-f
    assert {m.catalog_generation for m in messages} == {first.catalog_generation}
    assert {m.total_size for m in messages} == {5}
    assert messages[-1].products[0].product.title != renamed.title
    assert len(messages[-1].products[0].embedding) == EMBEDDING_DIM

    after = export(stub)  # the next call sees the upsert
    assert ids_of(after) == [*CATALOG_IDS, EXTRA[0].product_id]
    assert after[0].catalog_generation > first.catalog_generation
    assert after[0].products[-2].product.title == renamed.title


def test_a_deleted_product_is_not_exported(start_retrieval):
    stub = start_retrieval(CATALOG).stub("retrieval", Stub)
    deleted = CATALOG_IDS[1]
    reply = stub.DeleteProducts(rpb.DeleteProductsRequest(product_ids=[deleted]), timeout=10)
    assert reply.results[0].status == rpb.ITEM_STATUS_DELETED
    messages = export(stub, include_embeddings=True, page_size=2)
    assert ids_of(messages) == [pid for pid in CATALOG_IDS if pid != deleted]
    assert [m.total_size for m in messages] == [4, 4]


def test_an_empty_catalog_streams_one_message_with_its_generation(start_retrieval):
    stub = start_retrieval([]).stub("retrieval", Stub)
    for include_embeddings in (False, True):
        messages = export(stub, include_embeddings=include_embeddings, page_size=2)
        assert len(messages) == 1
        (only,) = messages
        assert list(only.products) == [] and only.total_size == 0
        assert only.catalog_generation == generation_of(stub)
        assert only.embedding_version == ""


@pytest.mark.parametrize("page_size", [-1, 5001])
def test_a_page_size_out_of_range_is_refused(catalog: Stub, page_size: int):
    with pytest.raises(grpc.RpcError) as err:
        export(catalog, page_size=page_size)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "page_size" in err.value.details()


def test_the_largest_page_size_is_accepted(catalog: Stub):
    messages = export(catalog, page_size=5000)
    assert len(messages) == 1 and ids_of(messages) == CATALOG_IDS
