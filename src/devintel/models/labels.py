"""Delayed labels: a prediction's truth is known only later, when a failure follows or the horizon passes.

Every scored event waits in a bounded per-device buffer with its features and the probability the
model gave it. It resolves

- **positive** when failure evidence for its device arrives and the failure is within the horizon after
  the event (a feedback message, an availability that stayed offline, silence; or, in the warm start,
  the synthetic failure time);
- **negative** once the stream clock has passed the event's time plus the horizon with no failure.

While the evidence is still out (a device offline or silent, not yet long enough to call it gone for good), its
events are *held*: none of them resolves negative until the device comes back (:meth:`DelayedLabels.release`) or
its failure is established. Only resolved events are learned from and scored. The warm start, replay and the live
daemon all use this one buffer. Memory is bounded: a device keeps at most ``max_pending`` events (the oldest are
dropped, and counted, when more arrive).
"""

from __future__ import annotations

import heapq
from collections.abc import MutableMapping
from dataclasses import dataclass, field
from typing import Generic, TypeVar

Payload = TypeVar("Payload")


@dataclass(frozen=True, slots=True)
class Resolved(Generic[Payload]):
    """An event whose label is now known."""

    device_id: str
    ts: float
    label: bool
    resolved_at: float
    payload: Payload
    """What the caller stored with the event (its features and the prediction made then)."""


@dataclass(slots=True)
class _Device(Generic[Payload]):
    """One device's events waiting for a label, by arrival sequence."""

    pending: dict[int, tuple[float, Payload]] = field(default_factory=dict)


class DelayedLabels(Generic[Payload]):
    """The buffer of events waiting for their label (see the module docstring)."""

    def __init__(
        self,
        horizon_s: float,
        max_pending: int = 1024,
        devices: MutableMapping[str, _Device[Payload]] | None = None,
        held: MutableMapping[str, list[tuple[float, int, str]]] | None = None,
    ) -> None:
        """``devices`` and ``held`` are where the per-device entries live (default: dicts of its own; live, columns
        of the device table, :mod:`devintel.models.devices`)."""
        if horizon_s <= 0:
            raise ValueError(f"horizon_s must be positive, not {horizon_s}")
        if max_pending < 1:
            raise ValueError(f"max_pending must be at least 1, not {max_pending}")
        self.horizon_s = horizon_s
        self.max_pending = max_pending
        self.dropped = 0
        """Events dropped unresolved because their device's buffer was full."""
        self._devices: MutableMapping[str, _Device[Payload]] = {} if devices is None else devices
        self._expiry: list[tuple[float, int, str]] = []  # (event ts, sequence, device); lazily cleaned
        self._sequence = 0
        self._held: MutableMapping[str, list[tuple[float, int, str]]] = {} if held is None else held
        """Devices whose events may not resolve negative yet, with the expiries deferred meanwhile."""

    def __len__(self) -> int:
        """Events waiting for a label."""
        return sum(len(d.pending) for d in self._devices.values())

    def add(self, device_id: str, ts: float, payload: Payload) -> None:
        """Hold an event (its features and prediction in ``payload``) until its label is known."""
        device = self._devices.setdefault(device_id, _Device())
        if len(device.pending) >= self.max_pending:
            del device.pending[min(device.pending)]  # the oldest by arrival
            self.dropped += 1
        self._sequence += 1
        device.pending[self._sequence] = (ts, payload)
        heapq.heappush(self._expiry, (ts, self._sequence, device_id))

    def failure(self, device_id: str, failure_ts: float) -> list[Resolved[Payload]]:
        """Failure evidence for ``device_id`` at ``failure_ts``: resolve and forget all its events.

        Events within the horizon before the failure are positive; any older ones still waiting (the
        clock had not passed them yet) are negative; events after the failure time are dropped (a
        device that failed reports nothing meaningful afterwards).
        """
        self._held.pop(device_id, None)
        device = self._devices.pop(device_id, None)
        if device is None:
            return []
        resolved = []
        for ts, payload in device.pending.values():
            if ts > failure_ts:
                continue
            positive = failure_ts - ts <= self.horizon_s
            resolved.append(Resolved(device_id, ts, positive, failure_ts, payload))
        resolved.sort(key=lambda r: r.ts)
        return resolved

    def advance(self, now: float) -> list[Resolved[Payload]]:
        """Move the stream clock to ``now``: events whose horizon has passed with no failure are negative."""
        resolved = []
        while self._expiry and self._expiry[0][0] + self.horizon_s < now:
            ts, sequence, device_id = heapq.heappop(self._expiry)
            device = self._devices.get(device_id)
            if device is None:
                continue
            deferred = self._held.get(device_id)
            if deferred is not None:
                deferred.append((ts, sequence, device_id))
                continue
            entry = device.pending.pop(sequence, None)
            if entry is not None:
                resolved.append(Resolved(device_id, ts, False, now, entry[1]))
            if not device.pending:
                del self._devices[device_id]
        return resolved

    def hold(self, device_id: str) -> None:
        """Failure evidence for ``device_id`` may be coming (it is offline or silent): none of its events resolves
        negative until :meth:`release` or :meth:`failure`."""
        self._held.setdefault(device_id, [])

    def release(self, device_id: str) -> None:
        """The device is back: its events resolve as usual again (those past their horizon at the next advance)."""
        for entry in self._held.pop(device_id, []):
            heapq.heappush(self._expiry, entry)

    def held(self, device_id: str) -> bool:
        """Whether the device's events are held (see :meth:`hold`)."""
        return device_id in self._held

    def forget(self, device_id: str) -> int:
        """Drop a device's waiting events without labels (it was evicted); return how many."""
        self._held.pop(device_id, None)
        device = self._devices.pop(device_id, None)
        return len(device.pending) if device is not None else 0
