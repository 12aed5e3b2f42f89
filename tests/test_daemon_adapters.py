"""The MQTT adapters (devintel.ingest.adapters) over real payloads (tests/fixtures) and hand-made bad ones."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

from devintel.ingest.adapters import (
    Adapter,
    HomeAssistantAdapter,
    NativeAdapter,
    Zigbee2MqttAdapter,
    claiming,
    topic_matches,
)
from devintel.ingest.adapters import zigbee2mqtt as z2m_module
from devintel.ingest.inbound import (
    MAX_PAYLOAD_BYTES,
    REJECT_REASONS,
    Availability,
    Command,
    DeviceInfo,
    DeviceLeft,
    Feedback,
    HomeAssistantOnline,
    Inbound,
    Rejected,
    Skipped,
    Telemetry,
)
from devintel.ingest.validation import TimeWindow, event_time

FIXTURES = Path(__file__).parent / "fixtures"
Z2M_MESSAGES: list[dict[str, Any]] = json.loads((FIXTURES / "zigbee2mqtt_payloads.json").read_text())["messages"]
OTHER_MESSAGES: list[dict[str, Any]] = json.loads((FIXTURES / "tasmota_esphome_shelly_payloads.json").read_text())[
    "messages"
]
RECEIVED = datetime(2026, 7, 27, 8, 0, tzinfo=UTC).timestamp()
INBOUND_TYPES = (Telemetry, Availability, Feedback, DeviceInfo, DeviceLeft, Command, HomeAssistantOnline, Skipped)


def adapters() -> list[Adapter]:
    """A fresh set of adapters with the default prefixes."""
    return [NativeAdapter(), HomeAssistantAdapter(), Zigbee2MqttAdapter()]


def raw_bytes(message: dict[str, Any]) -> bytes:
    """A fixture message's payload as it arrives on the wire."""
    raw = message["payload_raw"]
    return b"" if raw is None else str(raw).encode()


def fixture(message_id: str) -> dict[str, Any]:
    """One Zigbee2MQTT fixture message by id."""
    return next(m for m in Z2M_MESSAGES if m["id"] == message_id)


def receipt_of(message: dict[str, Any]) -> float:
    """A plausible time of receipt: a minute after the payload's own last_seen, else RECEIVED."""
    payload = message.get("payload")
    if isinstance(payload, dict) and payload.get("last_seen") is not None:
        return event_time(payload["last_seen"], 0.0, TimeWindow(max_future_s=1e12)) + 60.0
    return RECEIVED


def only(items: list[Inbound]) -> Inbound:
    """The single item of a parse result."""
    assert len(items) == 1, items
    return items[0]


def telemetry(adapter: Adapter, topic: str, payload: object, received: float = RECEIVED) -> dict[str, object]:
    """The canonical event of one message that must be telemetry."""
    data = payload if isinstance(payload, bytes) else orjson.dumps(payload)
    item = only(adapter.parse(topic, data, received))
    assert isinstance(item, Telemetry), item
    return item.event


def outcome(adapter: Adapter, topic: str, payload: bytes) -> str:
    """``accepted`` when the message parses to a non-empty list of inbound items, else the reject reason."""
    try:
        items = adapter.parse(topic, payload, RECEIVED)
    except Rejected as exc:
        return exc.reason
    assert items
    assert all(isinstance(item, INBOUND_TYPES) for item in items)
    return "accepted"


def reject_reason(adapter: Adapter, topic: str, payload: bytes) -> str:
    """The reason ``adapter`` rejects a message for; fails the test when it does not."""
    with pytest.raises(Rejected) as info:
        adapter.parse(topic, payload, RECEIVED)
    return info.value.reason


# the fixtures: every real message ----------------------------------------------------------------------------


@pytest.mark.parametrize("message", Z2M_MESSAGES, ids=[m["id"] for m in Z2M_MESSAGES])
def test_every_zigbee2mqtt_fixture_is_claimed_and_accepted(message: dict[str, Any]) -> None:
    adapter = claiming(adapters(), message["topic"])
    assert isinstance(adapter, Zigbee2MqttAdapter)
    items = adapter.parse(message["topic"], raw_bytes(message), receipt_of(message))
    assert items
    assert all(isinstance(item, INBOUND_TYPES) for item in items)


