"""Per-device online features: each event in, the feature vector that predicts failure out.

One implementation serves the warm start, replay and live ingest. State is a fixed set of floats per
device (exponentially weighted averages, a baseline, a slope, a variance), so memory per device is
bounded whatever the stream's length. Values outside the canonical ranges are ignored as if missing.

Features (all floats; a field the device does not report yields no feature):
- ``<signal>``: the latest value of battery_level, battery_voltage, linkquality, signal_strength,
  response_time (log ms), error_rate, temperature, uptime_hours;
- ``<signal>_ewm``: a fast average (time constant 12 h); ``<signal>_dev``: its deviation from the device's
  own robust baseline (10 days), in units of the signal's report-to-report noise, and ``<signal>_dev2d`` the
  same for a medium average (time constant 2 days); ``<signal>_tdev``: the deviation less the lag that the
  baseline's own steady drift explains (a battery draining as it should); ``<signal>_cusum_up`` and
  ``_cusum_down``: Page's CUSUM of the per-report deviation beyond one noise unit, both ways (a small
  sustained shift adds up report after report, noise drains away); ``<signal>_slope``: the change per day
  that the fast and medium averages imply; ``<signal>_peak``: the recent peak (decaying over 2 days) of error
  rate, response time and temperature;
- ``gap_ratio``: time since the previous report over the device's usual interval (the running median of its
  gaps, in log space, so bursts of reports minutes apart do not shrink it); ``gap_z``: how unusual that gap is
  for this device, in units of the spread of its own log gaps (at least ``GAP_SPREAD_FLOOR``), so a device
  that reports on change, with irregular gaps, is measured against its own irregularity; and ``gap_ewm`` the
  recent average of the positive part of ``gap_z`` (lost reports raise all three);
- ``value_var_ratio``: recent variance of the sensed value over its long-run variance (a stuck sensor
  tends to 0); for 0/1 values ``value_flip_rate`` and ``value_flip_ratio`` (against its long-run rate);
  ``value_repeats``: how many reports in a row carried exactly the same value, and ``value_stuck_surprise``
  how unlikely that run is for this device (minus its log-probability under the device's long-run rate of
  change);
- ``drops_ewm``, ``restarts_ewm``: recent connection drops and restarts per report;
- ``age_days``: days since the device was first seen;
- ``hour_sin``, ``hour_cos``, ``weekend``, ``season_sin``, ``season_cos``;
- ``battery`` (1 for battery power), ``type_<device_type>`` (one-hot).

Why one module of over 400 lines: every feature's online update reads and writes the same per-device state, and the
module's list of names is the contract of :mod:`~devintel.models.batch_features` (which must equal it bit for bit).
"""

from __future__ import annotations

import array
import math
import struct
from collections.abc import Callable, Mapping, MutableMapping
from typing import TYPE_CHECKING, Final, NamedTuple

from devintel.contract import DEVICE_TYPES, VALID_RANGES

Features = dict[str, float]

#: Signals with average, baseline, deviation and slope features.
TRACKED: Final[tuple[str, ...]] = (
    "battery_level",
    "battery_voltage",
    "linkquality",
    "signal_strength",
    "response_time",
    "error_rate",
    "temperature",
)
#: Signals whose recent peak is a feature (bursts that an average smooths away).
PEAKED: Final[frozenset[str]] = frozenset({"error_rate", "response_time", "temperature"})
#: Signals reported as their latest value only.
LATEST_ONLY: Final[tuple[str, ...]] = ("uptime_hours",)

