"""Per-device online features: bounded state, bad values ignored, and the signals move the right way."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest

from devintel.generators import generate
from devintel.models.features import TRACKED, DeviceState, FeatureExtractor, valid

HOUR = 3600.0


def _event(ts: float, device_id: str = "0x01", **fields: object) -> dict[str, object]:
    return {"device_id": device_id, "ts": ts, "device_type": "temperature_sensor", "power_source": "battery", **fields}


def test_valid_rejects_junk() -> None:
    assert valid("battery_level", 55) == 55.0
    assert valid("battery_level", "80.00") == 80.0  # numbers sent as strings (Zigbee2MQTT does)
    for junk in (255, -1, float("nan"), float("inf"), "abc", None, True, [1]):
        assert valid("battery_level", junk) is None, junk
    assert valid("value", True) == 1.0  # a 0/1 state may arrive as a bool


def test_the_extractor_reads_every_kind_of_value_as_valid_does() -> None:
    """The extractor's fast path (a float in range) and ``valid`` agree: each raw value gives the features of the
    event holding ``valid``'s reading of it (none, when it rejects it)."""
    for raw in (80.0, 80, "80.0", 100.0, 0.0, 255.0, -1.0, float("nan"), float("inf"), True, None):
        as_sent, as_valid = FeatureExtractor(), FeatureExtractor()
        for fx in (as_sent, as_valid):
            fx.update(_event(0.0, battery_level=60.0))
        reading = valid("battery_level", raw)
        cleaned = _event(HOUR, battery_level=reading)
        if reading is None:
            del cleaned["battery_level"]
        expected = as_valid.update(cleaned)
        assert as_sent.update(_event(HOUR, battery_level=raw)) == expected, raw


def test_out_of_range_values_do_not_move_the_features() -> None:
    fx = FeatureExtractor()
    fx.update(_event(0.0, battery_level=80))
    before = fx.update(_event(HOUR, battery_level=80))
    after = fx.update(_event(2 * HOUR, battery_level=255))
    for key in ("battery_level", "battery_level_ewm", "battery_level_dev"):
        assert after[key] == before[key]


def test_state_is_bounded_and_features_stable() -> None:
    fx = FeatureExtractor()
    rng = np.random.default_rng(0)
    keys: set[str] = set()
    for i in range(5_000):
        features = fx.update(
            _event(
                i * HOUR,
                battery_level=float(rng.uniform(50, 60)),
                linkquality=float(rng.uniform(100, 200)),
                temperature=float(rng.normal(21, 1)),
                uptime_hours=float(i),
                value=float(rng.normal(21, 1)),
            )
        )
        if i > 10:
            keys = keys or set(features)
            assert set(features) == keys
    state = fx.states["0x01"]
    assert len(state.signals) <= len(TRACKED)
    assert len(state) == len(DeviceState.fresh(0.0, 0.0))  # a fixed number of floats, whatever the stream's length
    assert all(math.isfinite(v) for v in features.values())
    fx.forget("0x01")
    assert len(fx) == 0


def test_devices_do_not_share_state() -> None:
    events_a = [_event(i * HOUR, "a", battery_level=90 - i) for i in range(20)]
    events_b = [_event(i * HOUR + 1, "b", battery_level=40 + (i % 3)) for i in range(20)]
    alone = FeatureExtractor()
    expected = [alone.update(e) for e in events_a]
    mixed = FeatureExtractor()
    got = []
    for a, b in zip(events_a, events_b, strict=True):
        got.append(mixed.update(a))
        mixed.update(b)
    assert got == expected


def test_lost_reports_raise_the_gap_ratio() -> None:
    fx = FeatureExtractor()
    for i in range(50):
        features = fx.update(_event(i * HOUR, battery_level=70))
    assert features["gap_ratio"] == pytest.approx(1.0, abs=0.05)
    late = fx.update(_event(49 * HOUR + 4 * HOUR, battery_level=70))
    assert late["gap_ratio"] > 3.5
    assert late["gap_z"] > 5.0
    assert late["gap_ewm"] > features["gap_ewm"]


def test_gaps_are_measured_against_the_devices_own_irregularity() -> None:
    """Bursts of reports seconds apart do not shrink a device's usual interval, and a device that reports on
    change (irregular gaps) is not surprised by a long gap that would be a lost report for a periodic one."""
    rng = random.Random(1)
    periodic, irregular = FeatureExtractor(), FeatureExtractor()
    t = 0.0
    for i in range(300):
        periodic.update(_event(i * HOUR + rng.uniform(-300, 300), battery_level=70))
        t += HOUR * rng.lognormvariate(0.0, 1.0)
        irregular.update(_event(t, battery_level=70))
        if rng.random() < 0.2:  # a burst: a second report a minute later
            irregular.update(_event(t + 60.0, battery_level=70))
            t += 60.0
    assert irregular.states["0x01"].usual_gap > 0.5 * HOUR
    long_gap = 4 * HOUR
    late_periodic = periodic.update(_event(299 * HOUR + long_gap, battery_level=70))
    late_irregular = irregular.update(_event(t + long_gap, battery_level=70))
    assert late_periodic["gap_z"] > 3 * late_irregular["gap_z"] > 0.0


def test_a_falling_battery_has_a_negative_slope_and_deviation() -> None:
    fx = FeatureExtractor()
    for i in range(100):
        fx.update(_event(i * HOUR, battery_level=80))
    for i in range(100, 148):
        features = fx.update(_event(i * HOUR, battery_level=80 - (i - 100)))
    assert features["battery_level_slope"] < -10.0  # about -24 %/day
    assert features["battery_level_dev"] < -3.0


def test_a_stuck_value_collapses_its_variance_ratio() -> None:
    fx = FeatureExtractor()
    rng = np.random.default_rng(1)
    for i in range(300):
        healthy = fx.update(_event(i * HOUR, value=float(21 + rng.normal(0, 1))))
    for i in range(300, 360):
        stuck = fx.update(_event(i * HOUR, value=21.3))
    assert healthy["value_var_ratio"] > 0.3
    assert stuck["value_var_ratio"] < 0.05


def test_generated_events_give_finite_features() -> None:
    frame = generate(samples=5_000, days=20, seed=2)
    fx = FeatureExtractor()
    records = frame.astype({c: str for c in ("device_id", "device_type", "power_source")}).to_dict("records")
    for record in records:
        features = fx.update({str(k): v for k, v in record.items()})
        assert all(math.isfinite(v) for v in features.values()), features
    assert len(fx) == frame["device_id"].nunique()