@pytest.mark.parametrize("message", OTHER_MESSAGES, ids=[m["id"] for m in OTHER_MESSAGES])
def test_tasmota_esphome_shelly_topics_are_claimed_by_no_adapter(message: dict[str, Any]) -> None:
    assert claiming(adapters(), message["topic"]) is None


def test_the_whole_zigbee2mqtt_capture_streams_through_one_adapter() -> None:
    adapter = Zigbee2MqttAdapter()
    kinds = []
    for message in Z2M_MESSAGES:
        kinds += [
            type(item).__name__ for item in adapter.parse(message["topic"], raw_bytes(message), receipt_of(message))
        ]
    assert {"Telemetry", "Availability", "DeviceInfo", "DeviceLeft", "Skipped"} <= set(kinds)


# every payload of both files through every kind of claimed topic: Rejected or a result, never a crash
_CLAIMED_TOPICS = [
    (NativeAdapter, "devintel/events/dev1"),
    (NativeAdapter, "devintel/feedback/dev1"),
    (NativeAdapter, "devintel/cmd/snapshot"),
    (HomeAssistantAdapter, "homeassistant/status"),
    (Zigbee2MqttAdapter, "zigbee2mqtt/some device"),
    (Zigbee2MqttAdapter, "zigbee2mqtt/some device/availability"),
    (Zigbee2MqttAdapter, "zigbee2mqtt/bridge/devices"),
    (Zigbee2MqttAdapter, "zigbee2mqtt/bridge/event"),
]


@pytest.mark.parametrize(("factory", "topic"), _CLAIMED_TOPICS)
def test_any_real_payload_on_any_claimed_topic_is_a_result_or_rejected(factory: type[Adapter], topic: str) -> None:
    adapter = factory()
    assert adapter.claims(topic)
    outcomes = {outcome(adapter, topic, raw_bytes(message)) for message in Z2M_MESSAGES + OTHER_MESSAGES}
    assert outcomes <= {*REJECT_REASONS, "accepted"}


# Zigbee2MQTT mappings -----------------------------------------------------------------------------------------


def test_string_battery_is_coerced_and_linkquality_zero_is_kept() -> None:
    message = fixture("z2m_leak_2019_string_battery")
    result = telemetry(Zigbee2MqttAdapter(), message["topic"], raw_bytes(message))
    assert result["battery_level"] == 80.0
    assert result["linkquality"] == 0.0
    assert result["battery_voltage"] == 2900.0
    assert result["device_type"] == "leak_sensor"
    assert result["value"] == 1.0  # water_leak true
    assert "temperature" not in result  # the synthetic leak sensor reports no temperature


@pytest.mark.parametrize(
    ("payload", "online"),
    [
        (b"online", True),
        (b"offline", False),
        (b" Online\n", True),
        (b'{"state":"offline"}', False),
        (b'"online"', True),
    ],
)
def test_availability_accepts_plain_text_and_json(payload: bytes, online: bool) -> None:
    item = only(Zigbee2MqttAdapter().parse("zigbee2mqtt/ZBMINI/availability", payload, RECEIVED))
    assert item == Availability("ZBMINI", online, RECEIVED)


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"maybe", "unknown_value"),
        (b'{"state":"away"}', "unknown_value"),
        (b'{"state":1}', "wrong_type"),
        (b"{oops", "malformed_json"),
        (b"\xff", "malformed_json"),
    ],
)
def test_availability_rejects_other_payloads(payload: bytes, reason: str) -> None:
    assert reject_reason(Zigbee2MqttAdapter(), "zigbee2mqtt/ZBMINI/availability", payload) == reason


