"""The bootstrap's fast warm start and held-out scoring: example rows equal to the event-by-event collector's
examples, a stream split in groups of homes that joins back to the whole, the scaler's learn_many statistics equal to
learn_one's, and a held-out stream scored in batches equal to the whole frame scored at once."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np
import pandas as pd
import pytest

from devintel.generators import generate, iter_batches
from devintel.models.bootstrap import device_groups, score_frame
from devintel.models.consolidate import fit_scaler, learn_examples
from devintel.models.dense import features_needed, pipeline_parts
from devintel.models.features import FeatureExtractor, Features
from devintel.models.heldout import StreamTruth, score_batches
from devintel.models.labels import DelayedLabels
from devintel.models.learners import default_model, model_inputs
from devintel.models.online import Classifier, ExampleCollector, warm_start_batches
from devintel.models.warm_start import ExampleRows, HomeSplit, collect_example_rows

ARGUMENTS = {"samples": 60_000, "days": 50, "seed": 9, "failure_rate": 0.6}
HORIZON_S = 7 * 86_400.0


def rows_of(
    select: HomeSplit | None = None,
    negative_rate: float = 0.2,
    batches: Iterable[pd.DataFrame] | None = None,
    max_pending: int = 1024,
) -> ExampleRows:
    rows, _ = collect_example_rows(
        iter_batches(**ARGUMENTS) if batches is None else batches,  # type: ignore[arg-type]
        HORIZON_S,
        negative_rate=negative_rate,
        seed=5,
        only=features_needed([default_model()]),
        select=select,
        max_pending=max_pending,
    )
    return rows


def out_of_order(batches: Iterable[pd.DataFrame], number: int) -> Iterator[pd.DataFrame]:
    """The batches, batch ``number`` with some of its events late (every 50th row moved 7 rows on)."""
    for i, batch in enumerate(batches):
        if i == number:
            order = np.arange(len(batch))
            for j in range(0, len(batch) - 8, 50):
                order[j : j + 8] = np.roll(order[j : j + 8], -1)
            batch = batch.iloc[order]
            assert (np.diff(batch["ts"].to_numpy()) < 0).any()
        yield batch


def assert_rows_are_the_collectors(rows: ExampleRows, batches: Iterable[pd.DataFrame], max_pending: int) -> int:
    """With every negative kept (no sampling), the rows are the event-by-event collector's examples in its order:
    each row is ``model_inputs`` of the event-by-event features (as float32, the precision the examples are kept
    in). How many there are."""
    needed = features_needed([default_model()])
    one_by_one: list[tuple[str, Features, bool]] = []
    collector = ExampleCollector(
        lambda d, x, y: one_by_one.append((d, x, y)), HORIZON_S, 1.0, seed=5, features=FeatureExtractor(only=needed)
    )
    collector.labels = DelayedLabels(HORIZON_S, max_pending)
    warm_start_batches(collector, batches)
    assert len(rows) == len(one_by_one)
    assert rows.labels.tolist() == [y for _, _, y in one_by_one]
    assert 100 < int(rows.labels.sum()) < len(rows)
    index = {name: j for j, name in enumerate(rows.names)}
    for i, (_, features, _) in enumerate(one_by_one):
        expected = np.full(len(rows.names), np.nan, dtype=np.float32)
        x = model_inputs(features)
        expected[[index[name] for name in x]] = list(x.values())
        assert np.array_equal(rows.inputs[i], expected, equal_nan=True), i
    return len(rows)


def test_example_rows_are_the_model_inputs_of_the_event_by_event_collectors_examples() -> None:
    rows = rows_of(negative_rate=1.0)
    assert assert_rows_are_the_collectors(rows, iter_batches(**ARGUMENTS), 1024) > 10_000  # type: ignore[arg-type]


def test_full_label_buffers_drop_the_events_the_event_by_event_buffer_drops() -> None:
    """Devices with more waiting events than the buffer holds: the batched walk drops the same ones (the oldest)."""
    rows = rows_of(negative_rate=1.0, max_pending=40)
    assert len(rows) < len(rows_of(negative_rate=1.0))  # some were dropped
    assert_rows_are_the_collectors(rows, iter_batches(**ARGUMENTS), 40)  # type: ignore[arg-type]


def test_a_stream_out_of_order_resolves_event_by_event_from_its_first_late_batch() -> None:
    """Batch 5 has late events: from there on the labels resolve event by event, with the earlier batches' waiting
    events handed over; the same examples come out, in the same order, as the event-by-event collector's."""
    rows = rows_of(negative_rate=1.0, batches=out_of_order(iter_batches(**ARGUMENTS), 5), max_pending=300)  # type: ignore[arg-type]
    assert_rows_are_the_collectors(rows, out_of_order(iter_batches(**ARGUMENTS), 5), 300)  # type: ignore[arg-type]


