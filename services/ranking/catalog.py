"""The catalog's text vectors for the personal feature, followed from retrieval.

Loaded on the first request that carries a shopper profile (a suite that never
personalises never holds them), then re-read in the background whenever retrieval's catalog
generation changes. Until the first load completes, or while retrieval is away, a profile
is not used (``RankResponse.personalized`` false) and the ranking is the unpersonalised one.

The vectors held are the catalog's **taste vectors**
(``shared.recommendation.shoppers.taste_vectors``: class-centred, made of the centroids of
the products' attribute values; classes normalised as the recommender normalises them),
the vectors the recommender makes the profile of: both sides compute them from the same
catalog snapshot, so the cosine compares what sets a candidate apart within its class with
what sets the shopper's products apart within theirs.
"""

from __future__ import annotations

import threading

import grpc
import structlog
from shopsense.retrieval.v1 import retrieval_service_pb2 as retrieval_pb
from shopsense.retrieval.v1 import retrieval_service_pb2_grpc

from shared.contracts.retrieval import export_catalog
from shared.ranking.personal import ProductVectors
from shared.recommendation.shoppers import taste_vectors
from shared.rpc.clients import open_channel
from shared.search.filters import normalize_value

_log = structlog.get_logger("shopsense.ranking")


class CatalogVectors:
    """``current`` vectors (empty until loaded); ``want()`` starts following the catalog."""

    def __init__(self, retrieval_target: str, interval_s: float) -> None:
        self.current = ProductVectors()
        self._target = retrieval_target
        self._interval_s = interval_s
        self._stop = threading.Event()
        self._started = threading.Lock()
        self._thread: threading.Thread | None = None
        self.loaded = threading.Event()

    def want(self) -> None:
        """A profile arrived: follow the catalog from now on (idempotent, non-blocking)."""
        if self._thread is not None:
            return
        with self._started:
            if self._thread is None and not self._stop.is_set():
                self._thread = threading.Thread(
                    target=self._loop, name="ranking-catalog-vectors", daemon=True
                )
                self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _loop(self) -> None:
        channel = open_channel(self._target)
        stub = retrieval_service_pb2_grpc.RetrievalServiceStub(channel)
        try:
            while not self._stop.is_set():
                try:
                    self._sync(stub)
                except grpc.RpcError as exc:  # retrieval away: keep what is held, retry
                    _log.warning("catalog_vectors_failed", error=exc.details())
                self._stop.wait(self._interval_s)
        finally:
            channel.close()

    def _sync(self, stub: retrieval_service_pb2_grpc.RetrievalServiceStub) -> None:
        stats = stub.GetCatalogStats(retrieval_pb.GetCatalogStatsRequest(), timeout=10.0)
        if stats.generation == self.current.generation and self.loaded.is_set():
            return
        snapshot = export_catalog(stub)
        products = snapshot.products
        tastes = (
            None
            if snapshot.vectors is None
            else taste_vectors(
                snapshot.vectors,
                [normalize_value(p.product_class) for p in products],
                lambda row: products[row].attributes,
            )
        )
        self.current = ProductVectors.of(
            [p.product_id for p in products],
            tastes,
            snapshot.version,
            snapshot.generation,
        )
        self.loaded.set()
        _log.info(
            "catalog_vectors_loaded",
            products=len(self.current.rows),
            version=snapshot.version,
            generation=snapshot.generation,
        )
