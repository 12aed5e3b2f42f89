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

import math
from collections.abc import Callable, Mapping, MutableMapping
from dataclasses import dataclass, field
from typing import Final

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


@dataclass(slots=True)
class _Signal:
    """Fast average, slow baseline, report-to-report noise and smoothed slope of one signal."""

    last: float
    last_ts: float
    fast: float
    mid: float
    slow: float
    noise: float = 0.0
    drift: float = 0.0
    cusum_up: float = 0.0
    cusum_down: float = 0.0
    peak: float = 0.0
    seen: int = 1

    def update(self, x: float, ts: float) -> None:
        gap = max(ts - self.last_ts, 0.0)
        days = gap / _DAY_S
        self.noise += NOISE * (abs(x - self.last) - self.noise)
        # Averages weigh time, not reports, so devices that report hourly and twice a day compare.
        self.fast += (1.0 - math.exp(-gap / FAST_S)) * (x - self.fast)
        self.mid += (1.0 - math.exp(-gap / MID_S)) * (x - self.mid)
        self.peak = max(x, self.peak * math.exp(-gap / PEAK_S))
        # The baseline is robust: after a warm-up, a step counts at most 3 noise units, so a sustained
        # drift (the thing to detect) barely drags the baseline along.
        step = x - self.slow
        if self.seen < BASELINE_WARMUP:
            self.slow += step / (self.seen + 1)
        else:
            scale = self._scale()
            # Page's CUSUM both ways: evidence of a small, sustained shift away from the baseline, which
            # grows report after report where a single noisy report or a short wobble does not.
            z = step / scale
            self.cusum_up = min(max(self.cusum_up + z - CUSUM_SLACK, 0.0), CUSUM_CAP)
            self.cusum_down = min(max(self.cusum_down - z - CUSUM_SLACK, 0.0), CUSUM_CAP)
            weight = 1.0 - math.exp(-gap / SLOW_S)
            moved = weight * min(max(step, -3.0 * scale), 3.0 * scale)
            self.slow += moved
            if days > 1e-6:
                # The baseline's own rate of change (per day): a steady drift (a battery draining as it
                # should) that the lagging baseline would otherwise report as a deviation.
                self.drift += weight * (moved / days - self.drift)
        self.seen += 1
        self.last, self.last_ts = x, ts

    def _scale(self) -> float:
        return max(self.noise, 1e-3 * (abs(self.slow) + 1.0))

    def deviation(self) -> float:
        """How far the fast average has moved from the baseline, in units of the signal's own noise
        (the typical change from one report to the next), so a drift stands out however it is scaled."""
        return (self.fast - self.slow) / self._scale()

    def drift_corrected_deviation(self) -> float:
        """Like :meth:`deviation`, less the lag that the baseline's steady drift alone explains."""
        lag = self.drift * (SLOW_S - FAST_S) / _DAY_S
        return (self.fast - self.slow - lag) / self._scale()

    def slope(self) -> float:
        """The change per day, from the fast and the medium average (a linear trend puts them ``MID_S - FAST_S``
        apart): time-based, so two reports seconds apart (a device that reports on change) do not make a slope
        of their noise, as a report-to-report difference would."""
        return (self.fast - self.mid) * _DAY_S / (MID_S - FAST_S)

    def sustained_deviation(self) -> float:
        """Like :meth:`deviation`, for the medium (2-day) average."""
        return (self.mid - self.slow) / self._scale()


