"""The handler (the one path of live ingest and replay) with the real adapters and a real small snapshot:
predictions and discovery out, throttling, bad input counted and kept away from the models, evidence,
eviction, commands, and replay."""

from __future__ import annotations

import contextlib
import io
import itertools
import logging
import os
import pickle
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import jinja2.sandbox
import orjson
import pytest

from devintel.daemon.from_settings import build_handler
from devintel.daemon.replay import capture_message, replay
from devintel.daemon.settings import Settings
from devintel.ingest.handler import Handler, fingerprint
from devintel.ingest.inbound import Command
from devintel.ingest.outbound import SERVICE_ENTITIES, Outgoing, service_discovery_messages
from devintel.models.decision import DecisionParams
from devintel.models.snapshots import SnapshotStore

T0 = 1_790_000_000.0
HOUR = 3600.0


def _handler(model_dir: Path, **overrides: object) -> Handler:
    settings = Settings(model_dir=model_dir, **overrides)  # type: ignore[arg-type]
    return build_handler(settings, SnapshotStore(model_dir).load())


def _event(device: str, ts: float, **fields: object) -> tuple[str, bytes, float]:
    body = {"ts": ts, "device_type": "motion_sensor", "power_source": "battery", "battery_level": 80.0, **fields}
    return f"devintel/events/{device}", orjson.dumps(body), ts


def _topics(messages: list[Outgoing]) -> list[str]:
    return [m.topic for m in messages]


def test_an_event_gives_a_prediction_and_discovery(small_snapshot: Path) -> None:
    handler = _handler(small_snapshot)
    out = handler.handle(*_event("kitchen.motion", T0))
    topics = _topics(out.messages)
    assert "devintel/predictions/kitchen.motion" in topics
    assert "homeassistant/sensor/devintel/kitchen_motion_failure_probability/config" in topics
    assert "homeassistant/binary_sensor/devintel/kitchen_motion_needs_attention/config" in topics
    prediction = orjson.loads(next(m for m in out.messages if "predictions" in m.topic).payload)
    assert set(prediction) == {
        "device_id", "ts", "time", "failure_probability", "needs_attention", "risk_level", "model", "model_version",
        "reasons",
    }  # fmt: skip
    assert prediction["time"] == datetime.fromtimestamp(T0, UTC).isoformat(timespec="seconds")
    assert prediction["device_id"] == "kitchen.motion"
    assert prediction["ts"] == T0
    assert 0.0 <= prediction["failure_probability"] <= 1.0
    assert prediction["model_version"] == SnapshotStore(small_snapshot).current_version()
    sensor = orjson.loads(out.messages[0].payload)
    assert sensor["state_topic"] == "devintel/predictions/kitchen.motion"
    assert sensor["availability"][0]["topic"] == "devintel/status"
    assert all(m.retain for m in out.messages)
    # Discovery once per device; an unchanged prediction is not republished within the interval.
    again = handler.handle(*_event("kitchen.motion", T0 + 60, battery_level=80.0))
    assert again.messages == [] or _topics(again.messages) == ["devintel/predictions/kitchen.motion"]
    assert handler.counters.events == 2


def test_unchanged_predictions_are_republished_only_after_the_interval(small_snapshot: Path) -> None:
    handler = _handler(small_snapshot, live={"publish_interval_s": 600.0})
    published = []
    for i in range(30):  # one report a minute, steady: the risk level does not change
        out = handler.handle(*_event("steady", T0 + 60 * i))
        published += [m for m in out.messages if "predictions" in m.topic]
    levels = [orjson.loads(m.payload)["risk_level"] for m in published]
    changes = sum(1 for a, b in itertools.pairwise(levels) if a != b)
    assert len(published) <= 1 + 30 * 60 // 600 + changes
    assert len(published) >= 30 * 60 // 600


def _received_at(message: tuple[str, bytes, float], received: float) -> tuple[str, bytes, float]:
    topic, payload, _ = message
    return topic, payload, received


def _latest_predictions(messages: list[Outgoing]) -> dict[str, bytes]:
    return {m.topic: m.payload for m in messages if m.topic.startswith("devintel/predictions/")}


