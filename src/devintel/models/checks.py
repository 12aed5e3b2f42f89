"""When each device is next worth a look: the periodic check of the live evidence (offline, silence) visits only the
devices whose time may have come, not every device at every check.

A check asks of a device a question whose answer can only change from "no" to "yes" as its clock runs (has it been
silent, or offline, for so long?), until the device's own state changes (it reports, goes offline). So each device
has a time before which the answer is "no", and a check need look at no device before that time. The owner of the
device's state says when that is (:meth:`CheckSchedule.at`, whenever the state changes in a way that may bring it
forward); :meth:`CheckSchedule.due` hands back the devices whose time has come, and the owner looks at them, as it
would have looked at every device, and says when each is next worth a look.

Each device's record keeps its own next time (``check_at``), so a device has one live entry however often its time
is brought forward; entries it left behind are skipped when they come up, and dropped when they outnumber the
devices. An earlier time than the truth costs one needless look; a later one would miss a device, so an owner
errs early. Pure: no I/O.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from typing import Protocol


class Checked(Protocol):
    """A device's record with the time it is next worth a look (None: not until its state changes)."""

    check_at: float | None


class CheckSchedule:
    """The devices' next times in one heap (see the module docstring)."""

    __slots__ = ("_heap",)

    def __init__(self) -> None:
        self._heap: list[tuple[float, str]] = []

    def __len__(self) -> int:
        return len(self._heap)

    def at(self, device_id: str, record: Checked, when: float) -> None:
        """Look at the device at ``when`` of its clock, or before if it already has an earlier time."""
        scheduled = record.check_at
        if scheduled is None or when < scheduled:
            record.check_at = when
            heapq.heappush(self._heap, (when, device_id))

    def due(self, now: float, record_of: Callable[[str], Checked | None], devices: int) -> list[str]:
        """The devices whose time is ``now`` or earlier, sorted by id (an order that depends only on which devices
        are due), each taken off the schedule until :meth:`at` puts it back. ``record_of`` finds a device's record
        (None: forgotten); ``devices`` is how many the owner keeps (entries left behind past a few times as many are
        dropped)."""
        heap = self._heap
        found: list[str] = []
        while heap and heap[0][0] <= now:
            when, device_id = heapq.heappop(heap)
            record = record_of(device_id)
            if record is not None and record.check_at == when:
                record.check_at = None
                found.append(device_id)
        if len(heap) > 4 * devices + 1024:
            self._heap = [
                (when, device_id)
                for when, device_id in heap
                if (record := record_of(device_id)) is not None and record.check_at == when
            ]
            heapq.heapify(self._heap)
        found.sort()
        return found