FAST: Final = 0.3
"""Weight of a new count in the drop and restart averages (per report)."""
FAST_S: Final = 12 * 3600.0
"""Time constant of a signal's fast average, in seconds."""
MID_S: Final = 2 * 86_400.0
"""Time constant of a signal's medium average, in seconds: less noisy than the fast one, so a small sustained
shift (the start of a terminal phase) stands out from report-to-report noise."""
SLOW_S: Final = 10 * 86_400.0
"""Time constant of a signal's long-run baseline, in seconds."""
PEAK_S: Final = 2 * 86_400.0
"""Time constant with which a signal's recent peak decays, in seconds."""
NOISE: Final = 0.05
"""Weight of a new report-to-report change in a signal's noise scale."""
BASELINE_WARMUP: Final = 20
"""Reports during which a baseline follows every value freely, before it becomes robust."""
CUSUM_SLACK: Final = 1.0
"""Deviation (in noise units) a report must exceed to add to a CUSUM: smaller wobbles drain it."""
CUSUM_CAP: Final = 50.0
"""Largest value a CUSUM reaches (its state stays bounded; beyond it the evidence is no stronger)."""
REPEATS_CAP: Final = 100
"""Longest run of identical values counted by ``value_repeats``."""
GAP_RATE: Final = 0.1
"""Step of the running median of a device's log gaps, in units of their spread."""
GAP_SPREAD: Final = 0.05
"""Weight of a new absolute deviation in the spread of a device's log gaps."""
GAP_SPREAD_START: Final = 0.5
"""Spread of a device's log gaps before it has any history (wide: a young device's gaps surprise nobody)."""
GAP_SPREAD_FLOOR: Final = 0.15
"""Smallest spread a gap is measured against (a strictly periodic device would make any jitter a surprise)."""

_DAY_S: Final = 86_400.0
_YEAR_DAYS: Final = 365.2425
_TWO_PI: Final = 2.0 * math.pi
_TYPE_FEATURES: Final = {name: f"type_{name}" for name in DEVICE_TYPES}
#: The per-signal feature suffixes of a tracked signal, in the order they are emitted ("" is the latest value).
SIGNAL_SUFFIXES: Final[tuple[str, ...]] = (
    "",
    "_ewm",
    "_dev",
    "_dev2d",
    "_tdev",
    "_cusum_up",
    "_cusum_down",
    "_slope",
    "_peak",
)
CALENDAR: Final[tuple[str, ...]] = ("hour_sin", "hour_cos", "weekend", "season_sin", "season_cos")
VALUE_FEATURES: Final[tuple[str, ...]] = (
    "value_var_ratio",
    "value_flip_rate",
    "value_flip_ratio",
    "value_repeats",
    "value_stuck_surprise",
)
#: Every feature name :class:`FeatureExtractor` may emit.
FEATURE_NAMES: Final[tuple[str, ...]] = (
    "gap_ratio",
    "gap_z",
    "gap_ewm",
    *(name + suffix for name in TRACKED for suffix in SIGNAL_SUFFIXES if suffix != "_peak" or name in PEAKED),
    *LATEST_ONLY,
    *VALUE_FEATURES,
    "drops_ewm",
    "restarts_ewm",
    "age_days",
    *CALENDAR,
    "battery",
    *_TYPE_FEATURES.values(),
)


class _Recorder(dict[str, float]):
    """A feature vector with every name in it that records which names a function reads."""

    def __init__(self) -> None:
        super().__init__(dict.fromkeys(FEATURE_NAMES, 1.0))
        self.read: set[str] = set()

    def __getitem__(self, key: str) -> float:
        self.read.add(key)
        return super().__getitem__(key)

    def get(self, key: str, default: object = None) -> object:  # type: ignore[override]
        self.read.add(key)
        return super().get(key, default)

    def __contains__(self, key: object) -> bool:
        if isinstance(key, str):
            self.read.add(key)
        return super().__contains__(key)


def features_read_by(func: Callable[[Features], Features]) -> frozenset[str]:
    """The features ``func`` (a model's input transform, such as ``learners.model_inputs``) reads or passes on:
    those it looks up by name, and those whose names it hands on as they are. Found by calling it once on a vector
    holding every feature; ``tests/test_fast_core.py`` checks on a generated stream that a
    ``FeatureExtractor(only=...)`` of these gives ``func`` the same inputs as the full extractor."""
    probe = _Recorder()
    out = func(probe)
    return frozenset(probe.read | (set(out) & set(FEATURE_NAMES)))


def valid(field_name: str, value: object) -> float | None:
    """The value as a float when it is a finite number inside the field's canonical range, else None."""
    if value is None or (isinstance(value, bool) and field_name != "value"):
        return None
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    if not math.isfinite(number):
        return None
    lo, hi = VALID_RANGES[field_name]
    return number if lo <= number <= hi else None