def test_catching_up_on_a_backlog_publishes_each_devices_latest_prediction(small_snapshot: Path) -> None:
    """While catching up, a device's prediction goes out at most once a second of receipt time; the release then
    publishes each device's latest, exactly as a handler that published every one would have published it last."""
    live = {"publish_interval_s": 0.0, "backlog_publish_interval_s": 1.0}
    catching_up, every = _handler(small_snapshot, live=live), _handler(small_snapshot, live=live)
    catching_up.catching_up = True
    devices = ("a", "b", "c")
    published: list[Outgoing] = []
    expected: dict[str, bytes] = {}
    for i in range(300):  # 300 events over 3 s of receipt, 100 for each device a minute apart in event time
        message = _received_at(_event(devices[i % 3], T0 + 60 * i, battery_level=80.0 - i / 10), T0 + 3600 + i / 100)
        published += [m for m in catching_up.handle(*message).messages if "predictions" in m.topic]
        expected.update(_latest_predictions(every.handle(*message).messages))
    per_device = {d: sum(1 for m in published if m.topic.endswith(f"/{d}")) for d in devices}
    assert all(1 <= count <= 4 for count in per_device.values()), per_device  # the first, then once a second
    assert catching_up.counters.held_publish == 300 - len(published)
    assert catching_up.holding
    released = catching_up.release_held().messages
    assert _latest_predictions(released) == expected  # the latest of each, reasons and all
    assert _topics(released) == [f"devintel/predictions/{d}" for d in devices]  # in device order
    assert catching_up.counters.published == len(published) + 3
    assert catching_up.release_held().messages == []  # nothing held any more


def test_an_alarm_raised_while_catching_up_is_logged_though_not_published(
    small_snapshot: Path, caplog: pytest.LogCaptureFixture
) -> None:
    handler = _handler(small_snapshot, live={"publish_interval_s": 0.0})
    handler.catching_up = True
    always, never = DecisionParams.plain(0.0), DecisionParams.plain(1.0)  # p >= 0 always, p >= 1 not here
    caplog.set_level(logging.INFO, logger="devintel.ingest.handler")
    for k, decision in enumerate([always, never, always, always]):  # raised, cleared, raised again, still on
        handler.live.decision = decision
        handler.handle(*_received_at(_event("a", T0 + 60 * k), T0 + 3600 + k / 10))
    raised = [r for r in caplog.records if "needs attention" in r.getMessage()]
    assert len(raised) == 2  # each time it was raised, the second while its prediction was held
    assert handler.counters.held_publish == 3
    (latest,) = handler.release_held().messages
    assert orjson.loads(latest.payload)["needs_attention"] is True


def test_a_held_prediction_of_a_device_forgotten_since_is_not_released(small_snapshot: Path) -> None:
    handler = _handler(small_snapshot, live={"publish_interval_s": 0.0, "max_devices": 2})
    handler.catching_up = True
    for k, device in enumerate(["a", "b", "a", "b"]):  # the first of each published, the second held
        handler.handle(*_received_at(_event(device, T0 + 60 * k), T0 + 3600 + k / 10))
    assert handler.counters.held_publish == 2
    out = handler.handle(*_received_at(_event("c", T0 + 300), T0 + 3601))  # over the cap: "a" is evicted
    assert "devintel/predictions/a" in {m.topic for m in out.messages if m.payload == b""}  # its state removed
    assert _topics(handler.release_held().messages) == ["devintel/predictions/b"]


BAD_MESSAGES = [
    ("devintel/events/x", b"{not json", "malformed_json"),
    ("devintel/events/x", b"[1, 2]", "wrong_type"),
    ("devintel/events/a+b", b"{}", "bad_device_id"),
    ("devintel/events/..", b"{}", "bad_device_id"),
    ("devintel/events/x", b'{"device_id": "y"}', "device_id_mismatch"),
    ("devintel/events/x", orjson.dumps({"ts": T0 + 400 * 86_400}), "bad_timestamp"),
    ("devintel/events/x", orjson.dumps({"ts": 1.0}), "bad_timestamp"),
    ("devintel/events/x", b"{" + b" " * (70 * 1024) + b"}", "too_large"),
    ("devintel/feedback/x", b'{"event": "exploded"}', "unknown_value"),
    ("devintel/cmd/format-disk", b"", "unknown_value"),
]


