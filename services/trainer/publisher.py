"""Versions onto Triton: registering a job's result, publishing, rolling back, loading an
experiment's pins alongside, and reconciling Triton with the registry after a restart.

Publishing is all or nothing: the export is installed as ``<repository>/<model>/<version>/``,
Triton loads it next to the serving version, and only once it is READY does the registry
switch (one transaction); then the old version is unloaded (text_encoder: kept while retrieval
re-embeds the catalog with the new version). If Triton refuses, the old version keeps serving
and the registry is unchanged.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import grpc
import structlog

from services.trainer.jobs import register_result
from shared.errors import FailedPrecondition, Unavailable
from shared.models.kinds import MODEL_KINDS, TEXT_ENCODER
from shared.rpc.tls import TlsFiles
from shared.storage.registry import (
    JobStage,
    ModelRegistry,
    ModelVersion,
    TrainingJob,
    VersionStatus,
)
from shared.training import publish as triton

_log = structlog.get_logger("shopsense.trainer")

# Reindex trigger: text_encoder version -> None, raising when retrieval did not accept it.
Reindexer = Callable[[int], None]


class PublishOutcome:
    """What a publish or rollback did."""

    def __init__(
        self,
        version: ModelVersion,
        previous: ModelVersion | None,
        reindex_started: bool = False,
        note: str = "",
    ) -> None:
        self.version = version
        self.previous = previous
        self.reindex_started = reindex_started
        self.note = note


class ModelPublisher:
    """Registers results and moves versions onto Triton, one model at a time.

    ``repository`` is Triton's model repository folder as this machine sees it.
    """

    def __init__(
        self,
        registry: ModelRegistry,
        repository: Path,
        triton_url: str,
        reindex: Reindexer | None = None,
        tls: TlsFiles | None = None,
    ) -> None:
        self._registry = registry
        self._repository = Path(repository)
        self._triton_url = triton_url
        self._tls = tls
        self._reindex = reindex
        self._locks: dict[str, threading.Lock] = {model: threading.Lock() for model in MODEL_KINDS}
        # Model -> versions a running experiment pins: kept loaded next to the serving one.
        self.pinned: Callable[[str], set[int]] = lambda model: set()

    # --- versions in the repository ------------------------------------------------------

    def exported_folder(self, model: str) -> Path | None:
        """The folder of what serves ``model`` now: its registered serving version's Triton
        folder (or export), else the repository's highest version (the base model)."""
        row = self._registry.serving_version(model)
        if row is not None:
            folder = self._repository / model / str(row.version)
            if folder.is_dir():
                return folder
            return Path(row.export_dir) if row.export_dir else None
        versions = triton.version_folders(self._repository, model)
        return versions[-1] if versions else None

    def serving_exports(self) -> dict[str, str]:
        """Kind -> folder of the version serving now, for offline evaluation."""
        out: dict[str, str] = {}
        for model in MODEL_KINDS:
            folder = self.exported_folder(model)
            if folder is not None:
                out[model] = str(folder)
        return out

    def register(
        self,
        job: TrainingJob,
        result: Mapping[str, Any],
        set_stage: Callable[[JobStage], None],
    ) -> tuple[int, str]:
        """``JobRunner``'s ``on_result``: register the next version, publish it if asked."""
        set_stage(JobStage.PUBLISHING)
        with self._locks[job.model]:
            version = max(
                self._registry.max_version(job.model) + 1,
                triton.next_version(self._repository, job.model),
            )
            register_result(self._registry, job, result, version)
        _log.info("version_registered", model=job.model, version=version, job_id=job.job_id)
        if not job.publish:
            return version, ""
        outcome = self.publish(job.model, version)
        return version, outcome.note

    # --- publish and rollback ------------------------------------------------------------

    def publish(self, model: str, version: int) -> PublishOutcome:
        """Serve ``version`` of ``model``; the serving one becomes RETIRED."""
        return self._serve(model, version, VersionStatus.RETIRED)

    def rollback(self, model: str, to_version: int = 0) -> PublishOutcome:
        """Serve an earlier version again; the serving one becomes ROLLED_BACK."""
        current = self._registry.serving_version(model)
        if current is None:
            raise FailedPrecondition(f"model: {model} has no registered serving version")
        if to_version == 0:
            previous = self._registry.previous_serving(model)
            if previous is None:
                raise FailedPrecondition(
                    f"to_version: no version of {model} served before version {current.version}"
                )
            to_version = previous.version
        elif to_version == current.version:
            raise FailedPrecondition(f"to_version: version {to_version} of {model} is serving")
        return self._serve(model, to_version, VersionStatus.ROLLED_BACK)

    def _serve(self, model: str, version: int, previous_becomes: VersionStatus) -> PublishOutcome:
        with self._locks[model]:
            target = self._registry.get_version(model, version)
            current = self._registry.serving_version(model)
            if current is not None and current.version == version:
                return PublishOutcome(target, None, note=f"version {version} already serves")
            installed_now = self._install(model, version, target)
            try:
                loaded = triton.loaded_versions(self._triton_url, model, tls=self._tls)
            except Exception as exc:
                self._undo_install(model, version, installed_now)
                raise Unavailable(f"triton: unreachable at {self._triton_url}: {exc}") from exc
            old = [current.version] if current is not None else loaded
            try:
                triton.load_versions(
                    self._triton_url,
                    model,
                    sorted({version, *old}),
                    repository=self._repository,
                    tls=self._tls,
                )
            except triton.ModelLoadError as exc:
                self._undo_install(model, version, installed_now)
                raise FailedPrecondition(f"version: {exc}") from exc
            except Exception as exc:
                self._undo_install(model, version, installed_now)
                raise Unavailable(f"triton: {exc}") from exc

            serving, previous = self._registry.promote(
                model, version, previous_becomes=previous_becomes
            )
            _log.info(
                "version_serving",
                model=model,
                version=version,
                previous=previous.version if previous else None,
            )
            notes: list[str] = []
            reindex_started = False
            if model == TEXT_ENCODER:
                # Retrieval's index holds vectors of the old version: keep it loaded until
                # the catalog is re-embedded with the new one.
                reindex_started, note = self._start_reindex(version)
                if note:
                    notes.append(note)
            elif set(old) - {version, *self.pinned(model)}:
                try:
                    triton.load_versions(
                        self._triton_url,
                        model,
                        sorted({version, *self.pinned(model)}),
                        repository=self._repository,
                        tls=self._tls,
                    )
                except Exception as exc:
                    notes.append(f"the previous version is still loaded: {exc}")
            return PublishOutcome(serving, previous, reindex_started, "; ".join(notes))

    def _install(self, model: str, version: int, row: ModelVersion | None = None) -> bool:
        """Put the version's folder into the repository from its export unless it is there;
        True when installed now. FailedPrecondition when the export is gone."""
        if (self._repository / model / str(version)).is_dir():
            return False
        row = row or self._registry.get_version(model, version)
        export_dir = Path(row.export_dir)
        if not row.export_dir or not export_dir.is_dir():
            raise FailedPrecondition(
                f"version: the export of {model} version {version} is gone "
                f"({row.export_dir or 'no folder recorded'}); retrain it"
            )
        triton.install_version(self._repository, model, version, export_dir)
        return True

    def _undo_install(self, model: str, version: int, installed_now: bool) -> None:
        if not installed_now:
            return
        try:
            triton.remove_version(self._repository, model, version)
        except OSError as exc:
            _log.warning("undo_install_failed", model=model, version=version, error=str(exc))

    def _start_reindex(self, version: int) -> tuple[bool, str]:
        if self._reindex is None:
            return False, f"start the catalog reindex with text_encoder version {version}"
        try:
            self._reindex(version)
        except Exception as exc:
            message = exc.details() if isinstance(exc, grpc.RpcError) else str(exc)
            _log.warning("reindex_not_started", version=version, error=message)
            return (
                False,
                f"retrieval did not start the catalog reindex ({message}): start it with "
                f"text_encoder version {version}",
            )
        return True, ""

    def load_alongside(self, model: str, versions: set[int]) -> None:
        """Install and load ``versions`` of ``model`` on Triton next to what it serves
        (an experiment's pins). FailedPrecondition when a version's export is gone or
        does not load; Unavailable when Triton cannot be reached."""
        with self._locks[model]:
            installed = [version for version in sorted(versions) if self._install(model, version)]
            try:
                loaded = set(triton.loaded_versions(self._triton_url, model, tls=self._tls))
                triton.load_versions(
                    self._triton_url,
                    model,
                    sorted(loaded | versions),
                    repository=self._repository,
                    tls=self._tls,
                )
            except triton.ModelLoadError as exc:
                for version in installed:
                    self._undo_install(model, version, True)
                raise FailedPrecondition(f"{model}: {exc}") from exc
            except Exception as exc:
                for version in installed:
                    self._undo_install(model, version, True)
                raise Unavailable(f"triton: {exc}") from exc

    # --- reconcile ------------------------------------------------------------------------

    def reconcile(self) -> list[str]:
        """Make Triton serve each model's registered serving version; the models not done."""
        pending: list[str] = []
        for row in self._registry.serving_versions():
            with self._locks.setdefault(row.model, threading.Lock()):
                try:
                    self._install(row.model, row.version, row)
                    loaded = triton.loaded_versions(self._triton_url, row.model, tls=self._tls)
                    wanted = {row.version, *self.pinned(row.model)}
                    if not wanted <= set(loaded):
                        for version in sorted(wanted - {row.version}):
                            self._install(row.model, version)
                        triton.load_versions(
                            self._triton_url,
                            row.model,
                            sorted(wanted),
                            repository=self._repository,
                            tls=self._tls,
                        )
                except Exception as exc:
                    _log.warning(
                        "reconcile_pending", model=row.model, version=row.version, error=str(exc)
                    )
                    pending.append(row.model)
        return pending