def test_friendly_names_with_slashes_and_spaces_become_safe_ids() -> None:
    adapter = Zigbee2MqttAdapter()
    radiator = fixture("z2m_trv_2020")
    result = telemetry(adapter, "zigbee2mqtt/bedroom/radiator", raw_bytes(radiator))
    assert result["device_id"] == "bedroom_radiator"
    assert result["device_type"] == "thermostat"
    assert result["value"] == 19.81  # local_temperature
    item = only(adapter.parse("zigbee2mqtt/bedroom/radiator/availability", b"offline", RECEIVED))
    assert item == Availability("bedroom_radiator", False, RECEIVED)
    motion = fixture("z2m_motion_last_seen_2022")
    assert telemetry(adapter, motion["topic"], raw_bytes(motion), receipt_of(motion))["device_id"] == "Motion_Sensor"


def test_last_seen_iso_with_offset_is_the_event_time() -> None:
    message = fixture("z2m_motion_last_seen_2022")
    received = datetime(2022, 10, 11, 21, 0, tzinfo=UTC).timestamp()
    result = telemetry(Zigbee2MqttAdapter(), message["topic"], raw_bytes(message), received)
    assert result["ts"] == datetime(2022, 10, 11, 20, 45, 7, tzinfo=UTC).timestamp()
    assert result["device_type"] == "motion_sensor"
    assert result["value"] == 1.0
    assert result["temperature"] == 15.46


def test_last_seen_epoch_ms_and_absent_last_seen() -> None:
    adapter = Zigbee2MqttAdapter()
    with_ms = telemetry(adapter, "zigbee2mqtt/x", {"linkquality": 5, "last_seen": int(RECEIVED * 1000) - 2500})
    assert with_ms["ts"] == pytest.approx(RECEIVED - 2.5)
    assert telemetry(adapter, "zigbee2mqtt/x", {"linkquality": 5})["ts"] == RECEIVED


def test_an_old_last_seen_is_rejected_when_received_now() -> None:
    message = fixture("z2m_motion_last_seen_2022")
    assert reject_reason(Zigbee2MqttAdapter(), message["topic"], raw_bytes(message)) == "bad_timestamp"


def test_mains_voltage_is_not_a_battery_voltage() -> None:
    message = fixture("z2m_relay_power_2022")
    result = telemetry(Zigbee2MqttAdapter(), message["topic"], raw_bytes(message), receipt_of(message))
    assert "battery_voltage" not in result
    assert "power_source" not in result
    assert result["temperature"] == 30.0  # device_temperature
    assert result["device_type"] == "smart_plug"  # a relay that meters power
    assert result["value"] == 0.0  # power in W
    assert result["restart_count"] == 0.0


def test_power_outage_count_becomes_restarts_since_the_previous_message() -> None:
    adapter = Zigbee2MqttAdapter()
    topic = "zigbee2mqtt/humidity_xiaomi_bad_stefan"
    base = {"battery": 97, "linkquality": 72, "temperature": 22.4}
    counts = [(11574, 0.0), (11577, 3.0), (11577, 0.0), (11580, 3.0), (2, 0.0), (5, 3.0)]
    for count, restarts in counts:
        assert telemetry(adapter, topic, {**base, "power_outage_count": count})["restart_count"] == restarts
    other = telemetry(adapter, "zigbee2mqtt/another", {**base, "power_outage_count": 50})
    assert other["restart_count"] == 0.0  # counters are per device


def test_a_rejected_message_does_not_move_the_outage_counter() -> None:
    adapter = Zigbee2MqttAdapter()
    topic = "zigbee2mqtt/plug"
    telemetry(adapter, topic, {"linkquality": 50, "power_outage_count": 10})
    assert reject_reason(adapter, topic, orjson.dumps({"linkquality": 999, "power_outage_count": 12})) == (
        "out_of_range"
    )
    assert telemetry(adapter, topic, {"linkquality": 50, "power_outage_count": 12})["restart_count"] == 2.0


def test_light_value_is_brightness_and_zero_when_off() -> None:
    adapter = Zigbee2MqttAdapter()
    assert telemetry(adapter, "zigbee2mqtt/bulb", {"state": "ON", "brightness": 215})["value"] == 215.0
    assert telemetry(adapter, "zigbee2mqtt/bulb", {"state": "OFF", "brightness": 43})["value"] == 0.0
    assert telemetry(adapter, "zigbee2mqtt/bulb", {"state": "OFF", "brightness": 43})["device_type"] == "light"


