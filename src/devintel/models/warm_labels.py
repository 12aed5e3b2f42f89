"""The delayed labels of a time-ordered stream, a batch at a time: the warm start's label walk
(:mod:`devintel.models.warm_start`) without a step per event.

:class:`~devintel.models.labels.DelayedLabels`, run event by event, does three things at each event: it delivers the
failures whose time the clock has reached (each resolves its device's waiting events, in time order: positive within
the horizon before the failure), resolves negative every waiting event whose horizon the clock has passed (in order
of time, then arrival), and adds the event (dropping its device's oldest when ``max_pending`` wait). When the events
come in time order, each of those is a position in the stream that arrays give at once:

- an event expires at the first later event whose time is past its own plus the horizon (a binary search);
- an event of a device whose failure is delivered before event *p* resolves there, unless it expired first (at the
  same position the failure comes first, as it does event by event);
- a device's waiting events are its latest, so its event *k* is dropped exactly when it still waits as its event
  *k* + ``max_pending`` arrives.

Sorting the resolved events by (position, failures before expiries, the failure's place in delivery order, time,
arrival) gives the order the buffer resolves them in. :class:`OrderedLabels` keeps the waiting events as arrays
between batches; a stream that is not in time order needs the event-by-event buffer
(:meth:`OrderedLabels.waiting` hands it the waiting events). The equality is tested against the event-by-event
collector, with failures, full buffers and a batch out of order (``tests/test_bootstrap_fast.py``).

Devices are *slots* here (ints): a device whose failure is delivered starts afresh in a new slot, as the warm start
forgets it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

Floats = npt.NDArray[np.float64]
Ints = npt.NDArray[np.int64]

#: Bits of an event's rank within its slot in the (slot, rank) keys that find a slot's event ``max_pending`` later.
_RANK_BITS = 32


class Delivery(NamedTuple):
    """A failure delivered before event ``position`` of a batch, ending ``slot``'s waiting events (None: the device
    had none)."""

    position: int
    failure_ts: float
    slot: int | None


@dataclass(frozen=True, slots=True)
class Resolutions:
    """Events whose label is now known, in the order the event-by-event buffer resolves them."""

    refs: Ints
    """What the caller gave with each event (:meth:`OrderedLabels.batch`)."""
    labels: npt.NDArray[np.bool_]

    def __len__(self) -> int:
        return len(self.refs)


def _empty() -> Resolutions:
    return Resolutions(np.zeros(0, np.int64), np.zeros(0, np.bool_))


class OrderedLabels:
    """The waiting events of a time-ordered stream (times, slots, arrival numbers, ranks within their slot and the
    caller's references, in arrival order) and the batch step that resolves them (see the module docstring)."""

    def __init__(self, horizon_s: float, max_pending: int = 1024) -> None:
        if horizon_s <= 0:
            raise ValueError(f"horizon_s must be positive, not {horizon_s}")
        if not 1 <= max_pending < 2**_RANK_BITS:
            raise ValueError(f"max_pending must be at least 1, not {max_pending}")
        self.horizon_s = horizon_s
        self.max_pending = max_pending
        self.dropped = 0
        """Events dropped unresolved because their slot had ``max_pending`` waiting."""
        self._ts: Floats = np.zeros(0)
        self._slot: Ints = np.zeros(0, np.int64)
        self._seq: Ints = np.zeros(0, np.int64)
        self._rank: Ints = np.zeros(0, np.int64)
        self._ref: Ints = np.zeros(0, np.int64)
        self._count: Ints = np.zeros(0, np.int64)
        """Events added per slot (the next one's rank)."""
        self._arrivals = 0

    def __len__(self) -> int:
        """Events waiting for a label."""
        return len(self._ts)

    def waiting(self) -> tuple[Floats, Ints, Ints]:
        """The waiting events' times, slots and references, in arrival order."""
        return self._ts, self._slot, self._ref

    def batch(self, ts: Floats, slots: Ints, refs: Ints, deliveries: Sequence[Delivery]) -> Resolutions:
        """Add a batch's events (times in order, none before the last batch's; their slots; the caller's references)
        and resolve what the batch resolves: ``deliveries`` are the failures delivered during it, in delivery order
        (their positions do not decrease; an event at or after a delivery's position is not in the slot it ends)."""
        n = len(ts)
        rank = self._ranks(slots)
        seq = np.arange(self._arrivals, self._arrivals + n, dtype=np.int64)
        self._arrivals += n
        old = len(self._ts)
        t = np.concatenate([self._ts, ts])
        slot = np.concatenate([self._slot, slots])
        arrival = np.concatenate([self._seq, seq])
        ranks = np.concatenate([self._rank, rank])
        ref = np.concatenate([self._ref, refs])
        # Where each event resolves: n is "not in this batch".
        at = np.searchsorted(ts, t + self.horizon_s, side="right").astype(np.int64)
        failing = np.zeros(len(t), np.bool_)
        which = np.zeros(len(t), np.int64)  # the failure's place in delivery order
        positive = np.zeros(len(t), np.bool_)
        gone = np.zeros(len(t), np.bool_)  # ended by a failure it came after: resolved with no label
        ended = [(d.slot, d.position, d.failure_ts, i) for i, d in enumerate(deliveries) if d.slot is not None]
        if ended:
            ended_slot = np.array([e[0] for e in ended], np.int64)
            by_slot = np.argsort(ended_slot)
            found = np.minimum(np.searchsorted(ended_slot[by_slot], slot), len(ended) - 1)
            hit = ended_slot[by_slot][found] == slot
            index = by_slot[found[hit]]
            position = np.array([e[1] for e in ended], np.int64)[index]
            failure_ts = np.array([e[2] for e in ended])[index]
            first = position <= at[hit]  # at the same position the failure comes before the clock
            rows = np.flatnonzero(hit)[first]
            failing[rows] = True
            at[rows] = position[first]
            which[rows] = np.array([e[3] for e in ended], np.int64)[index[first]]
            positive[rows] = failure_ts[first] - t[rows] <= self.horizon_s
            gone[rows] = t[rows] > failure_ts[first]
        dropped = self._dropped(slot, ranks, at, old)
        resolved = (at < n) & ~dropped
        self.dropped += int(dropped.sum())
        keep = ~(resolved | dropped)
        labelled = np.flatnonzero(resolved & ~gone)
        order = labelled[
            np.lexsort(
                (arrival[labelled], t[labelled], which[labelled], ~failing[labelled], at[labelled]),
            )
        ]
        self._ts, self._slot, self._seq = t[keep], slot[keep], arrival[keep]
        self._rank, self._ref = ranks[keep], ref[keep]
        return Resolutions(ref[order], positive[order])

    def finish(self, last: float, deliveries: Sequence[tuple[float, int | None]]) -> Resolutions:
        """The end of the stream: ``deliveries`` (failure time, slot), in delivery order, then the clock at ``last``."""
        parts = []
        for failure_ts, slot in deliveries:
            if slot is None:
                continue
            mine = self._slot == slot
            rows = np.flatnonzero(mine & (self._ts <= failure_ts))
            rows = rows[np.lexsort((self._seq[rows], self._ts[rows]))]
            parts.append(Resolutions(self._ref[rows], failure_ts - self._ts[rows] <= self.horizon_s))
            self._keep(~mine)
        rows = np.flatnonzero(self._ts + self.horizon_s < last)
        rows = rows[np.lexsort((self._seq[rows], self._ts[rows]))]
        parts.append(Resolutions(self._ref[rows], np.zeros(len(rows), np.bool_)))
        self._keep(self._ts + self.horizon_s >= last)
        return Resolutions(np.concatenate([p.refs for p in parts]), np.concatenate([p.labels for p in parts]))

    def _keep(self, mask: npt.NDArray[np.bool_]) -> None:
        self._ts, self._slot, self._seq = self._ts[mask], self._slot[mask], self._seq[mask]
        self._rank, self._ref = self._rank[mask], self._ref[mask]

    def _ranks(self, slots: Ints) -> Ints:
        """Each new event's rank within its slot (the slot's events before it), counting it in."""
        if len(slots) == 0:
            return np.zeros(0, np.int64)
        top = int(slots.max()) + 1
        if top > len(self._count):
            self._count = np.concatenate([self._count, np.zeros(top - len(self._count), np.int64)])
        by_slot = np.argsort(slots, kind="stable")
        grouped = slots[by_slot]
        starts = np.flatnonzero(np.r_[True, grouped[1:] != grouped[:-1]])
        within = np.arange(len(slots)) - np.repeat(starts, np.diff(np.r_[starts, len(slots)]))
        rank = np.empty(len(slots), np.int64)
        rank[by_slot] = self._count[grouped] + within
        self._count += np.bincount(slots, minlength=len(self._count))
        return rank

    def _dropped(self, slot: Ints, rank: Ints, at: Ints, old: int) -> npt.NDArray[np.bool_]:
        """Which events are dropped: those still waiting (not resolved before or at its position) when their slot's
        event ``max_pending`` later arrives in this batch (at position ``j``: the batch's events start at ``old``)."""
        dropped = np.zeros(len(slot), np.bool_)
        key = (slot << _RANK_BITS) | rank
        new_keys = key[old:]
        if len(new_keys) == 0:
            return dropped
        by_key = np.argsort(new_keys)
        target = key + self.max_pending
        found = np.minimum(np.searchsorted(new_keys[by_key], target), len(new_keys) - 1)
        hit = new_keys[by_key][found] == target
        later = by_key[found[hit]]  # the batch position of the event that arrives max_pending later
        rows = np.flatnonzero(hit)
        dropped[rows[at[rows] > later]] = True
        return dropped
