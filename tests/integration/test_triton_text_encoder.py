from __future__ import annotations

import os
import threading
from pathlib import Path

import numpy as np
import pytest

from shared.errors import Unavailable
from shared.models.onnx_runtime import OnnxSentenceEncoder
from shared.models.tokenization import Tokenizer
from shared.models.triton_client import TextEncoderClient
from shared.models.triton_server import TritonServer

pytestmark = pytest.mark.integration

TEXTS = [
    "lamp",
    "red velvet sofa",
    "solid oak dining table with six chairs",
    "king size upholstered bed frame with storage drawers and a tall padded headboard",
    "outdoor teak bench",
    "mid century modern walnut sideboard with brass handles and sliding doors",
    "white ceramic table lamp with linen shade",
    "small round mirror",
]


@pytest.fixture(scope="module")
def client(triton_server: TritonServer, tokenizer: Tokenizer) -> TextEncoderClient:
    return TextEncoderClient(triton_server.grpc_url, tokenizer, timeout_s=30.0)


@pytest.fixture(scope="module")
def atol(exported_model_repository: Path, engine_atol) -> float:
    return engine_atol(exported_model_repository / "text_encoder" / "1")


@pytest.fixture(scope="module")
def reference(exported_model_repository: Path, tokenizer: Tokenizer) -> np.ndarray:
    """In-process embeddings on the version's engine, one sentence at a time."""
    encoder = OnnxSentenceEncoder.for_version(exported_model_repository / "text_encoder" / "1")
    return np.concatenate([encoder.run(*tokenizer.encode([t], max_length=64)) for t in TEXTS])


def test_ready_and_version(client: TextEncoderClient) -> None:
    assert client.is_ready()
    assert client.version() == "1"


def test_embed_matches_the_engine_in_process(
    client: TextEncoderClient, reference: np.ndarray, atol: float
) -> None:
    embeddings = client.embed(TEXTS, batch_size=3)
    assert embeddings.dtype == np.float32 and embeddings.shape == (len(TEXTS), 384)
    assert np.abs(embeddings - reference).max() < atol
    assert client.embed([]).shape == (0, 384)


def test_concurrent_requests_of_different_lengths_are_merged_and_correct(
    client: TextEncoderClient, reference: np.ndarray, atol: float
) -> None:
    """8 threads send single texts of different lengths at once: the dynamic batcher
    merges them, so the adapter's padding path runs, and every answer must be right."""
    stats_client = client._client
    before = stats_client.get_inference_statistics("text_encoder").model_stats[0]
    errors: list[str] = []
    rounds = 15
    barrier = threading.Barrier(len(TEXTS))

    def work(index: int) -> None:
        barrier.wait()
        for _ in range(rounds):
            got = client.embed([TEXTS[index]])[0]
            diff = float(np.abs(got - reference[index]).max())
            if diff >= atol:
                errors.append(f"text {index}: max abs diff {diff:.2e}")

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(TEXTS))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors

    after = stats_client.get_inference_statistics("text_encoder").model_stats[0]
    inferences = after.inference_count - before.inference_count
    executions = after.execution_count - before.execution_count
    assert inferences == len(TEXTS) * rounds
    assert executions < inferences, "no requests were merged by the dynamic batcher"


def test_unavailable_when_server_is_down(tokenizer: Tokenizer) -> None:
    from shared.models.triton_server import free_port

    client = TextEncoderClient(f"127.0.0.1:{free_port()}", tokenizer, timeout_s=1.0)
    assert not client.is_ready()
    with pytest.raises(Unavailable, match="text_encoder"):
        client.embed(["sofa"])


def test_stop_leaves_no_process(
    exported_model_repository: Path, tokenizer: Tokenizer, tmp_path: Path
) -> None:
    with TritonServer(exported_model_repository, log_file=tmp_path / "triton.log") as server:
        pid = server.pid
        assert pid is not None
        assert TextEncoderClient(server.grpc_url, tokenizer).embed(["sofa"]).shape == (1, 384)
        prefix = server._shm_prefix
    assert not server.is_running()
    assert not Path(f"/proc/{pid}").exists()
    # Nothing of its process group (the python backend stubs) survives either.
    survivors = [p for p in Path("/proc").iterdir() if p.name.isdigit() and _pgid(p) == pid]
    assert not survivors
    assert not list(Path("/dev/shm").glob(f"{prefix}*"))


def _pgid(proc: Path) -> int | None:
    try:
        return os.getpgid(int(proc.name))
    except (ProcessLookupError, PermissionError):
        return None
