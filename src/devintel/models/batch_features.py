"""The per-device features of a whole stream at once, with numpy: the batch path of
:class:`~devintel.models.features.FeatureExtractor`, for the bootstrap's held-out scoring.

One feature semantics: the arithmetic is :class:`~devintel.models.features.FeatureExtractor`'s, step for step (the
same recurrences, constants, clamps and order of operations), only carried out for many devices at a time. A
device's features depend only on its own events in stream order, so the stream is walked by each event's *rank*
within its device: step ``r`` updates, at once, the ``r``-th event of every device that has one (a few thousand
steps over arrays of up to a few hundred devices, instead of a Python call per event). ``tests/test_batch_features.py``
computes a rough 100,000-event stream (late, duplicated, missing, out-of-range, not finite, wrongly typed values)
both ways and finds the features, and the model inputs made of them, equal to 1e-9.

A value that is missing, not finite or outside :data:`~devintel.contract.VALID_RANGES` is ignored as if absent (a
field-level policy, as the event-by-event path's ``valid``). The batch path computes the features the shipped
learner reads (:func:`model_input_matrix` turns them into its inputs); the calendar, the device's age and its
uptime, which it leaves out, are not computed here (the event-by-event path still offers them).

Why one module of over 400 lines: it mirrors :mod:`~devintel.models.features` step for step (a split would put the
two halves of one equality proof in different places).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping
from typing import Final

import numpy as np
import numpy.typing as npt
import pandas as pd

from devintel.contract import DEVICE_TYPES, VALID_RANGES
from devintel.models.features import (
    BASELINE_WARMUP,
    CALENDAR,
    CUSUM_CAP,
    CUSUM_SLACK,
    FAST,
    FAST_S,
    FEATURE_NAMES,
    GAP_RATE,
    GAP_SPREAD,
    GAP_SPREAD_FLOOR,
    GAP_SPREAD_START,
    LATEST_ONLY,
    MID_S,
    NOISE,
    PEAK_S,
    PEAKED,
    REPEATS_CAP,
    SIGNAL_SUFFIXES,
    SLOW_S,
    TRACKED,
)
from devintel.models.learners import (
    FAILING_HIGH,
    FAILING_LOW,
    GAP_EXCESS_CAP,
    LOW_BATTERY,
    STUCK_SURPRISE_CAP,
    passes_through,
)

Floats = npt.NDArray[np.float64]
#: Looks up (or makes, all NaN) the output column of a feature.
Column = Callable[[str], Floats]
_DAY_S: Final = 86_400.0
#: The fields the batch path reads, besides the tracked signals.
COUNTED: Final[tuple[str, ...]] = ("connection_drops", "restart_count")
#: The features the batch path computes: all but the calendar, the device's age and its uptime.
BATCH_FEATURES: Final = frozenset(FEATURE_NAMES) - {*CALENDAR, "age_days", *LATEST_ONLY}


def computes(only: frozenset[str] | None) -> bool:
    """Whether the batch path computes every feature of ``only`` (None: every feature, which it does not)."""
    return only is not None and only <= BATCH_FEATURES


def _map(func: Callable[[float], float], x: Floats) -> Floats:
    """``func`` (a function of :mod:`math`) of every element: the C library's result, bit for bit what the event
    by event path computes (numpy's own ``exp``, ``log`` and ``log1p`` may differ from it in the last bit)."""
    return np.fromiter(map(func, x.tolist()), dtype=np.float64, count=len(x))


def checked(field: str, values: npt.ArrayLike) -> Floats:
    """``values`` of a canonical field as floats, NaN where not finite or outside the field's range (ignored)."""
    x = np.array(values, dtype=np.float64)
    lo, hi = VALID_RANGES[field]
    with np.errstate(invalid="ignore"):
        x[~((x >= lo) & (x <= hi))] = np.nan
    return x


def _log_nan(x: Floats) -> Floats:
    """``math.log`` of every element that is not NaN (NaN stays)."""
    out = np.full(len(x), np.nan)
    known = ~np.isnan(x)
    out[known] = _map(math.log, x[known])
    return out


def _log1p_nan(x: Floats) -> Floats:
    """``math.log1p`` of every element that is not NaN (NaN stays)."""
    out = np.full(len(x), np.nan)
    known = ~np.isnan(x)
    out[known] = _map(math.log1p, x[known])
    return out


def ranks(devices: npt.NDArray[np.intp]) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.intp]]:
    """(the event indices sorted by device, then stream order; each event's rank within its device)."""
    order = np.lexsort((np.arange(len(devices)), devices))
    sorted_devices = devices[order]
    starts = np.flatnonzero(np.r_[True, sorted_devices[1:] != sorted_devices[:-1]])
    lengths = np.diff(np.r_[starts, len(devices)])
    rank = np.arange(len(devices)) - np.repeat(starts, lengths)
    return order, rank


