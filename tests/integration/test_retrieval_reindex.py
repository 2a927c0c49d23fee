"""Reindexing the catalog to a new text_encoder version through a real Triton serving two
versions at once (explicit model control, version policy "specific"), a real retrieval
server on port 0 and a real SQLite file: searches keep answering from one version, the
swap is atomic, upserts during the run land in the new index, failures leave the old one.

Version 2 is version 1's ONNX file with an adapter that rolls each embedding by one place:
as good a model as version 1 (rankings are identical) but with different vectors, so a
query of one version scored against the other's vectors would find nonsense, and the
stored vectors prove which version made them.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import grpc
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from shopsense.common.v1 import common_pb2
from shopsense.retrieval.v1 import retrieval_service_pb2 as rpb
from shopsense.retrieval.v1 import retrieval_service_pb2_grpc
from sqlalchemy.engine import make_url

from services.retrieval.server import PRODUCT_MAX_TOKENS, QUERY_MAX_TOKENS
from shared.contracts.common import embedding_to_proto, product_to_proto
from shared.data.synthetic import generate_store
from shared.models.tokenization import Tokenizer
from shared.models.triton_client import TextEncoderClient
from shared.models.triton_server import TritonServer
from shared.rpc.server import ServerHandle
from shared.runtime.catalog import upsert_products

pytestmark = pytest.mark.integration
MODEL = "text_encoder"
N_PRODUCTS = 300
ROLLED_ADAPTER = """

# Test-only version: version 1's model with each embedding rolled one place. Only
# Triton's python-backend interface is used, not the adapter's internals.
_VersionOneModel = TritonPythonModel


class TritonPythonModel(_VersionOneModel):
    def execute(self, requests):
        import triton_python_backend_utils as pb_utils

        responses = []
        for response in super().execute(requests):
            if response.has_error():
                responses.append(response)
                continue
            embedding = pb_utils.get_output_tensor_by_name(response, "embedding").as_numpy()
            rolled = pb_utils.Tensor("embedding", np.roll(embedding, 1, axis=1))
            responses.append(pb_utils.InferenceResponse(output_tensors=[rolled]))
        return responses
