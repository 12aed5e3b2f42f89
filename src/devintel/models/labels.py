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

Memory per waiting event is small, because a live daemon holds a day or a week of them for every device: a device's
events are one :class:`Waiting` block, their times and arrival numbers in two arrays and their payloads in whatever
form the buffer's :class:`Rows` keeps them (a list by default; the live learner's
:class:`~devintel.models.scored.ScoredRows` keeps them as columns of float32 features, probabilities and flags), and
the expiry queue holds one entry per device, for its next event to expire, not one per event. Events resolve in the
order of (event time, arrival) across all devices, as one entry per event would give.
"""

from __future__ import annotations

import heapq
from array import array
from collections.abc import MutableMapping
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

Payload = TypeVar("Payload")
Block = TypeVar("Block")


@dataclass(frozen=True, slots=True)
class Resolved(Generic[Payload]):
    """An event whose label is now known."""

    device_id: str
    ts: float
    label: bool
    resolved_at: float
    payload: Payload
    """What the caller stored with the event (its features and the prediction made then)."""


class Rows(Protocol[Block, Payload]):
    """How one device's waiting events keep their payloads: a block per device, its rows in arrival order."""

    def block(self) -> Block:
        """An empty block (a device's first waiting event)."""

    def append(self, block: Block, payload: Payload) -> None:
        """Keep ``payload`` as the block's last row."""

    def pop(self, block: Block, index: int) -> Payload:
        """The payload of row ``index``, removed from the block."""

    def payloads(self, block: Block) -> list[Payload]:
        """Every row's payload, in arrival order (the block is then dropped)."""


class ListRows(Generic[Payload]):
    """The plain form of :class:`Rows`: the payloads as they are, in a list."""

    def block(self) -> list[Payload]:
        """An empty list."""
        return []

    def append(self, block: list[Payload], payload: Payload) -> None:
        """Append ``payload``."""
        block.append(payload)

    def pop(self, block: list[Payload], index: int) -> Payload:
        """Remove and return row ``index``."""
        return block.pop(index)

    def payloads(self, block: list[Payload]) -> list[Payload]:
        """The list itself."""
        return block


#: An entry of the expiry queue: (event time, arrival number, device) of a device's next event to expire.
Expiry = tuple[float, int, str]


@dataclass(slots=True)
class Waiting:
    """One device's events waiting for a label: their times and arrival numbers, in arrival order, and their
    payloads (``rows``, a block of the buffer's :class:`Rows`)."""

    ts: array  # type: ignore[type-arg]
    """Event times (float64)."""
    seq: array  # type: ignore[type-arg]
    """Arrival numbers (int64, increasing: over every device, so ties in time resolve in arrival order)."""
    rows: Any

    def __len__(self) -> int:
        return len(self.ts)

    def head(self) -> int:
        """The row whose label the horizon resolves first: the earliest event, the first to arrive among equals."""
        ts = self.ts
        return ts.index(min(ts))

    def expiry(self, device_id: str) -> Expiry:
        """The expiry queue's entry of :meth:`head`."""
        i = self.head()
        return (self.ts[i], self.seq[i], device_id)