class Signal(NamedTuple):
    """The state of one tracked signal (a read-only view of its slots in :class:`DeviceState`): the latest value and
    its time, the fast, medium and slow (baseline) averages, the report-to-report noise, the baseline's own drift per
    day, the CUSUMs both ways, the decaying peak, and how many reports it has seen."""

    last: float
    last_ts: float
    fast: float
    mid: float
    slow: float
    noise: float
    drift: float
    cusum_up: float
    cusum_down: float
    peak: float
    seen: float


# The slots of a DeviceState: the device's own (gaps, value statistics, counters, the latest-only signals: NaN until
# reported), then SIGNAL_SLOTS for each signal of TRACKED, in order (the fields of Signal; ``seen`` 0: never reported).
_FIRST_TS, _LAST_TS, _USUAL_GAP, _LOG_GAP, _GAP_SPREAD, _GAP_EWM = range(6)
_VALUE_FAST, _VALUE_FAST_VAR, _VALUE_SLOW, _VALUE_SLOW_VAR, _VALUE_SEEN, _LAST_VALUE, _REPEATS = range(6, 13)
_FLIP_RATE, _FLIP_BASE, _DROPS_EWM, _RESTARTS_EWM = range(13, 17)
_LATEST: Final = 17
_SIGNALS: Final = _LATEST + len(LATEST_ONLY)
SIGNAL_SLOTS: Final = len(Signal._fields)
_LAST, _SIG_TS, _FAST, _MID, _SLOW, _NOISE, _DRIFT, _CUSUM_UP, _CUSUM_DOWN, _PEAK, _SEEN = range(SIGNAL_SLOTS)
#: A signal's slots as bytes of the state's buffer (read and written whole: faster than slot by slot).
_SIGNAL_BYTES: Final = struct.Struct(f"{SIGNAL_SLOTS}d")
#: The value statistics' slots (from value_fast to flip_base), read and written whole as well.
_VALUE_BYTES: Final = struct.Struct(f"{_FLIP_BASE - _VALUE_FAST + 1}d")
_VALUE_OFFSET: Final = _VALUE_FAST * 8
_REPEATS_CAP: Final = float(REPEATS_CAP)
_FRESH: Final = array.array("d", [0.0] * (_SIGNALS + SIGNAL_SLOTS * len(TRACKED)))
_FRESH[_GAP_SPREAD] = GAP_SPREAD_START
_FRESH[_LATEST:_SIGNALS] = array.array("d", [math.nan] * len(LATEST_ONLY))

if TYPE_CHECKING:
    _Floats = array.array[float]
else:
    _Floats = array.array


class DeviceState(_Floats):
    """Everything the features remember about one device: a fixed number of float64s in one array (about 0.8 KB; as a
    record of boxed floats with a dict of signal records it took about 1.8 KB a device). Made by :meth:`fresh`; the
    properties name what other modules read; :class:`FeatureExtractor` reads and writes the slots."""

    __slots__ = ()

    @classmethod
    def fresh(cls, first_ts: float, last_ts: float) -> DeviceState:
        """The state of a device first heard at ``first_ts``."""
        state = cls("d", _FRESH)
        state[_FIRST_TS], state[_LAST_TS] = first_ts, last_ts
        return state

    def __reduce_ex__(self, protocol: object) -> tuple[type[DeviceState], tuple[str, bytes]]:
        """Pickled (and copied) as a :class:`DeviceState` of the same bytes (``array`` would give a plain array)."""
        return (type(self), ("d", self.tobytes()))

    def __copy__(self) -> DeviceState:
        return type(self)("d", self)

    def __deepcopy__(self, memo: object) -> DeviceState:
        return type(self)("d", self)

    @property
    def first_ts(self) -> float:
        """When the device was first heard."""
        return self[_FIRST_TS]

    @property
    def last_ts(self) -> float:
        """The latest event time heard from the device."""
        return self[_LAST_TS]

    @property
    def usual_gap(self) -> float:
        """The device's usual interval between reports, in seconds (0: not known yet)."""
        return self[_USUAL_GAP]

    @property
    def gap_ewm(self) -> float:
        """The recent average of how unusual its gaps were (``gap_ewm``)."""
        return self[_GAP_EWM]

    @property
    def signals(self) -> dict[str, Signal]:
        """The state of each tracked signal the device has reported."""
        out = {}
        for k, name in enumerate(TRACKED):
            at = _SIGNALS + k * SIGNAL_SLOTS
            if self[at + _SEEN]:
                out[name] = Signal(*self[at : at + SIGNAL_SLOTS])
        return out