def test_a_button_action_alone_has_no_metrics() -> None:
    item = only(Zigbee2MqttAdapter().parse("zigbee2mqtt/button", b'{"action": "single"}', RECEIVED))
    assert isinstance(item, Skipped)
    assert item.reason == "no_metrics"


def test_a_button_with_linkquality_is_telemetry_of_a_remote() -> None:
    result = telemetry(Zigbee2MqttAdapter(), "zigbee2mqtt/button", {"action": "single", "linkquality": 10})
    assert result["linkquality"] == 10.0
    assert result["device_type"] == "remote"
    assert "value" not in result


@pytest.mark.parametrize(
    ("topic", "payload"),
    [
        ("zigbee2mqtt/lamp/set", b'{"state": "ON"}'),
        ("zigbee2mqtt/lamp/get", b'{"state": ""}'),
        ("zigbee2mqtt/lamp/set/brightness", b"120"),
        ("zigbee2mqtt/z1/power", b"0"),
        ("zigbee2mqtt/z1/state", b"OFF"),
        ("zigbee2mqtt/0xec1bbdfffe36d6b9/action", b"toggle"),
        ("zigbee2mqtt/lamp", b""),
        ("zigbee2mqtt/lamp", b"[1, 2]"),
        ("zigbee2mqtt/bridge/state", b'{"state":"online"}'),
        ("zigbee2mqtt/bridge/logging", b'{"level":"info","message":"hi"}'),
        ("zigbee2mqtt/bridge/info", b"not even json"),
        ("zigbee2mqtt/bridge", b"x"),
        ("zigbee2mqtt", b"x"),
    ],
)
def test_requests_attribute_subtopics_and_bridge_topics_are_not_telemetry(topic: str, payload: bytes) -> None:
    adapter = Zigbee2MqttAdapter()
    assert adapter.claims(topic)
    item = only(adapter.parse(topic, payload, RECEIVED))
    assert isinstance(item, Skipped)
    assert item.reason == "not_telemetry"


def _device(
    ieee: str, name: str, exposes: list[dict[str, Any]], power: str = "Battery", **extra: Any
) -> dict[str, Any]:
    """One bridge/devices entry."""
    definition = {"vendor": "Acme", "model": f"M-{name}", "exposes": exposes}
    return {
        "ieee_address": ieee,
        "friendly_name": name,
        "type": "EndDevice",
        "power_source": power,
        "definition": definition,
        **extra,
    }


def _prop(name: str, kind: str = "numeric") -> dict[str, Any]:
    return {"type": kind, "name": name, "property": name}


def _composite(kind: str, *names: str) -> dict[str, Any]:
    return {"type": kind, "features": [_prop(name) for name in names]}


DEVICE_LIST = [
    {"ieee_address": "0x0000000000000000", "friendly_name": "Coordinator", "type": "Coordinator"},
    _device("0x01", "Hall Motion", [_prop("occupancy", "binary"), _prop("temperature"), _prop("battery")]),
    _device("0x02", "door", [_prop("contact", "binary"), _prop("battery")]),
    _device("0x03", "leak", [_prop("water_leak", "binary"), _prop("temperature")]),
    _device("0x04", "smoke", [_prop("smoke", "binary"), _prop("battery_low", "binary")]),
    _device("0x05", "bulb", [_composite("light", "state", "brightness")], "Mains (single phase)"),
    _device("0x06", "plug", [_composite("switch", "state"), _prop("power"), _prop("energy")], "Mains (single phase)"),
    _device("0x07", "relay", [_composite("switch", "state")], "DC Source"),
    _device("0x08", "bedroom/radiator", [_composite("climate", "local_temperature"), _prop("battery")]),
    _device("0x09", "front lock", [_composite("lock", "state"), _prop("battery")]),
    _device("0x0a", "dimmer", [_prop("action", "enum"), _prop("battery")]),
    _device("0x0b", "climate sensor", [_prop("temperature"), _prop("humidity")]),
    _device("0x0c", "mystery", [], "Unknown"),
    {"ieee_address": "bad+id", "friendly_name": "broken", "type": "EndDevice"},
    "not a device",
]


