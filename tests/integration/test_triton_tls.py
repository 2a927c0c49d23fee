"""Triton's gRPC port under mutual TLS, as production runs it: the services' and the
trainer's clients present the suite's certificate; a client without one, or with one from
another CA, is refused; HTTP answers health checks and nothing else."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from tritonclient.utils import InferenceServerException

from shared.errors import Unavailable
from shared.models.tokenization import Tokenizer
from shared.models.triton_client import TextEncoderClient, open_triton
from shared.models.triton_server import TritonServer
from shared.rpc.tls import (
    TlsFiles,
    dev_client_files,
    dev_service_files,
    issue,
    new_ca,
    write_dev_certs,
)
from shared.training.publish import load_versions, loaded_versions

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("certs")
    write_dev_certs(folder)
    return folder


@pytest.fixture(scope="module")
def secure_triton(exported_model_repository: Path, certs: Path) -> Iterator[TritonServer]:
    server = TritonServer(
        exported_model_repository,
        models=["text_encoder"],
        http_port=0,
        log_file=certs.parent / "triton-tls.log",
        tls=dev_service_files(certs),
    )
    with server:
        yield server


def _foreign_files(folder: Path) -> TlsFiles:
    """A certificate for this machine from a CA Triton does not trust."""
    folder.mkdir(exist_ok=True)
    ca = new_ca("another CA")
    other = issue(ca, "shopsense-gateway", ("localhost", "127.0.0.1"))
    files = TlsFiles(folder / "tls.crt", folder / "tls.key", folder / "ca.crt")
    files.cert.write_bytes(other.cert)
    files.key.write_bytes(other.key)
    # It trusts the real CA, so only Triton's check of the client can refuse it.
    files.ca.write_bytes(dev_service_files(folder.parent / "certs").ca.read_bytes())
    return files


def test_the_services_certificate_embeds_over_mutual_tls(
    secure_triton: TritonServer, certs: Path, tokenizer: Tokenizer
) -> None:
    client = TextEncoderClient(secure_triton.grpc_url, tokenizer, tls=dev_service_files(certs))
    try:
        vectors = client.embed(["leather sofa", "outdoor rug"])
    finally:
        client.close()
    assert vectors.shape == (2, 384)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-3)


def test_a_client_without_the_suites_certificate_is_refused(
    secure_triton: TritonServer, certs: Path, tokenizer: Tokenizer, tmp_path: Path
) -> None:
    (tmp_path / "certs").symlink_to(certs)
    clients = {
        "plaintext": TextEncoderClient(secure_triton.grpc_url, tokenizer, timeout_s=3.0),
        "another CA's certificate": TextEncoderClient(
            secure_triton.grpc_url, tokenizer, timeout_s=3.0, tls=_foreign_files(tmp_path / "x")
        ),
    }
    for what, client in clients.items():
        try:
            assert not client.is_ready(), what
            with pytest.raises(Unavailable, match="text_encoder"):
                client.embed(["leather sofa"])
        finally:
            client.close()
    # The refusals cost the server nothing: the suite's certificate is still served.
    trusted = open_triton(secure_triton.grpc_url, dev_client_files(certs))
    try:
        assert trusted.is_model_ready("text_encoder", client_timeout=5.0)
    finally:
        trusted.close()


def test_the_trainer_loads_versions_on_pods_found_by_name(
    secure_triton: TritonServer, certs: Path, exported_model_repository: Path
) -> None:
    # dns:///name:port resolves to addresses; each pod's certificate is checked against
    # the name (here localhost, which the development certificate carries).
    url = f"dns:///localhost:{secure_triton.grpc_port}"
    tls = dev_service_files(certs)
    assert loaded_versions(url, "text_encoder", tls=tls) == [1]
    assert load_versions(
        url, "text_encoder", [1], repository=exported_model_repository, tls=tls
    ) == [1]
    with pytest.raises(InferenceServerException):  # plaintext: the handshake fails
        loaded_versions(url, "text_encoder", timeout_s=3.0)


def _http(server: TritonServer, path: str, body: bytes | None = None) -> int:
    request = urllib.request.Request(
        f"http://127.0.0.1:{server.http_port}{path}", data=body, method="POST" if body else "GET"
    )
    try:
        with urllib.request.urlopen(request, timeout=5.0) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return int(error.code)


def test_http_answers_health_checks_only(secure_triton: TritonServer, certs: Path) -> None:
    assert _http(secure_triton, "/v2/health/ready") == 200
    assert _http(secure_triton, "/v2/models/text_encoder/ready") == 200
    inference = {
        "inputs": [
            {"name": "input_ids", "shape": [1, 2], "datatype": "INT64", "data": [101, 102]},
            {"name": "attention_mask", "shape": [1, 2], "datatype": "INT64", "data": [1, 1]},
        ]
    }
    refused = {
        "metadata": _http(secure_triton, "/v2/models/text_encoder"),
        "config": _http(secure_triton, "/v2/models/text_encoder/config"),
        "inference": _http(
            secure_triton, "/v2/models/text_encoder/infer", json.dumps(inference).encode()
        ),
        "unload": _http(secure_triton, "/v2/repository/models/text_encoder/unload", b"{}"),
    }
    assert all(code in (401, 403) for code in refused.values()), refused
    trusted = open_triton(secure_triton.grpc_url, dev_service_files(certs))
    try:
        assert trusted.is_model_ready("text_encoder", client_timeout=5.0)
    finally:
        trusted.close()