@pytest.mark.parametrize(("topic", "payload", "reason"), BAD_MESSAGES)
def test_bad_input_is_counted_by_reason_and_never_reaches_a_model(
    small_snapshot: Path, topic: str, payload: bytes, reason: str
) -> None:
    clean, dirty = _handler(small_snapshot), _handler(small_snapshot)
    for i in range(40):
        message = _event("dev1", T0 + i * HOUR, battery_level=80.0 - i)
        clean.handle(*message)
        dirty.handle(*message)
        out = dirty.handle(topic, payload, T0 + i * HOUR)
        assert out.messages == []
    assert dirty.counters.rejected == {reason: 40}
    assert clean.counters.rejected == {}
    assert pickle.dumps(dirty.live.models) == pickle.dumps(clean.live.models)
    assert pickle.dumps(dirty.live.learner.features.states) == pickle.dumps(clean.live.learner.features.states)


@pytest.mark.parametrize(
    ("field", "bad", "reason"),
    [("linkquality", "NaN", "not_finite"), ("linkquality", 300, "out_of_range"), ("temperature", True, "wrong_type")],
)
def test_a_bad_value_is_dropped_alone_counted_logged_once_and_the_event_used_as_without_it(
    small_snapshot: Path, caplog: pytest.LogCaptureFixture, field: str, bad: object, reason: str
) -> None:
    without, with_bad = _handler(small_snapshot), _handler(small_snapshot)
    for i in range(40):
        ts = T0 + i * HOUR
        clean = without.handle(*_event("dev1", ts, battery_level=80.0 - i))
        with caplog.at_level(logging.WARNING, logger="devintel.ingest.handler"):
            dirty = with_bad.handle(*_event("dev1", ts, battery_level=80.0 - i, **{field: bad}))
        assert dirty.messages == clean.messages
    assert with_bad.counters.dropped_values == {reason: 40}
    assert with_bad.counters.rejected == {}
    assert with_bad.counters.events == without.counters.events == 40
    lines = [r.getMessage() for r in caplog.records if "dropped a value" in r.getMessage()]
    assert len(lines) == 1
    assert field in lines[0]
    assert pickle.dumps(with_bad.live.models) == pickle.dumps(without.live.models)
    assert pickle.dumps(with_bad.live.learner.features.states) == pickle.dumps(without.live.learner.features.states)


def test_fixture_messages_never_crash_the_handler(small_snapshot: Path) -> None:
    handler = _handler(small_snapshot)
    fixtures = Path(__file__).parent / "fixtures"
    count = 0
    for path in sorted(fixtures.glob("*.json")):
        for message in orjson.loads(path.read_bytes())["messages"]:
            raw = message["payload_raw"]
            payload = raw.encode() if isinstance(raw, str) else orjson.dumps(message["payload"])
            handler.handle(message["topic"], payload, T0)
            count += 1
    c = handler.counters
    assert count > 40
    assert c.messages == count
    assert c.events + sum(c.rejected.values()) + sum(c.skipped.values()) >= count - 6  # a few carry only info
    assert c.events >= 15
    assert c.skipped["unknown_topic"] >= 10  # Tasmota, ESPHome and Shelly topics: no adapter claims them


def test_feedback_resolves_labels_and_teaches_the_models(small_snapshot: Path) -> None:
    handler = _handler(small_snapshot)
    serving, challenger = pickle.dumps(handler.live.models), pickle.dumps(handler.live.challenger)
    for i in range(20):
        handler.handle(*_event("smoke1", T0 + i * HOUR, battery_level=30.0 - i))
    handler.handle("devintel/feedback/smoke1", b'{"event": "failure"}', T0 + 21 * HOUR)
    assert handler.counters.failures == {"feedback": 1}
    assert handler.counters.feedback == {"failure": 1}
    assert handler.live.learner.learned == 20
    assert pickle.dumps(handler.live.challenger) != challenger  # the live-learning copy learned ...
    assert pickle.dumps(handler.live.models) == serving  # ... the serving models wait until it beats them


