"""Clients of the models on Triton: tokenize here, run the model there.

``TextEncoderClient`` (``text_encoder``: embeddings), ``IntentClassifierClient``
(``intent_classifier``: class probabilities and names), ``CrossEncoderClient``
(``cross_encoder``: relevance of products to a query) and ``SequenceRecommenderClient``
(``sequence_recommender``: item and shopper embeddings) share one base: one gRPC channel,
Triton failures mapped to ``Unavailable``, the model's limits read from its config, and
the version that answered taken from each response. Every call may name a version
("" lets Triton serve its newest loaded one); a call that needs several requests pins
the later ones to the version that answered the first, so one answer never mixes two.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import tritonclient.grpc as grpcclient
from tritonclient.grpc import model_config_pb2
from tritonclient.utils import InferenceServerException

from shared.errors import InvalidArgument, Unavailable
from shared.models.tokenization import Tokenizer
from shared.models.versions import ascii_digits
from shared.rpc import tracing
from shared.rpc.tls import TlsFiles, channel_credentials

T = TypeVar("T")
# numpy dtype kind -> Triton datatype of an input (token ids, vectors, product ids).
_DTYPES = {"i": "INT64", "f": "FP32", "O": "BYTES", "S": "BYTES"}
LABELS_OUTPUT = "labels"
# Where publish.load_versions puts a version's class names for configs without a
# `labels` output (the GPU config): parameter "labels_<version>", a JSON list.
LABELS_PARAMETER = "labels_{version}"


def open_triton(
    url: str, tls: TlsFiles | None = None, server_name: str = ""
) -> grpcclient.InferenceServerClient:
    """A Triton gRPC client of ``url`` (``host:port``): plaintext without ``tls``, else
    mutual TLS with this process's certificate, checking Triton's against the CA.

    ``server_name`` is the name Triton's certificate must carry when ``url`` is an address
    that the certificate does not name (a pod's IP that ``dns:///name:port`` resolved to).
    Like every channel of the suite, it reads the files once, when it is opened."""
    if tls is None:
        return grpcclient.InferenceServerClient(url)
    keepalive = grpcclient.KeepAliveOptions()
    # tritonclient's own defaults: channel_args replaces them all when given.
    options: list[tuple[str, int | str]] = [
        ("grpc.max_send_message_length", grpcclient.MAX_GRPC_MESSAGE_SIZE),
        ("grpc.max_receive_message_length", grpcclient.MAX_GRPC_MESSAGE_SIZE),
        ("grpc.keepalive_time_ms", keepalive.keepalive_time_ms),
        ("grpc.keepalive_timeout_ms", keepalive.keepalive_timeout_ms),
        ("grpc.keepalive_permit_without_calls", keepalive.keepalive_permit_without_calls),
        ("grpc.http2.max_pings_without_data", keepalive.http2_max_pings_without_data),
    ]
    if server_name:
        options.append(("grpc.ssl_target_name_override", server_name))
    return grpcclient.InferenceServerClient(
        url, creds=channel_credentials(tls), channel_args=options
    )


class _TritonModelClient:
    """What every model client shares.

    One ``tritonclient.grpc.InferenceServerClient`` (one gRPC channel) is shared by all
    threads: its unary methods are documented thread-safe (only streaming is not), and
    one channel multiplexes concurrent calls so Triton's dynamic batcher can merge them.
    Every Triton failure (server down, model or version not ready, deadline) becomes
    ``Unavailable``; the error interceptor maps it to gRPC UNAVAILABLE.
    """

    description = "model"

    def __init__(
        self,
        url: str,
        tokenizer: Tokenizer,
        model_name: str,
        timeout_s: float,
        tls: TlsFiles | None = None,
    ) -> None:
        self.url = url
        self.tokenizer = tokenizer
        self.model_name = model_name
        self.timeout_s = timeout_s
        self.tls = tls
        self._client = open_triton(url, tls)
        self._lock = threading.Lock()  # guards the lazily read config and caches
        self._config: model_config_pb2.ModelConfig | None = None
        self._served_version = ""

    def close(self) -> None:
        """Close the gRPC channel."""
        self._client.close()

    def _unavailable(self, message: str) -> Unavailable:
        return Unavailable(f"{self.description} {self.model_name!r} at {self.url}: {message}")

    def _call(self, what: str, call: Callable[[], T]) -> T:
        try:
            return call()
        except InferenceServerException as error:
            raise self._unavailable(f"{what} failed: {error.message() or error}") from error

    def _model_config(
        self, version: str = "", refresh: bool = False
    ) -> model_config_pb2.ModelConfig:
        """The served model's config (limits, outputs, parameters), read once."""
        with self._lock:
            if self._config is None or refresh:
                response = self._call(
                    "reading the model config",
                    lambda: self._client.get_model_config(
                        self.model_name, version, client_timeout=self.timeout_s
                    ),
                )
                self._config = response.config
            return self._config

    def max_batch_size(self) -> int:
        """Most rows one request may carry (the config's max_batch_size)."""
        return int(self._model_config().max_batch_size) or 1

    def is_ready(self, version: str = "") -> bool:
        """Whether this model (that version, if given) is ready; never raises.

        Model readiness, not server readiness: with --strict-readiness one broken version
        of another model makes the whole server "not ready" while this model serves.
        """
        try:
            return bool(
                self._client.is_model_ready(self.model_name, version, client_timeout=self.timeout_s)
            )
        except InferenceServerException:
            return False

    def _infer(
        self,
        arrays: dict[str, np.ndarray],
        outputs: Sequence[str],
        version: str,
        timeout_s: float | None = None,
    ) -> tuple[grpcclient.InferResult, str]:
        """One inference; returns the result and the version that answered it.

        ``timeout_s`` (default: the client's) bounds the call, so a caller can keep to its
        own deadline."""
        inputs = []
        for name, array in arrays.items():
            tensor = grpcclient.InferInput(name, list(array.shape), _DTYPES[array.dtype.kind])
            tensor.set_data_from_numpy(array)
            inputs.append(tensor)
        requested = [grpcclient.InferRequestedOutput(name) for name in outputs]
        rows = next(iter(arrays.values())).shape[0] if arrays else 0
        attributes = {
            "rpc.system": "grpc",
            "rpc.service": "inference.GRPCInferenceService",
            "rpc.method": "ModelInfer",
            "server.address": self.url,
            "shopsense.model": self.model_name,
            "shopsense.model_version": version or "latest",
            "shopsense.rows": int(rows),
        }
        with tracing.client_span(f"triton {self.model_name} infer", attributes) as span:
            result = self._call(
                f"inference (version {version or 'latest'})",
                lambda: self._client.infer(
                    self.model_name,
                    inputs,
                    model_version=version,
                    outputs=requested,
                    client_timeout=self.timeout_s if timeout_s is None else timeout_s,
                ),
            )
            answered = result.get_response().model_version or version
            if span is not None:
                span.set_attribute("shopsense.model_version", answered or "latest")
        self._served_version = answered or self._served_version
        return result, answered

    def _output(self, result: grpcclient.InferResult, name: str, rows: int) -> np.ndarray:
        array = result.as_numpy(name)
        if array is None or array.shape[0] != rows:
            raise self._unavailable(
                f"returned {name} {None if array is None else array.shape} for {rows} rows"
            )
        return array


class TextEncoderClient(_TritonModelClient):
    """Embeds texts with the Triton ``text_encoder`` model (L2-normalised float32 rows)."""

    description = "text encoder"

    def __init__(
        self,
        url: str,
        tokenizer: Tokenizer,
        model_name: str = "text_encoder",
        model_version: str = "",
        timeout_s: float = 5.0,
        tls: TlsFiles | None = None,
    ) -> None:
        super().__init__(url, tokenizer, model_name, timeout_s, tls)
        self.model_version = model_version

    def _model_limits(self) -> tuple[int, int]:
        """``(max_batch_size, dimension)`` from the served model's config, read once."""
        config = self._model_config(self.model_version)
        return int(config.max_batch_size) or 1, int(config.output[0].dims[-1])

    def is_ready(self, version: str | None = None) -> bool:
        """Whether the server and the model are ready (``version`` None: the default one)."""
        return super().is_ready(self.model_version if version is None else version)

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
        versions = sorted(metadata.versions, key=lambda v: int(v) if ascii_digits(v) else -1)
        if self.model_version:
            if self.model_version not in versions:
                raise self._unavailable(
                    f"version {self.model_version} is not ready "
                    f"(ready: {', '.join(versions) or 'none'})"
                )
            return self.model_version
        if not versions:
            raise self._unavailable("no version ready")
        return versions[-1]

    def embed(
        self,
        texts: Sequence[str],
        max_length: int = 64,
        batch_size: int = 32,
        version: str | None = None,
    ) -> np.ndarray:
        """float32 ``[len(texts), dimension]`` embeddings, one Triton request per chunk.

        Each chunk is padded to its own longest text, so short queries stay cheap.
        ``version`` None uses the client's ``model_version``.
        """
        if batch_size < 1:
            raise InvalidArgument(f"batch_size: must be at least 1, got {batch_size}")
        max_batch, dimension = self._model_limits()
        if not texts:
            return np.zeros((0, dimension), dtype=np.float32)
        version = self.model_version if version is None else version
        step = min(batch_size, max_batch)
        chunks = []
        for start in range(0, len(texts), step):
            chunk = texts[start : start + step]
            input_ids, attention_mask = self.tokenizer.encode(chunk, max_length)
            result, version = self._infer(
                {"input_ids": input_ids, "attention_mask": attention_mask}, ["embedding"], version
            )
            chunks.append(self._output(result, "embedding", len(chunk)))
        return chunks[0] if len(chunks) == 1 else np.concatenate(chunks)


@dataclass(frozen=True)
class ClassifierOutput:
    """Class probabilities ``[B, C]``, the class names of their columns, the version."""

    probabilities: np.ndarray
    labels: list[str]
    version: str


class IntentClassifierClient(_TritonModelClient):
    """Classifies queries with the Triton ``intent_classifier`` model.

    The class names of a version are asked for once (the ``labels`` output, or the
    ``labels_<version>`` config parameter where the config has no such output) and cached.
    """

    description = "intent classifier"

    def __init__(
        self,
        url: str,
        tokenizer: Tokenizer,
        model_name: str = "intent_classifier",
        timeout_s: float = 5.0,
        tls: TlsFiles | None = None,
    ) -> None:
        super().__init__(url, tokenizer, model_name, timeout_s, tls)
        self._labels: dict[str, list[str]] = {}

    def _has_labels_output(self) -> bool:
        return any(output.name == LABELS_OUTPUT for output in self._model_config().output)

    def _labels_from_config(self, version: str) -> list[str]:
        key = LABELS_PARAMETER.format(version=version)
        config = self._model_config()
        if key not in config.parameters:  # loaded since the config was read
            config = self._model_config(refresh=True)
        if key not in config.parameters:
            raise self._unavailable(f"no `labels` output and no {key!r} config parameter")
        return list(json.loads(config.parameters[key].string_value))

    def labels(self, version: str) -> list[str]:
        """The class names of ``version`` (a number), in probability column order."""
        if version not in self._labels:
            if self._has_labels_output():
                ids, mask = self.tokenizer.encode([""], max_length=2)
                result, _ = self._infer(
                    {"input_ids": ids, "attention_mask": mask}, [LABELS_OUTPUT], version
                )
                names = self._output(result, LABELS_OUTPUT, 1)[0]
                self._labels[version] = [n.decode("utf-8") for n in names]
            else:
                self._labels[version] = self._labels_from_config(version)
        return self._labels[version]

    def classify(
        self,
        texts: Sequence[str],
        version: str = "",
        max_length: int = 32,
        timeout_s: float | None = None,
    ) -> ClassifierOutput:
        """Class probabilities of each text; ``version`` "" lets Triton choose.

        ``timeout_s`` bounds each inference request (default: the client's timeout)."""
        if not texts:
            raise InvalidArgument("texts: need at least one text to classify")
        step = self.max_batch_size()
        # Ask for the names along with the first answer unless they are known already.
        want_labels = (version or self._served_version) not in self._labels
        outputs = ["probabilities"]
        if want_labels and self._has_labels_output():
            outputs.append(LABELS_OUTPUT)
        chunks = []
        for start in range(0, len(texts), step):
            chunk = texts[start : start + step]
            ids, mask = self.tokenizer.encode(chunk, max_length)
            result, version = self._infer(
                {"input_ids": ids, "attention_mask": mask}, outputs, version, timeout_s
            )
            chunks.append(self._output(result, "probabilities", len(chunk)))
            if LABELS_OUTPUT in outputs:
                names = self._output(result, LABELS_OUTPUT, len(chunk))[0]
                self._labels[version] = [n.decode("utf-8") for n in names]
                outputs = ["probabilities"]
        probabilities = chunks[0] if len(chunks) == 1 else np.concatenate(chunks)
        labels = self.labels(version)
        if len(labels) != probabilities.shape[1]:
            raise self._unavailable(
                f"version {version}: {probabilities.shape[1]} probabilities but "
                f"{len(labels)} labels"
            )
        return ClassifierOutput(probabilities, labels, version)


@dataclass(frozen=True)
class ScoreOutput:
    """One relevance logit per document (float32 ``[len(docs)]``), and the version."""

    scores: np.ndarray
    version: str


class CrossEncoderClient(_TritonModelClient):
    """Scores ``(query, product text)`` pairs with the Triton ``cross_encoder`` model."""

    description = "cross-encoder"

    def __init__(
        self,
        url: str,
        tokenizer: Tokenizer,
        model_name: str = "cross_encoder",
        timeout_s: float = 5.0,
        tls: TlsFiles | None = None,
    ) -> None:
        super().__init__(url, tokenizer, model_name, timeout_s, tls)

    def score(
        self,
        query: str,
        docs: Sequence[str],
        version: str = "",
        max_length: int = 64,
        timeout_s: float | None = None,
    ) -> ScoreOutput:
        """Relevance of each doc to ``query``; one request per max_batch_size docs.

        Each chunk is padded to its own longest pair (``max_length`` tokens at most);
        ``timeout_s`` bounds each request (default: the client's timeout).
        """
        if not docs:
            return ScoreOutput(np.zeros(0, dtype=np.float32), version)
        step = self.max_batch_size()
        chunks = []
        for start in range(0, len(docs), step):
            chunk = docs[start : start + step]
            ids, mask, types = self.tokenizer.encode_pairs([query] * len(chunk), chunk, max_length)
            result, version = self._infer(
                {"input_ids": ids, "attention_mask": mask, "token_type_ids": types},
                ["score"],
                version,
                timeout_s,
            )
            chunks.append(self._output(result, "score", len(chunk)).reshape(-1))
        scores = chunks[0] if len(chunks) == 1 else np.concatenate(chunks)
        return ScoreOutput(scores.astype(np.float32, copy=False), version)


class SequenceRecommenderClient(_TritonModelClient):
    """The two towers of the Triton ``sequence_recommender`` model
    (:mod:`shared.models.sequence_runtime` says what they take)."""

    description = "sequence recommender"
    # Rows of one item-tower request (a 384-d float32 row is 1.5 KB).
    ITEM_ROWS = 2048

    def __init__(
        self,
        url: str,
        model_name: str = "sequence_recommender",
        timeout_s: float = 5.0,
        tls: TlsFiles | None = None,
    ) -> None:
        super().__init__(url, None, model_name, timeout_s, tls)  # type: ignore[arg-type]

    def ready_versions(self) -> list[str]:
        """The versions Triton serves now, lowest first; [] when none (never raises)."""
        try:
            index = self._client.get_model_repository_index(client_timeout=self.timeout_s)
        except InferenceServerException:
            return []
        versions = [
            m.version
            for m in index.models
            if m.name == self.model_name and m.state == "READY" and ascii_digits(m.version)
        ]
        return sorted(versions, key=int)

    def item_embeddings(
        self, text_vectors: np.ndarray, product_ids: Sequence[str], version: str
    ) -> np.ndarray:
        """The item tower's unit embeddings ``[N, d]`` of the products (their text vectors
        and ids; a product the version never saw is embedded by its text)."""
        vectors = np.ascontiguousarray(text_vectors, dtype=np.float32)
        if len(product_ids) != len(vectors):
            raise InvalidArgument(f"product_ids: {len(product_ids)} ids for {len(vectors)} vectors")
        chunks = []
        for start in range(0, len(vectors), self.ITEM_ROWS):
            ids = np.array(
                [p.encode("utf-8") for p in product_ids[start : start + self.ITEM_ROWS]],
                dtype=np.object_,
            )
            rows = vectors[start : start + self.ITEM_ROWS]
            result, _ = self._infer(
                {"text_vectors": rows, "product_ids": ids}, ["item_embedding"], version
            )
            chunks.append(self._output(result, "item_embedding", len(rows)))
        if not chunks:
            return np.zeros((0, vectors.shape[1] if vectors.ndim == 2 else 0), np.float32)
        return np.concatenate(chunks).astype(np.float32, copy=False)

    def shopper_vector(
        self,
        embeddings: np.ndarray,
        kinds: np.ndarray,
        gaps: np.ndarray,
        version: str,
        timeout_s: float | None = None,
    ) -> np.ndarray:
        """The shopper tower's unit vector ``[d]`` for one history (``[T, d]`` item
        embeddings, oldest first, with each event's kind and gap bucket)."""
        arrays = {
            "history_embeddings": np.ascontiguousarray(embeddings[None], dtype=np.float32),
            "history_kinds": np.asarray(kinds, dtype=np.int64)[None],
            "history_gaps": np.asarray(gaps, dtype=np.int64)[None],
            "history_mask": np.ones((1, len(kinds)), dtype=np.int64),
        }
        result, _ = self._infer(arrays, ["shopper_vector"], version, timeout_s)
        return self._output(result, "shopper_vector", 1)[0]


def text_encoder_client(
    triton_url: str, version: str = "", tls: TlsFiles | None = None
) -> TextEncoderClient:
    """The Triton text encoder the services use ("" asks Triton for its newest version)."""
    return TextEncoderClient(triton_url, Tokenizer(), model_version=version, tls=tls)
