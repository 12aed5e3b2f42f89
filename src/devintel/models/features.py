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
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

from devintel.generators.templates import DEVICE_TYPES, VALID_RANGES

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


def _calendar(ts: float, out: Features) -> None:
    day = ts / _DAY_S
    hour_angle = _TWO_PI * (day % 1.0)
    out["hour_sin"] = math.sin(hour_angle)
    out["hour_cos"] = math.cos(hour_angle)
    out["weekend"] = 1.0 if (int(day) + 3) % 7 >= 5 else 0.0  # 1970-01-01 was a Thursday
    season = _TWO_PI * (day - 15.5) / _YEAR_DAYS
    out["season_sin"] = math.sin(season)
    out["season_cos"] = math.cos(season)


class FeatureExtractor:
    """Turns events into feature vectors, keeping a bounded state per device.

    ``update(event)`` takes a canonical event (a mapping with ``device_id``, ``ts`` and any canonical
    fields), updates that device's state and returns its features. ``forget(device_id)`` drops a device
    (failed, replaced or evicted).
    """

    def __init__(self) -> None:
        self.states: dict[str, DeviceState] = {}

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
            out["gap_ratio"] = gap / state.usual_gap
            out["gap_z"] = z
        out["gap_ewm"] = state.gap_ewm

        for name in TRACKED:
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
                out[name] = sig.last
                out[name + "_ewm"] = sig.fast
                out[name + "_dev"] = sig.deviation()
                out[name + "_dev2d"] = sig.sustained_deviation()
                out[name + "_tdev"] = sig.drift_corrected_deviation()
                out[name + "_cusum_up"] = sig.cusum_up
                out[name + "_cusum_down"] = sig.cusum_down
                out[name + "_slope"] = sig.slope()
                if name in PEAKED:
                    out[name + "_peak"] = sig.peak
        for name in LATEST_ONLY:
            x = valid(name, event.get(name))
            if x is not None:
                state.latest[name] = x
            if name in state.latest:
                out[name] = state.latest[name]

        self._value(state, valid("value", event.get("value")), out)
        drops = valid("connection_drops", event.get("connection_drops"))
        if drops is not None:
            state.drops_ewm += FAST * (drops - state.drops_ewm)
            out["drops_ewm"] = state.drops_ewm
        restarts = valid("restart_count", event.get("restart_count"))
        if restarts is not None:
            state.restarts_ewm += FAST * (restarts - state.restarts_ewm)
            out["restarts_ewm"] = state.restarts_ewm

        out["age_days"] = (ts - state.first_ts) / _DAY_S
        _calendar(ts, out)
        out["battery"] = 1.0 if event.get("power_source") == "battery" else 0.0
        type_feature = _TYPE_FEATURES.get(str(event.get("device_type")))
        if type_feature is not None:
            out[type_feature] = 1.0
        return out

    @staticmethod
    def _value(state: DeviceState, x: float | None, out: Features) -> None:
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
        if state.value_seen >= 2:
            out["value_var_ratio"] = state.value_fast_var / (state.value_slow_var + 1e-9)
            out["value_flip_rate"] = state.flip_rate
            out["value_flip_ratio"] = state.flip_rate / (state.flip_base + 0.01)
            out["value_repeats"] = float(state.repeats)
            # How unlikely the current run of identical values is for this device: a continuous reading
            # (a value changes at nearly every report) frozen for a few reports is more surprising than a
            # light left off all night.
            out["value_stuck_surprise"] = -state.repeats * math.log(max(1.0 - state.flip_base, 0.01))