def test_silent_devices_are_evicted_and_their_entities_removed(small_snapshot: Path) -> None:
    handler = _handler(small_snapshot, live={"retention_days": 1.0})
    handler.handle(*_event("old", T0))
    out = handler.handle(*_event("new", T0 + 2 * 86_400))
    assert "old" not in handler.devices
    removed = [m for m in out.messages if m.payload == b""]
    # The entities go first, then their state: Home Assistant never renders an empty state payload.
    assert _topics(removed) == [
        "homeassistant/sensor/devintel/old_failure_probability/config",
        "homeassistant/binary_sensor/devintel/old_needs_attention/config",
        "devintel/predictions/old",
    ]
    assert all(m.retain for m in removed)
    assert handler.counters.evicted == 1


def test_a_device_restored_from_the_registry_is_evicted_once_silent_past_retention(small_snapshot: Path) -> None:
    handler = _handler(small_snapshot, live={"retention_days": 1.0})
    registry = {"devices": [{"device_id": "gone", "source": "native", "last_heard": T0 - 86_400 + 600}]}
    assert handler.restore(registry) == 1
    handler.handle(*_event("here", T0))
    assert "gone" in handler.devices  # silent 23 h 50 min: kept
    out = handler.handle(*_event("here", T0 + 1200))
    assert "gone" not in handler.devices
    assert "devintel/predictions/gone" in _topics(out.messages)


def test_the_device_cap_evicts_the_least_recently_heard(small_snapshot: Path) -> None:
    handler = _handler(small_snapshot, live={"max_devices": 3})
    for i, device in enumerate(["a", "b", "c", "a", "d"]):
        handler.handle(*_event(device, T0 + i))
    assert list(handler.devices) == ["c", "a", "d"]
    assert len(handler.live.learner.features) == 3  # the evicted device's feature state went with it
    assert handler.counters.evicted == 1


def test_home_assistant_online_republishes_discovery_and_commands_are_returned(small_snapshot: Path) -> None:
    handler = _handler(small_snapshot)
    handler.handle(*_event("a", T0))
    handler.handle(*_event("b", T0))
    out = handler.handle("homeassistant/status", b"online", T0)
    service = [m for m in out.messages if "/devintel_service/" in m.topic]
    assert len(service) == len(SERVICE_ENTITIES)
    assert sorted(m.topic for m in out.messages if m not in service) == [
        "homeassistant/binary_sensor/devintel/a_needs_attention/config",
        "homeassistant/binary_sensor/devintel/b_needs_attention/config",
        "homeassistant/sensor/devintel/a_failure_probability/config",
        "homeassistant/sensor/devintel/b_failure_probability/config",
    ]
    assert handler.handle("devintel/cmd/snapshot", b"", T0).commands == [Command("snapshot")]


def test_zigbee2mqtt_devices_attach_to_the_bridge_device(small_snapshot: Path) -> None:
    handler = _handler(small_snapshot)
    devices = [
        {
            "ieee_address": "0x00158d0001e50d78",
            "friendly_name": "hall/motion",
            "type": "EndDevice",
            "power_source": "Battery",
            "definition": {"vendor": "Xiaomi", "model": "RTCGQ01LM", "exposes": [{"property": "occupancy"}]},
        }
    ]
    handler.handle("zigbee2mqtt/bridge/devices", orjson.dumps(devices), T0)
    out = handler.handle("zigbee2mqtt/hall/motion", b'{"battery": "80.00", "linkquality": 90, "occupancy": true}', T0)
    sensor = next(orjson.loads(m.payload) for m in out.messages if m.topic.endswith("failure_probability/config"))
    # Zigbee2MQTT's own device, named as Zigbee2MQTT names it (so HA never creates a nameless device when
    # devintel's config comes first), and entity ids suggested as Zigbee2MQTT suggests its own.
    assert sensor["device"] == {"identifiers": ["zigbee2mqtt_0x00158d0001e50d78"], "name": "hall/motion"}
    assert sensor["object_id"] == "hall_motion_failure_probability"
    assert sensor["default_entity_id"] == "sensor.hall_motion_failure_probability"
    state = handler.live.learner.features.states
    assert len(state) == 1


