"""The ``sequence`` source's serving side: the Triton ``sequence_recommender`` model kept in
step with the catalog, and asked for each request's shopper vector.

Each refresh round reads which versions Triton serves; for the newest (and, on demand, for
a version an experiment arm pins) the catalog's products go through the item tower once
per catalog generation and the embeddings are handed to the recommender. A request whose
placement blends the source gets its shopper vector from the shopper tower; when Triton
fails there, the answer goes on without the source and says so (``degraded.sequence``).
Without any trained version the source stays empty and nothing is degraded.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import replace

import numpy as np
import structlog

from shared.errors import FailedPrecondition, Unavailable
from shared.models.triton_client import SequenceRecommenderClient
from shared.recommendation.recommender import (
    SEQUENCE,
    Recommender,
    RecQuery,
    SequenceTable,
)

_log = structlog.get_logger("shopsense.recommend.sequence")


class SequenceModels:
    """What the service knows about the served sequence model versions."""

    def __init__(
        self,
        client: SequenceRecommenderClient,
        recommender: Recommender,
        history_length: int,
        timeout_s: float,
    ) -> None:
        self._client = client
        self._recommender = recommender
        self._history_length = history_length
        self._timeout_s = timeout_s
        self._lock = threading.Lock()
        self._ready: list[str] = []
        self._catalog: tuple[list[str], np.ndarray] | None = None

    def close(self) -> None:
        self._client.close()

    def set_catalog(self, product_ids: Sequence[str], vectors: np.ndarray | None) -> None:
        """The products with text vectors (the item tower's input); None: no vectors."""
        with self._lock:
            if vectors is None or not len(product_ids):
                self._catalog = None
            else:
                self._catalog = (list(product_ids), np.asarray(vectors, dtype=np.float32))

    def sync(self) -> None:
        """Follow Triton: embed the catalog for a new newest version, drop a gone model."""
        ready = self._client.ready_versions()
        with self._lock:
            self._ready = ready
        if not ready:
            self._recommender.drop_sequence()
            return
        newest = ready[-1]
        if self._recommender.sequence_table(newest) is None:
            self._embed(newest, newest=True)

    def _embed(self, version: str, newest: bool) -> SequenceTable | None:
        with self._lock:
            catalog = self._catalog
        if catalog is None:
            return None
        ids, vectors = catalog
        embeddings = self._client.item_embeddings(vectors, ids, version)
        self._recommender.set_sequence(
            version, ids, embeddings, self._history_length, newest=newest
        )
        _log.info("sequence_catalog_embedded", version=version, products=len(ids))
        return self._recommender.sequence_table(version)

    def prepare(self, query: RecQuery, weights: dict[str, float]) -> tuple[RecQuery, bool]:
        """``query`` with the shopper's sequence vector when its placement blends the
        source; the flag says the model failed (the answer is degraded)."""
        if SEQUENCE not in weights and SEQUENCE not in query.sources:
            return query, False
        version = query.sequence_version
        with self._lock:
            ready = list(self._ready)
        if version and version not in ready:
            ready = self._client.ready_versions()
            if version not in ready:
                served = ", ".join(ready) or "none"
                raise FailedPrecondition(
                    f"options.model_versions: sequence_recommender version {version} is not "
                    f"served (served: {served})"
                )
        try:
            table = self._recommender.sequence_table(version)
            if table is None and version:
                table = self._embed(version, newest=False)
            if table is None:
                return query, False
            inputs = self._recommender.sequence_inputs(query, table)
            if inputs is None:
                return query, False
            vector = self._client.shopper_vector(*inputs, table.version, self._timeout_s)
        except Unavailable as exc:
            _log.warning("sequence_unavailable", error=exc.message)
            return query, True
        return replace(query, sequence_version=table.version, sequence_vector=vector), False