def _step_signal(state: DeviceState, offset: int, x: float, ts: float) -> tuple[float, ...]:
    """Fold the value ``x`` at ``ts`` into the signal whose slots start at byte ``offset``: fast, medium and slow
    averages, noise, drift, CUSUMs and peak. Its slots after the step."""
    last, last_ts, fast, mid, slow, noise, drift, cusum_up, cusum_down, peak, seen = _SIGNAL_BYTES.unpack_from(
        state, offset
    )
    gap = max(ts - last_ts, 0.0)
    days = gap / _DAY_S
    noise += NOISE * (abs(x - last) - noise)
    # Averages weigh time, not reports, so devices that report hourly and twice a day compare.
    fast += (1.0 - math.exp(-gap / FAST_S)) * (x - fast)
    mid += (1.0 - math.exp(-gap / MID_S)) * (x - mid)
    peak = max(x, peak * math.exp(-gap / PEAK_S))
    # The baseline is robust: after a warm-up, a step counts at most 3 noise units, so a sustained
    # drift (the thing to detect) barely drags the baseline along.
    step = x - slow
    if seen < BASELINE_WARMUP:
        slow += step / (seen + 1)
    else:
        scale = max(noise, 1e-3 * (abs(slow) + 1.0))
        # Page's CUSUM both ways: evidence of a small, sustained shift away from the baseline, which
        # grows report after report where a single noisy report or a short wobble does not.
        z = step / scale
        cusum_up = min(max(cusum_up + z - CUSUM_SLACK, 0.0), CUSUM_CAP)
        cusum_down = min(max(cusum_down - z - CUSUM_SLACK, 0.0), CUSUM_CAP)
        weight = 1.0 - math.exp(-gap / SLOW_S)
        moved = weight * min(max(step, -3.0 * scale), 3.0 * scale)
        slow += moved
        if days > 1e-6:
            # The baseline's own rate of change (per day): a steady drift (a battery draining as it
            # should) that the lagging baseline would otherwise report as a deviation.
            drift += weight * (moved / days - drift)
    after = (x, ts, fast, mid, slow, noise, drift, cusum_up, cusum_down, peak, seen + 1.0)
    _SIGNAL_BYTES.pack_into(state, offset, *after)
    return after


def _calendar(ts: float, out: Features, only: frozenset[str] | None = None) -> None:
    day = ts / _DAY_S
    hour_angle = _TWO_PI * (day % 1.0)
    season = _TWO_PI * (day - 15.5) / _YEAR_DAYS
    calendar = {
        "hour_sin": math.sin(hour_angle),
        "hour_cos": math.cos(hour_angle),
        "weekend": 1.0 if (int(day) + 3) % 7 >= 5 else 0.0,  # 1970-01-01 was a Thursday
        "season_sin": math.sin(season),
        "season_cos": math.cos(season),
    }
    out.update(calendar if only is None else {k: v for k, v in calendar.items() if k in only})