def test_bridge_devices_infers_types_power_sources_and_identifiers() -> None:
    items = Zigbee2MqttAdapter().parse("zigbee2mqtt/bridge/devices", orjson.dumps(DEVICE_LIST), RECEIVED)
    infos = {item.device_id: item for item in items if isinstance(item, DeviceInfo)}
    assert len(infos) == len(items) == 12  # no coordinator, no unusable entry
    expected = {
        "0x01": ("motion_sensor", "battery"),
        "0x02": ("contact_sensor", "battery"),
        "0x03": ("leak_sensor", "battery"),
        "0x04": ("smoke_detector", "battery"),
        "0x05": ("light", "mains"),
        "0x06": ("smart_plug", "mains"),
        "0x07": ("switch", "mains"),
        "0x08": ("thermostat", "battery"),
        "0x09": ("lock", "battery"),
        "0x0a": ("remote", "battery"),
        "0x0b": ("temperature_sensor", "battery"),
        "0x0c": ("generic", None),
    }
    assert {key: (info.device_type, info.power_source) for key, info in infos.items()} == expected
    assert infos["0x01"] == DeviceInfo("0x01", "motion_sensor", "battery", "0x01", name="Hall Motion")


def test_bridge_devices_fixture_is_a_mains_generic_xiaomi_plug() -> None:
    message = fixture("z2m_bridge_devices_entry_docs")
    item = only(Zigbee2MqttAdapter().parse(message["topic"], raw_bytes(message), RECEIVED))
    assert item == DeviceInfo("0x00158d00018255df", "generic", "mains", "0x00158d00018255df", name="my_plug")


def test_after_bridge_devices_the_ieee_address_is_the_id_and_the_list_sets_type_and_power() -> None:
    adapter = Zigbee2MqttAdapter()
    adapter.parse("zigbee2mqtt/bridge/devices", orjson.dumps(DEVICE_LIST), RECEIVED)
    motion = telemetry(adapter, "zigbee2mqtt/Hall Motion", {"occupancy": False, "temperature": 19.5, "voltage": 3000})
    assert motion["device_id"] == "0x01"
    assert (motion["device_type"], motion["power_source"]) == ("motion_sensor", "battery")
    assert motion["battery_voltage"] == 3000.0  # battery device: voltage is the battery's
    relay = telemetry(adapter, "zigbee2mqtt/relay", {"state": "ON", "voltage": 230, "linkquality": 99})
    assert (relay["device_id"], relay["device_type"], relay["power_source"]) == ("0x07", "switch", "mains")
    assert relay["value"] == 1.0
    assert "battery_voltage" not in relay
    item = only(adapter.parse("zigbee2mqtt/bedroom/radiator/availability", b"online", RECEIVED))
    assert item == Availability("0x08", True, RECEIVED)
    unknown = telemetry(adapter, "zigbee2mqtt/not listed", {"linkquality": 1})
    assert unknown["device_id"] == "not_listed"


def test_generic_from_the_device_list_is_refined_by_the_payload() -> None:
    adapter = Zigbee2MqttAdapter()
    adapter.parse("zigbee2mqtt/bridge/devices", orjson.dumps(DEVICE_LIST), RECEIVED)
    result = telemetry(adapter, "zigbee2mqtt/mystery", {"contact": True, "linkquality": 3})
    assert (result["device_id"], result["device_type"]) == ("0x0c", "contact_sensor")


