"""The compact label buffer keeps the semantics: one expiry entry per device resolves the same events, with the same
labels and in the same order, as one entry per event did; the live learner's rows give back the events stored; and
the live learner's examples are the warm start's batch path's (the same examples in the same order, equal to float32
rounding)."""

from __future__ import annotations

import array
import heapq
import math
import random
from dataclasses import dataclass, field

import numpy as np
import pytest

from devintel.generators import iter_batches
from devintel.models.dense import features_needed
from devintel.models.features import Features
from devintel.models.labels import DelayedLabels, Resolved
from devintel.models.learners import default_model, model_inputs
from devintel.models.live import GLOBAL, LiveModels
from devintel.models.online import warm_start_batches
from devintel.models.scored import UNPACKED, FeaturePacker, Scored, ScoredBlock, ScoredRows
from devintel.models.warm_start import collect_example_rows

H = 7 * 86_400.0
DAY = 86_400.0


@dataclass
class PerEventLabels:
    """The oracle: the label buffer as it was, one expiry entry per event (``DelayedLabels`` before its rows)."""

    horizon_s: float
    max_pending: int
    dropped: int = 0
    devices: dict[str, dict[int, tuple[float, object]]] = field(default_factory=dict)
    expiry: list[tuple[float, int, str]] = field(default_factory=list)
    held: dict[str, list[tuple[float, int, str]]] = field(default_factory=dict)
    sequence: int = 0

    def add(self, device_id: str, ts: float, payload: object) -> None:
        pending = self.devices.setdefault(device_id, {})
        if len(pending) >= self.max_pending:
            del pending[min(pending)]
            self.dropped += 1
        self.sequence += 1
        pending[self.sequence] = (ts, payload)
        heapq.heappush(self.expiry, (ts, self.sequence, device_id))

    def failure(self, device_id: str, failure_ts: float) -> list[tuple[str, float, bool, float, object]]:
        self.held.pop(device_id, None)
        pending = self.devices.pop(device_id, None)
        if pending is None:
            return []
        out = [
            (device_id, ts, failure_ts - ts <= self.horizon_s, failure_ts, payload)
            for ts, payload in pending.values()
            if ts <= failure_ts
        ]
        out.sort(key=lambda r: r[1])
        return out

    def advance(self, now: float) -> list[tuple[str, float, bool, float, object]]:
        out = []
        while self.expiry and self.expiry[0][0] + self.horizon_s < now:
            ts, sequence, device_id = heapq.heappop(self.expiry)
            pending = self.devices.get(device_id)
            if pending is None:
                continue
            if device_id in self.held:
                self.held[device_id].append((ts, sequence, device_id))
                continue
            entry = pending.pop(sequence, None)
            if entry is not None:
                out.append((device_id, ts, False, now, entry[1]))
            if not pending:
                del self.devices[device_id]
        return out

    def hold(self, device_id: str) -> None:
        self.held.setdefault(device_id, [])

    def release(self, device_id: str) -> None:
        for entry in self.held.pop(device_id, []):
            heapq.heappush(self.expiry, entry)

    def forget(self, device_id: str) -> int:
        self.held.pop(device_id, None)
        pending = self.devices.pop(device_id, None)
        return len(pending) if pending is not None else 0


def _tuples(resolved: list[Resolved[object]]) -> list[tuple[str, float, bool, float, object]]:
    return [(r.device_id, r.ts, r.label, r.resolved_at, r.payload) for r in resolved]


@pytest.mark.parametrize(
    ("seed", "max_pending", "device_count"),
    [(0, 1024, 3), (1, 8, 12), (2, 3, 40), (3, 1024, 40), (4, 2, 80), (5, 1, 150)],
)
def test_one_expiry_per_device_resolves_what_one_per_event_did(seed: int, max_pending: int, device_count: int) -> None:
    """Random streams with late and tied event times, holds and releases, failures, forgetting and full buffers."""
    rng = random.Random(seed)
    mine: DelayedLabels[object] = DelayedLabels(H, max_pending=max_pending)
    oracle = PerEventLabels(H, max_pending)
    devices = [f"d{i}" for i in range(device_count)]
    clock = 0.0
    resolved = 0
    for step in range(6_000):
        device = rng.choice(devices)
        roll = rng.random()
        if roll < 0.6:
            clock += rng.choice([0.0, rng.uniform(0, 0.5 * DAY)])
            ts = clock - rng.uniform(0, 3 * DAY) if rng.random() < 0.1 else clock  # late events
            ts = math.floor(ts / 3600.0) * 3600.0 if rng.random() < 0.3 else ts  # ties in time
            mine.add(device, ts, step)
            oracle.add(device, ts, step)
        elif roll < 0.9:
            got, expected = _tuples(mine.advance(clock)), oracle.advance(clock)
            assert got == expected, step
            resolved += len(got)
        elif roll < 0.93:
            mine.hold(device)
            oracle.hold(device)
        elif roll < 0.99:
            mine.release(device)
            oracle.release(device)
        elif roll < 0.997:
            when = clock - rng.uniform(0, 10 * DAY)
            assert _tuples(mine.failure(device, when)) == oracle.failure(device, when), step
        else:
            assert mine.forget(device) == oracle.forget(device)
        assert len(mine) == sum(len(p) for p in oracle.devices.values())
        assert mine.held(device) == (device in oracle.held)
    for device in devices:
        mine.release(device)
        oracle.release(device)
    assert _tuples(mine.advance(1e12)) == oracle.advance(1e12)
    assert mine.dropped == oracle.dropped
    assert resolved > 500
    assert len(mine._expiry) <= len(devices) + len(oracle.expiry)  # one entry per device, plus a few stale ones