def test_a_stream_collected_in_groups_of_homes_joins_to_the_whole_streams_examples() -> None:
    whole = rows_of()
    parts = [rows_of(HomeSplit(2, part)) for part in range(2)]
    assert min(len(p) for p in parts) > 0.25 * len(whole)
    joined = ExampleRows.joined(parts)
    assert len(joined) == len(whole)

    def ordered(rows: ExampleRows) -> pd.DataFrame:
        frame = pd.DataFrame(rows.inputs, columns=rows.names)[sorted(rows.names)]
        frame["label"], frame["group"] = rows.labels, rows.groups
        return frame.sort_values(list(frame.columns)).reset_index(drop=True)

    pd.testing.assert_frame_equal(ordered(joined), ordered(whole))


def test_home_split_deals_every_home_to_one_group() -> None:
    batch = next(iter_batches(**ARGUMENTS))  # type: ignore[arg-type]
    masks = [HomeSplit(3, part)(batch) for part in range(3)]
    assert (np.sum(masks, axis=0) == 1).all()
    assert all(mask.sum() > 0.2 * len(batch) for mask in masks)
    with pytest.raises(ValueError, match="part 2 of 2"):
        HomeSplit(2, 2)


def test_the_scaler_learned_through_learn_many_has_learn_ones_statistics() -> None:
    rng = np.random.default_rng(1)
    raw = rng.normal(3.0, 2.0, size=(5_000, 4)).astype(np.float32)
    raw[rng.random(raw.shape) < 0.3] = np.nan
    raw[:, 3] = np.nan  # an input no example has
    names = ["a", "b", "c", "d"]
    batch_model, online_model = default_model(), default_model()
    fit_scaler(batch_model, names, raw)
    online = pipeline_parts(online_model)
    assert online is not None
    for row in raw.astype(np.float64).tolist():
        online[1].learn_one({name: v for name, v in zip(names, row, strict=True) if v == v})
    batch = pipeline_parts(batch_model)
    assert batch is not None
    assert dict(batch[1].counts) == dict(online[1].counts)
    for name in ["a", "b", "c"]:
        assert batch[1].means[name] == pytest.approx(online[1].means[name], rel=1e-9)
        assert batch[1].vars[name] == pytest.approx(online[1].vars[name], rel=1e-9)
    assert "d" not in batch[1].counts


def toy_models() -> dict[str, Classifier]:
    rows = rows_of()
    home_type = pd.Series(rows.groups).value_counts().index[0]
    models: dict[str, Classifier] = {"global": default_model(), home_type: default_model()}
    assert learn_examples(models["global"], rows.names, rows.inputs, rows.labels, seed=0) > 0
    mine = rows.groups == home_type
    assert learn_examples(models[home_type], rows.names, rows.inputs[mine], rows.labels[mine], seed=0) > 0
    return models


def test_a_stream_scored_in_batches_is_the_whole_frame_scored_at_once() -> None:
    models = toy_models()
    held_out = {**ARGUMENTS, "seed": 4}
    frame = generate(**held_out)  # type: ignore[arg-type]
    scored = score_batches(models, iter_batches(**held_out))  # type: ignore[arg-type]
    at_once = score_frame(models, frame)
    for name in models:
        assert np.array_equal(np.isnan(scored.scores[name]), np.isnan(at_once[name]))
        known = ~np.isnan(at_once[name])
        assert known.sum() > 1_000
        assert np.allclose(scored.scores[name][known], at_once[name][known], rtol=0.0, atol=1e-12)
    truth = StreamTruth.of(frame)
    for field in ("device", "ts", "visible", "label"):
        assert np.array_equal(getattr(scored.truth, field), getattr(truth, field)), field
    assert np.array_equal(scored.truth.failure_at, truth.failure_at, equal_nan=True)
    assert np.isfinite(truth.failure_at).any()
    groups = device_groups(frame)
    assert scored.groups.keys() == groups.keys()
    for name, values in groups.items():
        assert scored.groups[name].tolist() == values.tolist(), name
