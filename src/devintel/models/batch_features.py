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
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Final

import numpy as np
import numpy.typing as npt
import pandas as pd

from devintel.contract import DEVICE_TYPES, VALID_RANGES
from devintel.models.features import (
    BASELINE_WARMUP,
    CUSUM_CAP,
    CUSUM_SLACK,
    FAST,
    FAST_S,
    GAP_RATE,
    GAP_SPREAD,
    GAP_SPREAD_FLOOR,
    GAP_SPREAD_START,
    MID_S,
    NOISE,
    PEAK_S,
    PEAKED,
    REPEATS_CAP,
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


def checked(field: str, values: npt.ArrayLike) -> Floats:
    """``values`` of a canonical field as floats, NaN where not finite or outside the field's range (ignored)."""
    x = np.array(values, dtype=np.float64)
    lo, hi = VALID_RANGES[field]
    with np.errstate(invalid="ignore"):
        x[~((x >= lo) & (x <= hi))] = np.nan
    return x


def ranks(devices: npt.NDArray[np.intp]) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.intp]]:
    """(the event indices sorted by device, then stream order; each event's rank within its device)."""
    order = np.lexsort((np.arange(len(devices)), devices))
    sorted_devices = devices[order]
    starts = np.flatnonzero(np.r_[True, sorted_devices[1:] != sorted_devices[:-1]])
    lengths = np.diff(np.r_[starts, len(devices)])
    rank = np.arange(len(devices)) - np.repeat(starts, lengths)
    return order, rank


