"""The batch feature path equals the event-by-event one: a rough 100,000-event stream computed both ways."""

from __future__ import annotations

import itertools
import math

import numpy as np
import orjson
import pandas as pd

from devintel.contract import VALID_RANGES
from devintel.ingest.adapters import NativeAdapter
from devintel.ingest.inbound import Telemetry
from devintel.models.batch_features import feature_columns, model_input_matrix
from devintel.models.dense import features_needed
from devintel.models.features import FeatureExtractor, Features
from devintel.models.learners import default_model, model_inputs
from test_fast_core import rough_stream


def as_number(field: str, value: object) -> float:
    """What a numeric column holds for an event's field: numbers as they are (out of range, not finite: the batch
    path checks them), NaN for what is not a number (absent, None, a string, a bool outside ``value``)."""
    if isinstance(value, bool):
        return float(value) if field == "value" else math.nan
    if isinstance(value, int | float):
        return float(value)
    return math.nan


def batch_inputs(stream: list[dict[str, object]]) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    devices = pd.factorize(pd.Series([str(e["device_id"]) for e in stream]))[0]
    fields = {name: np.array([as_number(name, e.get(name)) for e in stream]) for name in VALID_RANGES}
    columns = feature_columns(
        devices,
        np.array([float(e["ts"]) for e in stream]),  # type: ignore[arg-type]
        fields,
        np.array([e.get("power_source") == "battery" for e in stream]),
        np.array([str(e.get("device_type")) for e in stream], dtype=object),
    )
    return columns, model_input_matrix(columns)


def assert_rows_equal(rows: list[Features], columns: dict[str, np.ndarray], names: set[str], what: str) -> int:
    """Every row's dict equals the columns' row (NaN: absent) exactly; returns the values compared."""
    compared = 0
    for i, row in enumerate(rows):
        for name in names:
            got = columns[name][i] if name in columns else math.nan
            if name not in row:
                assert math.isnan(got), (what, i, name, got)
                continue
            assert row[name] == got, (what, i, name, row[name], got)  # bit for bit (the issue asks 1e-9)
            compared += 1
    return compared


def test_batch_features_and_model_inputs_equal_the_event_by_event_path_on_a_rough_stream() -> None:
    stream = rough_stream(99_000, seed=11)
    assert len(stream) >= 100_000
    assert any(float(b["ts"]) < float(a["ts"]) for a, b in itertools.pairwise(stream))  # type: ignore[arg-type]
    needed = features_needed([default_model()])
    assert needed is not None
    extractor = FeatureExtractor(only=needed)
    features = [extractor.update(event) for event in stream]
    inputs = [model_inputs(row) for row in features]
    columns, matrix = batch_inputs(stream)
    compared = assert_rows_equal(features, columns, set(needed), "features")
    assert compared > 2_000_000
    names = set().union(*inputs)
    assert names <= set(matrix)
    compared = assert_rows_equal(inputs, matrix, set(matrix), "model inputs")
    assert compared > 2_000_000


def test_out_of_range_and_not_finite_values_are_ignored_field_by_field() -> None:
    base = {"device_id": "d", "device_type": "sensor", "power_source": "battery"}
    stream = [{**base, "ts": 3600.0 * i, "linkquality": 100.0 + i % 3, "battery_level": 80.0} for i in range(30)]
    stream[10]["linkquality"] = 999.0  # out of range: ignored, the battery level of the event still counts
    stream[11]["battery_level"] = math.inf
    stream[12]["linkquality"] = "abc"
    extractor = FeatureExtractor()
    features = [extractor.update(event) for event in stream]
    columns, _ = batch_inputs(stream)
    assert assert_rows_equal(features, columns, set(columns), "features") > 500
    assert columns["linkquality"][10] == stream[9]["linkquality"]  # the latest valid value, not 999
    assert columns["battery_level_ewm"][10] == 80.0


def test_training_and_serving_validate_alike_the_live_adapter_feeds_the_features_the_warm_start_computes() -> None:
    """One validation policy: the rough stream as JSON through the native adapter (what the daemon serves), then
    event by event, gives the features the batch path (the warm start's) computes from the raw stream."""
    stream = rough_stream(30_000, seed=13)
    adapter = NativeAdapter()
    served: list[dict[str, object]] = []
    dropped = 0
    for event in stream:
        body = {k: v for k, v in event.items() if k != "device_id"}
        items = adapter.parse(f"devintel/events/{event['device_id']}", orjson.dumps(body), float(event["ts"]))  # type: ignore[arg-type]
        assert len(items) == 1
        assert isinstance(items[0], Telemetry)
        served.append(items[0].event)
        dropped += len(items[0].dropped)
    assert dropped > 200
    needed = features_needed([default_model()])
    assert needed is not None
    extractor = FeatureExtractor(only=needed)
    features = [extractor.update(event) for event in served]
    columns, _ = batch_inputs(stream)
    assert assert_rows_equal(features, columns, set(needed), "served features") > 500_000


def test_scoring_a_frame_at_once_equals_scoring_it_event_by_event() -> None:
    from devintel.generators import generate
    from devintel.models.bootstrap import score_events, score_frame
    from devintel.models.online import OnlineLearner, events, failure_times, warm_start

    train = generate(samples=40_000, days=60, seed=3)
    models = {"global": default_model(), "apartment": default_model()}
    learner = OnlineLearner(
        model=models["global"],
        horizon_s=7 * 86_400.0,
        on_learn=lambda _d, x, y: models["apartment"].learn_one(x, y),
    )
    warm_start(learner, events(train), failure_times(train))
    assert learner.learned > 1_000
    held_out = generate(samples=30_000, days=60, seed=4)
    at_once = score_frame(models, held_out)
    one_by_one = score_events(models, held_out)
    assert at_once.keys() == one_by_one.keys()
    for name in models:
        assert np.array_equal(np.isnan(at_once[name]), np.isnan(one_by_one[name]))
        known = ~np.isnan(one_by_one[name])
        assert known.sum() > 1_000
        assert np.allclose(at_once[name][known], one_by_one[name][known], rtol=0.0, atol=1e-9)
    assert 0.0 < float(np.nanmax(at_once["global"])) <= 1.0


def test_a_frame_in_chunks_gives_the_features_of_the_whole_frame() -> None:
    from devintel.generators import generate
    from devintel.models.batch_features import frame_columns

    frame = generate(samples=30_000, days=30, seed=12)
    needed = features_needed([default_model()])
    [(start, end, whole)] = list(frame_columns(frame, needed, chunk=len(frame)))
    assert (start, end) == (0, len(frame))
    parts = list(frame_columns(frame, needed, chunk=7_000))
    assert len(parts) == 5
    assert [p[0] for p in parts] == [0, 7_000, 14_000, 21_000, 28_000]
    for name, column in whole.items():
        glued = np.concatenate([p[2].get(name, np.full(p[1] - p[0], np.nan)) for p in parts])
        assert np.array_equal(glued, column, equal_nan=True), name
    assert len(whole) > 40
