"""Replay of a world the models were not built from: learning on does at least as well as ``--no-learn``."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import orjson

from devintel.daemon.captures import flags_after_events, synthetic_capture
from devintel.daemon.from_settings import build_handler
from devintel.daemon.replay import replay
from devintel.daemon.settings import Settings
from devintel.generators import generate
from devintel.models.household import household_report
from devintel.models.online import failure_times
from devintel.models.snapshots import SnapshotStore

HORIZON = 7 * 86_400.0


def test_learning_live_on_an_unseen_world_is_no_worse_than_not_learning(small_snapshot: Path) -> None:
    # An unseen world: homes of another seed, of a variant family the small snapshot never trained on.
    world = generate(samples=30_000, days=120.0, seed=4242, variants=("on_change",))
    capture = synthetic_capture(world)
    lines = [orjson.dumps(line).decode() for line in capture]
    truth_failure = world["device_id"].astype(str).map(failure_times(world)).to_numpy(dtype=np.float64)
    results = {}
    for learn in (True, False):
        handler = build_handler(Settings(model_dir=small_snapshot), SnapshotStore(small_snapshot).load())
        out = io.BytesIO()
        stats = replay(handler, lines, out, learn=learn)
        assert stats.errors == 0
        output = [orjson.loads(line) for line in out.getvalue().splitlines()]
        flags = flags_after_events(capture, output)
        assert flags.size == len(world)
        results[learn] = (
            household_report(world["device_id"].astype(str), world["ts"], flags, truth_failure, HORIZON),
            handler.live,
        )
    (learned, live), (frozen, _) = results[True], results[False]
    assert live.learner.learned > 0  # the challenger learned from the world's own feedback
    assert learned.failures == frozen.failures > 0
    # Learning on is never worse by both measures at once: a challenger serves only once it raised no more false
    # alarms and caught no fewer (on settled labels), so what it changes is a trade at worst. On this toy world it
    # takes over and trades one catch of 16 for about 12 % fewer false alarms; with the default models
    # (bench/bench_alarms.py) the two runs are equal.
    fewer_false = learned.false_alarms_per_100_device_days <= frozen.false_alarms_per_100_device_days
    no_fewer_caught = learned.caught >= frozen.caught
    assert fewer_false or no_fewer_caught
    assert learned.caught >= frozen.caught - 1
    assert learned.false_alarm_episodes <= frozen.false_alarm_episodes + 1


def test_the_capture_carries_every_event_and_a_feedback_per_failure() -> None:
    world = generate(samples=3_000, days=60.0, seed=5)
    capture = synthetic_capture(world)
    feedback = [line for line in capture if "/feedback/" in str(line["topic"])]
    assert len(capture) - len(feedback) == len(world)
    assert len(feedback) == len(failure_times(world))
    times = [float(line["ts"]) for line in capture]  # type: ignore[arg-type]
    assert times == sorted(times)
    assert all("fails_within_horizon" not in line["payload"] for line in capture)  # type: ignore[operator]