def feature_columns(
    devices: npt.NDArray[np.intp],
    ts: Floats,
    fields: Mapping[str, Floats],
    battery: npt.NDArray[np.bool_],
    device_type: npt.NDArray[np.object_],
    only: frozenset[str] | None = None,
) -> dict[str, Floats]:
    """Each feature (by name) of every event of a stream, NaN where the event-by-event path emits none.

    ``devices``: device codes 0..n-1 per event; ``ts``: event times; ``fields``: per canonical field its values
    (NaN: absent; checked here with :func:`checked`); ``battery``: whether the event says battery power;
    ``device_type``: the event's device type (str); ``only``: the features to return (None: all it computes; the
    others are written to a scratch column, so memory holds only those asked for)."""
    n = len(ts)
    n_dev = int(devices.max()) + 1 if n else 0
    out: dict[str, Floats] = {}
    scratch = np.full(n, np.nan)

    def column(name: str) -> Floats:
        if only is not None and name not in only:
            return scratch
        found = out.get(name)
        if found is None:
            found = out[name] = np.full(n, np.nan)
        return found

    values = {name: checked(name, fields[name]) if name in fields else np.full(n, np.nan) for name in fields}
    signals = {name: values.get(name, np.full(n, np.nan)) for name in TRACKED}
    if "response_time" in fields:
        signals["response_time"] = np.log1p(signals["response_time"])
    value = values.get("value", np.full(n, np.nan))
    counted = {name: values.get(name, np.full(n, np.nan)) for name in COUNTED}

    # Per-device state (the fields of features.DeviceState and features._Signal), one slot per device.
    last_ts = np.zeros(n_dev)
    usual_gap = np.zeros(n_dev)
    log_gap = np.zeros(n_dev)
    gap_spread = np.full(n_dev, GAP_SPREAD_START)
    gap_ewm = np.zeros(n_dev)
    sig = {
        name: {
            key: np.zeros(n_dev)
            for key in ("last", "last_ts", "fast", "mid", "slow", "noise", "drift", "up", "down", "peak", "seen")
        }
        for name in TRACKED
    }
    has = {name: np.zeros(n_dev, dtype=bool) for name in TRACKED}
    v_seen = np.zeros(n_dev)
    v_fast = np.zeros(n_dev)
    v_fast_var = np.zeros(n_dev)
    v_slow = np.zeros(n_dev)
    v_slow_var = np.zeros(n_dev)
    v_last = np.full(n_dev, np.nan)
    repeats = np.zeros(n_dev)
    flip_rate = np.zeros(n_dev)
    flip_base = np.zeros(n_dev)
    ewm = {name: np.zeros(n_dev) for name in COUNTED}

    order, rank = ranks(devices)
    by_rank = np.argsort(rank, kind="stable")
    bounds = np.searchsorted(rank[by_rank], np.arange(int(rank.max()) + 2 if n else 1))
    for r in range(len(bounds) - 1):
        rows = order[by_rank[bounds[r] : bounds[r + 1]]]  # the r-th event of each device that has one
        d = devices[rows]
        t = ts[rows]
        if r == 0:
            last_ts[d] = t
            gap = np.zeros(len(rows))
        else:
            gap = np.maximum(t - last_ts[d], 0.0)
            last_ts[d] = np.maximum(last_ts[d], t)
        g = gap > 0.0
        if g.any():
            gd, lg_new = d[g], np.log(gap[g])
            first = usual_gap[gd] == 0.0
            lg, spread = log_gap[gd], gap_spread[gd]
            step = GAP_RATE * np.maximum(spread, GAP_SPREAD_FLOOR)
            moved = np.where(lg_new > lg, lg + step, lg - step)
            lg = np.where(first, lg_new, moved)
            spread = np.where(first, spread, spread + GAP_SPREAD * (np.abs(lg_new - lg) - spread))
            log_gap[gd], gap_spread[gd] = lg, spread
            usual_gap[gd] = np.exp(lg)
            z = (lg_new - lg) / np.maximum(spread, GAP_SPREAD_FLOOR)
            gap_ewm[gd] += FAST * (np.maximum(z, 0.0) - gap_ewm[gd])
            column("gap_ratio")[rows[g]] = gap[g] / usual_gap[gd]
            column("gap_z")[rows[g]] = z
        column("gap_ewm")[rows] = gap_ewm[d]

        for name in TRACKED:
            _signal(name, sig[name], has[name], signals[name][rows], t, d, rows, column)

        _value(value[rows], d, rows, column, v_seen, v_fast, v_fast_var, v_slow, v_slow_var, v_last, repeats,
               flip_rate, flip_base)  # fmt: skip
        for name, feature in zip(COUNTED, ("drops_ewm", "restarts_ewm"), strict=True):
            x = counted[name][rows]
            ok = ~np.isnan(x)
            if ok.any():
                od = d[ok]
                ewm[name][od] += FAST * (x[ok] - ewm[name][od])
                column(feature)[rows[ok]] = ewm[name][od]

    column("battery")[:] = np.where(battery, 1.0, 0.0)  # the scratch column too, harmlessly
    for kind in DEVICE_TYPES:
        is_kind = device_type == kind
        if is_kind.any():
            column(f"type_{kind}")[is_kind] = 1.0
    return out


