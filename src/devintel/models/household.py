"""What a household lives with: alarm episodes, false alarms per 100 device-days, failures caught in time.

Event-level precision and recall score each report on its own; a person hears *episodes*: the flag of a device
turning on, staying on, turning off. From per-event (device, time, flag) streams and each device's failure time
(pure numpy, no I/O):

- an **episode** starts where a device's flag turns on (off before, or the device's first report);
- a **false-alarm episode** is one whose device does not fail within the horizon after the episode starts;
- **device-days** are each device's observed span, from its first report to its last;
- a failure **with a precursor** is one the telemetry could have announced ``min_lead_s`` ahead: the device
  reported at least once between ``horizon_s`` and ``min_lead_s`` before failing, with its precursor visible then
  (``precursor`` per event; every such report counts when none is given);
- its **lead** is the time from the first report within the horizon before the failure at which the flag was on,
  to the failure; it is **caught** when that lead is at least ``min_lead_s`` (12 hours by default);
- **flag changes** per device-day (on and off alike) and the share of device time **in alarm** (a flag holds from
  its report to the device's next one) describe how restless the alarms are.

:func:`household_report` computes them all (:class:`FlaggedStream` for many flag sets of one stream);
:func:`household_by_group` does so per home type, failure mode or world variant.
``tests/test_models_household.py`` checks each against a brute-force recomputation.
"""

from __future__ import annotations

import heapq
from collections.abc import MutableMapping
from dataclasses import asdict, dataclass
from typing import Final

import numpy as np
import numpy.typing as npt

from devintel.models.decision import group_starts

HOUR_S: Final = 3600.0
DAY_S: Final = 86_400.0
#: How long before a failure an alarm must come to count as caught (DESIGN.md: 12 h).
MIN_LEAD_S: Final = 12 * HOUR_S


@dataclass(frozen=True, slots=True)
class HouseholdReport:
    """Alarm quality as a household experiences it (see the module docstring)."""

    devices: int
    device_days: float
    episodes: int
    false_alarm_episodes: int
    false_alarms_per_100_device_days: float
    failures: int
    failures_with_precursor: int
    caught: int
    catch_rate: float
    """``caught / failures_with_precursor`` (0.0 when there is none)."""
    median_lead_h: float | None
    """Median lead over failures with a precursor that were flagged within the horizon (None: none was)."""
    p10_lead_h: float | None
    flag_changes_per_device_day: float
    time_in_alarm: float
    """Share of the device time spent in alarm."""

    def as_dict(self) -> dict[str, float | int | None]:
        """Every field by name (JSON-ready)."""
        return asdict(self)


def _ratio(numerator: float, denominator: float) -> float:
    return float(numerator / denominator) if denominator else 0.0


def household_report(
    device_ids: npt.ArrayLike,
    ts: npt.ArrayLike,
    flags: npt.ArrayLike,
    failure_ts: npt.ArrayLike,
    horizon_s: float,
    precursor: npt.ArrayLike | None = None,
    min_lead_s: float = MIN_LEAD_S,
    presorted: bool = False,
) -> HouseholdReport:
    """The household measures of a flagged stream (see the module docstring).

    One entry per event in every array: the device, the event time (epoch s), the flag (``needs_attention``),
    the device's failure time (NaN or infinite: it does not fail; a device fails once, at the earliest finite
    value among its events) and, optionally, whether the failure's precursor is visible in that event.
    ``presorted``: the devices are integer codes from 0, rows grouped by device and in time order within each (the
    parameter search scores hundreds of flag sets of one stream: it prepares a :class:`FlaggedStream` once).
    """
    flag = np.asarray(flags, dtype=np.bool_)
    lengths = {len(np.asarray(device_ids)), np.asarray(ts).size, flag.size}
    if len(lengths) > 1:
        raise ValueError(f"inputs differ in length: {sorted(lengths)}")
    stream = FlaggedStream(device_ids, ts, failure_ts, horizon_s, precursor, min_lead_s, presorted)
    return stream.report(flag if stream.order is None else flag[stream.order])


