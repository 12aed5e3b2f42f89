"""The model service: the snapshot the daemon serves, and the three ways to change it (snapshot, reload, refresh).

It owns the snapshot store, the snapshot the live models came from (their base), what was last written, and the
refresh under way, if any. A refresh is a child process (:mod:`devintel.daemon.refresh`) run by a task of this
service; :meth:`ModelService.close` (the first step of the daemon's shutdown) cancels it, which ends the child's
whole process group within :data:`~devintel.daemon.refresh.TERMINATE_GRACE_S`, so that a SIGTERM during a refresh
still exits in bounded time after the final snapshot.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any

from devintel.daemon.from_settings import bootstrap_config, live_models
from devintel.daemon.refresh import RefreshCancelledError, RefreshJob, run_refresh
from devintel.daemon.registry import load_registry, registry_path, save_registry
from devintel.daemon.settings import Settings
from devintel.ingest.outbound import iso_time
from devintel.models.live import snapshot_contents
from devintel.models.snapshots import LoadedSnapshot, SnapshotStore

if TYPE_CHECKING:
    from devintel.ingest.handler import Handler

logger = logging.getLogger(__name__)


class ModelService:
    """Snapshots, reloads and refreshes of the models a :class:`~devintel.ingest.handler.Handler` serves."""

    def __init__(self, settings: Settings, store: SnapshotStore, snapshot: LoadedSnapshot, handler: Handler) -> None:
        self.settings = settings
        self.store = store
        self.base = snapshot
        """The snapshot the live models were loaded from (their manifest and files are the base of the next)."""
        self.handler = handler
        self.registry_file = registry_path(settings.model_dir)
        restored = handler.restore(load_registry(self.registry_file))
        if restored:
            logger.info("device registry: %d known devices restored from %s", restored, self.registry_file)
        self.last_snapshot: str | None = snapshot.version
        created = snapshot.manifest.get("created")
        self.last_snapshot_at: str | None = created if isinstance(created, str) else None
        self.last_snapshot_error: str | None = None
        self._learned_at_snapshot = 0
        self._lock = asyncio.Lock()
        self._refresh: asyncio.Task[dict[str, Any]] | None = None
        self._closed = False

    @property
    def version(self) -> str:
        """The version of the models serving now."""
        return self.handler.live.version

    def describe(self) -> dict[str, Any]:
        """The serving snapshot: version, created, models with thresholds, router, quality."""
        manifest = self.base.manifest
        live = self.handler.live
        return {
            "version": live.version,
            "base_version": self.base.version,
            "created": manifest.get("created"),
            "models": {name: {"threshold": t} for name, t in sorted(live.thresholds.items())},
            "router": live.router,
            "training": manifest.get("training"),
            "quality_gate": manifest.get("quality_gate"),
            "metrics": manifest.get("metrics"),
            "live": {"learned": live.learner.learned, "rolling": live.learner.rolling.get()},
        }

    def health(self) -> dict[str, Any]:
        """The ``snapshot`` part of the health report."""
        return {"last": self.last_snapshot, "written_at": self.last_snapshot_at, "last_error": self.last_snapshot_error}

    async def snapshot(self) -> str:
        """Write a snapshot of the live models now; return its version (raises OSError on a disk failure)."""
        async with self._lock:
            live = self.handler.live
            files, manifest = snapshot_contents(live, self.base.files, self.base.manifest)
            learned = live.learner.learned
            try:
                version = await asyncio.to_thread(self.store.write, files, manifest)
            except OSError as error:
                self.last_snapshot_error = f"{type(error).__name__}: {error}"
                raise
            self.last_snapshot, self.last_snapshot_error = version, None
            self.last_snapshot_at = iso_time(time.time())
            await self.save_registry()
            self._learned_at_snapshot = learned
            live.version = version
            logger.info("snapshot %s written (%d examples learned live)", version, learned)
            return version

    async def save_registry(self) -> None:
        """Write the known-device registry (logged, not raised, when it fails: serving goes on)."""
        try:
            await asyncio.to_thread(save_registry, self.registry_file, self.handler.registry())
        except OSError as error:
            logger.error("device registry not saved to %s: %s", self.registry_file, error)

    async def periodic_snapshot(self) -> None:
        """A snapshot when the models learned something since the last one (else only the registry); a failure
        is logged and serving goes on."""
        if self.handler.live.learner.learned == self._learned_at_snapshot:
            await self.save_registry()  # nothing learned, but devices may have come or gone
            return
        try:
            await self.snapshot()
        except OSError as error:
            logger.error("periodic snapshot failed, still serving (the last good one stays): %s", error)

    def _serve(self, snapshot: LoadedSnapshot) -> None:
        fresh = live_models(self.settings, snapshot)
        fresh.adopt_state(self.handler.live)
        self.handler.live = fresh
        self.base = snapshot
        self.last_snapshot = snapshot.version
        self._learned_at_snapshot = 0
        logger.info("now serving snapshot %s", snapshot.version)

    async def reload(self) -> str:
        """Serve the newest valid snapshot on disk (written by another process, or a refresh)."""
        snapshot = await asyncio.to_thread(self.store.load)
        self._serve(snapshot)
        return snapshot.version

    async def refresh(self) -> dict[str, Any]:
        """Re-bootstrap from synthetic data in a child process (the service keeps serving), then serve the result:
        ``{"passed", "version", "gate"}``. A failed quality gate writes nothing and changes nothing (``passed``
        False, ``version`` None).

        Raises :class:`~devintel.daemon.refresh.RefreshCancelledError` when the service closes meanwhile (or is
        closed), RuntimeError when a refresh is already running or its process fails
        (:class:`~devintel.daemon.refresh.RefreshError`), OSError when the new snapshot cannot be read."""
        if self._closed:
            raise RefreshCancelledError("the daemon is shutting down")
        if self._refresh is not None:
            raise RuntimeError("a refresh is already running")
        task = asyncio.create_task(self._refresh_work(), name="refresh")
        self._refresh = task
        try:
            return await asyncio.shield(task)  # a caller that goes away does not cancel it; close() does
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if task.cancelled() and not (current is not None and current.cancelling()):
                raise RefreshCancelledError("the refresh was cancelled: the daemon is shutting down") from None
            raise
        finally:
            if task.done():
                self._refresh = None

    async def _refresh_work(self) -> dict[str, Any]:
        job = RefreshJob(
            config=bootstrap_config(self.settings, allow_low_quality=False),
            model_dir=self.store.root,
            keep=self.store.keep,
            signing_key=self.store.signing_key,
        )
        try:
            outcome = await run_refresh(job)
            if outcome.status == "failed":
                logger.warning(
                    "refresh: the quality gate failed, nothing written; still serving %s\n%s",
                    self.version,
                    outcome.table,
                )
                return {"passed": False, "version": None, "gate": outcome.gate}
            self._serve(await asyncio.to_thread(self.store.load, outcome.version))
            return {"passed": True, "version": outcome.version, "gate": outcome.gate}
        finally:
            self._refresh = None

    @property
    def refreshing(self) -> bool:
        """Whether a refresh is under way."""
        return self._refresh is not None

    async def close(self) -> None:
        """Refuse new refreshes and cancel the one under way (its processes end within the grace of
        :mod:`devintel.daemon.refresh`); returns once it has ended."""
        self._closed = True
        task = self._refresh
        if task is None:
            return
        logger.info("shutdown: cancelling the refresh under way")
        task.cancel()
        await asyncio.wait({task})
