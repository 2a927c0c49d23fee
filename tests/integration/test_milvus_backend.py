"""The Milvus backend (a real milvus-lite engine) against the in-process one: the same
candidates, ranks and scores for every mode and filter; its collection kept in step with
upserts, deletes, other replicas' writes and a reindex swap; reused or rebuilt on open;
hostile filter values harmless; the retrieval service serving from it."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from shared.errors import InvalidArgument
from shared.search.catalog_index import CatalogIndex
from shared.search.filters import Filters
from shared.search.milvus import MilvusEngine, filter_expression
from shared.search.retrieval import RetrieveOptions
from tests.integration.conftest import Stack
from tests.support import wait_until
from tests.unit.catalog_support import DIM, make_products, unit_vectors
from tests.unit.test_catalog_reindex import FakeEncoder

pytestmark = pytest.mark.integration

QUERIES = unit_vectors(4, 77)
CASES = [
    ("grey velvet sofa", QUERIES[0], Filters()),
    ("oak table", QUERIES[1], Filters(price_max=150.0, attributes={"colour": ["Blue", "grey"]})),
    ("rug", None, Filters(classes=["Area Rugs"])),
    ("", QUERIES[2], Filters(classes=["sofas"], price_min=20, price_max=200.5)),
    ("model 12 leather", QUERIES[3], Filters(attributes={"color": ["gray"]})),
]


def open_milvus(tmp_path: Path, name: str = "catalog.db") -> CatalogIndex:
    engine = MilvusEngine(tmp_path / "milvus" / "engine.db")
    return CatalogIndex.open(tmp_path / name, dim=DIM, engine=engine)


def evidence(index: CatalogIndex, text: str, vec, filters: Filters, mode: str) -> list[tuple]:
    options = RetrieveOptions(filters=filters, k=40, mode=mode, intent=[("Sofas", 0.7)])
    return [
        (
            c.product.product_id,
            round(c.score, 9),
            c.lexical_rank,
            c.dense_rank,
            None if c.lexical_score is None else round(c.lexical_score, 4),
            None if c.dense_score is None else round(c.dense_score, 5),
        )
        for c in index.retrieve(text, vec, options).candidates
    ]


def everything(index: CatalogIndex) -> list[list[tuple]]:
    return [
        evidence(index, text, vec, filters, mode)
        for mode in ("hybrid", "lexical", "dense")
        for text, vec, filters in CASES
        if not (mode == "dense" and vec is None)
    ]


def write_history(index: CatalogIndex) -> None:
    index.upsert(make_products(200), unit_vectors(200, 0), "enc-v1")
    index.delete(["p5", "p6", "p7"])
    index.upsert(make_products(4, start=2), unit_vectors(4, 5), "enc-v1")  # updates
    index.upsert(make_products(2, start=400), unit_vectors(2, 9), "enc-v1")  # reuses rows


@pytest.fixture
def both(tmp_path: Path) -> Iterator[tuple[CatalogIndex, CatalogIndex]]:
    memory = CatalogIndex.open(tmp_path / "memory.db", dim=DIM)
    milvus = open_milvus(tmp_path)
    for index in (memory, milvus):
        write_history(index)
    yield memory, milvus
    memory.close()
    milvus.close()


def test_both_backends_give_the_same_candidates_ranks_and_scores(both) -> None:
    memory, milvus = both
    assert (memory.backend, milvus.backend) == ("memory", "milvus")
    expected = everything(memory)
    assert all(expected[:3]) and sum(map(len, expected)) > 300
    assert everything(milvus) == expected
    assert milvus._engine_current


def test_errors_are_the_same_on_both_backends(both) -> None:
    for index in both:
        with pytest.raises(InvalidArgument, match=r"filters\.attributes: unknown attribute 'size'"):
            index.retrieve(
                "sofa", None, RetrieveOptions(filters=Filters(attributes={"size": ["L"]}))
            )
        with pytest.raises(InvalidArgument, match="query_vector"):
            index.retrieve("", None, RetrieveOptions(mode="dense"))


def test_hostile_filter_values_never_reach_the_expression(both) -> None:
    naughty = ['"', "\\", "') or 1==1 --", "cls in [1]", "\u202e\u0000", "💩" * 50, "a" * 5000]
    filters = Filters(classes=naughty, attributes={"colour": naughty})
    expression = filter_expression(filters)
    assert all(s not in expression for s in ('"', "'", "\\", "or 1"))
    for index in both:
        result = index.retrieve("sofa", QUERIES[0], RetrieveOptions(filters=filters))
        assert result.candidates == []
    memory, milvus = both
    # A product whose class and attribute are such strings is found by them, on both.
    odd = dataclasses.replace(
        make_products(1, start=500)[0],
        product_class=naughty[2],
        attributes={"colour": naughty[0]},
    )
    for index in both:
        index.upsert([odd], unit_vectors(1, 3), "enc-v1")
    exact = Filters(classes=[naughty[2]], attributes={"colour": [naughty[0]]})
    assert (
        evidence(milvus, "model", None, exact, "lexical")
        == evidence(memory, "model", None, exact, "lexical")
        != []
    )


def test_reopening_reuses_the_collection_and_rebuilds_a_stale_one(tmp_path: Path) -> None:
    milvus = open_milvus(tmp_path)
    write_history(milvus)
    served = milvus._engine.state.collection
    expected = everything(milvus)
    milvus.close()

    reopened = open_milvus(tmp_path)
    assert reopened._engine.state.collection == served  # its generation matched: no rebuild
    assert everything(reopened) == expected
    reopened.close()

    # Written while the engine was away (the in-process backend over the same store).
    plain = CatalogIndex.open(tmp_path / "catalog.db", dim=DIM)
    plain.upsert(make_products(1, start=900), unit_vectors(1, 4), "enc-v1")
    plain.delete(["p8"])
    expected = everything(plain)
    plain.close()
    rebuilt = open_milvus(tmp_path)
    assert rebuilt._engine.state.collection != served
    assert rebuilt._engine.state.generation == rebuilt.generation
    assert everything(rebuilt) == expected
    assert "p900" in [c.product.product_id for c in rebuilt.retrieve("model 900", None).candidates]
    rebuilt.close()


def test_a_replica_with_its_own_engine_follows_the_others_writes(tmp_path: Path) -> None:
    writer = CatalogIndex.open(tmp_path / "catalog.db", dim=DIM)
    follower = open_milvus(tmp_path)
    write_history(writer)
    assert follower.follow() > 0
    assert follower._engine.state.generation == writer.generation
    assert everything(follower) == everything(writer)
    writer.delete(["p0", "p1"])
    writer.upsert(make_products(1, start=700), unit_vectors(1, 8), "enc-v1")
    follower.follow()
    assert everything(follower) == everything(writer)
    writer.close()
    follower.close()


def test_a_reindex_swap_is_served_from_memory_until_the_engine_caught_up(tmp_path: Path) -> None:
    memory = CatalogIndex.open(tmp_path / "memory.db", dim=DIM)
    milvus = open_milvus(tmp_path)
    products = make_products(150)
    for index in (memory, milvus):
        index.upsert(products, FakeEncoder("1")([p.embedding_text() for p in products]), "1")
        index.start_reindex("2", FakeEncoder("2"), batch_size=40)
        assert index.wait_reindex(30).state == "done"
    query = FakeEncoder("2")(["grey velvet sofa"])[0]
    options = RetrieveOptions(mode="dense", k=20, query_version="2")
    expected = [c.product.product_id for c in memory.retrieve("", query, options).candidates]
    # Right after the swap the dense list is already the new version's (from memory).
    assert [
        c.product.product_id for c in milvus.retrieve("", query, options).candidates
    ] == expected
    wait_until(lambda: milvus._engine_current, "the engine caught up after the swap", 60)
    assert milvus._engine_current and milvus._engine.state.version == "2"
    assert [
        c.product.product_id for c in milvus.retrieve("", query, options).candidates
    ] == expected
    memory.close()
    milvus.close()


def test_the_retrieval_service_serves_from_milvus(
    start_stack: Callable[..., Stack], triton_server, tmp_path: Path
) -> None:
    """Real Triton embeddings, the service set to the milvus backend: a storefront's
    upsert, retrieve and delete go through the engine; a restart serves the same."""
    from shopsense.retrieval.v1 import retrieval_service_pb2 as rpb
    from shopsense.retrieval.v1 import retrieval_service_pb2_grpc

    from shared.data.synthetic import generate_store

    settings = {
        "backend": "milvus",
        "milvus_uri": str(tmp_path / "engine" / "retrieval.db"),
        "catalog_db_url": f"sqlite:///{tmp_path / 'catalog.db'}",
    }
    store = generate_store(n_products=40, n_queries=4, seed=5)
    query = store.queries[0].text

    def answer(stack: Stack) -> list[str]:
        stub = stack.stub("retrieval", retrieval_service_pb2_grpc.RetrievalServiceStub)
        reply = stub.Retrieve(rpb.RetrieveRequest(query=query, k=10), timeout=30)
        return [c.product.product_id for c in reply.candidates]

    first = start_stack(
        ["retrieval"], triton_url=triton_server.grpc_url, only={"retrieval": settings}
    )
    with first:
        first.load_catalog(store.products)
        served = answer(first)
        assert len(served) == 10
        stub = first.stub("retrieval", retrieval_service_pb2_grpc.RetrievalServiceStub)
        stub.DeleteProducts(rpb.DeleteProductsRequest(product_ids=[served[0]]), timeout=30)
        after_delete = answer(first)
        assert served[0] not in after_delete
    assert (tmp_path / "engine" / "retrieval.db").exists()
    again = start_stack(
        ["retrieval"], triton_url=triton_server.grpc_url, only={"retrieval": settings}
    )
    with again:
        assert answer(again) == after_delete
