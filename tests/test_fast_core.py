"""The fast core keeps the semantics: lazy events equal pandas' records, the batch-streamed warm start learns what
the whole-frame one learns, and computing only the features the learner reads gives it the same inputs."""

from __future__ import annotations

import math
import multiprocessing
import pickle
import random
import threading
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from river import naive_bayes

from devintel.generators import METRIC_FIELDS, generate, iter_batches
from devintel.generators.api import TRUTH_COLUMNS
from devintel.models import bootstrap as bootstrap_module
from devintel.models.dense import features_needed
from devintel.models.features import FeatureExtractor, Features, features_read_by
from devintel.models.learners import default_model, model_inputs
from devintel.models.metrics import RollingMetrics, rolling_history
from devintel.models.online import (
    ExampleCollector,
    OnlineLearner,
    events,
    failure_times,
    warm_start,
    warm_start_batches,
)
from devintel.models.snapshots import SnapshotStore
from devintel.models.warm_start import ExampleRows
from snapshot_fixtures import SMALL_BOOTSTRAP

H = 7 * 86_400.0
VARIANTS = ("reference", "noisy", "sparse", "battery_cliff")


def records(frame: pd.DataFrame) -> list[dict[str, object]]:
    """The oracle: pandas' records with categoricals as str and NaN fields dropped (``events`` before it was lazy)."""
    columns = [c for c in frame.columns if c not in TRUTH_COLUMNS]
    strings = [c for c in columns if isinstance(frame[c].dtype, pd.CategoricalDtype)]
    view = frame[columns].astype(dict.fromkeys(strings, str))
    return [
        {str(k): v for k, v in record.items() if not (isinstance(v, float) and math.isnan(v))}
        for record in view.to_dict("records")
    ]


def test_events_equal_pandas_records() -> None:
    frame = generate(samples=20_000, days=30, seed=5, variants=VARIANTS)
    mine, oracle = list(events(frame)), records(frame)
    assert mine == oracle
    assert [list(e) for e in mine] == [list(e) for e in oracle]  # the same keys in the same order
    assert all(type(a[k]) is type(b[k]) for a, b in zip(mine, oracle, strict=True) for k in a)
    assert any(len(e) < len(mine[0]) for e in mine)  # some fields were missing and left out


@pytest.mark.slow
def test_batch_streamed_warm_start_learns_what_the_whole_frame_does() -> None:
    arguments = {"samples": 60_000, "days": 60, "seed": 6, "variants": VARIANTS}
    frame = generate(**arguments)  # type: ignore[arg-type]
    whole = OnlineLearner(model=default_model(), horizon_s=H, seed=2)
    warm_start(whole, events(frame), failure_times(frame))
    streamed = OnlineLearner(model=default_model(), horizon_s=H, seed=2)
    seen: list[int] = []
    warm_start_batches(streamed, iter_batches(**arguments), lambda batch: seen.append(len(batch)))  # type: ignore[arg-type]
    assert len(seen) > 10
    assert sum(seen) == len(frame)
    assert whole.learned > 1_000
    assert (streamed.learned, streamed.resolved) == (whole.learned, whole.resolved)
    assert streamed.model["LogisticRegression"].weights == whole.model["LogisticRegression"].weights  # type: ignore[index]
    assert list(streamed.outcomes) == list(whole.outcomes)


def test_the_example_collector_gives_the_examples_the_online_learner_learns() -> None:
    arguments = {"samples": 60_000, "days": 60, "seed": 6, "variants": VARIANTS}
    learned: list[tuple[str, Features, bool]] = []
    online = OnlineLearner(
        model=default_model(), horizon_s=H, seed=3, on_learn=lambda d, x, y: learned.append((d, x, y))
    )
    warm_start_batches(online, iter_batches(**arguments))  # type: ignore[arg-type]
    collected: list[tuple[str, Features, bool]] = []
    collector = ExampleCollector(lambda d, x, y: collected.append((d, x, y)), horizon_s=H, seed=3)
    warm_start_batches(collector, iter_batches(**arguments))  # type: ignore[arg-type]
    assert len(learned) > 1_000
    assert any(y for _, _, y in learned)
    assert collected == learned  # the same examples, features exactly (packed as float64), in the same order
    assert (collector.learned, collector.resolved) == (online.learned, online.resolved)