def test_bridge_event_device_leave_is_device_left_by_ieee_address() -> None:
    adapter = Zigbee2MqttAdapter()
    message = fixture("z2m_bridge_event_leave")
    assert only(adapter.parse(message["topic"], raw_bytes(message), RECEIVED)) == DeviceLeft(
        "0x90fd9ffffe6494fc", RECEIVED
    )
    adapter.parse("zigbee2mqtt/bridge/devices", orjson.dumps(DEVICE_LIST), RECEIVED)
    by_name = {"type": "device_leave", "data": {"friendly_name": "door"}}
    assert only(adapter.parse("zigbee2mqtt/bridge/event", orjson.dumps(by_name), RECEIVED)) == DeviceLeft(
        "0x02", RECEIVED
    )
    # the device is forgotten: its name is no longer mapped to its address
    assert telemetry(adapter, "zigbee2mqtt/door", {"linkquality": 9})["device_id"] == "door"


@pytest.mark.parametrize("kind", ["device_joined", "device_announce", "device_interview", "device_renamed", None])
def test_other_bridge_events_are_not_telemetry(kind: str | None) -> None:
    payload = orjson.dumps({"type": kind, "data": {"ieee_address": "0x01"}})
    item = only(Zigbee2MqttAdapter().parse("zigbee2mqtt/bridge/event", payload, RECEIVED))
    assert isinstance(item, Skipped)
    assert item.reason == "not_telemetry"


def test_memory_of_devices_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(z2m_module, "MAX_REMEMBERED", 2)
    adapter = Zigbee2MqttAdapter()
    for name in ("a", "b", "c"):
        telemetry(adapter, f"zigbee2mqtt/{name}", {"linkquality": 1, "power_outage_count": 5})
    # "a" was forgotten, so its next count is a first count again
    assert telemetry(adapter, "zigbee2mqtt/a", {"linkquality": 1, "power_outage_count": 9})["restart_count"] == 0.0
    assert telemetry(adapter, "zigbee2mqtt/c", {"linkquality": 1, "power_outage_count": 9})["restart_count"] == 4.0


# claims and subscriptions -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("topic_filter", "topic", "matches"),
    [
        ("a/+", "a/b", True),
        ("a/+", "a/b/c", False),
        ("a/+", "a", False),
        ("a/#", "a", True),
        ("a/#", "a/b/c", True),
        ("a/b", "a/b", True),
        ("a/b", "a/c", False),
        ("a/+/c", "a/x/c", True),
    ],
)
def test_topic_matches_follows_mqtt_wildcards(topic_filter: str, topic: str, matches: bool) -> None:
    assert topic_matches(topic_filter, topic) is matches


def test_subscriptions() -> None:
    assert NativeAdapter("home/devintel").subscriptions() == [
        "home/devintel/events/+",
        "home/devintel/feedback/+",
        "home/devintel/cmd/+",
    ]
    assert HomeAssistantAdapter("ha").subscriptions() == ["ha/status"]
    assert Zigbee2MqttAdapter("z2m").subscriptions() == ["z2m/#"]


@pytest.mark.parametrize(
    ("topic", "adapter_type"),
    [
        ("devintel/events/dev1", NativeAdapter),
        ("devintel/feedback/dev1", NativeAdapter),
        ("devintel/cmd/reload", NativeAdapter),
        ("devintel/predictions/dev1", None),
        ("devintel/status", None),
        ("devintel/health", None),
        ("devintel/events/a/b", None),
        ("homeassistant/status", HomeAssistantAdapter),
        ("homeassistant/sensor/devintel_x/config", None),
        ("zigbee2mqtt/bedroom/radiator", Zigbee2MqttAdapter),
        ("zigbee2mqtt/bridge/devices", Zigbee2MqttAdapter),
        ("zigbee2mqttx/lamp", None),
        ("tele/tasmota/STATE", None),
    ],
)
def test_each_topic_is_claimed_by_the_right_adapter(topic: str, adapter_type: type[Adapter] | None) -> None:
    adapter = claiming(adapters(), topic)
    assert (type(adapter) if adapter is not None else None) is adapter_type


def test_an_unknown_default_home_type_fails_fast() -> None:
    with pytest.raises(ValueError, match="castle"):
        NativeAdapter(default_home_type="castle")
    with pytest.raises(ValueError, match="castle"):
        Zigbee2MqttAdapter(default_home_type="castle")