#: Each per-device state array and its value before a device's first event (the slots of features.DeviceState).
_STATE: Final[dict[str, float]] = {
    "started": 0.0,
    "last_ts": 0.0,
    "usual_gap": 0.0,
    "log_gap": 0.0,
    "gap_spread": GAP_SPREAD_START,
    "gap_ewm": 0.0,
    "v_seen": 0.0,
    "v_fast": 0.0,
    "v_fast_var": 0.0,
    "v_slow": 0.0,
    "v_slow_var": 0.0,
    "v_last": math.nan,
    "repeats": 0.0,
    "flip_rate": 0.0,
    "flip_base": 0.0,
    **{f"{name}.ewm": 0.0 for name in COUNTED},
}


#: The state of a tracked signal (features.Signal, and whether the device has reported it), per (slot, signal).
_SIGNAL_STATE: Final[tuple[str, ...]] = (
    "has", "last", "last_ts", "fast", "mid", "slow", "noise", "drift", "up", "down", "peak", "seen"
)  # fmt: skip
_N_SIGNALS: Final = len(TRACKED)
_SIGNAL_INDEX: Final = np.arange(_N_SIGNALS)
_SIGNAL_OUTPUTS: Final[tuple[str, ...]] = SIGNAL_SUFFIXES


class BatchExtractor:
    """The per-device state of :class:`~devintel.models.features.FeatureExtractor` as arrays (one slot per device),
    fed a batch of events at a time (:meth:`columns`): a stream in batches gives the features the whole stream
    would. A slot never comes back: a device forgotten (failed) gets a new slot, which starts afresh."""

    def __init__(self) -> None:
        self.state: dict[str, Floats] = {key: np.zeros(0) for key in _STATE}
        self.signals: dict[str, Floats] = {key: np.zeros(0) for key in _SIGNAL_STATE}
        """The tracked signals' state, slot-major: (slot, signal) at ``slot * len(TRACKED) + signal``."""
        self.slots_used = 0
        """Slots handed out by the caller so far (the next fresh device gets this one)."""

    @property
    def slots(self) -> int:
        """Slots allocated (devices, counting each fresh start of a forgotten one)."""
        return len(self.state["started"])

    def _grow(self, slots: int) -> None:
        have = self.slots
        if slots > have:
            extra = max(slots - have, have // 2, 64)
            self.state = {key: np.r_[arr, np.full(extra, _STATE[key])] for key, arr in self.state.items()}
            self.signals = {key: np.r_[arr, np.zeros(extra * _N_SIGNALS)] for key, arr in self.signals.items()}

    def columns(
        self,
        slots: npt.NDArray[np.intp],
        ts: Floats,
        fields: Mapping[str, Floats],
        battery: npt.NDArray[np.bool_],
        device_type: npt.NDArray[np.object_],
        only: frozenset[str] | None = None,
    ) -> dict[str, Floats]:
        """Each feature (by name) of every event of the batch, NaN where the event-by-event path emits none.

        ``slots``: each event's device slot (0, 1, ...: one per device); ``ts``: event times; ``fields``: per
        canonical field its values (NaN: absent; checked here with :func:`checked`); ``battery``: whether the event
        says battery power; ``device_type``: the event's device type (str); ``only``: the features to return
        (None: all it computes; the others are written to a scratch column, so memory holds only those asked
        for)."""
        n = len(ts)
        out: dict[str, Floats] = {}
        scratch = np.full(n, np.nan)

        def column(name: str) -> Floats:
            if only is not None and name not in only:
                return scratch
            found = out.get(name)
            if found is None:
                found = out[name] = np.full(n, np.nan)
            return found

        if n == 0:
            return out
        self._grow(int(slots.max()) + 1)
        st = self.state
        missing = np.full(n, np.nan)
        values = {name: checked(name, fields[name]) for name in fields}
        signals = {name: values.get(name, missing) for name in TRACKED}
        if "response_time" in values:
            signals["response_time"] = _log1p_nan(signals["response_time"])
        signal_values = np.column_stack([signals[name] for name in TRACKED])
        del signals
        wanted = [
            suffix for suffix in _SIGNAL_OUTPUTS if any(only is None or name + suffix in only for name in TRACKED)
        ]
        by_signal = {suffix: np.full((n, _N_SIGNALS), np.nan) for suffix in wanted}

        def emit(suffix: str, rows: npt.NDArray[np.intp], signal: npt.NDArray[np.intp], values: Floats) -> None:
            found = by_signal.get(suffix)
            if found is not None:
                found[rows, signal] = values

        value = values.get("value", missing)
        counted = {name: values.get(name, missing) for name in COUNTED}
        started, last_ts, usual_gap = st["started"], st["last_ts"], st["usual_gap"]
        log_gap, gap_spread, gap_ewm = st["log_gap"], st["gap_spread"], st["gap_ewm"]

        order, rank = ranks(slots)
        by_rank = np.argsort(rank, kind="stable")
        bounds = np.searchsorted(rank[by_rank], np.arange(int(rank.max()) + 2))
        for r in range(len(bounds) - 1):
            rows = order[by_rank[bounds[r] : bounds[r + 1]]]  # the r-th event of each device that has one
            d = slots[rows]
            t = ts[rows]
            fresh = started[d] == 0.0
            gap = np.where(fresh, 0.0, np.maximum(t - last_ts[d], 0.0))
            last_ts[d] = np.where(fresh, t, np.maximum(last_ts[d], t))
            started[d] = 1.0
            g = gap > 0.0
            if g.any():
                gd, lg_new = d[g], _map(math.log, gap[g])
                first = usual_gap[gd] == 0.0
                lg, spread = log_gap[gd], gap_spread[gd]
                step = GAP_RATE * np.maximum(spread, GAP_SPREAD_FLOOR)
                moved = np.where(lg_new > lg, lg + step, lg - step)
                lg = np.where(first, lg_new, moved)
                spread = np.where(first, spread, spread + GAP_SPREAD * (np.abs(lg_new - lg) - spread))
                log_gap[gd], gap_spread[gd] = lg, spread
                usual_gap[gd] = _map(math.exp, lg)
                z = (lg_new - lg) / np.maximum(spread, GAP_SPREAD_FLOOR)
                gap_ewm[gd] += FAST * (np.maximum(z, 0.0) - gap_ewm[gd])
                column("gap_ratio")[rows[g]] = gap[g] / usual_gap[gd]
                column("gap_z")[rows[g]] = z
            column("gap_ewm")[rows] = gap_ewm[d]

            flat = (d[:, None] * _N_SIGNALS + _SIGNAL_INDEX).ravel()  # every tracked signal of these devices at once
            _signal(
                self.signals,
                signal_values[rows].ravel(),
                np.repeat(t, _N_SIGNALS),
                flat,
                np.repeat(rows, _N_SIGNALS),
                np.tile(_SIGNAL_INDEX, len(rows)),
                emit,
            )

            _value(value[rows], d, rows, column, st)
            for name, feature in zip(COUNTED, ("drops_ewm", "restarts_ewm"), strict=True):
                x = counted[name][rows]
                ok = ~np.isnan(x)
                if ok.any():
                    od, ewm = d[ok], st[name + ".ewm"]
                    ewm[od] += FAST * (x[ok] - ewm[od])
                    column(feature)[rows[ok]] = ewm[od]

        for j, name in enumerate(TRACKED):
            for suffix, emitted in by_signal.items():
                if (only is None or name + suffix in only) and (suffix != "_peak" or name in PEAKED):
                    out[name + suffix] = emitted[:, j]
        column("battery")[:] = np.where(battery, 1.0, 0.0)  # the scratch column too, harmlessly
        for kind in DEVICE_TYPES:
            is_kind = device_type == kind
            if is_kind.any():
                column(f"type_{kind}")[is_kind] = 1.0
        return out


def feature_columns(
    devices: npt.NDArray[np.intp],
    ts: Floats,
    fields: Mapping[str, Floats],
    battery: npt.NDArray[np.bool_],
    device_type: npt.NDArray[np.object_],
    only: frozenset[str] | None = None,
) -> dict[str, Floats]:
    """:meth:`BatchExtractor.columns` of a whole stream, ``devices`` its device codes 0..n-1."""
    return BatchExtractor().columns(devices, ts, fields, battery, device_type, only)


def _signal(
    s: dict[str, Floats],
    x: Floats,
    t: Floats,
    d: npt.NDArray[np.intp],
    rows: npt.NDArray[np.intp],
    signal: npt.NDArray[np.intp],
    emit: Callable[[str, npt.NDArray[np.intp], npt.NDArray[np.intp], Floats], None],
) -> None:
    """One step of the tracked signals at state positions ``d`` (``features._step_signal``: value ``x`` at time
    ``t``), and their features, emitted as (suffix, event rows, signal numbers, values)."""
    ok = ~np.isnan(x)
    had = s["has"][d] > 0.0
    new = ok & ~had
    upd = ok & had
    if new.any():
        nd, xv = d[new], x[new]
        for key in ("last", "fast", "mid", "slow"):
            s[key][nd] = xv
        s["last_ts"][nd] = t[new]
        for key in ("noise", "drift", "up", "down", "peak"):
            s[key][nd] = 0.0
        s["seen"][nd] = 1.0
        s["has"][nd] = 1.0
    if upd.any():
        ud, xv, tv = d[upd], x[upd], t[upd]
        gap = np.maximum(tv - s["last_ts"][ud], 0.0)
        days = gap / _DAY_S
        noise = s["noise"][ud]
        noise = noise + NOISE * (np.abs(xv - s["last"][ud]) - noise)
        fast, mid = s["fast"][ud], s["mid"][ud]
        fast = fast + (1.0 - _map(math.exp, -gap / FAST_S)) * (xv - fast)
        mid = mid + (1.0 - _map(math.exp, -gap / MID_S)) * (xv - mid)
        peak = np.maximum(xv, s["peak"][ud] * _map(math.exp, -gap / PEAK_S))
        slow, seen = s["slow"][ud], s["seen"][ud]
        step = xv - slow
        warm = seen < BASELINE_WARMUP
        scale = np.maximum(noise, 1e-3 * (np.abs(slow) + 1.0))
        z = step / scale
        up = np.where(warm, s["up"][ud], np.minimum(np.maximum(s["up"][ud] + z - CUSUM_SLACK, 0.0), CUSUM_CAP))
        down = np.where(warm, s["down"][ud], np.minimum(np.maximum(s["down"][ud] - z - CUSUM_SLACK, 0.0), CUSUM_CAP))
        weight = 1.0 - _map(math.exp, -gap / SLOW_S)
        moved = weight * np.minimum(np.maximum(step, -3.0 * scale), 3.0 * scale)
        drift = s["drift"][ud]
        with np.errstate(divide="ignore", invalid="ignore"):
            drifted = drift + weight * (moved / days - drift)
        drift = np.where(~warm & (days > 1e-6), drifted, drift)
        slow = np.where(warm, slow + step / (seen + 1.0), slow + moved)
        s["noise"][ud], s["fast"][ud], s["mid"][ud], s["peak"][ud] = noise, fast, mid, peak
        s["up"][ud], s["down"][ud], s["drift"][ud], s["slow"][ud] = up, down, drift, slow
        s["seen"][ud] = seen + 1.0
        s["last"][ud], s["last_ts"][ud] = xv, tv
    known = s["has"][d] > 0.0
    if not known.any():
        return
    kd, at, j = d[known], rows[known], signal[known]
    fast, mid, slow = s["fast"][kd], s["mid"][kd], s["slow"][kd]
    scale = np.maximum(s["noise"][kd], 1e-3 * (np.abs(slow) + 1.0))
    lag = s["drift"][kd] * (SLOW_S - FAST_S) / _DAY_S
    emit("", at, j, s["last"][kd])
    emit("_ewm", at, j, fast)
    emit("_dev", at, j, (fast - slow) / scale)
    emit("_dev2d", at, j, (mid - slow) / scale)
    emit("_tdev", at, j, (fast - slow - lag) / scale)
    emit("_cusum_up", at, j, s["up"][kd])
    emit("_cusum_down", at, j, s["down"][kd])
    emit("_slope", at, j, (fast - mid) * _DAY_S / (MID_S - FAST_S))
    emit("_peak", at, j, s["peak"][kd])


def _value(
    x: Floats, d: npt.NDArray[np.intp], rows: npt.NDArray[np.intp], column: Column, st: dict[str, Floats]
) -> None:
    """One step of the sensed value's statistics (``FeatureExtractor._value``), and its features."""
    seen, fast, fast_var, slow, slow_var = st["v_seen"], st["v_fast"], st["v_fast_var"], st["v_slow"], st["v_slow_var"]
    last, repeats, flip_rate, flip_base = st["v_last"], st["repeats"], st["flip_rate"], st["flip_base"]
    ok = ~np.isnan(x)
    if ok.any():
        od, xv = d[ok], x[ok]
        seen[od] += 1.0
        first = seen[od] == 1.0
        fast[od] = np.where(first, xv, fast[od])
        slow[od] = np.where(first, xv, slow[od])
        delta_fast = xv - fast[od]
        fast[od] += 0.1 * delta_fast
        fast_var[od] = 0.9 * (fast_var[od] + 0.1 * delta_fast * delta_fast)
        delta_slow = xv - slow[od]
        slow[od] += 0.01 * delta_slow
        slow_var[od] = 0.99 * (slow_var[od] + 0.01 * delta_slow * delta_slow)
        before = last[od]
        had = ~np.isnan(before)
        if had.any():
            hd = od[had]
            flipped = np.where(xv[had] != before[had], 1.0, 0.0)
            changes = seen[hd] - 1.0
            flip_rate[hd] += np.maximum(0.1, 1.0 / changes) * (flipped - flip_rate[hd])
            flip_base[hd] += np.maximum(0.01, 1.0 / changes) * (flipped - flip_base[hd])
            repeats[hd] = np.where(flipped == 1.0, 0.0, np.minimum(repeats[hd] + 1.0, REPEATS_CAP))
        last[od] = xv
    shown = seen[d] >= 2.0
    if shown.any():
        sd, at = d[shown], rows[shown]
        column("value_var_ratio")[at] = fast_var[sd] / (slow_var[sd] + 1e-9)
        column("value_flip_rate")[at] = flip_rate[sd]
        column("value_flip_ratio")[at] = flip_rate[sd] / (flip_base[sd] + 0.01)
        column("value_repeats")[at] = repeats[sd]
        column("value_stuck_surprise")[at] = -repeats[sd] * _map(math.log, np.maximum(1.0 - flip_base[sd], 0.01))


def model_input_matrix(columns: Mapping[str, Floats]) -> dict[str, Floats]:
    """:func:`devintel.models.learners.model_inputs` of every row of ``columns`` at once (NaN: absent, as there)."""
    x: dict[str, Floats] = {}
    for name in FAILING_LOW:
        if name + "_dev" in columns:
            x[name + "_drop"] = np.maximum(-columns[name + "_dev"], 0.0)
            x[name + "_drop2d"] = np.maximum(-columns[name + "_dev2d"], 0.0)
            x[name + "_tdrop"] = np.maximum(-columns[name + "_tdev"], 0.0)
            x[name + "_cusum"] = columns[name + "_cusum_down"]
    for name in FAILING_HIGH:
        if name + "_dev" in columns:
            x[name + "_rise"] = np.maximum(columns[name + "_dev"], 0.0)
            x[name + "_rise2d"] = np.maximum(columns[name + "_dev2d"], 0.0)
            x[name + "_trise"] = np.maximum(columns[name + "_tdev"], 0.0)
            x[name + "_cusum"] = columns[name + "_cusum_up"]
    if "battery_level_ewm" in columns:
        x["battery_low"] = np.maximum(LOW_BATTERY - columns["battery_level_ewm"], 0.0)
    if "gap_z" in columns:
        x["gap_excess"] = np.minimum(np.maximum(columns["gap_z"], 0.0), GAP_EXCESS_CAP)
    if "value_repeats" in columns:
        x["value_stuck"] = np.minimum(columns["value_stuck_surprise"], STUCK_SURPRISE_CAP)
        x["value_frozen"] = -_log_nan(columns["value_var_ratio"] + 1e-3)
        x["value_flips_lost"] = np.maximum(1.0 - columns["value_flip_ratio"], 0.0)
    for name, values in columns.items():
        if passes_through(name) and name not in x:
            x[name] = values
    return x


#: Events of a frame whose features :func:`frame_columns` computes at a time (memory stays small).
FRAME_CHUNK: Final = 50_000


def names_of(column: pd.Series) -> npt.NDArray[np.object_]:
    """The values of a column of names as ``str`` objects: for a categorical one (the generator's), its categories
    taken by code, which is much cheaper than ``astype(str)``."""
    if isinstance(column.dtype, pd.CategoricalDtype):
        categories = np.asarray(column.cat.categories.astype(str).to_numpy(dtype=object), dtype=object)
        codes = np.asarray(column.cat.codes.to_numpy(), dtype=np.intp)
        if not (codes < 0).any():
            return np.asarray(categories[codes], dtype=object)
    return np.asarray(column.astype(str).to_numpy(dtype=object), dtype=object)


def frame_columns(
    frame: pd.DataFrame, only: frozenset[str] | None = None, chunk: int = FRAME_CHUNK
) -> Iterator[tuple[int, int, dict[str, Floats]]]:
    """:meth:`BatchExtractor.columns` of a generated frame (``devintel.generators``: one row per event, in stream
    order, NaN for a field an event lacks), ``chunk`` rows at a time, as (first row, end row, columns): what
    :class:`~devintel.models.features.FeatureExtractor` computes for the events of
    :func:`~devintel.models.online.events`."""
    devices = frame["device_id"]
    if isinstance(devices.dtype, pd.CategoricalDtype):
        codes = np.asarray(devices.cat.codes.to_numpy(), dtype=np.intp)
    else:
        codes = np.asarray(pd.factorize(devices)[0], dtype=np.intp)
    extractor = BatchExtractor()
    for start in range(0, len(frame), chunk):
        part = frame.iloc[start : start + chunk]
        end = start + len(part)
        yield (
            start,
            end,
            extractor.columns(
                codes[start:end],
                part["ts"].to_numpy(dtype=np.float64),
                {name: part[name].to_numpy(dtype=np.float64) for name in VALID_RANGES if name in part},
                names_of(part["power_source"]) == "battery",
                names_of(part["device_type"]),
                only,
            ),
        )