"""


def load_versions(url: str, versions: Sequence[int]) -> None:
    """(Re)load text_encoder with exactly ``versions`` ready, as an operator would."""
    client = grpcclient.InferenceServerClient(url)
    try:
        config = client.get_model_config(MODEL, as_json=True)["config"]
        config["version_policy"] = {"specific": {"versions": list(versions)}}
        client.load_model(MODEL, config=json.dumps(config))
    finally:
        client.close()


@pytest.fixture(scope="module")
def two_version_triton(exported_model_repository: Path, tmp_path_factory) -> Iterator[str]:
    """A Triton of its own (the session's must keep serving version 1 only) whose
    repository has version 1 and a rolled version 2, both loaded."""
    repository = tmp_path_factory.mktemp("two_versions")
    source = exported_model_repository / MODEL
    target = repository / MODEL
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("model.onnx"))
    for version in ("1", "2"):
        (target / version).mkdir(exist_ok=True)
        try:
            os.link(source / "1" / "model.onnx", target / version / "model.onnx")
        except OSError:
            shutil.copy2(source / "1" / "model.onnx", target / version / "model.onnx")
    shutil.copy2(source / "1" / "model.py", target / "2" / "model.py")
    with (target / "2" / "model.py").open("a") as adapter:
        adapter.write(ROLLED_ADAPTER)
    server = TritonServer(
        repository, startup_timeout_s=120.0, log_file=repository.parent / "triton2.log"
    )
    server.start()
    try:
        load_versions(server.grpc_url, [1, 2])
        yield server.grpc_url
    finally:
        server.stop()


class HookedEncoders:
    """Real per-version Triton clients; ``before(version, texts)`` runs before every
    embed, so a test can hold a reindex between batches or unload a version mid-way."""

    def __init__(self, url: str, tokenizer: Tokenizer) -> None:
        self.url, self.tokenizer = url, tokenizer
        self.before: Callable[[str, Sequence[str]], None] | None = None

    def __call__(self, version: str) -> _Hooked:
        return _Hooked(TextEncoderClient(self.url, self.tokenizer, model_version=version), self)


class _Hooked:
    def __init__(self, client: TextEncoderClient, owner: HookedEncoders) -> None:
        self.client, self.owner = client, owner

    def embed(self, texts: Sequence[str], max_length: int = 64, batch_size: int = 32):
        hook = self.owner.before
        if hook is not None:
            hook(self.client.model_version, texts)
        return self.client.embed(texts, max_length=max_length, batch_size=batch_size)

    def version(self) -> str:
        return self.client.version()


@dataclasses.dataclass
class Service:
    handle: ServerHandle
    stub: retrieval_service_pb2_grpc.RetrievalServiceStub
    encoders: HookedEncoders
    catalog_db: Path
    products: list
    url: str

    def status(self) -> rpb.ReindexStatus:
        return self.stub.GetReindexStatus(rpb.GetReindexStatusRequest(), timeout=5).status

    def reindex(self, version: str) -> rpb.ReindexStatus:
        reply = self.stub.ReindexCatalog(
            rpb.ReindexCatalogRequest(text_encoder_version=version), timeout=30
        )
        return reply.status

    def wait(self, timeout: float = 120.0) -> rpb.ReindexStatus:
        deadline = time.monotonic() + timeout
        while (status := self.status()).state == rpb.REINDEX_STATE_RUNNING:
            assert time.monotonic() < deadline, "reindex did not finish"
            time.sleep(0.05)
        return status

    def stored(self, product_id: str) -> tuple[np.ndarray, str]:
        with sqlite3.connect(self.catalog_db) as conn:
            blob, version = conn.execute(
                "SELECT embedding, embedding_version FROM catalog_products WHERE product_id=?",
                (product_id,),
            ).fetchone()
        return np.frombuffer(blob, dtype="<f4"), version

    def stored_versions(self) -> dict[str, int]:
        with sqlite3.connect(self.catalog_db) as conn:
            rows = conn.execute(
                "SELECT embedding_version, count(*) FROM catalog_products GROUP BY 1"
            ).fetchall()
        return dict(rows)


@pytest.fixture(scope="module")
def service(two_version_triton: str, tokenizer, start_stack) -> Service:
    encoders = HookedEncoders(two_version_triton, tokenizer)
    stack = start_stack(
        ["retrieval"],
        triton_url=two_version_triton,
        using={
            "retrieval": {
                "encoder": TextEncoderClient(two_version_triton, tokenizer),  # newest: 2
                "encoder_for_version": encoders,
            }
        },
    )
    handle = stack.handles["retrieval"]
    stub = stack.stub("retrieval", retrieval_service_pb2_grpc.RetrievalServiceStub)
    catalog_db = Path(make_url(stack.settings["retrieval"].catalog_db_url).database or "")
    svc = Service(handle, stub, encoders, catalog_db, [], two_version_triton)
    # An empty index would take Triton's newest (2); pin version 1 first.
    pinned = svc.reindex("1")
    assert pinned.state == rpb.REINDEX_STATE_DONE and pinned.index_version == "1"
    assert "empty" in pinned.message
    svc.products = generate_store(n_products=N_PRODUCTS, n_queries=5, seed=11).products
    reply = upsert_products(handle.address, svc.products, progress=False)
    assert [r.error for r in reply.results if r.error] == []
    assert svc.stored_versions() == {"1": N_PRODUCTS}
    return svc


def _title_query(stub, product, embedding=None) -> rpb.RetrieveResponse:
    return stub.Retrieve(
        rpb.RetrieveRequest(
            query=product.title,
            k=3,
            mode=common_pb2.RETRIEVAL_MODE_DENSE,
            query_embedding=embedding,
        ),
        timeout=10,
    )


def test_reindex_to_version_2_swaps_atomically_while_searches_keep_answering(
    service: Service, tokenizer, exported_model_repository: Path, engine_atol
):
    stub = service.stub
    probes = service.products[:: N_PRODUCTS // 6][:6]
    v1 = TextEncoderClient(service.url, tokenizer, model_version="1")
    # What the gateway would send: query embeddings of version 1, made before the swap.
    gateway_embeddings = {
        p.product_id: embedding_to_proto(v1.embed([p.title], max_length=QUERY_MAX_TOKENS)[0], "1")
        for p in probes
    }
    answers: list[tuple[str, bool]] = []  # (embedding_version, top hit right) in order
    errors: list[BaseException] = []
    stop = threading.Event()

    def searcher() -> None:
        i = 0
        try:
            while not stop.is_set():
                product = probes[i % len(probes)]
                given = gateway_embeddings[product.product_id] if i % 2 else None
                reply = _title_query(stub, product, given)
                # Dense only: a query scored against vectors of another version finds
                # nonsense, so the right top hit proves the versions matched.
                top = reply.candidates[0].product.product_id
                answers.append((reply.embedding_version, top == product.product_id))
                i += 1
        except BaseException as exc:
            errors.append(exc)

    # Hold each reindex batch briefly so searches and an upsert interleave with it.
    service.encoders.before = lambda version, texts: time.sleep(0.05) if len(texts) > 1 else None
    thread = threading.Thread(target=searcher)
    thread.start()
    try:
        while len(answers) < 3:
            time.sleep(0.01)
        generation = stub.GetCatalogStats(rpb.GetCatalogStatsRequest(), timeout=5).generation
        started = service.reindex("2")
        assert started.state == rpb.REINDEX_STATE_RUNNING, started
        assert (started.target_version, started.source_version) == ("2", "1")
        assert started.index_version == "1" and started.products_total == N_PRODUCTS
        assert started.HasField("started_at") and not started.HasField("finished_at")
        # Upserts during the reindex: a new product and an update of a known one.
        fresh = dataclasses.replace(
            service.products[0], product_id="new-1", title="Zebrawood Floating Wall Shelf"
        )
        changed = dataclasses.replace(service.products[1], title="Teak Outdoor Storage Bench")
        reply = stub.UpsertProducts(
            iter([rpb.UpsertProductsRequest(products=[product_to_proto(fresh),
                                                      product_to_proto(changed)])]),
            timeout=30,
        )  # fmt: skip
        assert [r.status for r in reply.results] == [
            rpb.ITEM_STATUS_CREATED,
            rpb.ITEM_STATUS_UPDATED,
        ]
        progress = []
        while (status := service.status()).state == rpb.REINDEX_STATE_RUNNING:
            progress.append(status.products_embedded)
            assert status.index_version == "1"
            time.sleep(0.05)
        time.sleep(0.3)  # some searches after the swap
    finally:
        service.encoders.before = None
        stop.set()
        thread.join(timeout=30)
    assert not errors, errors[0]

    assert status.state == rpb.REINDEX_STATE_DONE, status
    assert status.products_embedded == status.products_total >= N_PRODUCTS
    assert status.index_version == "2" and status.HasField("finished_at")
    assert progress == sorted(progress) and len(set(progress)) > 1
    # Every search answered, from one version: 1 until the swap, 2 after, never mixed.
    versions = [v for v, _ in answers]
    assert set(versions) == {"1", "2"}, versions
    first_two = versions.index("2")
    assert versions == ["1"] * first_two + ["2"] * (len(versions) - first_two)
    assert all(right for _, right in answers), answers
    # The swap is on disk: every vector is version 2's, i.e. version 1's rolled one place.
    assert service.stored_versions() == {"2": N_PRODUCTS + 1}
    probe = probes[2]
    stored, version = service.stored(probe.product_id)
    expected = np.roll(v1.embed([probe.embedding_text()], max_length=PRODUCT_MAX_TOKENS)[0], 1)
    assert version == "2"
    # Version 2 runs the same graph, maybe on another engine than version 1.
    atol = engine_atol(exported_model_repository / MODEL / "1")
    np.testing.assert_allclose(stored, expected, atol=atol)
    for product in (fresh, changed):
        stored, version = service.stored(product.product_id)
        assert version == "2"
        expected = np.roll(v1.embed([product.embedding_text()], PRODUCT_MAX_TOKENS)[0], 1)
        np.testing.assert_allclose(stored, expected, atol=atol)
        assert _title_query(stub, product).candidates[0].product.product_id == product.product_id
    stats = stub.GetCatalogStats(rpb.GetCatalogStatsRequest(), timeout=5)
    assert stats.embedding_version == "2" and stats.generation > generation
    assert stats.reindex.state == rpb.REINDEX_STATE_DONE
    # A late gateway still sending version-1 embeddings is re-embedded, not refused.
    late = _title_query(stub, probe, gateway_embeddings[probe.product_id])
    assert late.embedding_version == "2"
    assert late.candidates[0].product.product_id == probe.product_id


def test_bad_reindex_requests_get_the_right_codes(service: Service):
    index_version = service.status().index_version
    other = "1" if index_version == "2" else "2"
    for version, code in [
        ("", grpc.StatusCode.INVALID_ARGUMENT),
        ("   ", grpc.StatusCode.INVALID_ARGUMENT),
        ("two", grpc.StatusCode.INVALID_ARGUMENT),
        ("²", grpc.StatusCode.INVALID_ARGUMENT),  # str.isdigit says yes, int() says no
        ("٣", grpc.StatusCode.INVALID_ARGUMENT),
        ("7", grpc.StatusCode.FAILED_PRECONDITION),  # Triton does not serve it
    ]:
        with pytest.raises(grpc.RpcError) as err:
            service.reindex(version)
        assert err.value.code() == code, version
        assert err.value.details().startswith("text_encoder_version"), err.value.details()
    assert "not served by Triton" in err.value.details()

    same = service.reindex(index_version)
    assert same.state == rpb.REINDEX_STATE_DONE and "nothing to do" in same.message
    assert same.products_total == 0 and same.index_version == index_version

    # Another version while one runs: held on its first batch until cancelled.
    gate = threading.Event()
    service.encoders.before = lambda version, texts: gate.wait(30) if len(texts) > 1 else None
    try:
        running = service.reindex(other)
        assert running.state == rpb.REINDEX_STATE_RUNNING
        assert service.reindex(other).state == rpb.REINDEX_STATE_RUNNING  # same: its status
        with pytest.raises(grpc.RpcError) as err:
            service.reindex(index_version)
        assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert err.value.details().startswith("text_encoder_version")
        assert f"version {other!r} is running" in err.value.details()
        threading.Timer(0.3, gate.set).start()
        cancelled = service.stub.CancelReindex(rpb.CancelReindexRequest(), timeout=30).status
    finally:
        gate.set()
        service.encoders.before = None
    assert cancelled.state == rpb.REINDEX_STATE_CANCELLED, cancelled
    assert cancelled.index_version == index_version
    assert service.stored_versions() == {index_version: N_PRODUCTS + 1}


def test_a_version_unloaded_mid_reindex_fails_it_and_the_old_index_keeps_serving(
    service: Service,
):
    index_version = service.status().index_version
    other = "1" if index_version == "2" else "2"
    probe = service.products[5]
    before = _title_query(service.stub, probe)
    calls = []

    def unload_on_second_batch(version: str, texts: Sequence[str]) -> None:
        if version == other and len(texts) > 1:
            calls.append(len(texts))
            if len(calls) == 2:  # the operator unloads the target version mid-way
                load_versions(service.url, [int(index_version)])

    service.encoders.before = unload_on_second_batch
    try:
        assert service.reindex(other).state == rpb.REINDEX_STATE_RUNNING
        status = service.wait()
        assert status.state == rpb.REINDEX_STATE_FAILED, status
        assert status.error and f"version {other}" in status.error, status.error
        assert 0 < status.products_embedded < status.products_total
        assert status.index_version == index_version
        after = _title_query(service.stub, probe)
        assert after.embedding_version == index_version
        assert [c.product.product_id for c in after.candidates] == [
            c.product.product_id for c in before.candidates
        ]
        assert service.stored_versions() == {index_version: N_PRODUCTS + 1}
        with sqlite3.connect(service.catalog_db) as conn:
            assert conn.execute("SELECT count(*) FROM catalog_staging").fetchone() == (0,)
    finally:
        service.encoders.before = None
        load_versions(service.url, [1, 2])
