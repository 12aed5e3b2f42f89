"""The shipped learner: contract (pickle round trip, same seed same model), inputs, and reasons."""

from __future__ import annotations

import pickle

import pytest

from devintel.generators import generate
from devintel.models.features import FeatureExtractor
from devintel.models.learners import default_model, model_inputs, reasons, signal_of
from devintel.models.online import OnlineLearner, events, failure_times, warm_start

H = 7 * 86_400.0


@pytest.fixture(scope="module")
def trained() -> OnlineLearner:
    frame = generate(samples=40_000, days=60, seed=8)
    learner = OnlineLearner(model=default_model(), horizon_s=H, seed=1)
    warm_start(learner, events(frame), failure_times(frame))
    assert learner.learned > 1_000
    return learner


def test_pickle_round_trip_and_same_seed_same_model(trained: OnlineLearner) -> None:
    frame = generate(samples=40_000, days=60, seed=8)
    again = OnlineLearner(model=default_model(), horizon_s=H, seed=1)
    warm_start(again, events(frame), failure_times(frame))
    restored = pickle.loads(pickle.dumps(trained.model))
    probe = generate(samples=3_000, days=20, seed=9)
    extractor = FeatureExtractor()
    for event in list(events(probe))[::10]:
        x = extractor.update(event)
        p = trained.model.predict_proba_one(x).get(True, 0.0)
        assert restored.predict_proba_one(x).get(True, 0.0) == p
        assert again.predict(x) == trained.predict(x)


def test_inputs_leave_out_calendar_age_and_raw_levels() -> None:
    extractor = FeatureExtractor()
    x: dict[str, float] = {}
    for i in range(30):
        event = {"device_id": "d", "ts": i * 3600.0, "linkquality": 150.0 - i, "device_type": "motion_sensor"}
        x = model_inputs(extractor.update(event))
    assert "linkquality_drop" in x
    assert x["linkquality_drop"] > 0.0
    assert not {"hour_sin", "season_cos", "weekend", "age_days", "linkquality"} & set(x)
    assert x["type_motion_sensor"] == 1.0


def test_reasons_name_the_failing_signal_first(trained: OnlineLearner) -> None:
    extractor = FeatureExtractor()
    x: dict[str, float] = {}
    # A healthy history, then a link that collapses while everything else stays put.
    for i in range(120):
        lqi = 180.0 + (i % 3) if i < 90 else 180.0 - 4.0 * (i - 90)
        event = {"device_id": "d", "ts": i * 3600.0, "linkquality": lqi, "battery_level": 80.0 + (i % 2)}
        event |= {"device_type": "motion_sensor", "power_source": "battery"}
        x = extractor.update(event)
    named = reasons(trained.model, x)
    assert named[0] == "linkquality", named
    assert trained.predict(x) > 0.5
    assert reasons(trained.model, x, top=0) == []


def test_every_input_is_attributed_or_describes_the_device() -> None:
    assert signal_of("battery_voltage_cusum") == "battery_voltage"
    assert signal_of("gap_excess") == "missed_reports"
    assert signal_of("type_lock") is None
    assert signal_of("battery") is None


def test_reasons_from_the_dense_view_are_rivers(trained: OnlineLearner) -> None:
    """A model of the shipped shape is explained from its dense view; the same signals, in the same order, as
    River's weights times scaled values (the path every other linear pipeline takes)."""
    from devintel.models.learners import _linear_push, _steps

    extractor = FeatureExtractor()
    probes = [extractor.update(event) for event in events(generate(samples=6_000, days=30, seed=9))]
    checked = 0
    for x in probes[::7]:
        river_push = _linear_push(_steps(trained.model), x)
        ranked = sorted((p, s) for s, p in river_push.items() if p > 0.0)
        expected = [signal for _, signal in reversed(ranked[-3:])]
        assert reasons(trained.model, x) == expected
        checked += bool(expected)
    assert checked > 0