class FlaggedStream:
    """A stream prepared for the household measures of many flag sets (:meth:`report`): everything that does not
    depend on the flags (devices, spans, failures and their announcing reports) computed once.

    The arrays are as :func:`household_report` takes them; unless ``presorted``, the rows are grouped by device and
    time-ordered here (:attr:`order`; flags passed to :meth:`report` must then be in that order)."""

    def __init__(
        self,
        device_ids: npt.ArrayLike,
        ts: npt.ArrayLike,
        failure_ts: npt.ArrayLike,
        horizon_s: float,
        precursor: npt.ArrayLike | None = None,
        min_lead_s: float = MIN_LEAD_S,
        presorted: bool = False,
    ) -> None:
        device_raw = np.asarray(device_ids)
        times = np.asarray(ts, dtype=np.float64)
        fails = np.asarray(failure_ts, dtype=np.float64)
        visible = np.ones(times.size, dtype=np.bool_) if precursor is None else np.asarray(precursor, dtype=np.bool_)
        lengths = {len(device_raw), times.size, fails.size, visible.size}
        if len(lengths) > 1:
            raise ValueError(f"inputs differ in length: {sorted(lengths)}")
        self.horizon_s, self.min_lead_s = horizon_s, min_lead_s
        self.order: npt.NDArray[np.intp] | None = None
        """The rows' order (None: as given, ``presorted``)."""
        self.size = times.size
        if times.size == 0:
            return
        if presorted:
            device = device_raw.astype(np.intp)
        else:
            _, device = np.unique(device_raw, return_inverse=True)
            self.order = np.lexsort((times, device))
            order = self.order
            device, times, fails, visible = device[order], times[order], fails[order], visible[order]
        fails = np.where(np.isfinite(fails), fails, np.inf)
        self.device, self.times = device, times
        self.starts = starts = group_starts(device)
        first = np.flatnonzero(starts)
        self.first = first
        ends = np.r_[first[1:], device.size]
        failure_of_device = np.minimum.reduceat(fails, first)
        failure = np.repeat(failure_of_device, ends - first)
        self.span_s = times[ends - 1] - times[first]
        self.device_days = float(self.span_s.sum()) / DAY_S
        self.until_failure = until_failure = failure - times
        self.fails_within = (until_failure >= 0.0) & (until_failure <= horizon_s)
        same_device_next = np.r_[~starts[1:], False]
        self.dwell = np.where(same_device_next, np.diff(times, append=times[-1]), 0.0)
        # Failures: each failing device's reports within the horizon before its failure.
        self.window = window = np.isfinite(failure) & (until_failure > 0.0) & (until_failure <= horizon_s)
        announced = window & (until_failure >= min_lead_s) & visible
        with_precursor = np.zeros(first.size, dtype=np.bool_)
        np.logical_or.at(with_precursor, device[announced], True)
        self.failing = np.isfinite(failure_of_device) & (failure_of_device > times[first])
        self.counted = with_precursor & self.failing

    def report(self, flags: npt.ArrayLike) -> HouseholdReport:
        """The household measures of ``flags`` (one per row, in the prepared order)."""
        flag = np.asarray(flags, dtype=np.bool_)
        if flag.size != self.size:
            raise ValueError(f"inputs differ in length: {sorted({flag.size, self.size})}")
        if self.size == 0:
            return HouseholdReport(0, 0.0, 0, 0, 0.0, 0, 0, 0, 0.0, None, None, 0.0, 0.0)
        starts, min_lead_s = self.starts, self.min_lead_s
        previous = np.zeros(flag.size, dtype=np.bool_)
        previous[1:] = flag[:-1]
        previous[starts] = False
        onset = flag & ~previous
        false_onset = onset & ~self.fails_within
        changes = flag != previous  # every on and off (a device whose first report is flagged turns on)
        in_alarm = float(self.dwell[flag].sum())
        flagged_in_window = self.window & flag
        lead_s = np.full(self.first.size, -np.inf)
        np.maximum.at(lead_s, self.device[flagged_in_window], self.until_failure[flagged_in_window])
        leads = lead_s[self.counted]
        measured = leads[np.isfinite(leads)]
        device_days = self.device_days
        return HouseholdReport(
            devices=int(self.first.size),
            device_days=device_days,
            episodes=int(onset.sum()),
            false_alarm_episodes=int(false_onset.sum()),
            false_alarms_per_100_device_days=_ratio(100.0 * float(false_onset.sum()), device_days),
            failures=int(self.failing.sum()),
            failures_with_precursor=int(self.counted.sum()),
            caught=int((leads >= min_lead_s).sum()),
            catch_rate=_ratio(float((leads >= min_lead_s).sum()), float(leads.size)),
            median_lead_h=float(np.median(measured)) / HOUR_S if measured.size else None,
            p10_lead_h=float(np.quantile(measured, 0.1)) / HOUR_S if measured.size else None,
            flag_changes_per_device_day=_ratio(float(changes.sum()), device_days),
            time_in_alarm=_ratio(in_alarm, float(self.span_s.sum())),
        )