def test_replay_writes_what_live_would_publish(small_snapshot: Path, tmp_path: Path) -> None:
    lines = [
        orjson.dumps({"ts": ts, "topic": topic, "payload": orjson.loads(payload)}).decode()
        for topic, payload, ts in (_event("r1", T0 + i * HOUR) for i in range(5))
    ]
    availability = {"ts": T0, "topic": "zigbee2mqtt/x/availability", "payload": "offline"}
    lines += ["not json", '{"topic": "devintel/events/r1"}', orjson.dumps(availability).decode()]
    out = io.BytesIO()
    stats = replay(_handler(small_snapshot), lines, out)
    assert stats.lines == 8
    assert stats.bad_lines == 2
    records = [orjson.loads(line) for line in out.getvalue().splitlines()]
    assert len(records) == stats.written
    # The same messages through a fresh handler directly: the same output.
    direct = _handler(small_snapshot)
    expected = []
    for line in lines:
        try:
            message = capture_message(line)
        except ValueError:
            continue
        expected += [m.as_record() for m in direct.handle(*message).messages]
    assert records == expected


def test_a_redelivered_event_is_dropped_as_a_duplicate(small_snapshot: Path) -> None:
    once, twice = _handler(small_snapshot), _handler(small_snapshot)
    for i in range(5):
        message = _event("dup", T0 + i * HOUR, battery_level=90.0 - i)
        once.handle(*message)
        twice.handle(*message)
        twice.handle(*message)  # QoS 1 redelivery after a reconnection
    assert twice.counters.skipped["duplicate"] == 5
    assert twice.counters.events == once.counters.events == 5
    assert pickle.dumps(twice.live.learner.features.states) == pickle.dumps(once.live.learner.features.states)
    # The same time with other values is not a duplicate.
    twice.handle(*_event("dup", T0 + 4 * HOUR, battery_level=10.0))
    assert twice.counters.events == 6


def test_bridge_device_lists_are_bounded_by_the_device_cap(small_snapshot: Path) -> None:
    handler = _handler(small_snapshot, live={"max_devices": 5})
    devices = [
        {"ieee_address": f"0x{i:016x}", "friendly_name": f"d{i}", "type": "EndDevice", "power_source": "Battery"}
        for i in range(12)
    ]
    handler.handle("zigbee2mqtt/bridge/devices", orjson.dumps(devices), T0)
    assert len(handler.infos) == 5
    assert set(handler.infos) == {f"0x{i:016x}" for i in range(7, 12)}  # the latest listed are kept


def _configs(messages: list[Outgoing]) -> dict[str, dict[str, object]]:
    return {m.topic: orjson.loads(m.payload) for m in messages if m.topic.endswith("/config") and m.payload}


def test_native_events_name_their_device_and_a_rename_is_announced(small_snapshot: Path) -> None:
    handler = _handler(small_snapshot)
    out = handler.handle(*_event("0x00124bd953715b49", T0, name="  Cellar   leak sensor "))
    sensor = _configs(out.messages)["homeassistant/sensor/devintel/0x00124bd953715b49_failure_probability/config"]
    assert sensor["device"]["name"] == "Cellar leak sensor"  # type: ignore[index]
    assert sensor["device"]["via_device"] == "devintel_service_devintel"  # type: ignore[index]
    assert sensor["default_entity_id"] == "sensor.cellar_leak_sensor_failure_probability"
    assert sensor["origin"]["name"] == "devintel"  # type: ignore[index]
    # The name is no feature: it does not reach the models' per-device state as a field.
    assert "name" not in handler.live.learner.features.states["0x00124bd953715b49"].signals
    assert _configs(handler.handle(*_event("0x00124bd953715b49", T0 + 60, name="Cellar leak sensor")).messages) == {}
    renamed = _configs(handler.handle(*_event("0x00124bd953715b49", T0 + 120, name="Basement leak")).messages)
    assert {c["device"]["name"] for c in renamed.values()} == {"Basement leak"}  # type: ignore[index]
    # A device without a name is named by its id: never a nameless device block.
    unnamed = _configs(handler.handle(*_event("hub-9fe5240737", T0)).messages)
    assert {c["device"]["name"] for c in unnamed.values()} == {"hub-9fe5240737"}  # type: ignore[index]


