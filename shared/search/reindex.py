"""The catalog reindex: every product re-embedded with a new text encoder version, in the
background, then swapped in at once.

``CatalogIndex.start_reindex`` starts a ``CatalogReindex`` job: a thread embeds every
product with the target version into the ``catalog_staging`` table, in batches, while
``retrieve`` keeps serving the old vectors. Upserts during the reindex bring the new
version's vectors too (``staging_embeddings``) and deletes remove staged rows, so the
staging never falls behind; a product whose staged vector is missing or stale (changed
after it was embedded, or upserted without a staged vector) is caught up before the swap.
The swap is one database transaction (staged vectors replace the old ones, the version
changes) and one write-lock hold (a new vector matrix and new class centroids replace the
old ones, the generation increments). A failure or cancel discards the staging and leaves
the index as it was. Opening a file with a half-done staging table discards it.

Which lock guards what (the index's write mutex, this module's job lock): the docstring
of ``shared.search.catalog_index``.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Literal

import numpy as np

from shared.data.catalog import Product
from shared.errors import FailedPrecondition, InvalidArgument, Unavailable
from shared.search.vectors import vector_error
from shared.storage.catalog import CatalogStore

if TYPE_CHECKING:
    from shared.search.catalog_index import CatalogIndex

# Products embedded per encoder call of a reindex.
REINDEX_BATCH = 64
# Catch-up rounds before the swap (products changed while the last round embedded).
_CATCH_UP_ROUNDS = 5
ReindexState = Literal["idle", "running", "done", "failed", "cancelled"]


class ReindexCancelled(Exception):
    """Raised inside the reindex thread when the job was cancelled."""


@dataclass(slots=True, frozen=True)
class ReindexStatus:
    """The progress of the current or last reindex (``state == "idle"``: none yet).

    ``embedded`` counts products the reindex itself embedded; ``total`` is the catalog size
    at the start plus products caught up before the swap.
    """

    state: ReindexState = "idle"
    target_version: str = ""
    source_version: str = ""
    embedded: int = 0
    total: int = 0
    started_at: datetime | None = None
    finished_at: datetime | None = None
    error: str = ""
    message: str = ""


@dataclass(slots=True)
class _ReindexJob:
    """The mutable state of one reindex, read by ``CatalogReindex.status`` under the job
    lock."""

    target: str
    source: str
    embed: Callable[[Sequence[str]], np.ndarray]
    batch_size: int
    started_at: datetime
    cancel: threading.Event = field(default_factory=threading.Event)
    state: ReindexState = "running"
    embedded: int = 0
    total: int = 0
    finished_at: datetime | None = None
    error: str = ""
    message: str = ""
    thread: threading.Thread | None = None

    def status(self) -> ReindexStatus:
        return ReindexStatus(
            self.state,
            self.target,
            self.source,
            self.embedded,
            self.total,
            self.started_at,
            self.finished_at,
            self.error,
            self.message,
        )


@dataclass(slots=True)
class Staging:
    """The running reindex's target version ("" when none runs) and the ids of the products
    with a staged vector for it (the ``catalog_staging`` table's, mirrored).

    Changed by the reindex, and by upserts and deletes while it runs.
    """

    target: str = ""
    ids: set[str] = field(default_factory=set)

    def begin(self, target: str) -> None:
        self.target, self.ids = target, set()

    def end(self) -> None:
        self.begin("")


class CatalogReindex:
    """The reindex job of one ``CatalogIndex`` (at most one runs), and its staging.

    ``write_mutex`` is the index's writer mutex, held by every step that reads the catalog
    or writes the staging.
    """

    def __init__(
        self, catalog: CatalogIndex, store: CatalogStore, write_mutex: threading.Lock
    ) -> None:
        self.staging = Staging()
        self._catalog = catalog
        self._store = store
        self._write_mutex = write_mutex
        self._job_lock = threading.Lock()
        self._job: _ReindexJob | None = None

    def status(self) -> ReindexStatus:
        """The current or last reindex since the index was opened (state "idle": none)."""
        with self._job_lock:
            return self._job.status() if self._job is not None else ReindexStatus()

    def start(
        self,
        target_version: str,
        embed: Callable[[Sequence[str]], np.ndarray],
        *,
        batch_size: int = REINDEX_BATCH,
        on_finish: Callable[[ReindexStatus], None] | None = None,
    ) -> ReindexStatus:
        """Re-embed every product with ``target_version`` in a background thread; returns
        the status at once.

        ``embed(texts)`` returns one ``target_version`` vector per text (the caller checks
        beforehand that the encoder serves that version); it is called with at most
        ``batch_size`` product texts. ``on_finish`` is called from the thread with the
        final status (done, failed or cancelled).

        Nothing to do (state "done" at once, no thread) when every vector already has
        ``target_version``, or when the catalog is empty (the version is then pinned for
        the first upsert). The same target as the running reindex returns its status.
        Raises ``InvalidArgument`` for an empty version or bad batch size and
        ``FailedPrecondition`` naming the running target if another reindex runs.
        """
        if not isinstance(target_version, str) or not target_version.strip():
            raise InvalidArgument("text_encoder_version: must be non-empty")
        if not isinstance(batch_size, int) or batch_size < 1:
            raise InvalidArgument(f"batch_size: must be an integer >= 1 (got {batch_size!r})")
        target = target_version.strip()
        catalog = self._catalog
        with self._write_mutex, self._job_lock:
            # The others' writes first (replicas): the snapshot is of the whole catalog.
            with self._store.reading() as tx:
                catalog._catch_up(tx, catalog.generation)
            running = self._job
            if running is not None and running.state == "running":
                if running.target == target:
                    return running.status()
                raise FailedPrecondition(
                    f"text_encoder_version: a reindex to version {running.target!r} is "
                    f"running; wait for it or cancel it before asking for {target!r}"
                )
            now = datetime.now(UTC)
            source = catalog.embedding_version
            job = _ReindexJob(target, source, embed, batch_size, now)
            empty = len(catalog) == 0
            if empty or (source == target and catalog._held_versions() <= {target}):
                if empty and source != target:
                    catalog._set_version(target, self._store.pin_version(target))
                job.state, job.finished_at = "done", now
                job.message = (
                    f"nothing to do: the catalog is empty; its version is now {target}"
                    if empty
                    else f"nothing to do: the index already has version {target}"
                )
                self._job = job
                return job.status()
            self._store.clear_staging()
            self.staging.begin(target)
            snapshot = catalog._snapshot()
            job.total = len(snapshot)
            job.thread = threading.Thread(
                target=self._run,
                args=(job, snapshot, on_finish),
                name=f"catalog-reindex-{target}",
                daemon=True,
            )
            self._job = job
            job.thread.start()
            return job.status()

    def cancel(self, wait_s: float = 30.0) -> ReindexStatus:
        """Stop a running reindex, discarding its staged vectors; waits up to ``wait_s``
        for the thread (an encoder call in flight finishes first). Returns the status:
        "cancelled", or the last one unchanged when none was running (or it completed
        before it saw the cancel)."""
        with self._job_lock:
            job = self._job
            if job is None or job.state != "running":
                return job.status() if job is not None else ReindexStatus()
            job.cancel.set()
        if job.thread is not None and job.thread is not threading.current_thread():
            job.thread.join(wait_s)
        return self.status()

    def wait(self, timeout_s: float | None = None) -> ReindexStatus:
        """Wait for the running reindex to end (at most ``timeout_s``); its status."""
        with self._job_lock:
            job = self._job
        if job is not None and job.thread is not None:
            job.thread.join(timeout_s)
        return self.status()

    # ------------------------------------------------------------------ the thread
    def _run(
        self,
        job: _ReindexJob,
        snapshot: list[tuple[str, Product]],
        on_finish: Callable[[ReindexStatus], None] | None,
    ) -> None:
        """The reindex thread: embed in batches, catch up, swap; never raises."""
        state: ReindexState = "done"
        error = ""
        try:
            pending = snapshot
            for _ in range(_CATCH_UP_ROUNDS + 1):
                for start in range(0, len(pending), job.batch_size):
                    if job.cancel.is_set():
                        raise ReindexCancelled
                    batch = pending[start : start + job.batch_size]
                    vectors = job.embed([product.embedding_text() for _, product in batch])
                    self._stage(job, batch, vectors)
                    with self._job_lock:
                        job.embedded += len(batch)
                pending = self._swap(job)
                if not pending:
                    break
                with self._job_lock:
                    job.total += len(pending)
            else:
                raise RuntimeError(
                    f"the catalog kept changing: {len(pending)} products still lacked a "
                    f"version {job.target} vector after {_CATCH_UP_ROUNDS} catch-up rounds"
                )
        except ReindexCancelled:
            state = "cancelled"
        except Exception as exc:  # any failure leaves the old index serving
            state = "failed"
            error = getattr(exc, "message", "") or f"{exc.__class__.__name__}: {exc}"
        if state != "done":
            self._discard(job)
        with self._job_lock:
            job.state, job.error, job.finished_at = state, error, datetime.now(UTC)
            if state == "done":
                job.message = f"the index now has version {job.target}"
            elif state == "cancelled":
                job.message = f"cancelled: the index still has version {job.source}"
            else:
                job.message = f"failed: the index still has version {job.source}"
            status = job.status()
        if on_finish is not None:
            # A logging callback must not kill the thread.
            with contextlib.suppress(Exception):
                on_finish(status)

    def _stage(
        self, job: _ReindexJob, batch: list[tuple[str, Product]], vectors: np.ndarray
    ) -> None:
        """Store a batch's new vectors, except for products changed or deleted since the
        snapshot (an upsert staged those itself, or they are caught up before the swap)."""
        dim = self._store.dim
        vectors = np.asarray(vectors, dtype=np.float32)
        if vectors.shape != (len(batch), dim):
            raise ValueError(
                f"embedding: the encoder returned shape {tuple(vectors.shape)} for "
                f"{len(batch)} products (expected {dim} dimensions)"
            )
        for (pid, _), vec in zip(batch, vectors, strict=True):
            error = vector_error(vec, dim)
            if error is not None:
                raise ValueError(f"{error} (product {pid!r})")
        vectors = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
        with self._write_mutex:
            if job.cancel.is_set():
                raise ReindexCancelled
            keep = [
                (pid, vec)
                for (pid, product), vec in zip(batch, vectors, strict=True)
                if self._catalog._holds(pid, product)
            ]
            if keep:
                self._store.stage(keep, job.target)
                self.staging.ids.update(pid for pid, _ in keep)

    def _swap(self, job: _ReindexJob) -> list[tuple[str, Product]]:
        """Swap the staged vectors in if every product has one; else the products that
        still need one (nothing changed then)."""
        catalog = self._catalog
        with self._write_mutex:
            if job.cancel.is_set():
                raise ReindexCancelled
            # In one transaction holding the catalog's write lock: other replicas' changes
            # are applied (their products lose their staged vectors: stale), then the swap.
            with self._store.writing() as tx:
                catalog._catch_up(tx, catalog.generation)
                missing = [
                    (pid, product)
                    for pid, product in catalog._snapshot()
                    if pid not in self.staging.ids
                ]
                if missing:
                    return missing
                with self._store.swapping_staging(job.target, catalog._product_ids(), tx) as staged:
                    swap = catalog._vectors_swap(*staged)
            catalog._install(swap, job.target, tx.seq)
            self.staging.end()
            return []

    def _discard(self, job: _ReindexJob) -> None:
        """Forget a stopped reindex's staged vectors (the serving index is untouched)."""
        with self._write_mutex:
            if self.staging.target == job.target:
                self.staging.end()
            with contextlib.suppress(Unavailable):
                self._store.clear_staging()  # else the next reindex or the next open does