def _signal(
    name: str,
    s: dict[str, Floats],
    has: npt.NDArray[np.bool_],
    x: Floats,
    t: Floats,
    d: npt.NDArray[np.intp],
    rows: npt.NDArray[np.intp],
    column: Column,
) -> None:
    """One step of a tracked signal for the devices ``d`` (``features._Signal``), and its features."""
    ok = ~np.isnan(x)
    new = ok & ~has[d]
    upd = ok & has[d]
    if new.any():
        nd, xv = d[new], x[new]
        for key in ("last", "fast", "mid", "slow"):
            s[key][nd] = xv
        s["last_ts"][nd] = t[new]
        for key in ("noise", "drift", "up", "down", "peak"):
            s[key][nd] = 0.0
        s["seen"][nd] = 1.0
        has[nd] = True
    if upd.any():
        ud, xv, tv = d[upd], x[upd], t[upd]
        gap = np.maximum(tv - s["last_ts"][ud], 0.0)
        days = gap / _DAY_S
        noise = s["noise"][ud]
        noise = noise + NOISE * (np.abs(xv - s["last"][ud]) - noise)
        fast, mid = s["fast"][ud], s["mid"][ud]
        fast = fast + (1.0 - np.exp(-gap / FAST_S)) * (xv - fast)
        mid = mid + (1.0 - np.exp(-gap / MID_S)) * (xv - mid)
        peak = np.maximum(xv, s["peak"][ud] * np.exp(-gap / PEAK_S))
        slow, seen = s["slow"][ud], s["seen"][ud]
        step = xv - slow
        warm = seen < BASELINE_WARMUP
        scale = np.maximum(noise, 1e-3 * (np.abs(slow) + 1.0))
        z = step / scale
        up = np.where(warm, s["up"][ud], np.minimum(np.maximum(s["up"][ud] + z - CUSUM_SLACK, 0.0), CUSUM_CAP))
        down = np.where(warm, s["down"][ud], np.minimum(np.maximum(s["down"][ud] - z - CUSUM_SLACK, 0.0), CUSUM_CAP))
        weight = 1.0 - np.exp(-gap / SLOW_S)
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
    known = has[d]
    if not known.any():
        return
    kd, at = d[known], rows[known]
    fast, mid, slow = s["fast"][kd], s["mid"][kd], s["slow"][kd]
    scale = np.maximum(s["noise"][kd], 1e-3 * (np.abs(slow) + 1.0))
    column(name)[at] = s["last"][kd]
    column(name + "_ewm")[at] = fast
    column(name + "_dev")[at] = (fast - slow) / scale
    column(name + "_dev2d")[at] = (mid - slow) / scale
    lag = s["drift"][kd] * (SLOW_S - FAST_S) / _DAY_S
    column(name + "_tdev")[at] = (fast - slow - lag) / scale
    column(name + "_cusum_up")[at] = s["up"][kd]
    column(name + "_cusum_down")[at] = s["down"][kd]
    column(name + "_slope")[at] = (fast - mid) * _DAY_S / (MID_S - FAST_S)
    if name in PEAKED:
        column(name + "_peak")[at] = s["peak"][kd]


def _value(
    x: Floats,
    d: npt.NDArray[np.intp],
    rows: npt.NDArray[np.intp],
    column: Column,
    seen: Floats,
    fast: Floats,
    fast_var: Floats,
    slow: Floats,
    slow_var: Floats,
    last: Floats,
    repeats: Floats,
    flip_rate: Floats,
    flip_base: Floats,
) -> None:
    """One step of the sensed value's statistics (``FeatureExtractor._value``), and its features."""
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
        column("value_stuck_surprise")[at] = -repeats[sd] * np.log(np.maximum(1.0 - flip_base[sd], 0.01))


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
        x["value_frozen"] = -np.log(columns["value_var_ratio"] + 1e-3)
        x["value_flips_lost"] = np.maximum(1.0 - columns["value_flip_ratio"], 0.0)
    for name, values in columns.items():
        if passes_through(name) and name not in x:
            x[name] = values
    return x


def frame_columns(frame: pd.DataFrame, only: frozenset[str] | None = None) -> dict[str, Floats]:
    """:func:`feature_columns` of a generated frame (``devintel.generators``: one row per event, in stream order, NaN
    for a field an event lacks), as :class:`~devintel.models.features.FeatureExtractor` computes them for the events
    of :func:`~devintel.models.online.events`."""
    devices = frame["device_id"]
    codes = devices.cat.codes.to_numpy() if isinstance(devices.dtype, pd.CategoricalDtype) else pd.factorize(devices)[0]
    return feature_columns(
        np.asarray(codes, dtype=np.intp),
        frame["ts"].to_numpy(dtype=np.float64),
        {name: frame[name].to_numpy(dtype=np.float64) for name in VALID_RANGES if name in frame},
        (frame["power_source"].astype(str) == "battery").to_numpy(),
        frame["device_type"].astype(str).to_numpy(dtype=object),
        only,
    )
