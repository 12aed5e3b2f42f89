"""The alarm decision: when a device *needs attention*, as a person should hear it.

A model's failure probability moves with every report; a flag that follows it flickers on and off, and a
household mutes a sensor that cries wolf. ``needs_attention`` is therefore a decision over stream time, per device,
with two rules (persistence and hysteresis):

- **on** once the evidence holds: the probability has stayed at or above ``on_threshold`` over at least
  ``min_events`` consecutive reports spanning at least ``hold_on_s`` of stream time;
- **off** only after a sustained recovery: the probability has stayed below ``off_threshold`` (at most
  ``on_threshold``) over consecutive reports spanning at least ``hold_off_s``.

A report in between the two thresholds breaks both runs: it neither raises nor clears. The parameters are tuned on
validation homes (:mod:`devintel.models.tuning`) and recorded in the snapshot's manifest.

Two implementations of the one rule:

- :func:`step` folds one report into a device's :class:`AlarmState`: the live daemon, replay and the bootstrap's
  scoring of held-out homes run it event by event;
- :func:`decide` computes the same flags for a whole scored stream at once (numpy), for the parameter search, which
  tries hundreds of parameter sets; a test proves it equal to :func:`step` on random streams.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields

import numpy as np
import numpy.typing as npt

_NO_RUN = math.nan


@dataclass(frozen=True, slots=True)
class DecisionParams:
    """The persistence and hysteresis of the alarm decision (see the module docstring)."""

    on_threshold: float
    off_threshold: float
    hold_on_s: float = 0.0
    hold_off_s: float = 0.0
    min_events: int = 1

    def __post_init__(self) -> None:
        if not 0.0 <= self.off_threshold <= self.on_threshold <= 1.0:
            raise ValueError(
                f"the thresholds must satisfy 0 <= off_threshold <= on_threshold <= 1, "
                f"not off {self.off_threshold!r} and on {self.on_threshold!r}"
            )
        if self.hold_on_s < 0 or self.hold_off_s < 0:
            raise ValueError(f"hold times must be >= 0, not {self.hold_on_s!r} and {self.hold_off_s!r}")
        if self.min_events < 1:
            raise ValueError(f"min_events must be at least 1, not {self.min_events!r}")

    @classmethod
    def plain(cls, threshold: float) -> DecisionParams:
        """The flag that follows the probability: on at ``threshold``, off below it, no persistence."""
        return cls(on_threshold=threshold, off_threshold=threshold)

    def as_dict(self) -> dict[str, float]:
        """The parameters by name (for the manifest)."""
        return {key: float(value) for key, value in asdict(self).items()}

    @classmethod
    def from_dict(cls, values: Mapping[str, object]) -> DecisionParams:
        """The parameters of :meth:`as_dict` (unknown keys are an error)."""
        names = {spec.name for spec in fields(cls)}
        unknown = set(values) - names
        if unknown:
            raise ValueError(f"unknown decision parameters: {sorted(unknown)}")
        kwargs: dict[str, float | int] = {}
        for key, value in values.items():
            if not isinstance(value, int | float) or isinstance(value, bool):
                raise ValueError(f"decision parameter {key} must be a number, not {value!r}")
            kwargs[key] = int(value) if key == "min_events" else float(value)
        return cls(**kwargs)  # type: ignore[arg-type]


@dataclass(slots=True)
class AlarmState:
    """One device's alarm: whether it is on, and the runs of evidence that turn it on or off."""

    active: bool = False
    raised_since: float = _NO_RUN
    """Time of the first report of the current run at or above ``on_threshold`` (NaN: no run)."""
    raised_count: int = 0
    clear_since: float = _NO_RUN
    """Time of the first report of the current run below ``off_threshold`` (NaN: no run)."""
    changed_at: float = _NO_RUN
    """When ``active`` last changed (NaN: never)."""

    def carries(self) -> bool:
        """Whether this state differs in effect from a fresh one (an alarm on, or a run of raised reports)."""
        return self.active or self.raised_count > 0

    def as_list(self) -> list[float | int | bool | None]:
        """A compact JSON form (for the snapshot's per-device state); a time that is NaN (none) is ``None``, so the
        form is standard JSON (``null``, not the non-standard ``NaN`` literal)."""
        return [
            self.active,
            _json_time(self.raised_since),
            self.raised_count,
            _json_time(self.clear_since),
            _json_time(self.changed_at),
        ]

    @classmethod
    def from_list(cls, values: list[float | int | bool | None]) -> AlarmState:
        """The state of :meth:`as_list` (``None`` or NaN for a time that is none: older snapshots wrote NaN)."""
        active, raised_since, raised_count, clear_since, changed_at = values
        return cls(bool(active), _time(raised_since), int(raised_count or 0), _time(clear_since), _time(changed_at))


def _json_time(value: float) -> float | None:
    """A time for JSON: ``None`` for NaN (no time)."""
    return None if math.isnan(value) else value