# native topics ------------------------------------------------------------------------------------------------


def test_native_event_is_canonical_telemetry() -> None:
    adapter = NativeAdapter(default_home_type="studio")
    payload = {"device_id": "Motion Sensor", "ts": RECEIVED - 5, "battery_level": "55.5", "value": False, "x": 1}
    result = telemetry(adapter, "devintel/events/Motion Sensor", payload)
    assert result == {
        "device_id": "Motion_Sensor",
        "ts": RECEIVED - 5,
        "home_type": "studio",
        "battery_level": 55.5,
        "value": 0.0,
    }
    assert telemetry(adapter, "devintel/events/d1", {"home_type": "cottage"})["home_type"] == "cottage"


def test_native_feedback() -> None:
    adapter = NativeAdapter()
    item = only(adapter.parse("devintel/feedback/d1", b'{"event": "replaced", "ts": 1785136000}', RECEIVED))
    assert item == Feedback("d1", "replaced", 1785136000.0)
    item = only(adapter.parse("devintel/feedback/d1", b'{"event": "failure"}', RECEIVED))
    assert item == Feedback("d1", "failure", RECEIVED)


@pytest.mark.parametrize("name", ["snapshot", "reload", "refresh"])
def test_native_commands(name: str) -> None:
    assert only(NativeAdapter().parse(f"devintel/cmd/{name}", b"", RECEIVED)) == Command(name)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("payload", "item"), [(b"online", HomeAssistantOnline()), (b" online\n", HomeAssistantOnline())]
)
def test_home_assistant_online_republishes_discovery(payload: bytes, item: Inbound) -> None:
    assert only(HomeAssistantAdapter().parse("homeassistant/status", payload, RECEIVED)) == item


def test_home_assistant_offline_is_skipped() -> None:
    item = only(HomeAssistantAdapter().parse("homeassistant/status", b"offline", RECEIVED))
    assert isinstance(item, Skipped)
    assert item.reason == "not_telemetry"


# every reject reason, with a concrete bad payload -------------------------------------------------------------