class DelayedLabels(Generic[Payload]):
    """The buffer of events waiting for their label (see the module docstring)."""

    def __init__(
        self,
        horizon_s: float,
        max_pending: int = 1024,
        devices: MutableMapping[str, Waiting] | None = None,
        held: MutableMapping[str, list[Expiry]] | None = None,
        rows: Rows[Any, Payload] | None = None,
    ) -> None:
        """``devices`` and ``held`` are where the per-device entries live (default: dicts of its own; live, columns
        of the device table, :mod:`devintel.models.devices`); ``rows`` how payloads are kept (default: as they are,
        :class:`ListRows`)."""
        if horizon_s <= 0:
            raise ValueError(f"horizon_s must be positive, not {horizon_s}")
        if max_pending < 1:
            raise ValueError(f"max_pending must be at least 1, not {max_pending}")
        self.horizon_s = horizon_s
        self.max_pending = max_pending
        self.dropped = 0
        """Events dropped unresolved because their device's buffer was full."""
        self.rows: Rows[Any, Payload] = ListRows() if rows is None else rows
        self._devices: MutableMapping[str, Waiting] = {} if devices is None else devices
        self._expiry: list[Expiry] = []
        """One entry per device with events to resolve: its :meth:`Waiting.expiry` (lazily cleaned: an entry that is no
        longer its device's head is skipped when it comes up)."""
        self._sequence = 0
        self._held: MutableMapping[str, list[Expiry]] = {} if held is None else held
        """Devices whose events may not resolve negative yet, with the expiries that came up meanwhile."""

    def __len__(self) -> int:
        """Events waiting for a label."""
        return sum(len(d.ts) for d in self._devices.values())

    def add(self, device_id: str, ts: float, payload: Payload) -> None:
        """Hold an event (its features and prediction in ``payload``) until its label is known."""
        device = self._devices.get(device_id)
        if device is None:
            device = self._devices[device_id] = Waiting(array("d"), array("q"), self.rows.block())
            moved = True
        else:
            moved = False
            if len(device.ts) >= self.max_pending:
                moved = device.head() == 0
                self._take(device, 0)  # the oldest by arrival
                self.dropped += 1
            moved = moved or not device.ts or (ts < device.ts[-1] and ts < min(device.ts))  # in order: not first
        self._sequence += 1
        device.ts.append(ts)
        device.seq.append(self._sequence)
        self.rows.append(device.rows, payload)
        if moved:  # a new head: its entry (the old head's, if any, is skipped when it comes up)
            heapq.heappush(self._expiry, device.expiry(device_id))

    def _take(self, device: Waiting, index: int) -> Payload:
        del device.ts[index]
        del device.seq[index]
        return self.rows.pop(device.rows, index)

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
        for ts, payload in zip(device.ts, self.rows.payloads(device.rows), strict=True):
            if ts > failure_ts:
                continue
            positive = failure_ts - ts <= self.horizon_s
            resolved.append(Resolved(device_id, ts, positive, failure_ts, payload))
        resolved.sort(key=lambda r: r.ts)
        return resolved

    def advance(self, now: float) -> list[Resolved[Payload]]:
        """Move the stream clock to ``now``: events whose horizon has passed with no failure are negative."""
        resolved = []
        expiry, horizon, devices = self._expiry, self.horizon_s, self._devices
        while expiry and expiry[0][0] + horizon < now:
            entry = heapq.heappop(expiry)
            ts, sequence, device_id = entry
            device = devices.get(device_id)
            if device is None:
                continue
            index = device.head()
            if device.seq[index] != sequence:
                continue  # resolved, dropped or forgotten since: the device's head has an entry of its own
            deferred = self._held.get(device_id)
            if deferred is not None:
                deferred.append(entry)
                continue
            resolved.append(Resolved(device_id, ts, False, now, self._take(device, index)))
            if device.ts:
                heapq.heappush(expiry, device.expiry(device_id))
            else:
                del devices[device_id]
        return resolved

    def hold(self, device_id: str) -> None:
        """Failure evidence for ``device_id`` may be coming (it is offline or silent): none of its events resolves
        negative until :meth:`release` or :meth:`failure`."""
        self._held.setdefault(device_id, [])

    def release(self, device_id: str) -> None:
        """The device is back: its events resolve as usual again (those past their horizon at the next advance)."""
        deferred = self._held.pop(device_id, None)
        device = self._devices.get(device_id)
        if deferred and device is not None and device.ts:
            heapq.heappush(self._expiry, device.expiry(device_id))

    def held(self, device_id: str) -> bool:
        """Whether the device's events are held (see :meth:`hold`)."""
        return device_id in self._held

    def forget(self, device_id: str) -> int:
        """Drop a device's waiting events without labels (it was evicted); return how many."""
        self._held.pop(device_id, None)
        device = self._devices.pop(device_id, None)
        return len(device.ts) if device is not None else 0