def _time(value: float | int | bool | None) -> float:
    """A time of :meth:`AlarmState.from_list`: NaN for ``None``."""
    return math.nan if value is None else float(value)


def step(params: DecisionParams, state: AlarmState, ts: float, probability: float) -> bool:
    """Fold one report (its time and the model's probability) into ``state``; return whether the alarm is on."""
    if probability >= params.on_threshold:
        if state.raised_count == 0:
            state.raised_since = ts
        state.raised_count += 1
    else:
        state.raised_since, state.raised_count = _NO_RUN, 0
    if probability < params.off_threshold:
        if math.isnan(state.clear_since):
            state.clear_since = ts
    else:
        state.clear_since = _NO_RUN
    if not state.active:
        if state.raised_count >= params.min_events and ts - state.raised_since >= params.hold_on_s:
            state.active, state.changed_at = True, ts
    elif not math.isnan(state.clear_since) and ts - state.clear_since >= params.hold_off_s:
        state.active, state.changed_at = False, ts
    return state.active


def group_starts(device: npt.NDArray[np.intp]) -> npt.NDArray[np.bool_]:
    """True at the first row of each device's block (rows grouped by device)."""
    starts = np.ones(device.size, dtype=np.bool_)
    starts[1:] = device[1:] != device[:-1]
    return starts


def _run_start(member: npt.NDArray[np.bool_], starts: npt.NDArray[np.bool_]) -> npt.NDArray[np.intp]:
    """For each row, the index of the first row of the run of ``member`` rows it belongs to (within its device)."""
    index = np.arange(member.size)
    previous_member = np.zeros(member.size, dtype=np.bool_)
    previous_member[1:] = member[:-1]
    begins = member & (starts | ~previous_member)
    return np.maximum.accumulate(np.where(begins, index, 0))


def decide(
    params: DecisionParams,
    device: npt.NDArray[np.intp],
    ts: npt.NDArray[np.float64],
    probability: npt.NDArray[np.float64],
) -> npt.NDArray[np.bool_]:
    """The alarm state after every report of a stream, as :func:`step` would compute it device by device.

    Rows must be grouped by device (``device`` codes in blocks) and in time order within each device, each
    device starting from a fresh :class:`AlarmState`.
    """
    return Decisions(device, ts, probability).flags(params)


class Decisions:
    """:func:`decide` for many parameter sets on one stream (the tuning's grid): the device blocks once per stream,
    the runs above each on threshold once per threshold, the last on rule and the current off threshold's rules
    kept for the next parameter sets (the grid varies the hold-off time innermost); the flags are the same."""

    def __init__(
        self, device: npt.NDArray[np.intp], ts: npt.NDArray[np.float64], probability: npt.NDArray[np.float64]
    ) -> None:
        """Rows as :func:`decide` takes them."""
        self.ts, self.probability = ts, probability
        self.starts = group_starts(device)
        self.index = np.arange(device.size)
        self._raised: dict[float, tuple[npt.NDArray[np.bool_], npt.NDArray[np.intp]]] = {}
        self._on: tuple[tuple[float, int, float], npt.NDArray[np.bool_]] | None = None  # the last on rule's
        self._off: dict[tuple[float, float], npt.NDArray[np.bool_]] = {}  # the current off threshold's rules

    def fresh(self) -> Decisions:
        """The same stream with nothing kept (for another thread: the kept runs are not shared)."""
        other = Decisions.__new__(Decisions)
        other.ts, other.probability, other.starts, other.index = self.ts, self.probability, self.starts, self.index
        other._raised, other._on, other._off = {}, None, {}
        return other

    def flags(self, params: DecisionParams) -> npt.NDArray[np.bool_]:
        """The alarm state after every report under ``params``."""
        n = self.index.size
        if n == 0:
            return np.zeros(0, dtype=np.bool_)
        ts, index, starts = self.ts, self.index, self.starts
        on_key = (params.on_threshold, params.min_events, params.hold_on_s)
        if self._on is None or self._on[0] != on_key:
            raised_runs = self._raised.get(params.on_threshold)
            if raised_runs is None:
                raised = self.probability >= params.on_threshold
                raised_runs = self._raised[params.on_threshold] = (raised, _run_start(raised, starts))
            raised, run = raised_runs
            self._on = (on_key, raised & (index - run + 1 >= params.min_events) & (ts - ts[run] >= params.hold_on_s))
        on = self._on[1]
        off_key = (params.off_threshold, params.hold_off_s)
        off = self._off.get(off_key)
        if off is None:
            if not any(key[0] == params.off_threshold for key in self._off):
                self._off.clear()  # a new off threshold: the grid is done with the others
            clear = self.probability < params.off_threshold
            run = _run_start(clear, starts)
            off = self._off[off_key] = clear & (ts - ts[run] >= params.hold_off_s)
        # The state is the kind of the latest trigger (on, off, or the device's fresh start).
        latest = np.maximum.accumulate(np.where(on | off | starts, index, 0))
        flags: npt.NDArray[np.bool_] = on[latest]
        return flags
