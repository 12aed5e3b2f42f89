"""World variant families: the API, the reference world's bytes, and that each family does what it says."""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import pytest

from devintel.generators import COLUMNS, TRUTH_COLUMNS, VARIANT_FAMILIES, VariantFamily, generate, iter_batches
from devintel.generators.api import GeneratorConfig
from devintel.models.online import events

FAMILIES = tuple(VARIANT_FAMILIES)
ARGS: dict[str, Any] = {"samples": 80_000, "days": 60.0, "seed": 5}


@pytest.fixture(scope="module")
def family_frame() -> Callable[[str], pd.DataFrame]:
    """``generate(**ARGS, variants=(name,))``, once per family."""
    cache: dict[str, pd.DataFrame] = {}

    def get(name: str) -> pd.DataFrame:
        if name not in cache:
            cache[name] = generate(**ARGS, variants=(name,))
        return cache[name]

    return get


def _hash(frame: pd.DataFrame) -> str:
    return hashlib.sha256(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes()).hexdigest()


def _healthy(frame: pd.DataFrame) -> pd.DataFrame:
    return frame[frame["time_to_failure_h"].isna()]


def _per_device(frame: pd.DataFrame, column: str, fn: str | Callable[[pd.Series], float]) -> pd.Series:
    return frame.groupby("device_id", observed=True)[column].agg(fn).dropna()


def _gaps(frame: pd.DataFrame) -> pd.Series:
    return frame.groupby("device_id", observed=True)["ts"].diff().dropna()


def _gap_cv(series: pd.Series) -> float:
    gaps = np.diff(series.to_numpy())
    return float(gaps.std() / gaps.mean()) if gaps.size >= 5 else float("nan")


# --- The API ---------------------------------------------------------------------------------------


def test_families_are_named_described_and_frozen() -> None:
    assert FAMILIES == ("reference", "noisy", "sparse", "on_change", "battery_cliff", "load_heated")
    for name, family in VARIANT_FAMILIES.items():
        assert isinstance(family, VariantFamily)
        assert family.name == name
        assert family.description
        assert "\n" not in family.description
        for field in dataclasses.fields(family):
            value = getattr(family, field.name)
            if isinstance(value, tuple) and len(value) == 2 and field.name != "battery_steps":
                assert value[0] <= value[1], (name, field.name)
    with pytest.raises(dataclasses.FrozenInstanceError):
        VARIANT_FAMILIES["noisy"].noise_scale = (1.0, 1.0)  # type: ignore[misc]
    assert VARIANT_FAMILIES["reference"].is_identity
    assert not any(f.is_identity for f in VARIANT_FAMILIES.values() if f.name != "reference")


def test_unknown_variants_name_the_valid_ones() -> None:
    for bad in (("reference", "martian"), ()):
        with pytest.raises(ValueError, match="on_change"):
            generate(samples=100, days=2, variants=bad)
        with pytest.raises(ValueError, match="battery_cliff"):
            iter_batches(samples=100, days=2, variants=bad)


def test_variant_column_is_ground_truth_and_never_a_feature(family_frame: Callable[[str], pd.DataFrame]) -> None:
    frame = family_frame("noisy")
    assert tuple(frame.columns) == COLUMNS
    assert COLUMNS.index("variant") == COLUMNS.index("power_source") + 1
    assert "variant" in TRUTH_COLUMNS
    assert isinstance(frame["variant"].dtype, pd.CategoricalDtype)
    assert list(frame["variant"].cat.categories) == list(FAMILIES)
    assert (frame["variant"] == "noisy").all()
    first = next(events(frame.head(50)))
    assert "variant" not in first
    assert "device_id" in first


# --- The reference world is today's world ------------------------------------------------------------


def test_reference_is_the_default_and_the_same_bytes() -> None:
    args: dict[str, Any] = {"samples": 50_000, "days": 20.0, "seed": 11}
    default = generate(**args)
    assert _hash(default) == _hash(generate(**args, variants=None)) == _hash(generate(**args, variants=["reference"]))
    assert (default["variant"] == "reference").all()
    # sha256 of the float columns, computed on the generator before variants existed (commit 791ce1d).
    floats = default.select_dtypes("float64").to_numpy().tobytes()
    assert hashlib.sha256(floats).hexdigest() == "9126e02e8561b2eba942bed4356dfb60c526058d4e55f43a13e5960d48e46248"


