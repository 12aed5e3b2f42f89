"""The fleet: which homes and devices a synthetic dataset observes, and each device's hidden story.

A fleet is drawn once per dataset, before any event exists. Each device gets its own parameters
(report interval, radio link, battery, climate of its home, how it is used) and its story: whether and
when it fails, in which mode, how long and how strongly the failure announces itself, whether a
harmless transient dip happens first, and whether a replacement (a new device id) appears afterwards.
The stream (:mod:`devintel.generators.stream`) then only evaluates these stories at event times.

Homes are drawn one after another along a low-discrepancy (Weyl) sequence over the home-type shares,
so that any prefix of the home list mixes home types in proportion. Each home has its own random
generator made from ``(seed, home index)``, so a larger dataset starts with the same homes as a smaller
one with the same seed. Homes are added until the expected number of events reaches the requested
number of samples; the last home may be observed with only part of its devices.

Why one module of over 400 lines: the order of the draws from each home's generator fixes the bytes (same seed,
same fleet); kept in one module, that order reads top to bottom.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt

from devintel.generators.templates import (
    DEVICE_TYPES,
    FAILURE_MODES,
    HOME_TYPES,
    METRIC_FIELDS,
    DeviceTemplate,
    HomeTemplate,
)
from devintel.generators.variants import VARIANT_FAMILIES, VariantFamily

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]

DAY_S: Final = 86_400.0
HOUR_S: Final = 3_600.0
YEAR_DAYS: Final = 365.2425

#: Share of failures that come with no precursor at all (sudden death): the honest recall ceiling.
SUDDEN_SHARE: Final = 0.03
#: Share of announced failures whose precursor is short (2 hours to 3 days) rather than one to six weeks.
SHORT_PRECURSOR_SHARE: Final = 0.02
#: Median length of a (not short) precursor per failure mode, in days: log-normal, sigma 0.35, at least
#: ``MIN_LONG_PRECURSOR_DAYS``.
PRECURSOR_MEDIAN_DAYS: Final[dict[str, float]] = {
    "battery_depletion": 16.0,
    "link_degradation": 12.0,
    "error_burst": 10.0,
    "latency_creep": 14.0,
    "stuck_sensor": 12.0,
    "overheating": 10.0,
}
MIN_LONG_PRECURSOR_DAYS: Final = 7.0
#: Length of the terminal phase that ends a long precursor, in days: after weeks of slow wear, the last
#: days before a failure degrade fast (a battery's knee, a link that gives way, latency that runs away).
#: It starts at or just before the default 7-day horizon (see docs/synthetic-data.md, calibration).
TERMINAL_DAYS: Final = (7.0, 9.0)
#: Share of a long precursor's severity reached by slow wear before the terminal phase starts.
WEAR_SHARE: Final = 0.2
#: Share of devices that have one harmless transient dip (a false-alarm look-alike) in the span.
DIP_SHARE: Final = 0.20
#: Probability that a failed device is replaced by a new one (a new device id) within 1-14 days.
REPLACEMENT_SHARE: Final = 0.6
#: Failure probability of a replacement device (infant mortality), relative to ``failure_rate``.
REPLACEMENT_FAILURE_FACTOR: Final = 0.2
#: Base probability that a report is lost (before home crowding and precursors add to it).
BASE_DROP: Final = 0.02
#: Largest jitter of a report around its nominal time, as a share of the device's interval.
JITTER: Final = 0.3


def size_margin(samples: int, days: float) -> float:
    """Factor on ``samples`` that the fleet's expected event count must reach, so the stream gets there:
    1 %, plus three standard deviations of the count's randomness, plus a little for the edges of
    short spans (a first report comes up to an interval after the start)."""
    return 1.01 + 3.0 / float(np.sqrt(samples)) + 0.05 / days


#: Typical throughput of devices that stream, in KB/s (others: small control traffic).
_THROUGHPUT_KBPS: Final = {"camera": 400.0, "media_player": 900.0, "hub": 6.0}
_MODE_CODE: Final = {m: i for i, m in enumerate(FAILURE_MODES)}


@dataclass(frozen=True, slots=True)
class Fleet:
    """Per-device parameters as parallel arrays (one entry per device, replacements included)."""

    start: float
    end: float
    device_ids: list[str]
    home_ids: list[str]
    home_type_names: list[str]
    device_type_names: list[str]
    variant_names: list[str]
    home: I64
    home_type: I64
    device_type: I64
    battery_powered: npt.NDArray[np.bool_]
    obs_start: F64
    interval_s: F64
    phase_s: F64
    age0_days: F64
    fail_t: F64
    mode: I64
    precursor_s: F64
    terminal_s: F64
    strength: F64
    shape: F64
    dip_t: F64
    dip_s: F64
    dip_mode: I64
    dip_strength: F64
    battery_start: F64
    battery_drain: F64
    battery_cutoff: F64
    discharge_by_use: F64
    lqi_base: F64
    rssi_base: F64
    response_ms: F64
    error_base: F64
    drop_base: F64
    conn_drop_rate: F64
    restart_rate: F64
    self_heating: F64
    crowding: F64
    climate_swing: F64
    setpoint: F64
    humidity_base: F64
    usage_base: F64
    power_w: F64
    throughput: F64
    reboot_period_s: F64
    reboot_phase_s: F64
    frozen_value: F64
    # World-variant knobs (see :mod:`devintel.generators.variants`); the identity for ``reference`` homes.
    variant: I64
    noise_scale: F64
    link_jitter: F64
    spread: F64
    burst: F64
    cliff_power: F64
    battery_step: F64
    voltage_only: npt.NDArray[np.bool_]
    ts_delay_s: F64

    @property
    def size(self) -> int:
        """Number of devices."""
        return len(self.device_ids)

    @property
    def alive_end(self) -> F64:
        """Time each device stops reporting: its failure, or the end of the span."""
        return np.minimum(self.fail_t, self.end)


def field_matrix(device_type_names: list[str]) -> npt.NDArray[np.bool_]:
    """Boolean matrix ``[device type, metric field]``: which fields each device type reports."""
    return np.array([[f in DEVICE_TYPES[d].fields for f in METRIC_FIELDS] for d in device_type_names], dtype=bool)


class HomeTypeSequence:
    """The home type of each successive home: every type early, then each in proportion to its share.

    The first homes are one of each requested type, in an order drawn from the seed, so that every type
    is present from ``len(names)`` homes on. After that, each new home takes the type furthest below its
    share of the homes so far (ties to the more common type), so any prefix of the sequence mixes the
    types in proportion, off by at most about one home per type.
    """

    def __init__(self, names: list[str], rng: np.random.Generator) -> None:
        self.names = names
        shares = np.array([HOME_TYPES[n].share for n in names])
        self.shares = shares / shares.sum()
        self.first = [names[int(i)] for i in rng.permutation(len(names))]
        self.counts = dict.fromkeys(names, 0)

    def next(self) -> str:
        """The type of the next home."""
        placed = sum(self.counts.values())
        if placed < len(self.first):
            name = self.first[placed]
        else:
            deficits = [share * (placed + 1) - self.counts[n] for n, share in zip(self.names, self.shares, strict=True)]
            name = self.names[int(np.argmax(deficits))]
        self.counts[name] += 1
        return name


def _device_id(draw: _Draws, protocol: str, device_type: str) -> str:
    """A realistic id: a Zigbee IEEE address, or a Wi-Fi/Z-Wave style node name (made unique by the fleet)."""
    bits = int(draw.uniform() * 2**40)
    if protocol == "zigbee":
        return f"0x00124b{bits:010x}"
    return f"{device_type.replace('_', '-')}-{bits:010x}"


@dataclass(frozen=True, slots=True)
class _Home:
    index: int
    name: str
    home_type: str
    template: HomeTemplate
    floors: int
    area_m2: float
    crowding: float
    climate_swing: float
    setpoint: float


class _Draws:
    """A device's random numbers, drawn in one call and handed out in order (scalar draws from a numpy
    generator cost about a microsecond each; a fleet needs tens of thousands of them)."""

    def __init__(self, rng: np.random.Generator, uniforms: int = 48, normals: int = 8) -> None:
        self._u: list[float] = rng.random(uniforms).tolist()
        self._z: list[float] = rng.standard_normal(normals).tolist()

    def uniform(self, lo: float = 0.0, hi: float = 1.0) -> float:
        """A uniform number in ``[lo, hi)``."""
        return lo + (hi - lo) * self._u.pop()

    def normal(self, sigma: float = 1.0) -> float:
        """A normal number with mean 0."""
        return sigma * self._z.pop()

    def chance(self, p: float) -> bool:
        """True with probability ``p``."""
        return self._u.pop() < p

    def integer(self, lo: int, hi: int) -> int:
        """A uniform integer in ``[lo, hi]``."""
        return min(lo + int(self._u.pop() * (hi - lo + 1)), hi)

    def pick(self, weights: list[float]) -> int:
        """An index drawn with probability proportional to ``weights``."""
        target = self._u.pop() * sum(weights)
        for i, w in enumerate(weights):
            target -= w
            if target < 0:
                return i
        return len(weights) - 1


class _FleetBuilder:
    """Accumulates devices (as lists of per-device rows) and turns them into a :class:`Fleet`."""

    def __init__(self, start: float, end: float, failure_rate: float, device_types: list[str]) -> None:
        self.start = start
        self.end = end
        self.failure_rate = failure_rate
        self.device_types = device_types
        self.home_names: list[str] = []
        self.home_type_names = list(HOME_TYPES)
        self.rows: list[dict[str, float | int | str]] = []

    def add_home(
        self, home: _Home, rng: np.random.Generator, budget: float, variant: _VariantDraws | None = None
    ) -> float:
        """Add the devices of one home until ``budget`` expected events are used; return what was used.

        ``variant`` draws the home's world-variant knobs (None: the reference world's identity knobs).
        """
        self.home_names.append(home.name)
        weights = np.array(
            [DEVICE_TYPES[d].weight * DEVICE_TYPES[d].mix_by_home.get(home.home_type, 1.0) for d in self.device_types]
        )
        n_devices = int(rng.integers(home.template.devices[0], home.template.devices[1] + 1))
        kinds = rng.choice(len(self.device_types), size=n_devices, p=weights / weights.sum())
        used = 0.0
        for kind in kinds:
            if used >= budget:
                break
            name = self.device_types[int(kind)]
            rows = self._device_story(home, name, rng, self.start, age0_days=None)
            for row in rows:
                row |= _REFERENCE_KNOBS if variant is None else variant.device(row)
                self.rows.append(row)
                used += _expected(row, self.end)
        return used

    def _device_story(
        self, home: _Home, name: str, rng: np.random.Generator, obs_start: float, age0_days: float | None
    ) -> list[dict[str, float | int | str]]:
        """One device's parameters and story, plus its replacement's when it fails and is replaced.

        ``age0_days`` is the device's age when observation starts (None: an installed device of 0-5 years).
        """
        draw = _Draws(rng)
        tpl = DEVICE_TYPES[name]
        span_s = self.end - obs_start
        replacement = age0_days is not None
        age = draw.uniform(0.0, 5 * YEAR_DAYS) if age0_days is None else age0_days
        row = _draw_device(home, name, tpl, draw, obs_start, age, span_s)
        # Failure: older devices fail more often; the mean probability over the fleet is failure_rate.
        age_weight = 0.5 + min(age / YEAR_DAYS, 4.0) / 4.0
        p_fail = self.failure_rate * (REPLACEMENT_FAILURE_FACTOR if replacement else age_weight)
        fails = draw.chance(p_fail)
        modes = list(tpl.mode_weights)
        mode = modes[draw.pick([tpl.mode_weights[m] for m in modes])]
        sudden = draw.chance(SUDDEN_SHARE)
        terminal_s = draw.uniform(*TERMINAL_DAYS) * DAY_S
        if draw.chance(SHORT_PRECURSOR_SHARE):
            precursor_s = terminal_s = draw.uniform(2 * HOUR_S, 3 * DAY_S)
        else:
            days = PRECURSOR_MEDIAN_DAYS[mode] * float(np.exp(draw.normal(0.35)))
            precursor_s = max(days * DAY_S, MIN_LONG_PRECURSOR_DAYS * DAY_S, terminal_s)
        fail_t = obs_start + draw.uniform(0.02, 1.0) * span_s
        strength = draw.uniform(0.5, 1.0)
        row |= {
            "fail_t": fail_t if fails else np.inf,
            "mode": _MODE_CODE[mode] if fails else -1,
            "precursor_s": precursor_s,
            "terminal_s": terminal_s,
            "strength": strength if fails and not sudden else 0.0,
            "shape": draw.uniform(0.5, 1.2),
        }
        # A harmless transient dip in one of the device's own modes: hours to three days, then recovery.
        dip_mode = modes[draw.integer(0, len(modes) - 1)]
        has_dip = draw.chance(DIP_SHARE)
        dip_s = draw.uniform(3 * HOUR_S, 3 * DAY_S)
        dip_t = obs_start + draw.uniform() * max(span_s - dip_s, 0.0)
        dip_strength = draw.uniform(0.25, 0.7)
        if fails and dip_t + dip_s > fail_t - precursor_s:
            has_dip = False  # a dip inside the precursor would be indistinguishable from it
        row |= {
            "dip_t": dip_t,
            "dip_s": dip_s,
            "dip_mode": _MODE_CODE[dip_mode] if has_dip else -1,
            "dip_strength": dip_strength if has_dip else 0.0,
        }
        rows = [row]
        replaced = draw.chance(REPLACEMENT_SHARE)
        new_start = fail_t + draw.uniform(1.0, 14.0) * DAY_S
        if fails and replaced and not replacement and new_start < self.end - DAY_S:
            rows += self._device_story(home, name, rng, new_start, age0_days=0.0)
        return rows

    def build(self) -> Fleet:
        """Freeze the accumulated devices into parallel arrays."""
        rows = self.rows
        arrays: dict[str, object] = {}
        for key in Fleet.__dataclass_fields__:
            if key in _NOT_ARRAYS:
                continue
            values = [r[key] for r in rows]
            dtype = np.int64 if key in _INT_ARRAYS else np.float64
            if key in _BOOL_ARRAYS:
                arrays[key] = np.array(values, dtype=bool)
            else:
                arrays[key] = np.array(values, dtype=dtype)
        return Fleet(
            start=self.start,
            end=self.end,
            device_ids=_unique([str(r["device_id"]) for r in rows]),
            home_ids=self.home_names,
            home_type_names=self.home_type_names,
            device_type_names=list(DEVICE_TYPES),
            variant_names=list(VARIANT_FAMILIES),
            **arrays,  # type: ignore[arg-type]
        )


_NOT_ARRAYS: Final = frozenset(
    {"start", "end", "device_ids", "home_ids", "home_type_names", "device_type_names", "variant_names"}
)
_INT_ARRAYS: Final = frozenset({"home", "home_type", "device_type", "mode", "dip_mode", "variant"})
_BOOL_ARRAYS: Final = frozenset({"battery_powered", "voltage_only"})


def _unique(ids: list[str]) -> list[str]:
    """``ids`` with a suffix on any repeat (40 random bits collide about once in a million devices)."""
    seen: set[str] = set()
    out = []
    for device_id in ids:
        unique, n = device_id, 1
        while unique in seen:
            unique, n = f"{device_id}-{n}", n + 1
        seen.add(unique)
        out.append(unique)
    return out


#: Extra share of reports lost per unit of severity, by failure mode (``stream`` uses the same weights).
LOSS_PER_SEVERITY: Final[dict[str, float]] = {
    "battery_depletion": 0.15,
    "link_degradation": 0.35,
    "error_burst": 0.10,
    "latency_creep": 0.0,
    "stuck_sensor": 0.0,
    "overheating": 0.10,
}


def _expected(row: dict[str, float | int | str], end: float) -> float:
    """Expected number of events of one device: its report slots, less base and precursor losses."""
    interval = float(row["interval_s"])
    start = float(row["obs_start"])
    stop = min(float(row["fail_t"]), end)
    slots = max((stop - start - float(row["phase_s"])) / interval + 0.5, 0.0) * (1.0 + float(row["burst"]))
    lost = slots * float(row["drop_base"])
    mode = int(row["mode"])
    if mode >= 0:  # mean severity over a precursor is strength / (shape + 1)
        loss = LOSS_PER_SEVERITY[FAILURE_MODES[mode]] * float(row["strength"])
        wear = min(float(row["precursor_s"]), stop - start) / interval * WEAR_SHARE / 2.0
        terminal = min(float(row["terminal_s"]), stop - start) / interval * (1 - WEAR_SHARE) / (float(row["shape"]) + 1)
        lost += loss * (wear + terminal)
    dip = int(row["dip_mode"])
    if dip >= 0:
        lost += float(row["dip_s"]) / interval * LOSS_PER_SEVERITY[FAILURE_MODES[dip]] * float(row["dip_strength"]) / 2
    return max(slots - lost, 0.0)


def _draw_device(
    home: _Home,
    name: str,
    tpl: DeviceTemplate,
    draw: _Draws,
    obs_start: float,
    age0_days: float,
    span_s: float,
) -> dict[str, float | int | str]:
    """The healthy behaviour of one device: what it would report if nothing went wrong."""
    interval_s = tpl.interval_h * HOUR_S * draw.uniform(0.8, 1.25)
    # Radio: distance from the nearest router grows with floor area; each floor in between costs more.
    distance = draw.uniform(0.1, 1.0) * home.area_m2**0.5
    floors_between = draw.integer(0, home.floors - 1)
    lqi = 250.0 - 4.0 * distance - 30.0 * floors_between - 25.0 * home.crowding + draw.normal(12.0)
    rssi = -38.0 - 1.0 * distance - 7.0 * floors_between - 6.0 * home.crowding + draw.normal(4.0)
    battery_start = 100.0 if age0_days == 0.0 else draw.uniform(35.0, 100.0)
    cutoff = draw.uniform(0.0, 25.0)
    # Healthy batteries must outlast the span: they drain at most to 8 % above the brown-out level.
    max_drain = (battery_start - cutoff - 8.0) / (span_s / DAY_S * 1.35)
    drain = min(draw.uniform(0.05, 0.3) * (1.0 + age0_days / YEAR_DAYS / 4.0), max(max_drain, 0.0))
    rechargeable = name == "vacuum"
    lo_heat, hi_heat = tpl.self_heating_c
    return {
        "device_id": _device_id(draw, tpl.protocol, name),
        "home": home.index,
        "home_type": list(HOME_TYPES).index(home.home_type),
        "device_type": list(DEVICE_TYPES).index(name),
        "battery_powered": tpl.power_source == "battery",
        "obs_start": obs_start,
        "interval_s": interval_s,
        "phase_s": draw.uniform(JITTER, 1.0 + JITTER) * interval_s,
        "age0_days": age0_days,
        "battery_start": 100.0 if rechargeable else battery_start,
        "battery_drain": 0.0 if rechargeable else drain,
        "battery_cutoff": cutoff,
        "discharge_by_use": 60.0 if rechargeable else 0.0,
        "lqi_base": min(max(lqi, 60.0), 255.0),
        "rssi_base": min(max(rssi, -85.0), -30.0),
        "response_ms": draw.uniform(*tpl.response_ms),
        "error_base": draw.uniform(0.001, 0.015) * (1.0 + 2.0 * home.crowding),
        "drop_base": BASE_DROP + 0.05 * home.crowding + 0.01 * floors_between,
        "conn_drop_rate": 0.03 + 0.25 * home.crowding,
        "restart_rate": draw.uniform(0.002, 0.02),
        "self_heating": draw.uniform(lo_heat, hi_heat),
        "crowding": home.crowding,
        "climate_swing": home.climate_swing,
        "setpoint": home.setpoint + draw.normal(0.8),
        "humidity_base": draw.uniform(38.0, 55.0),
        "usage_base": tpl.usage_base * draw.uniform(0.6, 1.4),
        "power_w": draw.uniform(5.0, 1500.0) if tpl.value_kind == "power" else 0.0,
        "throughput": _THROUGHPUT_KBPS.get(name, 50.0) * draw.uniform(0.5, 1.5),
        "reboot_period_s": draw.uniform(5.0, 60.0) * DAY_S,
        "reboot_phase_s": draw.uniform(0.0, 60.0) * DAY_S,
        "frozen_value": float(draw.integer(0, 1)) if tpl.value_kind == "binary" else home.setpoint,
    }


def build_fleet(
    *,
    samples: int,
    start: float,
    days: float,
    seed: int,
    home_types: list[str],
    device_types: list[str],
    failure_rate: float,
    variants: tuple[str, ...] = ("reference",),
) -> Fleet:
    """Draw homes and devices until their expected events reach ``samples`` (with a small margin).

    Home ``i`` belongs to the world-variant family ``variants[i % len(variants)]`` and draws its knobs
    from its own generator ``(seed, 3, i)``: the homes' devices and stories do not depend on ``variants``.
    """
    end = start + days * DAY_S
    builder = _FleetBuilder(start, end, failure_rate, device_types)
    sequence = HomeTypeSequence(home_types, np.random.default_rng([seed, 0]))
    budget = samples * size_margin(samples, days)
    index = 0
    while budget > 0:
        home_type = sequence.next()
        rng = np.random.default_rng([seed, 1, index])
        tpl = HOME_TYPES[home_type]
        home = _Home(
            index=index,
            name=f"home-{index:04d}",
            home_type=home_type,
            template=tpl,
            floors=int(rng.integers(tpl.floors[0], tpl.floors[1] + 1)),
            area_m2=float(rng.uniform(*tpl.area_m2)),
            crowding=float(np.clip(tpl.crowding + rng.normal(0.0, 0.05), 0.0, 1.0)),
            climate_swing=tpl.climate_swing * float(rng.uniform(0.85, 1.15)),
            setpoint=float(rng.uniform(19.0, 23.0)),
        )
        family = VARIANT_FAMILIES[variants[index % len(variants)]]
        draws = None if family.is_identity else _VariantDraws(family, np.random.default_rng([seed, 3, index]))
        budget -= builder.add_home(home, rng, budget, draws)
        index += 1
        if index > 1_000_000 or len(builder.rows) >= 2_000_000:
            raise ValueError("the requested sizes need more than 2,000,000 devices; generate in parts")
    return builder.build()


#: The knobs of a device observed as the reference world observes it (the identity).
_REFERENCE_KNOBS: Final[dict[str, float | int | str]] = {
    "variant": 0,
    "noise_scale": 1.0,
    "link_jitter": 1.0,
    "spread": JITTER,
    "burst": 0.0,
    "cliff_power": 1.0,
    "battery_step": 1.0,
    "voltage_only": False,
    "ts_delay_s": 0.0,
}


class _VariantDraws:
    """A home's world-variant knobs: its shares, drawn once, then each device's knobs, in device order.

    Every device takes the same number of draws whatever its type, so a device's knobs depend only on
    the home and the device's position in it.
    """

    def __init__(self, family: VariantFamily, rng: np.random.Generator) -> None:
        self.family = family
        self.code = list(VARIANT_FAMILIES).index(family.name)
        self.rng = rng
        home = _Draws(rng, uniforms=3, normals=0)
        self.on_change_share = home.uniform(*family.on_change_share)
        self.voltage_only_share = home.uniform(*family.voltage_only_share)
        self.ts_delay_share = home.uniform(*family.ts_delay_share)

    def device(self, row: dict[str, float | int | str]) -> dict[str, float | int | str]:
        """The knobs of the device ``row`` describes, and the parameters they change in it."""
        fam = self.family
        draw = _Draws(self.rng, uniforms=14, normals=0)
        tpl = DEVICE_TYPES[list(DEVICE_TYPES)[int(row["device_type"])]]
        battery = tpl.power_source == "battery"
        interval_factor = draw.uniform(*(fam.interval_battery if battery else fam.interval_mains))
        on_change = draw.chance(self.on_change_share)
        spread = draw.uniform(*fam.on_change_spread)
        silence = draw.uniform(*fam.on_change_silence)
        burst = draw.uniform(*fam.on_change_burst)
        extra_drop = draw.uniform(*fam.extra_drop)
        rechargeable = float(row["discharge_by_use"]) > 0.0
        cliff_power = draw.uniform(*fam.battery_cliff_power)
        step_pick = draw.uniform()
        voltage_only = draw.chance(self.voltage_only_share) and "battery_voltage" in tpl.fields
        load_heat = draw.uniform(*fam.load_heat_c)
        delayed = draw.chance(self.ts_delay_share)
        max_delay = draw.uniform(*fam.ts_delay_s)
        knobs: dict[str, float | int | str] = {
            "variant": self.code,
            "noise_scale": draw.uniform(*fam.noise_scale),
            "link_jitter": draw.uniform(*fam.link_jitter),
            "interval_s": float(row["interval_s"]) * interval_factor,
            "phase_s": float(row["phase_s"]) * interval_factor,
            "drop_base": float(row["drop_base"]) + extra_drop + (silence if on_change else 0.0),
            "spread": spread if on_change else JITTER,
            "burst": burst if on_change else 0.0,
            "cliff_power": cliff_power if battery and not rechargeable else 1.0,
            "battery_step": fam.battery_steps[int(step_pick * len(fam.battery_steps))] if fam.battery_steps else 1.0,
            "voltage_only": battery and voltage_only,
            "ts_delay_s": max_delay if delayed else 0.0,
        }
        if not battery and "temperature" in tpl.fields and tpl.value_kind != "ambient" and load_heat > 0.0:
            # Warms by about ``load_heat`` °C at its daily peak of use: usage peaks near ``usage_base``.
            knobs["self_heating"] = float(row["self_heating"]) + load_heat / float(row["usage_base"])
        return knobs