@dataclass(slots=True)
class DeviceState:
    """Everything the features remember about one device: a fixed number of floats."""

    first_ts: float
    last_ts: float
    usual_gap: float = 0.0
    log_gap: float = 0.0
    gap_spread: float = GAP_SPREAD_START
    gap_ewm: float = 0.0
    signals: dict[str, _Signal] = field(default_factory=dict)
    latest: dict[str, float] = field(default_factory=dict)
    value_fast: float = 0.0
    value_fast_var: float = 0.0
    value_slow: float = 0.0
    value_slow_var: float = 0.0
    value_seen: int = 0
    last_value: float | None = None
    repeats: int = 0
    flip_rate: float = 0.0
    flip_base: float = 0.0
    drops_ewm: float = 0.0
    restarts_ewm: float = 0.0


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
                name,
                tuple(
                    (name + suffix) if wanted(name + suffix) and (suffix != "_peak" or name in PEAKED) else None
                    for suffix in SIGNAL_SUFFIXES
                ),
            )
            for name in TRACKED
        )
        self._latest = tuple(name for name in LATEST_ONLY if wanted(name))
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
            state = self.states[device_id] = DeviceState(first_ts=ts, last_ts=ts)
            gap = 0.0
        else:
            gap = max(ts - state.last_ts, 0.0)
            state.last_ts = max(state.last_ts, ts)
        out: Features = {}
        want_ratio, want_z, want_ewm = self._gap
        if gap > 0.0:
            log_gap = math.log(gap)
            if state.usual_gap == 0.0:
                state.log_gap = log_gap
            else:
                # A running median in log space (sign steps scaled by the spread) and the spread around it:
                # lost reports and bursts move neither much, so they stand out against them.
                step = GAP_RATE * max(state.gap_spread, GAP_SPREAD_FLOOR)
                state.log_gap += step if log_gap > state.log_gap else -step
                state.gap_spread += GAP_SPREAD * (abs(log_gap - state.log_gap) - state.gap_spread)
            state.usual_gap = math.exp(state.log_gap)
            z = (log_gap - state.log_gap) / max(state.gap_spread, GAP_SPREAD_FLOOR)
            state.gap_ewm += FAST * (max(z, 0.0) - state.gap_ewm)
            if want_ratio:
                out["gap_ratio"] = gap / state.usual_gap
            if want_z:
                out["gap_z"] = z
        if want_ewm:
            out["gap_ewm"] = state.gap_ewm

        for name, keys in self._signals:
            x = valid(name, event.get(name))
            if x is not None and name == "response_time":
                x = math.log1p(x)
            sig = state.signals.get(name)
            if x is not None:
                if sig is None:
                    sig = state.signals[name] = _Signal(last=x, last_ts=ts, fast=x, mid=x, slow=x)
                else:
                    sig.update(x, ts)
            if sig is not None:
                last, ewm, dev, dev2d, tdev, cusum_up, cusum_down, slope, peak = keys
                if last is not None:
                    out[last] = sig.last
                if ewm is not None:
                    out[ewm] = sig.fast
                if dev is not None:
                    out[dev] = sig.deviation()
                if dev2d is not None:
                    out[dev2d] = sig.sustained_deviation()
                if tdev is not None:
                    out[tdev] = sig.drift_corrected_deviation()
                if cusum_up is not None:
                    out[cusum_up] = sig.cusum_up
                if cusum_down is not None:
                    out[cusum_down] = sig.cusum_down
                if slope is not None:
                    out[slope] = sig.slope()
                if peak is not None:
                    out[peak] = sig.peak
        for name in LATEST_ONLY:
            x = valid(name, event.get(name))
            if x is not None:
                state.latest[name] = x
        for name in self._latest:
            if name in state.latest:
                out[name] = state.latest[name]

        self._value(state, valid("value", event.get("value")), out if self._values else None)
        drops = valid("connection_drops", event.get("connection_drops"))
        if drops is not None:
            state.drops_ewm += FAST * (drops - state.drops_ewm)
            if self._drops:
                out["drops_ewm"] = state.drops_ewm
        restarts = valid("restart_count", event.get("restart_count"))
        if restarts is not None:
            state.restarts_ewm += FAST * (restarts - state.restarts_ewm)
            if self._restarts:
                out["restarts_ewm"] = state.restarts_ewm

        if self._age:
            out["age_days"] = (ts - state.first_ts) / _DAY_S
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
        if x is None:
            if state.value_seen < 2:
                return
        else:
            state.value_seen += 1
            if state.value_seen == 1:
                state.value_fast = state.value_slow = x
            delta_fast = x - state.value_fast
            state.value_fast += 0.1 * delta_fast
            state.value_fast_var = 0.9 * (state.value_fast_var + 0.1 * delta_fast * delta_fast)
            delta_slow = x - state.value_slow
            state.value_slow += 0.01 * delta_slow
            state.value_slow_var = 0.99 * (state.value_slow_var + 0.01 * delta_slow * delta_slow)
            if state.last_value is not None:
                flipped = 1.0 if x != state.last_value else 0.0
                changes = state.value_seen - 1
                # Plain means until the averages have seen enough changes, then exponential ones: a rate
                # that starts at 0 would call every young continuous sensor frozen.
                state.flip_rate += max(0.1, 1.0 / changes) * (flipped - state.flip_rate)
                state.flip_base += max(0.01, 1.0 / changes) * (flipped - state.flip_base)
                state.repeats = 0 if flipped else min(state.repeats + 1, REPEATS_CAP)
            state.last_value = x
        if state.value_seen >= 2 and out is not None:
            out["value_var_ratio"] = state.value_fast_var / (state.value_slow_var + 1e-9)
            out["value_flip_rate"] = state.flip_rate
            out["value_flip_ratio"] = state.flip_rate / (state.flip_base + 0.01)
            out["value_repeats"] = float(state.repeats)
            # How unlikely the current run of identical values is for this device: a continuous reading
            # (a value changes at nearly every report) frozen for a few reports is more surprising than a
            # light left off all night.
            out["value_stuck_surprise"] = -state.repeats * math.log(max(1.0 - state.flip_base, 0.01))