_BIG = b'{"pad": "' + b"x" * MAX_PAYLOAD_BYTES + b'"}'
REJECT_CASES = [
    (NativeAdapter, "devintel/events/d1", _BIG, "too_large"),
    (Zigbee2MqttAdapter, "zigbee2mqtt/lamp", _BIG, "too_large"),
    (Zigbee2MqttAdapter, "zigbee2mqtt/lamp/availability", b"o" * (MAX_PAYLOAD_BYTES + 1), "too_large"),
    (HomeAssistantAdapter, "homeassistant/status", b" " * (MAX_PAYLOAD_BYTES + 1), "too_large"),
    (NativeAdapter, "devintel/events/d1", b'{"battery_level": 50', "malformed_json"),
    (NativeAdapter, "devintel/events/d1", b'{"battery_level": NaN}', "malformed_json"),
    (Zigbee2MqttAdapter, "zigbee2mqtt/lamp", b'{"linkquality": 5,}', "malformed_json"),
    (Zigbee2MqttAdapter, "zigbee2mqtt/bridge/devices", b"[{", "malformed_json"),
    (HomeAssistantAdapter, "homeassistant/status", b"\xff\xfe", "malformed_json"),
    (NativeAdapter, "devintel/events/d1", b'[{"battery_level": 50}]', "wrong_type"),
    (NativeAdapter, "devintel/feedback/d1", b'"failure"', "wrong_type"),
    (NativeAdapter, "devintel/events/d1", b'{"battery_level": true}', "wrong_type"),
    (Zigbee2MqttAdapter, "zigbee2mqtt/lamp", b'{"linkquality": "strong"}', "wrong_type"),
    (Zigbee2MqttAdapter, "zigbee2mqtt/lamp", b'{"linkquality": 5, "power_outage_count": "many"}', "wrong_type"),
    (Zigbee2MqttAdapter, "zigbee2mqtt/bridge/devices", b'{"devices": []}', "wrong_type"),
    (Zigbee2MqttAdapter, "zigbee2mqtt/bridge/event", b'["device_leave"]', "wrong_type"),
    (NativeAdapter, "devintel/events/d1", b'{"temperature": "NaN"}', "not_finite"),
    (Zigbee2MqttAdapter, "zigbee2mqtt/lamp", b'{"battery": "Infinity"}', "not_finite"),
    (Zigbee2MqttAdapter, "zigbee2mqtt/lamp", b'{"occupancy": "NaN", "linkquality": 5}', "not_finite"),
    (NativeAdapter, "devintel/events/d1", b'{"battery_level": 255}', "out_of_range"),
    (Zigbee2MqttAdapter, "zigbee2mqtt/lamp", b'{"battery": 255}', "out_of_range"),
    (Zigbee2MqttAdapter, "zigbee2mqtt/lamp", b'{"linkquality": 300}', "out_of_range"),
    (Zigbee2MqttAdapter, "zigbee2mqtt/lamp", b'{"device_temperature": -273.15}', "out_of_range"),
    (NativeAdapter, "devintel/events/a+b", b"{}", "bad_device_id"),
    (NativeAdapter, "devintel/events/#", b"{}", "bad_device_id"),
    (NativeAdapter, "devintel/events/a\x00b", b"{}", "bad_device_id"),
    (NativeAdapter, "devintel/events/..", b"{}", "bad_device_id"),
    (NativeAdapter, "devintel/events/", b"{}", "bad_device_id"),
    (NativeAdapter, "devintel/feedback/a..b", b'{"event": "failure"}', "bad_device_id"),
    (Zigbee2MqttAdapter, "zigbee2mqtt/a+b", b'{"linkquality": 5}', "bad_device_id"),
    (Zigbee2MqttAdapter, "zigbee2mqtt/../x/availability", b"online", "bad_device_id"),
    (Zigbee2MqttAdapter, "zigbee2mqtt/bridge/event", b'{"type": "device_leave", "data": {}}', "bad_device_id"),
    (NativeAdapter, "devintel/events/d1", b'{"device_id": "d2"}', "device_id_mismatch"),
    (NativeAdapter, "devintel/events/d1", b'{"device_id": 1}', "device_id_mismatch"),
    (NativeAdapter, "devintel/events/d1", b'{"ts": 4102444800}', "bad_timestamp"),  # 2100: far future
    (NativeAdapter, "devintel/events/d1", b'{"ts": 946684800000}', "bad_timestamp"),  # 2000 in ms: far past
    (NativeAdapter, "devintel/events/d1", b'{"ts": "soon"}', "bad_timestamp"),
    (NativeAdapter, "devintel/feedback/d1", b'{"event": "failure", "ts": true}', "bad_timestamp"),
    (
        Zigbee2MqttAdapter,
        "zigbee2mqtt/lamp",
        b'{"linkquality": 5, "last_seen": "2099-01-01T00:00:00Z"}',
        "bad_timestamp",
    ),
    (NativeAdapter, "devintel/feedback/d1", b'{"event": "exploded"}', "unknown_value"),
    (NativeAdapter, "devintel/feedback/d1", b"{}", "unknown_value"),
    (NativeAdapter, "devintel/cmd/shutdown", b"", "unknown_value"),
    (NativeAdapter, "devintel/events/d1", b'{"home_type": "castle"}', "unknown_value"),
    (NativeAdapter, "devintel/events/d1", b'{"power_source": "solar"}', "unknown_value"),
    (HomeAssistantAdapter, "homeassistant/status", b"restarting", "unknown_value"),
]


@pytest.mark.parametrize(("factory", "topic", "payload", "reason"), REJECT_CASES)
def test_bad_input_is_rejected_with_its_reason(factory: type[Adapter], topic: str, payload: bytes, reason: str) -> None:
    adapter = factory()
    assert adapter.claims(topic)
    assert reject_reason(adapter, topic, payload) == reason


def test_the_reject_cases_cover_every_reject_reason() -> None:
    assert {case[3] for case in REJECT_CASES} == set(REJECT_REASONS)