def rough_stream(samples: int, seed: int) -> list[dict[str, object]]:
    """A generated stream made rough: late events (up to two days behind), duplicates, missing fields and values
    out of range, not finite or of the wrong type."""
    frame = generate(samples=samples, days=90, seed=seed, variants=VARIANTS)
    rng = random.Random(seed)
    bad_values: list[object] = [-1e9, 1e9, -5.0, 250.0, math.nan, math.inf, -math.inf, "abc", None, True]
    out: list[dict[str, object]] = []
    for event in events(frame):
        roll = rng.random()
        if roll < 0.03:
            event = {k: v for k, v in event.items() if k not in METRIC_FIELDS or rng.random() < 0.5}
        elif roll < 0.06:
            event[rng.choice(METRIC_FIELDS)] = rng.choice(bad_values)
        elif roll < 0.07:
            event["ts"] = float(event["ts"]) - rng.uniform(0.0, 2 * 86_400.0)  # type: ignore[arg-type]
        out.append(event)
        if rng.random() < 0.01:
            out.append(dict(event))
    return out


@pytest.mark.slow
def test_only_the_features_the_learner_reads_give_it_the_same_inputs() -> None:
    needed = features_needed([default_model()])
    assert needed is not None
    assert not {"hour_sin", "season_cos", "weekend", "age_days", "uptime_hours", "linkquality"} & needed
    assert {"linkquality_dev", "linkquality_cusum_down", "gap_z", "value_repeats", "type_light"} <= needed
    full, lean = FeatureExtractor(), FeatureExtractor(only=needed)
    stream = rough_stream(100_000, seed=12)
    assert len(stream) > 100_000
    smaller = 0
    for event in stream:
        everything, some = full.update(event), lean.update(event)
        assert set(some) <= set(everything)
        smaller += len(some) < len(everything)
        before, after = model_inputs(everything), model_inputs(some)
        assert list(after) == list(before)
        assert all(math.isclose(after[k], before[k], rel_tol=1e-9, abs_tol=1e-9) for k in before)
    assert smaller == len(stream)  # every event skipped some features


def test_features_read_by_names_what_a_function_reads() -> None:
    def reads(features: Features) -> Features:
        x = {"shaped": features["linkquality_dev"] + (features.get("gap_z") or 0.0)}
        if "value_repeats" in features:
            x["frozen"] = 1.0
        x["battery"] = features["battery"]
        return x

    assert features_read_by(reads) == {"linkquality_dev", "gap_z", "value_repeats", "battery"}
    assert features_needed([naive_bayes.GaussianNB()]) is None


@pytest.mark.slow
def test_a_worker_learning_home_type_models_and_scoring_test_homes_changes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(bootstrap_module, "MIN_WORKER_SAMPLES", 0)  # a worker even at this toy size
    here = bootstrap_module.bootstrap(replace(SMALL_BOOTSTRAP, workers=0), SnapshotStore(tmp_path / "here"))
    started: list[object] = []
    real = bootstrap_module.Worker

    def spy(config: bootstrap_module.BootstrapConfig, home_types: dict[str, object]) -> bootstrap_module.Worker:
        started.append(config)
        return real(config, home_types)  # type: ignore[arg-type]

    monkeypatch.setattr(bootstrap_module, "Worker", spy)
    there = bootstrap_module.bootstrap(replace(SMALL_BOOTSTRAP, workers=1), SnapshotStore(tmp_path / "there"))
    assert here.report["test"] == there.report["test"]
    assert len(started) == 1
    assert there.report == here.report
    assert learned_models(tmp_path / "there") == learned_models(tmp_path / "here")
    assert (there.test, there.router, there.decision, there.gate) == (here.test, here.router, here.decision, here.gate)


def learned_models(model_dir: Path) -> dict[str, tuple[object, ...]]:
    """What each model of the one snapshot in ``model_dir`` learned: its scaler's statistics and its weights (the
    pickled bytes differ with how the feature names were shared, not with what was learned)."""
    version = (model_dir / "current").read_text().strip()
    learned: dict[str, tuple[object, ...]] = {}
    for path in sorted((model_dir / version / "models").iterdir()):
        model = pickle.loads(path.read_bytes())
        scaler, regression = model["StandardScaler"], model["LogisticRegression"]
        learned[path.stem] = (
            dict(scaler.counts),
            dict(scaler.means),
            dict(scaler.vars),
            regression.weights,
            regression.intercept,
        )
    return learned