@pytest.mark.parametrize(
    ("name", "reason"), [(42, "wrong_type"), ("bad\x00name", "wrong_type"), ("x" * 129, "out_of_range")]
)
def test_a_bad_name_is_rejected_and_counted(small_snapshot: Path, name: object, reason: str) -> None:
    handler = _handler(small_snapshot)
    assert handler.handle(*_event("n1", T0, name=name)).messages == []
    assert handler.counters.rejected == {reason: 1}
    assert handler.counters.events == 0


def test_one_source_cannot_age_out_another_sources_devices(small_snapshot: Path) -> None:
    """A simulated home replays months-old native events while one live Zigbee2MQTT message arrives: the
    native devices are judged on the native clock, so none is evicted or taken for silent."""
    handler = _handler(small_snapshot, live={"retention_days": 30.0})
    start = T0 - 120 * 86_400
    for i in range(48):
        for device in ("sim.a", "sim.b"):
            handler.handle(*_event(device, start + i * HOUR))
    live_now = T0
    handler.handle("zigbee2mqtt/plug", b'{"power": 12.5, "linkquality": 80}', live_now)
    handler.handle("zigbee2mqtt/plug", b'{"power": 12.0, "linkquality": 81}', live_now + 600)
    for i in range(48, 60):
        for device in ("sim.a", "sim.b"):
            out = handler.handle(*_event(device, start + i * HOUR))
            assert not any(m.payload == b"" for m in out.messages)
    assert {"sim.a", "sim.b", "plug"} <= set(handler.devices)
    assert handler.counters.evicted == 0
    assert "silence" not in handler.counters.failures
    assert handler.live.clocks["zigbee2mqtt"] >= live_now
    assert handler.live.clocks["native"] == start + 59 * HOUR
    # The native clock itself still ages out its own devices: sim.b, silent while sim.a goes on, past retention.
    handler.handle(*_event("sim.a", start + 59 * HOUR + 31 * 86_400))
    assert "sim.b" not in handler.devices
    assert "plug" in handler.devices


def test_the_registry_outlives_a_restart_and_birth_re_announces_every_known_device(small_snapshot: Path) -> None:
    first = _handler(small_snapshot)
    first.handle(*_event("attic.smoke", T0, name="Attic smoke alarm"))
    devices = [{"ieee_address": "0x00158d0001e50d78", "friendly_name": "Hall motion", "type": "EndDevice"}]
    first.handle("zigbee2mqtt/bridge/devices", orjson.dumps(devices), T0)
    first.handle("zigbee2mqtt/Hall motion", b'{"battery": 80, "occupancy": false}', T0)
    saved = orjson.loads(orjson.dumps(first.registry()))  # as it goes through the file

    second = _handler(small_snapshot)
    assert second.restore(saved) == 2
    assert second.restore({"devices": [{"device_id": "a+b", "last_heard": 1.0}, "junk"]}) == 0
    configs = _configs(second.handle("homeassistant/status", b"online", T0 + 60).messages)
    names = {c["device"]["name"] for c in configs.values()}  # type: ignore[index]
    assert {"Attic smoke alarm", "Hall motion", "devintel"} <= names
    motion = configs["homeassistant/sensor/devintel/0x00158d0001e50d78_failure_probability/config"]
    assert motion["device"]["identifiers"] == ["zigbee2mqtt_0x00158d0001e50d78"]  # type: ignore[index]


