"""The whole suite as `make run` starts it, with TLS on every listener and channel (the
certificates of `make certs`), API keys and an operator listener on retrieval: the
services find each other by their certificates, Triton too, a storefront's key searches,
a search without a key or with only an operator's scope is refused, and the catalog is
loaded through retrieval's operator listener only."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from shopsense.common.v1 import common_pb2
from shopsense.search.v1 import search_service_pb2 as pb
from shopsense.search.v1 import search_service_pb2_grpc

from shared.data.synthetic import generate_store
from shared.models.tokenization import Tokenizer
from shared.models.triton_client import TextEncoderClient
from shared.models.triton_server import free_port
from shared.rpc.auth import hash_key
from shared.rpc.clients import ClientSecurity, open_channel
from shared.rpc.tls import dev_client_files, dev_service_files, write_dev_certs
from shared.runtime.catalog import upsert_products, wait_for_intent
from shared.runtime.suite import Suite

pytestmark = pytest.mark.system
KEYS = {"storefront": ("sk-web", ["search", "feedback"]), "ops": ("sk-ops", ["catalog"])}


@pytest.fixture(scope="module")
def secure(
    exported_model_repository: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Suite, Path, int]]:
    folder = tmp_path_factory.mktemp("secure-suite")
    certs = folder / "certs"
    write_dev_certs(certs)
    entries = [
        {"id": name, "sha256": hash_key(key), "scopes": scopes}
        for name, (key, scopes) in KEYS.items()
    ]
    (folder / "keys.json").write_text(json.dumps({"keys": entries}))
    operator_port = free_port()
    suite = Suite(
        state=folder / "state",
        model_repository=exported_model_repository,
        ephemeral_ports=True,
        extra_env={
            **dev_service_files(certs).environment(),
            "SHOPSENSE_API_KEYS_FILE": str(folder / "keys.json"),
            "SHOPSENSE_RETRIEVAL_OPERATOR_LISTEN": f"127.0.0.1:{operator_port}",
            "SHOPSENSE_INTENT_REFRESH_S": "0.5",
            "SHOPSENSE_TOKEN_SECRET": "secure-suite",
        },
    )
    with suite:
        yield suite, certs, operator_port


def _client(certs: Path, key: str) -> ClientSecurity:
    return ClientSecurity(dev_client_files(certs), key)


def _search(suite: Suite, security: ClientSecurity) -> pb.SearchResponse:
    channel = open_channel(suite.address("gateway"), security)
    stub = search_service_pb2_grpc.SearchServiceStub(channel)
    try:
        request = pb.SearchRequest(
            query="sofa", user=common_pb2.UserContext(session_id="s-1"), page_size=5
        )
        return stub.Search(request, timeout=30)
    finally:
        channel.close()


def test_the_secure_suite_serves_a_storefront_key_and_refuses_the_others(
    secure, monkeypatch: pytest.MonkeyPatch
) -> None:
    suite, certs, operator_port = secure
    products = generate_store(n_products=200, seed=3).products
    # An operator's client certificate and catalog key: refused on the main listener ...
    ops = _client(certs, "sk-ops")
    for variable, value in {**ops.tls.environment(), "SHOPSENSE_API_KEY": "sk-ops"}.items():
        monkeypatch.setenv(variable, value)
    with pytest.raises(grpc.RpcError) as caught:
        upsert_products(suite.address("retrieval"), products[:5], progress=False)
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "SHOPSENSE_RETRIEVAL_OPERATOR_LISTEN" in caught.value.details()
    # ... and served on the operator listener.
    reply = upsert_products(f"127.0.0.1:{operator_port}", products, progress=False)
    assert [r.error for r in reply.results if r.error] == []
    # The services' own certificate: intent reads the catalog it needs from retrieval.
    for variable, value in dev_service_files(certs).environment().items():
        monkeypatch.setenv(variable, value)
    monkeypatch.delenv("SHOPSENSE_API_KEY")
    wait_for_intent(suite.address("intent"), suite.address("retrieval"))

    answers = [_search(suite, _client(certs, "sk-web")) for _ in range(3)]
    assert all(len(answer.results) == 5 for answer in answers)
    # The hops answer over mutual TLS, the query's embedding on Triton too: once warm, a
    # search is not degraded.
    assert any(not (a.degraded.intent or a.degraded.ranking or a.degraded.dense) for a in answers)
    assert suite.triton is not None and suite.triton.tls is not None
    plaintext = TextEncoderClient(suite.triton.grpc_url, Tokenizer(), timeout_s=3.0)
    try:
        assert not plaintext.is_ready(), "Triton answered a client without a certificate"
    finally:
        plaintext.close()
    for key, code in (
        ("", grpc.StatusCode.UNAUTHENTICATED),
        ("sk-ops", grpc.StatusCode.PERMISSION_DENIED),
    ):
        with pytest.raises(grpc.RpcError) as caught:
            _search(suite, _client(certs, key))
        assert caught.value.code() == code
