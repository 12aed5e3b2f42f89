"""Evaluate a fleet's stories at event times: the synthetic telemetry stream, two days at a time.

Time is cut into fixed two-day windows. A window owns the reports whose *nominal* time (the device's
phase plus a whole number of intervals) falls inside it; each report is then jittered by up to
``JITTER`` of the device's interval. All randomness of a window comes from a generator made from
``(seed, window index)``, so the bytes of the stream do not depend on how it is batched. Jitter can move
a report across a window edge, so the events of a window are held back until no later window can
produce an earlier one; what is emitted is therefore ordered by event time across the whole stream.

Every function here is pure numpy on arrays of events; nothing here does I/O.

Why one module of over 400 lines: every failure mode is evaluated on one window's arrays; split by mode, the
windowing and its layout would be repeated.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt

from devintel.generators.fleet import (
    DAY_S,
    HOUR_S,
    JITTER,
    LOSS_PER_SEVERITY,
    WEAR_SHARE,
    YEAR_DAYS,
    Fleet,
    field_matrix,
)
from devintel.generators.templates import DEVICE_TYPES, FAILURE_MODES, METRIC_FIELDS

F64 = npt.NDArray[np.float64]

#: Float columns of an :class:`EventBatch`, in row order.
FLOAT_COLUMNS: Final[tuple[str, ...]] = ("ts", *METRIC_FIELDS, "time_to_failure_h", "precursor")
#: Integer-code columns of an :class:`EventBatch`, in row order.
CODE_COLUMNS: Final[tuple[str, ...]] = (
    "device_id",
    "home_id",
    "home_type",
    "device_type",
    "power_source",
    "failure_mode",
    "variant",
)

#: Length of a generation window. Part of the output's definition: changing it changes the bytes.
WINDOW_S: Final = 2 * DAY_S
#: Probability that a field a device reports is missing from one report.
P_MISSING: Final = 0.02
#: Probability that one report carries a single out-of-range value (a glitch the daemon must reject).
P_OUT_OF_RANGE: Final = 3e-4
#: Values a glitching device sends, per field (all outside the field's valid range).
OUT_OF_RANGE: Final[dict[str, tuple[float, ...]]] = {
    "battery_level": (255.0, -1.0, 1000.0),
    "battery_voltage": (-1.0, 65535.0),
    "signal_strength": (0.0, 31.0, -127.0),
    "linkquality": (-1.0, 300.0),
    "response_time": (-5.0,),
    "error_rate": (-0.1, 1.7),
    "connection_drops": (-1.0,),
    "restart_count": (-3.0,),
    "uptime_hours": (-1.0,),
    "temperature": (-273.15, 327.67, 850.0),
    "humidity": (-5.0, 140.0),
    "usage_frequency": (-0.2, 4.0),
    "data_transfer_rate": (-10.0,),
    "value": (float("inf"), -float("inf")),
}

#: Devices a fleet may hold (event order keys pack the device index into the low bits).
_MAX_DEVICES: Final = 1 << 21
#: Stuck severity from which a sensor repeats its frozen value exactly (the same payload over and over).
STUCK_AT: Final = 0.2
_NONE_MODE: Final = len(FAILURE_MODES)
_VALUE_KINDS: Final = ("none", "binary", "ambient", "power", "level", "trace")
_TWO_PI: Final = 2.0 * np.pi


def _bump(x: F64, centre: float, width: float) -> F64:
    result: F64 = np.exp(-0.5 * ((x - centre) / width) ** 2)
    return result


def daily_activity(hour: F64, weekend: npt.NDArray[np.bool_]) -> F64:
    """Share of peak household activity at an hour of the day (0..1).

    Weekdays have a morning peak around 07:30 and a larger evening peak around 19:30; weekends get up
    later, are busier at midday, and peak around 20:00.
    """
    weekday = 0.12 + 0.55 * _bump(hour, 7.5, 1.0) + 0.10 * _bump(hour, 13.0, 3.0) + 0.85 * _bump(hour, 19.5, 1.8)
    weekend_ = 0.18 + 0.35 * _bump(hour, 9.5, 1.5) + 0.45 * _bump(hour, 14.0, 3.0) + 0.85 * _bump(hour, 20.0, 2.0)
    return np.where(weekend, weekend_, weekday)


def season_cos(day: F64) -> F64:
    """Seasonal phase: 1 in mid-January (coldest), -1 in mid-July (northern hemisphere)."""
    result: F64 = np.cos(_TWO_PI * (day - 15.5) / YEAR_DAYS)
    return result


def cold_drain_integral(day: F64, day0: F64, sin_day0: F64 | None = None) -> F64:
    """Integral of the battery drain multiplier ``1 + 0.5 * cold`` from ``day0`` to ``day``, in days.

    ``cold`` is ``(1 + season_cos) / 2``: cold speeds battery drain by up to half in mid-winter.
    ``sin_day0`` may pass ``season_sin(day0)`` when it is already known.
    """
    w = _TWO_PI / YEAR_DAYS
    start = season_sin(day0) if sin_day0 is None else sin_day0
    result: F64 = 1.25 * (day - day0) + 0.25 / w * (season_sin(day) - start)
    return result


def season_sin(day: F64) -> F64:
    """The sine companion of :func:`season_cos` (its integral, up to a factor)."""
    result: F64 = np.sin(_TWO_PI * (day - 15.5) / YEAR_DAYS)
    return result


def unit_noise(rng: np.random.Generator, shape: tuple[int, int]) -> F64:
    """Measurement noise with mean 0 and variance 1: the sum of two uniforms (a triangular law).

    Real sensor noise is bounded, and this law is (at 2.45 standard deviations); it also costs two
    uniform draws where a normal draw costs about five.
    """
    pair = rng.random((2, *shape))
    noise: F64 = (pair[0] + pair[1] - 1.0) * np.sqrt(6.0)
    return noise


def event_order_key(t: F64, dev: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """A sort key with no ties: the event time in milliseconds, then the device index.

    No two events of periodic devices share a key (a device's reports are at least 40 % of its interval
    apart), so every sort algorithm, on every CPU, puts them in the same order. Only the on-change devices
    of world variants can (rarely) send two reports in one millisecond; fleets with such devices sort
    stably, so ties keep the order in which the slots were generated.
    """
    key: npt.NDArray[np.int64] = np.rint(t * 1000.0).astype(np.int64) * _MAX_DEVICES + dev
    return key


def _slots(fleet: Fleet, base: F64, reach: F64, t0: float, t1: float) -> tuple[npt.NDArray[np.int64], F64]:
    """Device index and slot number of every report whose nominal time lies in ``[t0, t1)``.

    ``reach`` is how far (s) each device's report may land before its nominal time.
    """
    interval = fleet.interval_s
    k_lo = np.maximum(np.ceil((t0 - base) / interval), 0.0)
    last = np.ceil((fleet.alive_end + reach - base) / interval)
    k_hi = np.minimum(np.ceil((t1 - base) / interval), last)
    counts = np.clip(k_hi - k_lo, 0, None).astype(np.int64)
    dev = np.repeat(np.arange(fleet.size), counts)
    first = np.repeat(np.cumsum(counts) - counts, counts)
    k = np.arange(dev.size) - first + np.repeat(k_lo, counts)
    return dev, k.astype(np.float64)


class _Context:
    """Per-fleet constants gathered once and reused by every window."""

    def __init__(self, fleet: Fleet, horizon_days: float) -> None:
        self.fleet = fleet
        self.horizon_h = horizon_days * 24.0
        self.base = fleet.obs_start + fleet.phase_s
        self.alive_end = fleet.alive_end
        #: ``[field, device type]``: 0 where the type reports the field, NaN where it does not.
        self.absent_by_type = np.where(field_matrix(fleet.device_type_names).T, 0.0, np.nan)
        kinds = [DEVICE_TYPES[d].value_kind for d in fleet.device_type_names]
        self.value_kind = np.array([_VALUE_KINDS.index(k) for k in kinds], dtype=np.int64)
        self.obs_day = fleet.obs_start / DAY_S
        self.obs_season_sin = season_sin(self.obs_day)
        # World variants: each step below that a knob changes runs only when some device needs it, so a
        # reference fleet is computed exactly as before variants existed.
        self.any_noise = bool(np.any(fleet.noise_scale != 1.0) or np.any(fleet.link_jitter != 1.0))
        self.any_spread = bool(np.any(fleet.spread != JITTER))
        self.any_burst = bool(np.any(fleet.burst > 0.0))
        self.any_delay = bool(np.any(fleet.ts_delay_s > 0.0))
        self.any_battery = bool(
            np.any(fleet.cliff_power != 1.0) or np.any(fleet.battery_step != 1.0) or np.any(fleet.voltage_only)
        )
        self.any_variant = self.any_noise or self.any_spread or self.any_burst or self.any_delay or self.any_battery
        #: How far (s) each device's report may land before its nominal time.
        self.reach = fleet.spread * fleet.interval_s if self.any_spread else JITTER * fleet.interval_s
        # A later window can produce events up to the largest reach before its start (delays only add).
        if self.any_spread:
            self.holdback = float(self.reach.max()) if fleet.size else 0.0
        else:
            self.holdback = JITTER * float(fleet.interval_s.max()) if fleet.size else 0.0


def window_events(
    ctx: _Context, t0: float, t1: float, rng: np.random.Generator, vrng: np.random.Generator | None = None
) -> EventBatch:
    """All events whose nominal time lies in ``[t0, t1)``, ordered by event time, as blocks of floats and codes.

    ``vrng`` draws what only world variants need (bursts, receipt delays); it is used only when the
    fleet has such devices, so a reference fleet's events come from ``rng`` alone.
    """
    f = ctx.fleet
    dev, k = _slots(f, ctx.base, ctx.reach, t0, t1)
    # Event times in whole milliseconds, the resolution real payloads carry.
    if ctx.any_spread:
        shift = 2.0 * f.spread[dev] * (rng.random(dev.size) - 0.5)
        t = np.round(ctx.base[dev] + (k + shift) * f.interval_s[dev], 3)
    else:
        t = np.round(ctx.base[dev] + (k + 2.0 * JITTER * (rng.random(dev.size) - 0.5)) * f.interval_s[dev], 3)
    ts = t
    if ctx.any_variant:
        dev, t, ts = _variant_times(ctx, dev, t, vrng if vrng is not None else rng)
    alive = np.flatnonzero((ts < ctx.alive_end[dev]) & (t >= f.obs_start[dev]))
    # Ties (two reports of one device in the same millisecond) are possible only with on-change cadences;
    # a stable sort keeps even those in a defined order.
    key = event_order_key(ts[alive], dev[alive])
    order = alive[np.argsort(key, kind="stable") if ctx.any_spread else np.argsort(key)]
    dev, t = dev[order], t[order]  # sorted here: every column below is in event-time order
    ts = ts[order] if ctx.any_delay else t  # the receipt time, where a payload carries no timestamp

    # Hidden state: how far the device's failure precursor and its transient dip have progressed.
    # Row ``m`` of ``severity`` is the severity of failure mode ``m``; the last row absorbs "no mode".
    n = dev.size
    events = np.arange(n)
    fail_t = f.fail_t[dev]
    precursor = f.precursor_s[dev]
    ramp = np.clip((t - (fail_t - precursor)) / precursor, 0.0, 1.0)
    rising = np.flatnonzero(ramp > 0.0)
    s_fail = np.zeros(n)
    d = dev[rising]
    terminal = np.clip((t[rising] - (fail_t[rising] - f.terminal_s[d])) / f.terminal_s[d], 0.0, 1.0)
    s_fail[rising] = f.strength[d] * (WEAR_SHARE * ramp[rising] + (1.0 - WEAR_SHARE) * terminal ** f.shape[d])
    dip = f.dip_strength[dev] * np.clip(1.0 - np.abs(2.0 * (t - f.dip_t[dev]) / f.dip_s[dev] - 1.0), 0.0, None)
    severity = np.zeros((len(FAILURE_MODES) + 1, n))
    severity[f.mode[dev], events] = s_fail
    severity[f.dip_mode[dev], events] += dip

    # Lost reports: a weak link, a dying battery, crashes and heat make reports go missing.
    weights = np.array([*(LOSS_PER_SEVERITY[m] for m in FAILURE_MODES), 0.0])
    p_drop = f.drop_base[dev] + weights @ severity
    kept = rng.random(n) >= p_drop
    dev, t, s_fail, fail_t = dev[kept], t[kept], s_fail[kept], fail_t[kept]
    ts = ts[kept] if ctx.any_delay else t
    sev = dict(zip(FAILURE_MODES, severity[:, kept], strict=False))
    n = dev.size
    # Fields no device reports together share a row of noise: battery and throughput, LQI and RSSI.
    noise = unit_noise(rng, (8, n))
    if ctx.any_noise:  # row 2 is the link's (LQI and RSSI): it takes the link jitter instead
        noise[_NOISE_ROWS] *= f.noise_scale[dev]
        noise[2] *= f.link_jitter[dev]
    uniform = rng.random((5, n))

    # Calendar: daily activity, weekends, seasons; ageing since the start of observation.
    day = t / DAY_S
    hour = (t % DAY_S) / HOUR_S
    weekend = ((np.floor(day) + 3) % 7) >= 5  # 1970-01-01 was a Thursday
    s_cos = season_cos(day)
    cold = 0.5 * (1.0 + s_cos)
    usage = np.clip(f.usage_base[dev] * daily_activity(hour, weekend), 0.0, 1.0)
    days_seen = (t - f.obs_start[dev]) / DAY_S
    age_years = (f.age0_days[dev] + days_seen) / YEAR_DAYS
    swing = f.climate_swing[dev]
    crowd = f.crowding[dev]
    room = f.setpoint[dev] + swing * (0.25 * (-11.0 * s_cos) + 0.9 * np.sin(_TWO_PI * (hour - 9.0) / 24.0))

    floats = np.empty((len(FLOAT_COLUMNS), n))
    metrics = floats[1 : 1 + len(METRIC_FIELDS)]
    cols = {name: metrics[i] for i, name in enumerate(METRIC_FIELDS)}
    # Battery: drains faster in the cold and with age; a depleting battery falls to its brown-out level.
    drained = f.battery_drain[dev] * cold_drain_integral(day, ctx.obs_day[dev], ctx.obs_season_sin[dev])
    healthy = f.battery_start[dev] - drained - f.discharge_by_use[dev] * usage
    cutoff = f.battery_cutoff[dev]
    s_batt = sev["battery_depletion"]
    level = np.clip(np.rint(healthy - (healthy - cutoff) * s_batt + 1.0 * noise[0]), 0.0, 100.0)
    cols["battery_level"][:] = level
    if ctx.any_battery:
        level = _battery_variant(f, dev, healthy - (healthy - cutoff) * s_batt, cutoff, noise[0], cols)
    np.rint(2100.0 + 9.0 * level - 120.0 * cold - 250.0 * s_batt + 20.0 * noise[1], out=cols["battery_voltage"])
    if ctx.any_battery:
        cols["battery_level"][f.voltage_only[dev]] = np.nan

    # Radio: links weaken with age, in crowded bands, when the link degrades and as a battery dies.
    s_link = sev["link_degradation"]
    lqi = f.lqi_base[dev] * (1.0 - 0.03 * age_years) * (1.0 - 0.85 * s_link) - 15.0 * s_batt
    np.clip(np.rint(lqi + (5.0 + 10.0 * crowd) * noise[2]), 0.0, 255.0, out=cols["linkquality"])
    rssi = f.rssi_base[dev] - 0.5 * age_years - 28.0 * s_link - 4.0 * s_batt + (2.0 + 4.0 * crowd) * noise[2]
    np.clip(np.rint(rssi), -100.0, -10.0, out=cols["signal_strength"])

    # Responsiveness and errors.
    s_err, s_lat, s_ovh = sev["error_burst"], sev["latency_creep"], sev["overheating"]
    slowdown = 1.0 + 6.0 * s_lat + 1.5 * s_link + 2.0 * s_ovh
    np.round(
        f.response_ms[dev] * np.exp((0.25 + 0.2 * crowd) * noise[3]) * slowdown * (1.0 + 0.05 * age_years),
        1,
        out=cols["response_time"],
    )
    burst = (uniform[0] < 0.35 + 0.55 * s_err) * (0.3 + 0.7 * uniform[1])
    error = f.error_base[dev] * np.exp(0.5 * noise[4]) + 0.45 * s_err * burst
    np.clip(np.round(error + 0.04 * s_lat + 0.08 * s_link + 0.1 * s_ovh, 4), 0.0, 1.0, out=cols["error_rate"])
    cols["connection_drops"][:] = rng.poisson(f.conn_drop_rate[dev] + 3.0 * s_link + 0.5 * s_err).astype(np.float64)
    restarts = rng.poisson(f.restart_rate[dev] + 1.2 * s_err + 1.0 * s_ovh).astype(np.float64)
    cols["restart_count"][:] = restarts
    uptime = ((t - f.reboot_phase_s[dev]) % f.reboot_period_s[dev]) / HOUR_S
    since_restart = uniform[2] * f.interval_s[dev] / HOUR_S
    np.round(np.where(restarts > 0, np.minimum(uptime, since_restart), uptime), 2, out=cols["uptime_hours"])

    # Climate and use.
    np.round(room + f.self_heating[dev] * usage + 32.0 * s_ovh + 0.3 * noise[5], 2, out=cols["temperature"])
    humidity = f.humidity_base[dev] - 8.0 * swing * s_cos + 3.0 * swing * np.sin(_TWO_PI * (hour - 6.0) / 24.0)
    np.clip(np.round(humidity + 1.5 * noise[6], 1), 5.0, 99.0, out=cols["humidity"])
    np.clip(np.round(usage + 0.03 * noise[7], 3), 0.0, 1.0, out=cols["usage_frequency"])
    np.round(
        f.throughput[dev] * (0.3 + usage) * np.exp(0.2 * noise[0]) * (1.0 - 0.5 * s_link),
        2,
        out=cols["data_transfer_rate"],
    )
    cols["value"][:] = _primary_value(ctx, dev, usage, room, sev["stuck_sensor"], uniform[3], uniform[4], noise[5])
    # A temperature sensor's reading is its value: when the sensor sticks, so does its temperature.
    ambient = ctx.value_kind[f.device_type[dev]] == _VALUE_KINDS.index("ambient")
    cols["temperature"][ambient] = cols["value"][ambient]

    _apply_mess(ctx, dev, metrics, rng)

    ttf_h = (fail_t - ts) / HOUR_S
    positive = ttf_h <= ctx.horizon_h
    floats[0] = ts
    floats[-2] = np.where(np.isfinite(ttf_h), ttf_h, np.nan)
    floats[-1] = np.round(s_fail, 4)
    codes = np.stack(
        [
            dev,
            f.home[dev],
            f.home_type[dev],
            f.device_type[dev],
            (~f.battery_powered[dev]).astype(np.int64),
            np.where(positive, f.mode[dev], _NONE_MODE),
            f.variant[dev],
        ]
    )
    return EventBatch(floats, codes, positive)


#: Noise rows scaled by a device's ``noise_scale`` (row 2, the link's, takes ``link_jitter``).
_NOISE_ROWS: Final = np.array([0, 1, 3, 4, 5, 6, 7])
#: Range of the lag of a burst's second report after the first, in seconds.
BURST_LAG_S: Final = (30.0, 600.0)


def _variant_times(
    ctx: _Context, dev: npt.NDArray[np.int64], t: F64, vrng: np.random.Generator
) -> tuple[npt.NDArray[np.int64], F64, F64]:
    """Bursts and receipt times: ``(device, send time, ts)`` of a window's reports, unsorted.

    An on-change device follows a share of its reports with a second one 30 s to 10 min later (a burst;
    it belongs to the same window). A device whose payloads carry no timestamp is stamped on receipt:
    ``ts`` is the send time plus a delay of up to its ``ts_delay_s``, rounded up to whole seconds (so
    ``ts`` is never before the send time, and the windows' holdback still covers it).
    """
    f = ctx.fleet
    if ctx.any_burst:
        second = np.flatnonzero(vrng.random(dev.size) < f.burst[dev])
        lag = vrng.uniform(*BURST_LAG_S, size=second.size)
        dev = np.concatenate([dev, dev[second]])
        t = np.concatenate([t, np.round(t[second] + lag, 3)])
    ts = t
    if ctx.any_delay:
        delay = f.ts_delay_s[dev]
        late = np.flatnonzero(delay > 0.0)
        ts = t.copy()
        ts[late] = np.ceil(t[late] + delay[late] * vrng.random(late.size))
    return dev, t, ts


def _battery_variant(
    f: Fleet, dev: npt.NDArray[np.int64], charge: F64, cutoff: F64, noise: F64, cols: dict[str, F64]
) -> F64:
    """How a variant battery reports its ``charge`` (%): flat then a cliff, in coarse steps.

    The reported charge is ``cutoff + (100 - cutoff) * (1 - (1 - z)^p)`` with ``z`` the charge's share
    of the way from the brown-out level to full: it stays near full for most of the battery's life and
    falls fast near its end (``p`` 1: linear, as the reference world has it). Returns the reported level
    before the steps (the voltage follows it); ``battery_level`` gets it in the device's steps.
    """
    rows = np.flatnonzero((f.cliff_power[dev] != 1.0) | (f.battery_step[dev] != 1.0))
    level: F64 = cols["battery_level"].copy()
    if rows.size == 0:
        return level
    d, c = dev[rows], cutoff[rows]
    z = np.clip((charge[rows] - c) / np.maximum(100.0 - c, 1.0), 0.0, 1.0)
    curve = c + (100.0 - c) * (1.0 - (1.0 - z) ** f.cliff_power[d])
    exact = np.clip(np.rint(curve + noise[rows]), 0.0, 100.0)
    level[rows] = exact
    step = f.battery_step[d]
    cols["battery_level"][rows] = np.clip(np.rint(exact / step) * step, 0.0, 100.0)
    return level


def _primary_value(
    ctx: _Context,
    dev: npt.NDArray[np.int64],
    usage: F64,
    room: F64,
    stuck: F64,
    u_on: F64,
    u_level_all: F64,
    noise: F64,
) -> F64:
    """The primary sensed value; a stuck sensor's value is pulled towards the value it froze at.

    Once the stuck severity reaches ``STUCK_AT`` the sensor repeats its frozen value exactly (as a
    precursor only grows, until the failure; during a transient dip, for a while). Below that, a
    continuous reading is blended towards the frozen value, so its variation starts to shrink.
    """
    kind = ctx.value_kind[ctx.fleet.device_type[dev]]
    value = np.full(dev.size, np.nan)
    for code, name in enumerate(_VALUE_KINDS):
        rows = np.flatnonzero(kind == code)
        if name == "none" or rows.size == 0:
            continue
        d, u_level, s = dev[rows], u_level_all[rows], stuck[rows]
        on = (u_on[rows] < usage[rows]).astype(np.float64)
        frozen = ctx.fleet.frozen_value[d]
        if name == "binary":
            value[rows] = np.where(s >= STUCK_AT, frozen, on)
            continue
        live: F64
        if name == "ambient":
            live = np.round(room[rows] + 0.15 * noise[rows], 2)
        elif name == "power":
            live = np.round(0.5 + ctx.fleet.power_w[d] * on * (0.8 + 0.4 * u_level), 1)
        elif name == "level":
            live = np.rint(254.0 * on * (0.3 + 0.7 * u_level)).astype(np.float64)
        else:  # trace
            live = np.round(np.abs(0.01 * noise[rows]), 3).astype(np.float64)
        blended = np.where(s > 0, np.round(live * (1.0 - s) + frozen * s, 2), live)
        value[rows] = np.where(s >= STUCK_AT, frozen, blended)
    return value


def _apply_mess(ctx: _Context, dev: npt.NDArray[np.int64], metrics: F64, rng: np.random.Generator) -> None:
    """Blank the fields a device does not report or lost in one report; inject rare out-of-range values.

    ``metrics`` is the ``[field, event]`` block, changed in place.
    """
    n = dev.size
    types = ctx.fleet.device_type[dev]
    for row, absent in zip(metrics, ctx.absent_by_type, strict=True):
        row += absent[types]  # NaN where the device type does not report the field (row by row: 7x faster)
    flat = metrics.reshape(-1)
    lost = rng.integers(0, flat.size, size=rng.binomial(flat.size, P_MISSING)) if flat.size else np.empty(0, int)
    flat[lost] = np.nan
    glitch = np.flatnonzero(rng.random(n) < P_OUT_OF_RANGE)
    picks = rng.random((glitch.size, 2))
    for row, (u_field, u_value) in zip(glitch.tolist(), picks.tolist(), strict=True):
        candidates = np.flatnonzero(~np.isnan(metrics[:, row]))
        if candidates.size:
            field = int(candidates[int(u_field * candidates.size)])
            junk = OUT_OF_RANGE[METRIC_FIELDS[field]]
            metrics[field, row] = junk[int(u_value * len(junk))]


@dataclass(frozen=True, slots=True)
class EventBatch:
    """Events as three parallel blocks, one column per event.

    ``floats`` holds :data:`FLOAT_COLUMNS` (rows) and ``codes`` the integer codes of
    :data:`CODE_COLUMNS` (indices into the fleet's names); ``positive`` is ``fails_within_horizon``.
    """

    floats: F64
    codes: npt.NDArray[np.int64]
    positive: npt.NDArray[np.bool_]

    @property
    def size(self) -> int:
        """Number of events."""
        return int(self.positive.size)

    @property
    def ts(self) -> F64:
        """Event times."""
        ts: F64 = self.floats[0]
        return ts

    def take(self, index: npt.NDArray[np.intp] | slice) -> EventBatch:
        """The events at ``index`` (an index array or a slice)."""
        return EventBatch(self.floats[:, index], self.codes[:, index], self.positive[index])

    @staticmethod
    def concat(parts: list[EventBatch]) -> EventBatch:
        """All events of ``parts``, in order."""
        return EventBatch(
            np.concatenate([p.floats for p in parts], axis=1),
            np.concatenate([p.codes for p in parts], axis=1),
            np.concatenate([p.positive for p in parts]),
        )


def _release(carry: EventBatch | None, fresh: EventBatch, before: float) -> tuple[list[EventBatch], EventBatch]:
    """Split held-back and fresh events (each time-sorted) into the parts that can be emitted now, in
    order, and the new held-back batch (everything at or after ``before``).

    Only the start of ``fresh`` can interleave with ``carry``: that small head is merged; the rest of
    ``fresh`` follows it unchanged (slices, no copies).
    """
    if carry is None or carry.size == 0:
        head, rest = fresh.take(slice(0, 0)), fresh
    else:
        overlap = int(np.searchsorted(fresh.ts, carry.ts[-1], side="right"))
        head = EventBatch.concat([carry, fresh.take(slice(0, overlap))])
        head = head.take(np.argsort(event_order_key(head.ts, head.codes[0]), kind="stable"))
        rest = fresh.take(slice(overlap, None))
    head_cut = int(np.searchsorted(head.ts, before, side="left"))
    if head_cut < head.size:  # every event of `rest` comes after every event of `head`
        return [head.take(slice(0, head_cut))], EventBatch.concat([head.take(slice(head_cut, None)), rest])
    rest_cut = int(np.searchsorted(rest.ts, before, side="left"))
    return [head, rest.take(slice(0, rest_cut))], rest.take(slice(rest_cut, None))


def iter_event_batches(fleet: Fleet, *, seed: int, samples: int, horizon_days: float) -> Iterator[EventBatch]:
    """Event-time-ordered batches, about one window (two days) of events each plus a small merged part at
    each window's start, ``samples`` events in all (fewer only when the fleet runs out of events)."""
    ctx = _Context(fleet, horizon_days)
    n_windows = int(np.ceil((fleet.end - fleet.start) / WINDOW_S))
    carry: EventBatch | None = None
    emitted = 0
    for w in range(n_windows + 1):
        if w == n_windows:
            parts = [carry] if carry is not None else []
        else:
            t0 = fleet.start + w * WINDOW_S
            t1 = min(t0 + WINDOW_S, fleet.end)
            vrng = np.random.default_rng([seed, 4, w]) if ctx.any_variant else None
            fresh = window_events(ctx, t0, t1, np.random.default_rng([seed, 2, w]), vrng)
            # Later windows can still produce events up to `holdback` before t1: keep those back.
            parts, carry = _release(carry, fresh, t1 - ctx.holdback)
        for batch in parts:
            if batch.size == 0:
                continue
            take = min(batch.size, samples - emitted)
            if take < batch.size:
                batch = batch.take(slice(0, take))
            emitted += take
            yield batch
            if emitted >= samples:
                return
