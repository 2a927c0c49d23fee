"""Publishing to several Tritons over one model repository (Kubernetes: Triton pods
sharing the ``shopsense-models`` volume): two real tritonservers, one repository; a new
version loaded through ``load_versions`` with both endpoints serves on both."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from shared.models.tokenization import Tokenizer
from shared.models.triton_client import TextEncoderClient
from shared.models.triton_server import TritonServer
from shared.training.publish import load_versions, loaded_versions, triton_endpoints

pytestmark = pytest.mark.integration

MODEL = "text_encoder"


@pytest.fixture(scope="module")
def shared_repository(exported_model_repository: Path, tmp_path_factory) -> Path:
    """The session's export as version 1, in a repository of this module's own."""
    repository = tmp_path_factory.mktemp("shared_models")
    source, target = exported_model_repository / MODEL, repository / MODEL
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("model.onnx"))
    try:
        os.link(source / "1" / "model.onnx", target / "1" / "model.onnx")
    except OSError:
        shutil.copy2(source / "1" / "model.onnx", target / "1" / "model.onnx")
    return repository


@pytest.fixture(scope="module")
def two_tritons(shared_repository: Path) -> Iterator[list[str]]:
    servers = [
        TritonServer(
            shared_repository,
            startup_timeout_s=180.0,
            log_file=shared_repository.parent / f"triton-{name}.log",
        )
        for name in ("a", "b")
    ]
    try:
        for server in servers:
            server.start()
        yield [server.grpc_url for server in servers]
    finally:
        for server in servers:
            server.stop()


def test_a_published_version_serves_on_every_triton(
    two_tritons: list[str], shared_repository: Path
) -> None:
    a, b = two_tritons
    # The trainer's publish: a new version folder in the shared repository, then loaded.
    folder = shared_repository / MODEL
    shutil.copytree(folder / "1", folder / "2")
    ready = load_versions(f"{a},{b}", MODEL, [1, 2], repository=shared_repository)
    assert ready == [1, 2]
    assert loaded_versions(a, MODEL) == loaded_versions(b, MODEL) == [1, 2]
    tokenizer = Tokenizer()
    vectors = [
        TextEncoderClient(url, tokenizer, model_version="2").embed(["oak table"]) for url in (a, b)
    ]
    np.testing.assert_allclose(vectors[0], vectors[1], atol=1e-5)

    # Serving one version only again (a rollback's last step), on both.
    assert load_versions(f"{a},{b}", MODEL, [1], repository=shared_repository) == [1]
    assert loaded_versions(a, MODEL) == loaded_versions(b, MODEL) == [1]
    # Versions READY on every endpoint: after loading 2 on A alone, both still agree on 1.
    load_versions(a, MODEL, [1, 2], repository=shared_repository)
    assert loaded_versions(f"{a},{b}", MODEL) == [1]


def test_a_headless_service_name_stands_for_every_address() -> None:
    # "localhost" resolves to the loopback address(es), as a headless Service's name
    # resolves to each ready pod's.
    endpoints = triton_endpoints("dns:///localhost:8001")
    assert endpoints and all(e.endswith(":8001") for e in endpoints)
    assert "127.0.0.1:8001" in endpoints
    assert triton_endpoints("10.0.0.1:8001, 10.0.0.2:8001") == ["10.0.0.1:8001", "10.0.0.2:8001"]
    with pytest.raises(ValueError, match="does not resolve"):
        triton_endpoints("dns:///no-such-triton.invalid:8001")
