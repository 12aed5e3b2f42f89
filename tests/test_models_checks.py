"""The schedule of periodic checks: the tick of the live evidence looks only at the devices whose time has come, and
finds what looking at every device finds (checked against that walk, written out here, on a random stream)."""

from __future__ import annotations

import random
from dataclasses import dataclass

from devintel.models.checks import CheckSchedule
from devintel.models.learners import default_model
from devintel.models.live import GLOBAL, LiveEvidence, LiveModels

HOUR = 3600.0


@dataclass
class _Record:
    check_at: float | None = None


def test_a_device_keeps_its_earliest_time_and_is_due_once() -> None:
    schedule, records = CheckSchedule(), {"a": _Record(), "b": _Record(), "c": _Record()}
    schedule.at("a", records["a"], 50.0)
    schedule.at("a", records["a"], 80.0)  # later: the earlier time stands
    schedule.at("b", records["b"], 30.0)
    schedule.at("b", records["b"], 10.0)  # earlier: brought forward
    schedule.at("c", records["c"], 90.0)
    assert (records["a"].check_at, records["b"].check_at) == (50.0, 10.0)
    assert schedule.due(20.0, records.get, len(records)) == ["b"]
    assert records["b"].check_at is None  # off the schedule until put back
    assert schedule.due(40.0, records.get, len(records)) == []  # b's entry left behind at 30 is skipped
    records.pop("a")  # a forgotten device is not due
    assert schedule.due(60.0, records.get, len(records)) == []
    schedule.at("b", records["b"], 70.0)
    assert schedule.due(100.0, records.get, len(records)) == ["b", "c"]  # sorted by id
    assert len(schedule) == 0


def test_entries_left_behind_are_dropped_once_they_outnumber_the_devices() -> None:
    schedule, record = CheckSchedule(), _Record()
    for k in range(3000):
        schedule.at("a", record, 1e6 - k)  # brought forward every time: 3,000 entries, one live
    assert len(schedule) == 3000
    assert schedule.due(0.0, {"a": record}.get, 1) == []
    assert len(schedule) == 1
    assert schedule.due(1e6, {"a": record}.get, 1) == ["a"]


def _walk(live: LiveModels, now: float) -> tuple[dict[str, float], set[str]]:
    """What the tick at the stream clock ``now`` must find, by looking at every device on its source's clock (the
    tick before the schedule): the failures (device: time) and the devices suspected."""
    evidence, clocks = live.evidence, live.clocks
    failed: dict[str, float] = {}
    suspected: set[str] = set()
    for device, record in live.table.records.items():
        clock = now if record.source is None else clocks.get(record.source, now)
        if record.offline_since is not None:
            away = clock - record.offline_since
            if away >= evidence.gone_for_good_s:
                failed[device] = record.offline_since
                continue
            if away > evidence.offline_grace_s:
                suspected.add(device)
        state = record.features
        if state is None or state.usual_gap <= 0.0:
            continue
        limit = max(evidence.silence_factor * state.usual_gap, evidence.min_silence_s)
        silent = clock - state.last_ts
        if silent >= max(limit, evidence.gone_for_good_s):
            failed[device] = state.last_ts
            suspected.discard(device)
        elif silent > limit:
            suspected.add(device)
    return failed, suspected


def test_the_scheduled_tick_finds_what_looking_at_every_device_finds() -> None:
    rng = random.Random(7)
    live = LiveModels(
        models={GLOBAL: default_model()},
        thresholds={GLOBAL: 0.5},
        router={},
        version="v1",
        horizon_s=7 * 86_400.0,
        evidence=LiveEvidence(offline_grace_s=HOUR, min_silence_s=6 * HOUR, gone_for_good_s=24 * HOUR),
    )
    devices = [f"d{k:02d}" for k in range(40)]
    interval = {device: rng.choice([60.0, 600.0, HOUR, 4 * HOUR]) for device in devices}
    quiet = {device: rng.random() < 0.4 for device in devices}  # falls silent for a while, some for good
    clock = {"native": 0.0, "zigbee2mqtt": 0.0}
    found = suspected_seen = 0
    for step in range(6000):
        source = "native" if step % 3 else "zigbee2mqtt"
        clock[source] += rng.uniform(0.0, 400.0)
        device = rng.choice(devices)
        if quiet[device] and 20 * HOUR < clock[source] % (80 * HOUR) < 60 * HOUR:
            continue
        roll = rng.random()
        if roll < 0.01:
            live.availability(device, False, clock[source], source)
        elif roll < 0.015:
            live.availability(device, True, clock[source], source)
        elif roll < 0.017:
            live.feedback(device, clock[source], rng.choice(["failure", "repaired"]))
        else:
            ts = clock[source] - rng.uniform(0.0, interval[device])
            live.observe(
                {"device_id": device, "ts": ts, "home_type": "flat", "battery_level": rng.uniform(20, 90)},
                source=source,
            )
        if step % 17 == 0:
            failed, suspected = _walk(live, live.clock)
            held_before = {d for d in live.table.records if live.learner.labels.held(d)}
            failures = live.tick()
            assert {f.device_id: f.ts for f in failures} == failed
            held = {d for d in live.table.records if live.learner.labels.held(d)}
            assert held == (held_before | suspected) - set(failed)
            found += len(failures)
            suspected_seen += len(suspected)
    assert found >= 10  # the stream tried both verdicts, and often
    assert suspected_seen >= 100
    assert len(live.checks) <= 4 * len(live.table) + 1024