def _scored(rng: random.Random, names: list[str]) -> Scored:
    keys = rng.sample(names, rng.randrange(0, len(names)))
    features = {key: rng.uniform(-1e4, 1e4) for key in keys}
    flagged = rng.choice([None, True, False])
    return Scored(features, rng.random(), flagged, rng.random() < 0.5, rng.random() < 0.5)


def _as_stored(packer: FeaturePacker, scored: Scored) -> Features:
    """The features of ``scored`` (a dict) as the packer keeps them (float32, or the dict when its table is full)."""
    assert isinstance(scored.features, dict)
    return packer.unpack(packer.pack(scored.features))


def test_scored_rows_give_back_the_events_stored() -> None:
    """Rows popped anywhere, in any order, and a block read whole, give back each event as it was stored: its
    features (float32, as the packer rounds them; as a dict once the packer's layout table is full), probability
    and flags."""
    rng = random.Random(3)
    names = [f"f{i}" for i in range(8)]
    packer = FeaturePacker(max_layouts=20)
    rows = ScoredRows(packer)
    block = rows.block()
    stored: list[Scored] = []
    taken = 0
    for _ in range(3_000):
        if stored and rng.random() < 0.45:
            index = rng.randrange(len(stored))
            expected, got = stored.pop(index), rows.pop(block, index)
            assert packer.unpack(got.features) == _as_stored(packer, expected)
            assert (got.probability, got.flagged, got.alarm, got.challenger_alarm) == (
                expected.probability, expected.flagged, expected.alarm, expected.challenger_alarm,
            )  # fmt: skip
            taken += 1
        else:
            scored = _scored(rng, names)
            rows.append(block, scored)
            stored.append(scored)
    assert taken > 1_000
    assert block.unpacked is not None  # the layout table filled up: some rows keep their dict
    assert any(layout == UNPACKED for layout in block.layout)
    whole = rows.payloads(block)
    assert [packer.unpack(s.features) for s in whole] == [_as_stored(packer, s) for s in stored]
    assert [s.probability for s in whole] == [s.probability for s in stored]
    assert len(block.values) == sum(block.sizes)


def test_a_waiting_event_costs_a_fraction_of_a_scored_object() -> None:
    """The block of 24 events of 30 float32 features: their values plus about 20 bytes an event (not asserted as a
    figure of the machine: counted from the arrays' lengths and item sizes)."""
    packer = FeaturePacker()
    rows = ScoredRows(packer)
    block: ScoredBlock = rows.block()
    features = {f"f{i}": float(i) for i in range(30)}
    for i in range(24):
        rows.append(block, Scored(dict(features), 0.5, i % 2 == 0))
    per_event = sum(len(a) * a.itemsize for a in (block.layout, block.sizes, block.values, block.probability)) + len(
        block.flags
    )
    assert per_event / 24 == 30 * 4 + 2 + 2 + 8 + 1
    assert isinstance(block.values, array.array)
    assert block.values.typecode == "f"


ARGUMENTS = {"samples": 60_000, "days": 50, "seed": 9, "failure_rate": 0.6}


@pytest.mark.slow
def test_the_live_learners_examples_are_the_warm_starts_batch_rows() -> None:
    """The live learner (the live models' own: its features limited to what the models read, its waiting events as
    float32 rows of the device table), fed a generated stream event by event with every event waiting and every
    negative learned, learns the examples the warm start's batch path (``collect_example_rows``) gives for the
    same stream: the same examples with the same labels in the same order, and the same model inputs to float32
    rounding (the live rows round the features, then ``model_inputs`` shapes them; the batch rows round the shaped
    inputs: an input passed through as it is is equal bit for bit, a shaped one to float32 rounding)."""
    live = LiveModels(
        models={GLOBAL: default_model()}, thresholds={GLOBAL: 0.5}, router={}, version="v", horizon_s=H,
        negative_rate=1.0, label_interval_s=0.0,
    )  # fmt: skip
    learned: list[tuple[str, Features, bool]] = []
    live.learner.on_learn = lambda d, x, y: learned.append((d, x, y))
    live.learner.learn = True
    warm_start_batches(live.learner, iter_batches(**ARGUMENTS))  # type: ignore[arg-type]
    rows, _ = collect_example_rows(
        iter_batches(**ARGUMENTS),  # type: ignore[arg-type]
        H,
        negative_rate=1.0,
        only=features_needed([default_model()]),
    )
    assert len(rows) == len(learned) > 10_000
    assert rows.labels.tolist() == [y for _, _, y in learned]
    assert 100 < int(rows.labels.sum()) < len(rows)
    index = {name: j for j, name in enumerate(rows.names)}
    shaped = exact = 0
    for i, (_, features, _) in enumerate(learned):
        x = model_inputs(features)
        assert set(x) == {name for name, j in index.items() if not np.isnan(rows.inputs[i, j])}, i
        for name, value in x.items():
            batch = float(rows.inputs[i, index[name]])
            if name in features:  # passed through: float32 both ways
                assert value == batch, (i, name)
                exact += 1
            else:
                assert math.isclose(value, batch, rel_tol=1e-6, abs_tol=1e-5), (i, name, value, batch)
                shaped += 1
    assert exact > 100_000
    assert shaped > 100_000
