"""Client of the ``text_encoder`` model on Triton: tokenize here, embed there."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import TypeVar

import numpy as np
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from shared.models.tokenization import Tokenizer
from shared.rpc.errors import InvalidArgument, Unavailable
from shared.settings import Settings

T = TypeVar("T")


class TextEncoderClient:
    """Embeds texts with the Triton ``text_encoder`` model (L2-normalised float32 rows).

    One ``tritonclient.grpc.InferenceServerClient`` (one gRPC channel) is shared by all
    threads: its unary methods are documented thread-safe (only streaming is not), and
    one channel multiplexes concurrent calls so Triton's dynamic batcher can merge them.
    Every Triton failure (server down, model not ready, deadline) becomes
    ``Unavailable``; the error interceptor maps it to gRPC UNAVAILABLE.
    """

    def __init__(
        self,
        url: str,
        tokenizer: Tokenizer,
        model_name: str = "text_encoder",
        model_version: str = "",
        timeout_s: float = 5.0,
    ) -> None:
        self.url = url
        self.tokenizer = tokenizer
        self.model_name = model_name
        self.model_version = model_version
        self.timeout_s = timeout_s
        self._client = grpcclient.InferenceServerClient(url)
        self._lock = threading.Lock()  # guards the lazily read model limits only
        self._limits: tuple[int, int] | None = None
        self._served_version = ""

    def close(self) -> None:
        """Close the gRPC channel."""
        self._client.close()

    def _call(self, what: str, call: Callable[[], T]) -> T:
        try:
            return call()
        except InferenceServerException as error:
            raise Unavailable(
                f"text encoder {self.model_name!r} at {self.url}: {what} failed: "
                f"{error.message() or error}"
            ) from error

    def _model_limits(self) -> tuple[int, int]:
        """``(max_batch_size, dimension)`` from the served model's config, read once."""
        with self._lock:
            if self._limits is None:
                response = self._call(
                    "reading the model config",
                    lambda: self._client.get_model_config(
                        self.model_name, self.model_version, client_timeout=self.timeout_s
                    ),
                )
                config = response.config
                dimension = int(config.output[0].dims[-1])
                self._limits = (int(config.max_batch_size) or 1, dimension)
            return self._limits

    def is_ready(self) -> bool:
        """Whether the server and this model answer ready (never raises)."""
        try:
            return bool(
                self._client.is_server_ready(client_timeout=self.timeout_s)
                and self._client.is_model_ready(
                    self.model_name, self.model_version, client_timeout=self.timeout_s
                )
            )
        except InferenceServerException:
            return False

    def version(self) -> str:
        """The model version actually serving (the pinned one, else the newest ready).

        After an inference this is the version that answered it (Triton names it in each
        response), so asking costs no extra call on the search path.
        """
        if self._served_version:
            return self._served_version
        metadata = self._call(
            "reading model metadata",
            lambda: self._client.get_model_metadata(
                self.model_name, self.model_version, client_timeout=self.timeout_s
            ),
        )
        versions = sorted(metadata.versions, key=lambda v: int(v) if v.isdigit() else -1)
        if self.model_version:
            if self.model_version not in versions:
                raise Unavailable(
                    f"text encoder {self.model_name!r} at {self.url}: version "
                    f"{self.model_version} is not ready (ready: {', '.join(versions) or 'none'})"
                )
            return self.model_version
        if not versions:
            raise Unavailable(f"text encoder {self.model_name!r} at {self.url}: no version ready")
        return versions[-1]

    def embed(self, texts: Sequence[str], max_length: int = 64, batch_size: int = 32) -> np.ndarray:
        """float32 ``[len(texts), dimension]`` embeddings, one Triton request per chunk.

        Each chunk is padded to its own longest text, so short queries stay cheap.
        """
        if batch_size < 1:
            raise InvalidArgument(f"batch_size: must be at least 1, got {batch_size}")
        max_batch, dimension = self._model_limits()
        if not texts:
            return np.zeros((0, dimension), dtype=np.float32)
        step = min(batch_size, max_batch)
        chunks = [
            self._embed_chunk(texts[start : start + step], max_length)
            for start in range(0, len(texts), step)
        ]
        return chunks[0] if len(chunks) == 1 else np.concatenate(chunks)

    def _embed_chunk(self, texts: Sequence[str], max_length: int) -> np.ndarray:
        input_ids, attention_mask = self.tokenizer.encode(texts, max_length)
        inputs = []
        for name, array in (("input_ids", input_ids), ("attention_mask", attention_mask)):
            tensor = grpcclient.InferInput(name, list(array.shape), "INT64")
            tensor.set_data_from_numpy(array)
            inputs.append(tensor)
        outputs = [grpcclient.InferRequestedOutput("embedding")]
        result = self._call(
            "inference",
            lambda: self._client.infer(
                self.model_name,
                inputs,
                model_version=self.model_version,
                outputs=outputs,
                client_timeout=self.timeout_s,
            ),
        )
        self._served_version = result.get_response().model_version or self._served_version
        embedding = result.as_numpy("embedding")
        if embedding is None or embedding.shape[0] != len(texts):
            raise Unavailable(
                f"text encoder {self.model_name!r} at {self.url}: returned "
                f"{None if embedding is None else embedding.shape} for {len(texts)} texts"
            )
        return embedding


def text_encoder_from_settings(settings: Settings) -> TextEncoderClient:
    """The Triton text encoder every service uses, as the settings name it."""
    return TextEncoderClient(
        settings.triton_url, Tokenizer(), model_version=settings.text_encoder_version
    )