@pytest.mark.parametrize("name", FAMILIES)
def test_same_seed_same_bytes_per_family(name: str, family_frame: Callable[[str], pd.DataFrame]) -> None:
    assert _hash(family_frame(name)) == _hash(generate(**ARGS, variants=(name,)))
    assert _hash(family_frame(name)) != _hash(generate(**{**ARGS, "seed": 6}, variants=(name,)))


def test_homes_cycle_through_the_families_in_order() -> None:
    variants = ("sparse", "reference", "load_heated")
    frame = generate(samples=60_000, days=20, seed=2, variants=variants)
    per_home = frame.groupby("home_id", observed=True)["variant"].agg(["nunique", "first"])
    assert (per_home["nunique"] == 1).all()
    for home_id, family in per_home["first"].items():
        assert family == variants[int(str(home_id).split("-")[1]) % len(variants)], home_id
    assert set(per_home["first"]) == set(variants)


def test_stories_do_not_depend_on_the_family() -> None:
    """The same homes, devices and failures in every family: only how they are observed changes."""
    fleets = {
        name: GeneratorConfig.from_arguments(samples=20_000, days=30, seed=4, variants=(name,)).fleet()
        for name in FAMILIES
    }
    reference = fleets["reference"]
    first_home = reference.home == 0
    for name, fleet in fleets.items():
        same = fleet.home == 0
        assert same.sum() == first_home.sum(), name
        assert [d for d, s in zip(fleet.device_ids, same, strict=True) if s] == [
            d for d, s in zip(reference.device_ids, first_home, strict=True) if s
        ]
        for story in ("fail_t", "mode", "precursor_s", "strength", "dip_mode", "battery_start", "battery_cutoff"):
            np.testing.assert_array_equal(getattr(fleet, story)[same], getattr(reference, story)[first_home])


# --- Every family keeps the stream's contracts ---------------------------------------------------------


@pytest.mark.parametrize("name", FAMILIES)
def test_event_time_order_and_labels(name: str, family_frame: Callable[[str], pd.DataFrame]) -> None:
    frame = family_frame(name)
    assert len(frame) == ARGS["samples"]
    ts = frame["ts"].to_numpy()
    assert np.all(np.diff(ts) >= 0.0)
    ttf = frame["time_to_failure_h"].to_numpy()
    positive = frame["fails_within_horizon"].to_numpy()
    np.testing.assert_array_equal(positive, ttf <= 7 * 24.0)  # NaN (never fails) compares False
    assert np.nanmin(ttf) >= 0.0  # nothing is stamped after its device failed
    assert ((frame["failure_mode"] == "none") == ~positive).all()


def test_batches_concatenate_to_generate_with_mixed_variants() -> None:
    args: dict[str, Any] = {"samples": 60_000, "days": 30.0, "seed": 9, "variants": ("on_change", *FAMILIES)}
    batches = list(iter_batches(**args))
    assert len(batches) > 2
    for earlier, later in itertools.pairwise(batches):
        assert earlier["ts"].iloc[-1] <= later["ts"].iloc[0]
    whole = generate(**args)
    assert _hash(pd.concat(batches, ignore_index=True)) == _hash(whole)
    assert set(whole["variant"].astype(str)) == set(FAMILIES)


# --- Each family does what it says -------------------------------------------------------------------


def test_noisy_links_jitter_more(family_frame: Callable[[str], pd.DataFrame]) -> None:
    def lqi_std(name: str) -> float:
        return float(_per_device(_healthy(family_frame(name)), "linkquality", "std").median())

    def temp_std(name: str) -> float:  # temperature sensors: the noise over the room's own swing
        healthy = _healthy(family_frame(name))
        sensors = healthy[healthy["device_type"] == "temperature_sensor"]
        return float(_per_device(sensors, "temperature", lambda s: s.diff().std()).median())

    assert lqi_std("noisy") > 2.0 * lqi_std("reference")
    assert temp_std("noisy") > 1.3 * temp_std("reference")


def test_noisy_loses_more_reports(family_frame: Callable[[str], pd.DataFrame]) -> None:
    # The same devices over the same days: fewer events per device and day.
    def rate(name: str) -> float:
        frame = family_frame(name)
        days = frame["ts"].max() - frame["ts"].min()
        return float(len(frame) / frame["device_id"].nunique() / days)

    assert rate("noisy") < 0.99 * rate("reference")


