"""The device table: one record per device, one forget, one cap, one snapshot form, handed over whole on a reload;
a field added to the record is forgotten, carried over and snapshotted with no hand-written line."""

from __future__ import annotations

import json
import math
import random
from dataclasses import field, fields, make_dataclass
from typing import Any

import pytest

from devintel.models.decision import AlarmState
from devintel.models.devices import SNAPSHOT, TRANSIENT, Codec, Column, Device, DeviceTable, check_policies
from devintel.models.learners import default_model
from devintel.models.live import ALARMS_FILE, GLOBAL, LiveModels, snapshot_contents

H = 7 * 86_400.0
HOUR = 3600.0
FIELDS = [item.name for item in fields(Device)]
#: A value worth keeping of every field the snapshot keeps: a field added to the snapshot needs one here.
KEPT_SAMPLES: dict[str, object] = {
    "alarm": AlarmState(True, 10.0, 3, math.nan, 12.0),
    "challenger_alarm": AlarmState(False, 20.0, 2, math.nan, 5.0),
}


def _live() -> LiveModels:
    return LiveModels(models={GLOBAL: default_model()}, thresholds={GLOBAL: 0.5}, router={}, version="v1", horizon_s=H)


def _event(device: str, ts: float) -> dict[str, object]:
    return {"device_id": device, "ts": ts, "home_type": "apartment", "battery_level": 90.0, "linkquality": 120.0}


def _columns(live: LiveModels) -> list[Any]:
    """Every per-device map the live models' components read (they must all be views of the table)."""
    learner = live.learner
    return [
        learner.features.states,
        learner.labels._devices,
        learner.labels._held,
        learner.last_held,
        live.ledger._pending,
        live.alarms,
        live.challenger_alarms,
        live.source_of,
        live.offline_since,
        live.home_type_of,
    ]


def test_every_field_says_whether_the_snapshot_keeps_it() -> None:
    check_policies(Device)
    for item in fields(Device):
        assert item.metadata.get(SNAPSHOT) or item.metadata.get(TRANSIENT), item.name
    assert sorted(item.name for item in fields(Device) if SNAPSHOT in item.metadata) == sorted(KEPT_SAMPLES)


def test_a_field_without_a_word_on_the_snapshot_is_refused() -> None:
    silent = make_dataclass("Silent", [("extra", int | None, field(default=None))], bases=(Device,), slots=True)
    with pytest.raises(TypeError, match="extra"):
        DeviceTable(record=silent)


def test_every_map_of_the_live_models_is_a_view_of_one_table() -> None:
    live = _live()
    for column in _columns(live):
        assert isinstance(column, Column)
        assert column.table is live.table
    # The handler's fields, and the schedule's time, which the schedule reads and writes on the record itself.
    assert {column.name for column in _columns(live)} | {"ingest", "info", "check_at"} == set(FIELDS)


@pytest.mark.parametrize("name", FIELDS)
def test_a_field_is_forgotten_carried_over_on_reload_and_snapshotted(name: str) -> None:
    live = _live()
    for i in range(3):
        live.observe(_event("a", i * HOUR))
        live.observe(_event("b", i * HOUR))
    value = KEPT_SAMPLES.get(name, object())
    setattr(live.table.record("a"), name, value)
    # Carried over: a reload's models take the table as one object, so every field of every record comes along.
    fresh = _live()
    fresh.adopt_state(live)
    assert getattr(fresh.table.record("a"), name) is value
    assert all(column.table is fresh.table for column in _columns(fresh))
    # Snapshotted: a field the snapshot keeps comes back through the live snapshot's files.
    item = next(item for item in fields(Device) if item.name == name)
    if SNAPSHOT in item.metadata:
        files, _ = snapshot_contents(fresh, {}, {})
        again = _live()
        again.restore_alarms(json.loads(files[ALARMS_FILE]))
        assert repr(getattr(again.table.record("a"), name)) == repr(value)
    # Forgotten: one call, and no view of the table still knows the device.
    fresh.forget("a")
    assert "a" not in fresh.table
    assert all("a" not in column for column in _columns(fresh))
    assert "b" in fresh.table


def test_a_field_added_to_the_record_is_forgotten_carried_and_snapshotted() -> None:
    codec = Codec(keeps=lambda v: v > 0, dump=lambda v: v, load=int)
    extended = make_dataclass(
        "Extended",
        [("extra", int | None, field(default=None, metadata={SNAPSHOT: "extra", "codec": codec}))],
        bases=(Device,),
        slots=True,
    )
    table = DeviceTable(record=extended)
    column = table.column("extra")
    column["a"], column["b"], column["c"] = 7, 0, 9
    table.forget("c")
    saved = json.loads(json.dumps(table.snapshot()))
    assert saved["extra"] == {"a": 7}  # "b" is not worth keeping, "c" is forgotten
    restored = DeviceTable(record=extended)
    restored.restore(saved)
    assert dict(restored.column("extra")) == {"a": 7}


def test_the_live_snapshot_keeps_the_previous_alarm_file_format() -> None:
    live = _live()
    live.table.record("a").alarm = KEPT_SAMPLES["alarm"]  # type: ignore[assignment]
    live.table.record("b").alarm = AlarmState()  # a fresh state carries nothing: not written
    state = live.alarm_states()
    assert set(state) == {"serving", "challenger"}
    assert state["serving"] == {"a": [True, 10.0, 3, None, 12.0]}
    assert state["challenger"] == {}
    # A file of the previous version reads (and its NaN times).
    live.restore_alarms({"serving": {"c": [True, 1.0, 1, float("nan"), 2.0]}, "unknown": {"c": 1}})
    assert live.alarms["c"].active


def test_the_cap_evicts_the_least_recently_heard_and_says_which() -> None:
    table = DeviceTable(max_devices=3)
    for device in ["a", "b", "c"]:
        table.heard(device)
    table.heard("a")  # heard again: now the most recent
    table.record("b")  # a look-up does not count as heard
    assert table.take_evicted() == []
    table.heard("d")
    evicted = table.take_evicted()
    assert [device for device, _ in evicted] == ["b"]
    assert list(table) == ["c", "a", "d"]
    assert table.take_evicted() == []


def test_a_live_device_past_the_cap_takes_its_whole_state_with_it() -> None:
    live = _live()
    live.table.max_devices = 2
    for i, device in enumerate(["a", "b", "c"]):
        live.table.heard(device)
        live.observe(_event(device, i * HOUR))
    assert [device for device, _ in live.table.take_evicted()] == ["a"]
    assert all("a" not in column for column in _columns(live))
    assert len(live.learner.features) == 2


def test_a_column_behaves_as_a_dict() -> None:
    rng = random.Random(7)
    table, plain = DeviceTable(), {}
    column: Column[float] = table.column("last_held")
    for _ in range(2_000):
        device, value = f"d{rng.randrange(12)}", float(rng.randrange(100))
        match rng.randrange(7):
            case 0:
                column[device] = plain[device] = value
            case 1:
                assert column.pop(device, None) == plain.pop(device, None)
            case 2:
                assert column.setdefault(device, value) == plain.setdefault(device, value)
            case 3:
                assert column.get(device) == plain.get(device)
            case 4:
                assert (device in column) == (device in plain)
            case 5:
                if device in plain:
                    del column[device], plain[device]
                else:
                    with pytest.raises(KeyError):
                        del column[device]
            case _:
                table.forget(device)
                plain.pop(device, None)
        assert dict(column) == plain
        assert len(column) == len(plain)
    with pytest.raises(KeyError):
        column["nobody"]
    with pytest.raises(AttributeError):
        table.column("no_such_field")
