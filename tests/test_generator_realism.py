"""Realism of the synthetic stream: value ranges, missing fields, coverage of every template, the way home
types and the calendar shape the data, transient dips that recover, and replaced devices."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import numpy.typing as npt
import pandas as pd
import pytest

from devintel.generators import DEVICE_TYPES, FAILURE_MODES, HOME_TYPES, METRIC_FIELDS, DatasetStats
from devintel.generators.api import GeneratorConfig
from devintel.generators.fleet import Fleet
from devintel.generators.stream import OUT_OF_RANGE
from devintel.generators.templates import MODE_SIGNATURE_FIELDS, VALID_RANGES

DAY_S = 86_400.0
F64 = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]


def _outside_valid_range(frame: pd.DataFrame) -> BoolArray:
    """``[row, metric field]``: the value is present and outside :data:`VALID_RANGES` (a glitch)."""
    metrics = frame[list(METRIC_FIELDS)].to_numpy(dtype=np.float64)
    lo = np.array([VALID_RANGES[f][0] for f in METRIC_FIELDS])
    hi = np.array([VALID_RANGES[f][1] for f in METRIC_FIELDS])
    with np.errstate(invalid="ignore"):
        outside: BoolArray = (metrics < lo) | (metrics > hi)
    return outside


def _valid(frame: pd.DataFrame, column: str) -> F64:
    """A metric column with glitches (values outside the valid range) replaced by NaN."""
    values = frame[column].to_numpy(dtype=np.float64).copy()
    lo, hi = VALID_RANGES[column]
    with np.errstate(invalid="ignore"):
        values[(values < lo) | (values > hi)] = np.nan
    return values


def _utc(frame: pd.DataFrame) -> pd.DatetimeIndex:
    return pd.DatetimeIndex(pd.to_datetime(frame["ts"].to_numpy(), unit="s", utc=True))


# --- Value ranges and glitches ------------------------------------------------------------------------


def test_values_lie_in_their_valid_range_apart_from_injected_glitches(default_frame: pd.DataFrame) -> None:
    outside = _outside_valid_range(default_frame)
    metrics = default_frame[list(METRIC_FIELDS)].to_numpy(dtype=np.float64)
    for j, field in enumerate(METRIC_FIELDS):
        junk = set(np.unique(metrics[outside[:, j], j]).tolist())
        unexpected = junk - set(OUT_OF_RANGE[field])
        assert not unexpected, f"{field}: out-of-range values {unexpected}"
        # Every documented glitch value really is outside the valid range (else it would hide in the data).
        lo, hi = VALID_RANGES[field]
        assert all(not lo <= v <= hi for v in OUT_OF_RANGE[field]), field
    # A glitching report carries a single out-of-range value.
    assert outside.sum(axis=1).max() == 1


def test_glitches_are_rare_but_present_at_default_size(
    default_frame: pd.DataFrame, default_stats: DatasetStats
) -> None:
    outside = _outside_valid_range(default_frame)
    glitch_rows = int(outside.any(axis=1).sum())
    assert 0 < glitch_rows < 0.001 * len(default_frame)
    assert default_stats.out_of_range == int(outside.sum())
    # Glitches hit many fields, not one.
    assert int((outside.sum(axis=0) > 0).sum()) >= 10


def test_unreported_fields_are_always_missing(default_frame: pd.DataFrame) -> None:
    present = default_frame[list(METRIC_FIELDS)].notna()
    seen = present.groupby(default_frame["device_type"], observed=True).any()
    for device_type, row in seen.iterrows():
        reported = {f for f in METRIC_FIELDS if row[f]}
        assert reported == set(DEVICE_TYPES[str(device_type)].fields), device_type


def test_reported_fields_are_missing_about_two_percent_of_the_time(
    default_frame: pd.DataFrame, default_stats: DatasetStats
) -> None:
    assert 0.01 < default_stats.missing_share < 0.04
    absent = default_frame[list(METRIC_FIELDS)].isna()
    missing = absent.groupby(default_frame["device_type"], observed=True).mean()
    for device_type, row in missing.iterrows():
        for field in DEVICE_TYPES[str(device_type)].fields:
            assert 0.01 < row[field] < 0.04, f"{device_type}.{field} is missing {row[field]:.2%} of the time"


def test_battery_fields_are_whole_numbers(default_frame: pd.DataFrame) -> None:
    for column in ("battery_level", "battery_voltage"):
        values = default_frame[column].dropna().to_numpy()
        assert values.size > 0
        np.testing.assert_array_equal(values, np.round(values), err_msg=column)


def test_mains_devices_report_no_battery(default_frame: pd.DataFrame) -> None:
    lights = default_frame[default_frame["device_type"] == "light"]
    assert len(lights) > 0
    assert (lights["power_source"] == "mains").all()
    assert lights["battery_level"].isna().all()
    assert lights["battery_voltage"].isna().all()
    mains = default_frame[default_frame["power_source"] == "mains"]
    assert mains["battery_level"].isna().all()
    battery = default_frame[default_frame["power_source"] == "battery"]
    assert battery["battery_level"].notna().mean() > 0.9


def test_protocol_decides_the_radio_field(default_frame: pd.DataFrame) -> None:
    """Zigbee devices report link quality (LQI), Wi-Fi and Z-Wave devices signal strength in dBm."""
    for device_type, template in DEVICE_TYPES.items():
        rows = default_frame[default_frame["device_type"] == device_type]
        lqi, rssi = bool(rows["linkquality"].notna().any()), bool(rows["signal_strength"].notna().any())
        assert (lqi, rssi) == (template.protocol == "zigbee", template.protocol != "zigbee"), device_type


# --- Every template is present at the default size ---------------------------------------------------


def test_every_home_type_is_present_at_default_size(default_frame: pd.DataFrame) -> None:
    assert set(default_frame["home_type"].astype(str).unique()) == set(HOME_TYPES)


def test_every_device_type_is_present_at_default_size(default_frame: pd.DataFrame) -> None:
    assert set(default_frame["device_type"].astype(str).unique()) == set(DEVICE_TYPES)


def test_every_failure_mode_is_present_among_positives_at_default_size(default_frame: pd.DataFrame) -> None:
    positives = default_frame[default_frame["fails_within_horizon"]]
    counts = positives.drop_duplicates("device_id")["failure_mode"].astype(str).value_counts()
    assert set(counts.index) == set(FAILURE_MODES)
    assert counts.min() >= 10, counts.to_dict()


@pytest.mark.parametrize("seed", range(5))
def test_every_home_type_is_present_at_default_size_for_any_seed(seed: int) -> None:
    """Not a property of one lucky seed: the default size must mix all 8 home types whatever the seed."""
    config = GeneratorConfig.from_arguments(
        samples=1_500_000,
        seed=seed,
    )
    fleet = config.fleet()
    homes = pd.DataFrame({"home": fleet.home, "home_type": np.array(fleet.home_type_names)[fleet.home_type]})
    homes_per_type = homes.drop_duplicates("home")["home_type"].value_counts()
    missing = sorted(set(HOME_TYPES) - set(homes_per_type.index))
    found = f"{len(fleet.home_ids)} homes {homes_per_type.to_dict()}"
    assert not missing, f"seed {seed}: no {missing} among {found}"
    device_types = {fleet.device_type_names[i] for i in np.unique(fleet.device_type)}
    assert device_types == set(DEVICE_TYPES)


# --- Home type shapes the data ------------------------------------------------------------------------


def test_tall_and_large_homes_have_weaker_links(home_type_frame: Callable[[str], pd.DataFrame]) -> None:
    """Link quality falls with distance (floor area) and with every floor between device and router.

    A multi-storey home (3-4 floors, 200-400 m²) loses more than a crowded one-floor studio or apartment
    loses to its neighbours' Wi-Fi, and more than a one-floor cottage or ranch house loses to distance.
    """
    lqi = {h: float(np.nanmedian(_valid(home_type_frame(h), "linkquality"))) for h in HOME_TYPES}
    rssi = {h: float(np.nanmedian(_valid(home_type_frame(h), "signal_strength"))) for h in HOME_TYPES}
    for small in ("studio", "apartment", "cottage", "ranch_house"):
        assert lqi["multi_story"] < lqi[small] - 15, lqi
        assert rssi["multi_story"] < rssi[small] - 4, rssi
    assert lqi["townhouse"] < lqi["cottage"], lqi


def test_crowded_homes_have_more_drops_and_errors(home_type_frame: Callable[[str], pd.DataFrame]) -> None:
    drops = {h: float(np.nanmean(_valid(home_type_frame(h), "connection_drops"))) for h in HOME_TYPES}
    errors = {h: float(np.nanmedian(_valid(home_type_frame(h), "error_rate"))) for h in HOME_TYPES}
    for crowded in ("apartment", "studio"):
        for quiet in ("ranch_house", "cottage"):
            assert drops[crowded] > 2.0 * drops[quiet], drops
            assert errors[crowded] > 1.5 * errors[quiet], errors


def _temperature_spread(frame: pd.DataFrame) -> float:
    """Median over long-observed temperature sensors of the 5-95 % range of their readings."""
    sensors = frame[frame["device_type"] == "temperature_sensor"].copy()
    sensors["temperature"] = _valid(sensors, "temperature")
    per_device = sensors.groupby("device_id", observed=True).agg(
        span=("ts", lambda t: (t.max() - t.min()) / DAY_S),
        p05=("temperature", lambda x: x.quantile(0.05)),
        p95=("temperature", lambda x: x.quantile(0.95)),
    )
    long = per_device[per_device["span"] >= 120]
    assert len(long) >= 5, f"only {len(long)} temperature sensors observed for 120 days"
    return float((long["p95"] - long["p05"]).median())


def test_poorly_insulated_homes_swing_more(home_type_frame: Callable[[str], pd.DataFrame]) -> None:
    spread = {h: _temperature_spread(home_type_frame(h)) for h in ("cottage", "ranch_house", "apartment")}
    assert spread["cottage"] > 1.5 * spread["apartment"], spread
    assert spread["ranch_house"] > 1.5 * spread["apartment"], spread


def test_larger_homes_have_more_devices(home_type_frame: Callable[[str], pd.DataFrame]) -> None:
    def per_home(home_type: str) -> float:
        frame = home_type_frame(home_type)
        return float(frame.groupby("home_id", observed=True)["device_id"].nunique().median())

    counts = {h: per_home(h) for h in ("multi_story", "single_family_house", "apartment", "studio")}
    assert counts["multi_story"] > counts["apartment"] > counts["studio"], counts
    assert counts["single_family_house"] > counts["apartment"], counts


# --- Calendar and season ------------------------------------------------------------------------------


def test_devices_are_used_more_in_the_evening_than_at_night(default_frame: pd.DataFrame) -> None:
    hour = _utc(default_frame).hour.to_numpy()
    usage = default_frame["usage_frequency"].to_numpy()
    evening = np.nanmedian(usage[(hour >= 19) & (hour < 21)])
    night = np.nanmedian(usage[(hour >= 2) & (hour < 4)])
    assert evening > 3.0 * night, (evening, night)


def test_weekends_have_a_different_daily_rhythm(default_frame: pd.DataFrame) -> None:
    when = _utc(default_frame)
    hour, weekend = when.hour.to_numpy(), when.day_of_week.to_numpy() >= 5
    usage = default_frame["usage_frequency"].to_numpy()

    def median(hours: tuple[int, int], on_weekend: bool) -> float:
        rows = (hour >= hours[0]) & (hour < hours[1]) & (weekend == on_weekend)
        return float(np.nanmedian(usage[rows]))

    # People get up later at weekends and are at home around midday.
    assert median((7, 8), False) > 1.3 * median((7, 8), True)
    assert median((12, 15), True) > 1.3 * median((12, 15), False)


def test_batteries_drain_faster_in_winter(default_frame: pd.DataFrame) -> None:
    """Healthy batteries lose more charge over four weeks of January than over four weeks of May."""
    by_device = default_frame.groupby("device_id", observed=True)
    never_failing = ~by_device["fails_within_horizon"].transform("any")
    disposable = [d for d, t in DEVICE_TYPES.items() if t.power_source == "battery" and d != "vacuum"]
    rows = never_failing.to_numpy() & default_frame["device_type"].isin(disposable).to_numpy()
    frame = pd.DataFrame(
        {
            "device": default_frame["device_id"].cat.codes.to_numpy()[rows],
            "day": ((default_frame["ts"].to_numpy()[rows] - default_frame["ts"].min()) // DAY_S),
            "level": _valid(default_frame, "battery_level")[rows],
        }
    )

    def level(first_day: int) -> pd.Series[float]:
        week = frame[(frame["day"] >= first_day) & (frame["day"] < first_day + 7)]
        return week.groupby("device")["level"].median()

    drops = pd.concat([level(0) - level(28), level(120) - level(148)], axis=1, keys=["jan", "may"]).dropna()
    assert len(drops) >= 100
    assert drops["jan"].mean() > 1.15 * drops["may"].mean(), drops.mean().to_dict()
    assert (drops["jan"] > drops["may"]).mean() > 0.65


def test_season_moves_indoor_temperature_most_in_cottages(
    home_type_frame: Callable[[str], pd.DataFrame],
) -> None:
    def summer_minus_winter(home_type: str) -> float:
        frame = home_type_frame(home_type)
        month = _utc(frame).month.to_numpy()
        temperature = _valid(frame, "temperature")
        return float(np.nanmedian(temperature[month == 6]) - np.nanmedian(temperature[month == 1]))

    cottage, apartment = summer_minus_winter("cottage"), summer_minus_winter("apartment")
    assert cottage > 4.0, cottage
    assert apartment > 0.5, apartment
    assert cottage > apartment + 2.0, (cottage, apartment)


# --- Transient dips that recover -----------------------------------------------------------------------


def test_some_healthy_devices_have_a_transient_dip(default_fleet: Fleet) -> None:
    healthy_with_dip = (default_fleet.dip_mode >= 0) & (default_fleet.mode == -1)
    assert healthy_with_dip.sum() >= 50
    # Dips are hours to days long and weaker than a failure.
    chosen = healthy_with_dip.nonzero()[0]
    assert np.all(default_fleet.dip_s[chosen] <= 3 * DAY_S)
    assert np.all((default_fleet.dip_strength[chosen] > 0) & (default_fleet.dip_strength[chosen] < 1))


def test_transient_dips_show_in_the_data_and_recover(
    default_frame: pd.DataFrame, default_fleet: Fleet, default_fleet_index: npt.NDArray[np.int64]
) -> None:
    """A healthy device's dip moves its mode's signature field, which comes back afterwards."""
    ts = default_frame["ts"].to_numpy()
    positive = default_frame["fails_within_horizon"].to_numpy()
    order = np.argsort(default_fleet_index, kind="stable")
    bounds = np.searchsorted(default_fleet_index[order], np.arange(default_fleet.size + 1))
    lowering = {"battery_depletion", "link_degradation"}
    outcomes: list[tuple[str, bool]] = []
    for device in np.flatnonzero((default_fleet.dip_mode >= 0) & (default_fleet.mode == -1)):
        rows = order[bounds[device] : bounds[device + 1]]
        mode = FAILURE_MODES[default_fleet.dip_mode[device]]
        if rows.size == 0 or mode == "stuck_sensor":
            continue
        assert not positive[rows].any(), default_fleet.device_ids[device]
        t = ts[rows]
        dip_t, dip_s = default_fleet.dip_t[device], default_fleet.dip_s[device]
        peak = np.abs(t - (dip_t + dip_s / 2)) < dip_s / 4
        before = (t < dip_t) & (t > dip_t - 7 * DAY_S)
        after = (t > dip_t + dip_s) & (t < dip_t + dip_s + 7 * DAY_S)
        if peak.sum() < 2 or before.sum() < 5 or after.sum() < 5:
            continue
        device_type = default_fleet.device_type_names[default_fleet.device_type[device]]
        field = next(f for f in MODE_SIGNATURE_FIELDS[mode] if f in DEVICE_TYPES[device_type].fields)
        values = _valid(default_frame, field)[rows]
        b, p, a = (float(np.nanmedian(values[m])) for m in (before, peak, after))
        moved = (p < b) if mode in lowering else (p > b)
        recovered = abs(a - b) < abs(p - b) / 2
        outcomes.append((mode, moved and recovered))
    assert len(outcomes) >= 50
    assert {m for m, _ in outcomes} >= {"battery_depletion", "link_degradation", "latency_creep"}
    share = float(np.mean([ok for _, ok in outcomes]))
    assert share >= 0.8, f"only {share:.0%} of {len(outcomes)} dips move their signature and recover"


# --- Replacements ----------------------------------------------------------------------------------------


def test_failed_devices_are_replaced_by_a_new_device(
    default_frame: pd.DataFrame,
    default_fleet: Fleet,
) -> None:
    """Some failed devices are followed by a new device id of the same type in the same home."""
    devices = default_frame.groupby("device_id", observed=True).agg(
        home=("home_id", "first"),
        kind=("device_type", "first"),
        first_ts=("ts", "min"),
        last_ts=("ts", "max"),
        failed=("fails_within_horizon", "any"),
    )
    devices.index = devices.index.astype(str)
    devices["home"] = devices["home"].astype(str)
    devices["kind"] = devices["kind"].astype(str)
    started_late = default_fleet.obs_start > default_fleet.start
    late_start = {d for d, late in zip(default_fleet.device_ids, started_late, strict=True) if late}
    newcomers = devices[devices.index.isin(late_start)]
    assert len(newcomers) >= 20
    # They really start late: at least a day after the span starts (and so after a failure).
    assert (newcomers["first_ts"] > default_fleet.start + DAY_S).all()
    failed = devices[devices["failed"]]
    orphans: list[str] = []
    for device_id, new in newcomers.iterrows():
        same_place = (failed["home"] == new["home"]) & (failed["kind"] == new["kind"])
        predecessors = failed[same_place & (failed["last_ts"] < new["first_ts"])]
        if predecessors.empty:
            orphans.append(str(device_id))
    assert not orphans, f"new devices with no failed predecessor of their type in their home: {orphans[:5]}"
    # Replacement is common but not universal.
    replaced_share = len(newcomers) / len(failed)
    assert 0.2 < replaced_share < 0.9, replaced_share