def household_by_group(
    groups: npt.ArrayLike,
    device_ids: npt.ArrayLike,
    ts: npt.ArrayLike,
    flags: npt.ArrayLike,
    failure_ts: npt.ArrayLike,
    horizon_s: float,
    precursor: npt.ArrayLike | None = None,
    min_lead_s: float = MIN_LEAD_S,
) -> dict[str, HouseholdReport]:
    """:func:`household_report` within each group (home type, failure mode, variant), keyed by ``str(group)`` in
    sorted order; ``groups`` has one entry per event, and a device's events should share one group."""
    names = np.asarray(groups).astype(str)
    device_raw = np.asarray(device_ids)
    times = np.asarray(ts, dtype=np.float64)
    flag = np.asarray(flags, dtype=np.bool_)
    fails = np.asarray(failure_ts, dtype=np.float64)
    visible = None if precursor is None else np.asarray(precursor, dtype=np.bool_)
    out: dict[str, HouseholdReport] = {}
    for name in np.unique(names).tolist():
        rows = names == name
        out[str(name)] = household_report(
            device_raw[rows],
            times[rows],
            flag[rows],
            fails[rows],
            horizon_s,
            None if visible is None else visible[rows],
            min_lead_s,
        )
    return out


class EpisodeLedger:
    """The household measures of a live stream, from labels as they resolve (bounded memory).

    Each alarm onset waits, as a label does, until a failure of its device follows within the horizon (a true
    alarm) or the horizon passes (a false one); device time accumulates report by report. A failure counts as
    caught when its device's alarm came on between the horizon and ``min_lead_s`` before it (an onset still
    waiting, or the alarm on since then).
    """

    def __init__(
        self, horizon_s: float, min_lead_s: float = MIN_LEAD_S, pending: MutableMapping[str, list[float]] | None = None
    ) -> None:
        """``pending`` is where each device's waiting onsets live (default: a dict of its own; live, a column of the
        device table, :mod:`devintel.models.devices`)."""
        self.horizon_s = horizon_s
        self.min_lead_s = min_lead_s
        self.device_s = 0.0
        self.true_episodes = 0
        self.false_episodes = 0
        self.failures = 0
        self.caught = 0
        self._pending: MutableMapping[str, list[float]] = {} if pending is None else pending
        self._oldest: list[tuple[float, str]] = []  # a heap of (onset, device)

    def observe(self, device_id: str, gap_s: float, onset: float | None) -> None:
        """A report: ``gap_s`` of device time since its previous one, and the time its alarm turned on, if it
        did with this report."""
        self.device_s += max(gap_s, 0.0)
        if onset is not None:
            self._pending.setdefault(device_id, []).append(onset)
            heapq.heappush(self._oldest, (onset, device_id))

    def failure(self, device_id: str, ts: float, alarm_since: float | None) -> None:
        """The device failed at ``ts``; ``alarm_since`` is when its current alarm came on (None: it is off)."""
        self.failures += 1
        onsets = self._pending.pop(device_id, [])
        true = [t for t in onsets if 0.0 <= ts - t <= self.horizon_s]
        self.true_episodes += len(true)
        self.false_episodes += len(onsets) - len(true)
        early = [t for t in true if ts - t >= self.min_lead_s]
        if early or (alarm_since is not None and self.min_lead_s <= ts - alarm_since):
            self.caught += 1

    def advance(self, now: float) -> None:
        """Onsets whose horizon has passed with no failure are false alarms."""
        while self._oldest and self._oldest[0][0] + self.horizon_s < now:
            onset, device_id = heapq.heappop(self._oldest)
            onsets = self._pending.get(device_id)
            if onsets and onset in onsets:  # else already judged by a failure, or forgotten
                onsets.remove(onset)
                self.false_episodes += 1
                if not onsets:
                    del self._pending[device_id]

    def forget(self, device_id: str) -> None:
        """Drop a device's waiting onsets unjudged (it was evicted, or repaired)."""
        self._pending.pop(device_id, None)

    def report(self) -> dict[str, float | int]:
        """Resolved episodes, false alarms per 100 device-days and the catch rate so far."""
        days = self.device_s / DAY_S
        return {
            "device_days": days,
            "episodes_resolved": self.true_episodes + self.false_episodes,
            "false_alarm_episodes": self.false_episodes,
            "false_alarms_per_100_device_days": _ratio(100.0 * self.false_episodes, days),
            "failures": self.failures,
            "caught": self.caught,
            "catch_rate": _ratio(float(self.caught), float(self.failures)),
        }
