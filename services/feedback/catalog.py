"""Which product ids the catalog holds, as the feedback service checks them.

Retrieval owns the catalog; this asks its ``GetProducts`` for the ids of a batch it has
not seen yet and remembers the answers: known ids for good, unknown ids for a minute (a
product added to the catalog is accepted soon after). When retrieval cannot be reached
the batch is not checked, rather than valid events refused: the answer is None and the
service stores the events as they are.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable

import grpc
import structlog
from shopsense.retrieval.v1 import retrieval_service_pb2 as rpb
from shopsense.retrieval.v1 import retrieval_service_pb2_grpc as rpb_grpc

from shared.rpc.clients import open_channel

MAX_IDS_PER_CALL = 1_000  # GetProducts' limit
UNKNOWN_TTL_S = 60.0
MAX_REMEMBERED = 2_000_000
_log = structlog.get_logger("shopsense.feedback.catalog")


class CatalogCheck:
    """``unknown(ids)``: the ids not in the catalog, or None when it cannot be asked."""

    def __init__(self, retrieval_target: str, timeout_s: float = 2.0) -> None:
        self._stub = rpb_grpc.RetrievalServiceStub(open_channel(retrieval_target))
        self._timeout_s = timeout_s
        self._known: set[str] = set()
        self._unknown: dict[str, float] = {}  # id -> when to ask again
        self._lock = threading.Lock()
        self._warned_at = 0.0

    def unknown(self, ids: Iterable[str]) -> set[str] | None:
        now = time.monotonic()
        with self._lock:
            wanted = set(ids) - self._known
            missing = {i for i in wanted if self._unknown.get(i, 0.0) > now}
            ask = sorted(wanted - missing)
        found: set[str] = set()
        absent: set[str] = set()
        try:
            for start in range(0, len(ask), MAX_IDS_PER_CALL):
                reply = self._stub.GetProducts(
                    rpb.GetProductsRequest(product_ids=ask[start : start + MAX_IDS_PER_CALL]),
                    timeout=self._timeout_s,
                )
                absent.update(reply.missing_ids)
                found.update(p.product_id for p in reply.products)
        except grpc.RpcError as exc:
            if now - self._warned_at > 60:
                self._warned_at = now
                _log.warning(
                    "catalog_unchecked",
                    code=exc.code().name,
                    hint="retrieval unreachable: events are stored without the product check",
                )
            return None
        with self._lock:
            if len(self._known) + len(found) > MAX_REMEMBERED:
                self._known.clear()
            self._known |= found
            if len(self._unknown) > MAX_REMEMBERED:
                self._unknown.clear()
            for product_id in absent:
                self._unknown[product_id] = now + UNKNOWN_TTL_S
        return missing | absent