class FeatureExtractor:
    """Turns events into feature vectors, keeping a bounded state per device.

    ``update(event)`` takes a canonical event (a mapping with ``device_id``, ``ts`` and any canonical
    fields), updates that device's state and returns its features. ``forget(device_id)`` drops a device
    (failed, replaced or evicted).

    ``only`` (default: every feature) names the features to compute: the others are neither computed nor
    returned (a learner that leaves out the calendar, the age and raw levels need not pay for them; see
    :func:`features_read_by`). The state is the same either way, so the features that are computed are the same.
    ``states`` is where the per-device states live (default: a dict of its own; live, a column of the device
    table, :mod:`devintel.models.devices`).
    """

    def __init__(
        self, only: frozenset[str] | None = None, states: MutableMapping[str, DeviceState] | None = None
    ) -> None:
        self.states: MutableMapping[str, DeviceState] = {} if states is None else states
        """Each device's state (a plain dict, or the live device table's column)."""
        self.only = only

        def wanted(name: str) -> bool:
            return only is None or name in only

        self._gap = (wanted("gap_ratio"), wanted("gap_z"), wanted("gap_ewm"))
        self._signals = tuple(
            (
                _SIGNALS + k * SIGNAL_SLOTS,
                (_SIGNALS + k * SIGNAL_SLOTS) * _FRESH.itemsize,
                name,
                *VALID_RANGES[name],
                tuple(
                    (name + suffix) if wanted(name + suffix) and (suffix != "_peak" or name in PEAKED) else None
                    for suffix in SIGNAL_SUFFIXES
                ),
            )
            for k, name in enumerate(TRACKED)
        )
        self._latest = tuple((k, name) for k, name in enumerate(LATEST_ONLY) if wanted(name))
        self._values = only is None or any(name in only for name in VALUE_FEATURES)
        self._drops, self._restarts = wanted("drops_ewm"), wanted("restarts_ewm")
        self._age = wanted("age_days")
        self._calendar = only is None or any(name in only for name in CALENDAR)
        self._battery = wanted("battery")
        self._types = {kind: feature for kind, feature in _TYPE_FEATURES.items() if wanted(feature)}

    def __len__(self) -> int:
        return len(self.states)

    def forget(self, device_id: str) -> None:
        """Drop everything remembered about ``device_id``."""
        self.states.pop(device_id, None)

    def update(self, event: Mapping[str, object]) -> Features:
        """Fold ``event`` into its device's state and return the device's features after it."""
        device_id = str(event["device_id"])
        ts = float(event["ts"])  # type: ignore[arg-type]
        state = self.states.get(device_id)
        if state is None:
            state = self.states[device_id] = DeviceState.fresh(ts, ts)
            gap = 0.0
        else:
            last_ts = state[_LAST_TS]
            gap = max(ts - last_ts, 0.0)
            state[_LAST_TS] = max(last_ts, ts)
        out: Features = {}
        want_ratio, want_z, want_ewm = self._gap
        if gap > 0.0:
            log_gap = math.log(gap)
            usual_log_gap, spread = state[_LOG_GAP], state[_GAP_SPREAD]
            if state[_USUAL_GAP] == 0.0:
                usual_log_gap = log_gap
            else:
                # A running median in log space (sign steps scaled by the spread) and the spread around it:
                # lost reports and bursts move neither much, so they stand out against them.
                step = GAP_RATE * max(spread, GAP_SPREAD_FLOOR)
                usual_log_gap += step if log_gap > usual_log_gap else -step
                spread += GAP_SPREAD * (abs(log_gap - usual_log_gap) - spread)
                state[_GAP_SPREAD] = spread
            state[_LOG_GAP] = usual_log_gap
            usual_gap = state[_USUAL_GAP] = math.exp(usual_log_gap)
            z = (log_gap - usual_log_gap) / max(spread, GAP_SPREAD_FLOOR)
            gap_ewm = state[_GAP_EWM]
            state[_GAP_EWM] = gap_ewm + FAST * (max(z, 0.0) - gap_ewm)
            if want_ratio:
                out["gap_ratio"] = gap / usual_gap
            if want_z:
                out["gap_z"] = z
        if want_ewm:
            out["gap_ewm"] = state[_GAP_EWM]

        for at, offset, name, lo, hi, keys in self._signals:
            x = event.get(name)
            if x.__class__ is not float or not lo <= x <= hi:
                x = valid(name, x)  # the fast path above takes a float in range (not NaN), as valid() does
            if x is not None:
                if name == "response_time":
                    x = math.log1p(x)
                if state[at + _SEEN]:
                    slots = _step_signal(state, offset, x, ts)
                else:
                    slots = (x, ts, x, x, x, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0)
                    _SIGNAL_BYTES.pack_into(state, offset, *slots)
            elif state[at + _SEEN]:
                slots = _SIGNAL_BYTES.unpack_from(state, offset)
            else:
                continue
            last, _, fast, mid, slow, noise, drift, cusum_up, cusum_down, peak, _ = slots
            scale = max(noise, 1e-3 * (abs(slow) + 1.0))
            k_last, k_ewm, k_dev, k_dev2d, k_tdev, k_cusum_up, k_cusum_down, k_slope, k_peak = keys
            if k_last is not None:
                out[k_last] = last
            if k_ewm is not None:
                out[k_ewm] = fast
            if k_dev is not None:
                # How far the fast average has moved from the baseline, in units of the signal's own noise (the
                # typical change from one report to the next), so a drift stands out however it is scaled.
                out[k_dev] = (fast - slow) / scale
            if k_dev2d is not None:
                out[k_dev2d] = (mid - slow) / scale  # the same for the medium (2-day) average
            if k_tdev is not None:
                # The deviation less the lag that the baseline's steady drift alone explains.
                out[k_tdev] = (fast - slow - drift * (SLOW_S - FAST_S) / _DAY_S) / scale
            if k_cusum_up is not None:
                out[k_cusum_up] = cusum_up
            if k_cusum_down is not None:
                out[k_cusum_down] = cusum_down
            if k_slope is not None:
                # The change per day, from the fast and the medium average (a linear trend puts them
                # ``MID_S - FAST_S`` apart): time-based, so two reports seconds apart (a device that reports on
                # change) do not make a slope of their noise, as a report-to-report difference would.
                out[k_slope] = (fast - mid) * _DAY_S / (MID_S - FAST_S)
            if k_peak is not None:
                out[k_peak] = peak
        for k, name in enumerate(LATEST_ONLY):
            x = valid(name, event.get(name))
            if x is not None:
                state[_LATEST + k] = x
        for k, name in self._latest:
            x = state[_LATEST + k]
            if x == x:  # NaN: never reported
                out[name] = x

        self._value(state, valid("value", event.get("value")), out if self._values else None)
        drops = valid("connection_drops", event.get("connection_drops"))
        if drops is not None:
            ewm = state[_DROPS_EWM] = state[_DROPS_EWM] + FAST * (drops - state[_DROPS_EWM])
            if self._drops:
                out["drops_ewm"] = ewm
        restarts = valid("restart_count", event.get("restart_count"))
        if restarts is not None:
            ewm = state[_RESTARTS_EWM] = state[_RESTARTS_EWM] + FAST * (restarts - state[_RESTARTS_EWM])
            if self._restarts:
                out["restarts_ewm"] = ewm

        if self._age:
            out["age_days"] = (ts - state[_FIRST_TS]) / _DAY_S
        if self._calendar:
            _calendar(ts, out, self.only)
        if self._battery:
            out["battery"] = 1.0 if event.get("power_source") == "battery" else 0.0
        type_feature = self._types.get(str(event.get("device_type")))
        if type_feature is not None:
            out[type_feature] = 1.0
        return out

    @staticmethod
    def _value(state: DeviceState, x: float | None, out: Features | None) -> None:
        fast, fast_var, slow, slow_var, seen, last, repeats, flip_rate, flip_base = _VALUE_BYTES.unpack_from(
            state, _VALUE_OFFSET
        )
        if x is None:
            if seen < 2:
                return
        else:
            seen += 1.0
            if seen == 1:
                fast = slow = x
            delta_fast = x - fast
            fast += 0.1 * delta_fast
            fast_var = 0.9 * (fast_var + 0.1 * delta_fast * delta_fast)
            delta_slow = x - slow
            slow += 0.01 * delta_slow
            slow_var = 0.99 * (slow_var + 0.01 * delta_slow * delta_slow)
            if seen >= 2:  # a value before this one
                flipped = 1.0 if x != last else 0.0
                changes = seen - 1
                # Plain means until the averages have seen enough changes, then exponential ones: a rate
                # that starts at 0 would call every young continuous sensor frozen.
                flip_rate += max(0.1, 1.0 / changes) * (flipped - flip_rate)
                flip_base += max(0.01, 1.0 / changes) * (flipped - flip_base)
                repeats = 0.0 if flipped else min(repeats + 1.0, _REPEATS_CAP)
            _VALUE_BYTES.pack_into(
                state, _VALUE_OFFSET, fast, fast_var, slow, slow_var, seen, x, repeats, flip_rate, flip_base
            )
        if seen >= 2 and out is not None:
            out["value_var_ratio"] = fast_var / (slow_var + 1e-9)
            out["value_flip_rate"] = flip_rate
            out["value_flip_ratio"] = flip_rate / (flip_base + 0.01)
            out["value_repeats"] = repeats
            # How unlikely the current run of identical values is for this device: a continuous reading
            # (a value changes at nearly every report) frozen for a few reports is more surprising than a
            # light left off all night. (The count negated as an integer, as it was kept: no run gives 0.0, where
            # a negated float count would give -0.0.)
            out["value_stuck_surprise"] = -int(repeats) * math.log(max(1.0 - flip_base, 0.01))