def test_a_failing_worker_fails_the_bootstrap_and_ends(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bootstrap_module, "MIN_WORKER_SAMPLES", 0)
    broken = replace(SMALL_BOOTSTRAP, workers=1, test_variants=("no_such_variant",))
    with pytest.raises((RuntimeError, ValueError), match="no_such_variant"):
        bootstrap_module.bootstrap(broken, SnapshotStore(tmp_path))
    assert not [p for p in multiprocessing.active_children() if p.name == "devintel-bootstrap-worker"]


def test_rolling_history_equals_river_rolling_metrics_event_by_event() -> None:
    rng = random.Random(4)
    truth = [rng.random() < 0.05 for _ in range(12_345)]
    predicted = [t if rng.random() < 0.6 else rng.random() < 0.05 for t in truth]
    river = RollingMetrics(window_size=2_000, every=500)
    for t, p in zip(truth, predicted, strict=True):
        river.update(t, p)
    ours = rolling_history(truth, predicted, window_size=2_000, every=500)
    assert [n for n, _ in ours] == [n for n, _ in river.history]
    assert len(ours) == 24
    for (_, mine), (_, theirs) in zip(ours, river.history, strict=True):
        assert mine == pytest.approx(theirs, abs=1e-12)


@pytest.mark.parametrize("same_columns", [True, False])
@pytest.mark.parametrize("own_first", [True, False])
def test_examples_received_from_the_other_process_join_as_the_parts_would(same_columns: bool, own_first: bool) -> None:
    """``receive_joined`` (the matrix read straight into the join, or remapped when the columns differ) gives what
    ``ExampleRows.joined`` gives for the same two parts, over a real pipe."""
    rng = np.random.default_rng(4)

    def part(names: list[str], n: int, group: str) -> ExampleRows:
        inputs = rng.normal(size=(n, len(names))).astype(np.float32)
        inputs[rng.random(inputs.shape) < 0.2] = np.nan
        return ExampleRows(names, inputs, rng.random(n) < 0.3, np.array([group] * n, dtype=object))

    own = part(["a", "b", "c"], 700, "condo")
    other = part(["a", "b", "c"] if same_columns else ["c", "d", "a"], 500, "studio")
    expected = ExampleRows.joined([own, other] if own_first else [other, own])
    sender, receiver = multiprocessing.Pipe()
    writer = threading.Thread(target=bootstrap_module.send_rows, args=(sender, "rows", other, {"extra": 1}))
    writer.start()
    joined, extra = bootstrap_module.receive_joined(receiver, receiver.recv(), [own], own_first)
    writer.join()
    assert extra == {"extra": 1}
    assert joined.names == expected.names
    np.testing.assert_array_equal(joined.inputs, expected.inputs)  # NaN where a part lacks an input, alike
    assert joined.labels.tolist() == expected.labels.tolist()
    assert joined.groups.tolist() == expected.groups.tolist()


def test_this_process_learns_the_lightest_home_types_within_its_share() -> None:
    """The default bootstrap's examples per model: the three lightest home types are a tenth of them."""
    learned = {
        "global": 212_095,
        "apartment": 13_310,
        "condo": 23_330,
        "cottage": 6_535,
        "multi_story": 24_036,
        "ranch_house": 23_226,
        "single_family_house": 104_281,
        "studio": 2_042,
        "townhouse": 15_335,
    }
    here = bootstrap_module.lightest_home_types(learned)
    assert here == {"studio", "cottage", "apartment"}
    assert sum(learned[name] for name in here) <= bootstrap_module.HERE_SHARE * learned["global"]
    assert bootstrap_module.lightest_home_types(dict.fromkeys(learned, 0) | {"global": 0}) <= set(learned)
    one_type = dict.fromkeys(learned, 0) | {"global": 100, "studio": 100}
    assert "studio" not in bootstrap_module.lightest_home_types(one_type)  # more than the share: the worker's
