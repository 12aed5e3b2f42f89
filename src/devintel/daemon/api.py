"""The façade the HTTP API serves (:class:`~devintel.daemon.http.ServiceApi`): health and metrics, the models
(through the :class:`~devintel.daemon.model_service.ModelService`), and the predictions the handler holds.

It keeps no state of its own: every call reads the handler and the model service as they are now (a reload or a
refresh replaces the handler's live models; the façade sees the new ones at once).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from devintel.daemon.model_service import ModelService
from devintel.daemon.prometheus import prometheus_text
from devintel.ingest.handler import Handler
from devintel.ingest.validation import TimeWindow, canonical_event, sanitize_device_id


def needing_attention(handler: Handler) -> list[dict[str, Any]]:
    """The latest prediction of each device that needs attention, highest probability first."""
    flagged = [p for p in handler.predictions() if p.needs_attention]
    return [p.as_dict() for p in sorted(flagged, key=lambda p: -p.failure_probability)]


class ApiFacade:
    """What the HTTP API asks of the daemon (see the module docstring)."""

    def __init__(
        self,
        handler: Handler,
        models: ModelService,
        health: Callable[[], dict[str, Any]],
        *,
        default_home_type: str,
        window: TimeWindow,
    ) -> None:
        self._handler = handler
        self._models = models
        self._health = health
        self._default_home_type = default_home_type
        self._window = window

    def health(self) -> dict[str, Any]:
        """The health report (as retained on ``<prefix>/health``)."""
        return self._health()

    def metrics_text(self) -> str:
        """Prometheus text exposition of the health report."""
        return prometheus_text(self._health())

    def models(self) -> dict[str, Any]:
        """The serving snapshot: version, created, models with thresholds, router, quality."""
        return self._models.describe()

    def model_version(self) -> str:
        """The version of the models serving now."""
        return self._models.version

    async def snapshot(self) -> str:
        """Write a snapshot of the live models now; return its version (raises OSError on a disk failure)."""
        return await self._models.snapshot()

    async def refresh(self) -> dict[str, Any]:
        """Re-bootstrap from synthetic data and serve the result (:meth:`ModelService.refresh`)."""
        return await self._models.refresh()

    def predictions(self) -> list[dict[str, Any]]:
        """The latest prediction of every device."""
        return [p.as_dict() for p in self._handler.predictions()]

    def prediction(self, device_id: str) -> dict[str, Any] | None:
        """The latest prediction of one device."""
        record = self._handler.devices.get(device_id)
        return record.prediction.as_dict() if record is not None and record.prediction is not None else None

    def maintenance(self) -> list[dict[str, Any]]:
        """Devices that need attention, highest probability first."""
        return needing_attention(self._handler)

    def predict(self, event: dict[str, Any]) -> dict[str, Any]:
        """Score an ad-hoc canonical event; nothing is learned or kept. A bad metric value is left out and named
        under ``dropped_values`` (field: reason), as the live path leaves it out."""
        telemetry = canonical_event(
            event,
            device_id=sanitize_device_id(event.get("device_id")),
            received=time.time(),
            default_home_type=self._default_home_type,
            window=self._window,
        )
        dropped = {bad.field: bad.reason for bad in telemetry.dropped}
        return {**self._handler.live.score(telemetry.event).as_dict(), "dropped_values": dropped}