def test_sparse_devices_report_every_few_hours(family_frame: Callable[[str], pd.DataFrame]) -> None:
    def median_gap_h(name: str, power: str) -> float:
        frame = family_frame(name)
        return float(_gaps(frame[frame["power_source"] == power]).median() / 3600.0)

    assert median_gap_h("sparse", "battery") > 3.0 * median_gap_h("reference", "battery")
    assert median_gap_h("sparse", "mains") > 1.8 * median_gap_h("reference", "mains")


def test_on_change_gaps_are_irregular(family_frame: Callable[[str], pd.DataFrame]) -> None:
    def cv(name: str) -> float:
        return float(_per_device(family_frame(name), "ts", _gap_cv).median())

    assert cv("on_change") > cv("reference") + 0.2
    gaps = _gaps(family_frame("on_change"))
    reference = _gaps(family_frame("reference"))
    assert (gaps < 15 * 60).mean() > 0.02  # bursts minutes apart
    assert (reference < 15 * 60).mean() < 0.005
    assert gaps.quantile(0.99) > 1.2 * reference.quantile(0.99)  # and long silences


def test_battery_cliff_reports_coarse_levels_or_voltage_only(family_frame: Callable[[str], pd.DataFrame]) -> None:
    frame = family_frame("battery_cliff")
    level = frame["battery_level"].to_numpy()
    valid = level[(level >= 0) & (level <= 100)]
    assert np.all(valid % 5 == 0)  # steps of 10, 20 or 25 %
    assert len(np.unique(valid)) <= 21
    battery = frame[frame["power_source"] == "battery"]
    reported = battery[["battery_level", "battery_voltage"]].notna().groupby(battery["device_id"], observed=True).any()
    voltage_only = (~reported["battery_level"].to_numpy()) & reported["battery_voltage"].to_numpy()
    assert 0.05 < voltage_only.mean() < 0.6


def test_battery_cliff_stays_flat_and_healthy_batteries_never_hit_their_cutoff() -> None:
    config = GeneratorConfig.from_arguments(**ARGS, variants=("battery_cliff",))
    fleet = config.fleet()
    frame = config.frame()
    cutoff = dict(zip(fleet.device_ids, fleet.battery_cutoff.tolist(), strict=True))
    steady = {
        d
        for d, f, dip, p in zip(fleet.device_ids, fleet.fail_t, fleet.dip_mode, fleet.battery_powered, strict=True)
        if p and not np.isfinite(f) and dip != 0
    }
    healthy = frame[frame["device_id"].astype(str).isin(steady) & frame["battery_level"].between(0, 100)]
    lowest = healthy.groupby("device_id", observed=True)["battery_level"].min()
    assert len(lowest) > 20
    assert all(level > cutoff[str(d)] for d, level in lowest.items())
    reference = generate(**ARGS)
    ref_healthy = _healthy(reference)
    assert healthy["battery_level"].median() > ref_healthy["battery_level"].median() + 10.0


def test_load_heated_devices_warm_with_their_load(family_frame: Callable[[str], pd.DataFrame]) -> None:
    def slope(name: str) -> float:
        healthy = _healthy(family_frame(name))
        mains = healthy[(healthy["power_source"] == "mains") & (healthy["device_type"] != "thermostat")]
        mains = mains[mains["temperature"].between(-40, 125) & mains["usage_frequency"].between(0, 1)]

        def one(group: pd.DataFrame) -> float:
            usage = group["usage_frequency"]
            return float(group["temperature"].cov(usage) / usage.var()) if len(group) > 20 else float("nan")

        per_device = mains.groupby("device_id", observed=True)[["temperature", "usage_frequency"]].apply(one)
        return float(per_device.dropna().median())

    assert slope("load_heated") > slope("reference") + 8.0
    frame = family_frame("load_heated")
    healthy = _healthy(frame)
    mains = healthy[(healthy["power_source"] == "mains") & healthy["temperature"].notna()]
    corr = mains.groupby("device_id", observed=True)[["temperature", "usage_frequency"]].corr()
    assert corr.xs("temperature", level=1)["usage_frequency"].median() > 0.8


def test_load_heated_stamps_some_devices_on_receipt(family_frame: Callable[[str], pd.DataFrame]) -> None:
    frame = family_frame("load_heated")
    whole = _per_device(frame, "ts", lambda s: float((s % 1.0 == 0.0).mean()))
    assert 0.15 < (whole == 1.0).mean() < 0.85  # a share of devices, in whole seconds
    assert ((family_frame("reference")["ts"] % 1.0) == 0.0).mean() < 0.01