def _render(template: str, payload: bytes) -> str:
    """A discovery template rendered as Home Assistant renders it: Jinja2's sandbox, ``value`` and, when the
    payload is JSON, ``value_json``."""
    env = jinja2.sandbox.ImmutableSandboxedEnvironment()
    variables: dict[str, object] = {"value": payload.decode()}
    with contextlib.suppress(orjson.JSONDecodeError):
        variables["value_json"] = orjson.loads(payload)
    return env.from_string(template).render(**variables)


def test_discovery_templates_render_readable_values(small_snapshot: Path) -> None:
    handler = _handler(small_snapshot)
    out = handler.handle(*_event("hall.smoke", T0, name="Hall smoke", battery_level=12.0))
    prediction = next(m.payload for m in out.messages if "predictions" in m.topic)
    body = orjson.loads(prediction)
    configs = _configs(out.messages)
    sensor = configs["homeassistant/sensor/devintel/hall_smoke_failure_probability/config"]
    problem = configs["homeassistant/binary_sensor/devintel/hall_smoke_needs_attention/config"]
    assert float(_render(str(sensor["value_template"]), prediction)) == round(body["failure_probability"] * 100, 1)
    assert _render(str(problem["value_template"]), prediction) == ("ON" if body["needs_attention"] else "OFF")
    attributes = orjson.loads(_render(str(sensor["json_attributes_template"]), prediction))
    assert attributes == {
        "failure_probability": round(body["failure_probability"] * 100, 1),
        "risk_level": body["risk_level"],
        "reasons": ", ".join(body["reasons"]),
        "predicted_at": datetime.fromtimestamp(T0, UTC).isoformat(timespec="seconds"),
        "model": body["model"],
        "model_version": body["model_version"],
        "devintel_id": "hall.smoke",
    }
    assert "device_id" not in attributes
    assert orjson.loads(_render(str(sensor["json_attributes_template"]), b"")) == {}

    # devintel's own entities read the health report.
    health = {
        "status": "ok",
        "model_version": "v1",
        "devices": 3,
        "needs_attention": 1,
        "snapshot": {"written_at": "2026-11-30T22:00:00+00:00"},
        "false_alarms": {"alarmed": 8, "false": 2, "share": 0.25},
    }
    service = _configs(service_discovery_messages(handler.topics))
    rendered = {
        config["name"]: _render(
            str(config["value_template"]),
            b"online" if config["state_topic"] == "devintel/status" else orjson.dumps(health),
        )
        for config in service.values()
    }
    assert rendered == {
        "Running": "ON",
        "Status": "ok",
        "Model version": "v1",
        "Devices watched": "3",
        "Devices needing attention": "1",
        "Last snapshot": "2026-11-30T22:00:00+00:00",
        "Live false alarm share": "25.0",
    }
    before_any = {**health, "snapshot": {"written_at": None}, "false_alarms": {"alarmed": 0, "false": 0, "share": None}}
    for config in service.values():
        if config["name"] in ("Last snapshot", "Live false alarm share"):
            assert _render(str(config["value_template"]), orjson.dumps(before_any)) == "None"  # HA: unknown


def test_an_events_fingerprint_is_the_same_in_every_process() -> None:
    """A duplicate is recognised after a restore in another process (a fleet takeover): the fingerprint does not
    depend on the process's string-hash salt, nor on the order of the event's fields."""
    event = {"device_id": "d", "ts": 1_790_000_000.5, "battery_level": 80.0, "device_type": "motion_sensor"}
    code = (
        "import sys, orjson; from devintel.ingest.handler import fingerprint; "
        "print(fingerprint(orjson.loads(sys.argv[1])))"
    )
    printed = {
        subprocess.run(
            [sys.executable, "-c", code, orjson.dumps(event).decode()],
            env={**os.environ, "PYTHONHASHSEED": seed},
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        for seed in ("1", "2")
    }
    assert printed == {str(fingerprint(event))}
    assert fingerprint(dict(reversed(event.items()))) == fingerprint(event)
    assert fingerprint({**event, "battery_level": 79.0}) != fingerprint(event)
    assert fingerprint({**event, "ts": 1_790_000_001.5}) != fingerprint(event)
