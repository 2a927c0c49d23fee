"""What the trainer asks retrieval, over one channel: re-embed the catalog with a new text
encoder, which encoder version the catalog index holds, and the catalog with its text
vectors (what a sequence_recommender trains over)."""

from __future__ import annotations

import threading

import grpc
from shopsense.retrieval.v1 import retrieval_service_pb2 as rpb
from shopsense.retrieval.v1 import retrieval_service_pb2_grpc as rpb_grpc

from shared.contracts.retrieval import CatalogExport, export_catalog
from shared.errors import Unavailable
from shared.rpc.clients import open_channel


class RetrievalClient:
    """RetrievalService at ``target``; the channel opens at the first call."""

    def __init__(
        self,
        target: str,
        reindex_timeout_s: float = 10.0,
        stats_timeout_s: float = 5.0,
        export_timeout_s: float = 120.0,
    ) -> None:
        self._target = target
        self._reindex_timeout_s = reindex_timeout_s
        self._stats_timeout_s = stats_timeout_s
        self._export_timeout_s = export_timeout_s
        self._channel: grpc.Channel | None = None
        self._stub: rpb_grpc.RetrievalServiceStub | None = None
        self._lock = threading.Lock()

    def _retrieval(self) -> rpb_grpc.RetrievalServiceStub:
        with self._lock:
            if self._stub is None:
                self._channel = open_channel(self._target)
                self._stub = rpb_grpc.RetrievalServiceStub(self._channel)
            return self._stub

    def reindex(self, version: int) -> None:
        """Start re-embedding the catalog with text_encoder ``version`` (the publisher's
        ``Reindexer``); grpc.RpcError when retrieval did not accept it."""
        self._retrieval().ReindexCatalog(
            rpb.ReindexCatalogRequest(text_encoder_version=str(version)),
            timeout=self._reindex_timeout_s,
        )

    def index_version(self) -> str:
        """The text_encoder version of the catalog index's vectors; Unavailable when
        retrieval does not answer."""
        try:
            stats = self._retrieval().GetCatalogStats(
                rpb.GetCatalogStatsRequest(), timeout=self._stats_timeout_s
            )
        except grpc.RpcError as exc:
            raise Unavailable(
                f"retrieval: cannot read the catalog's version: {exc.details()}"
            ) from exc
        return stats.embedding_version

    def catalog(self) -> CatalogExport:
        """Every product with its text vector (``ExportCatalog``); Unavailable when
        retrieval does not answer."""
        try:
            return export_catalog(self._retrieval(), self._export_timeout_s)
        except grpc.RpcError as exc:
            raise Unavailable(f"retrieval: cannot export the catalog: {exc.details()}") from exc

    def close(self) -> None:
        with self._lock:
            if self._channel is not None:
                self._channel.close()
            self._channel = self._stub = None
