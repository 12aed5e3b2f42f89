"""The Zigbee2MQTT adapter's mappings: battery, availability, friendly names, ``last_seen``, voltages, restarts,
lights and buttons, requests and bridge topics, the device list and its events, bounded memory. Split from
``test_daemon_adapters.py`` (the fixtures, claims, native topics, every reject reason); helpers in
``adapter_helpers.py``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
import pytest

from adapter_helpers import (
    RECEIVED,
    fixture,
    only,
    raw_bytes,
    receipt_of,
    reject_reason,
    telemetry,
)
from devintel.ingest.adapters import (
    Zigbee2MqttAdapter,
)
from devintel.ingest.adapters import zigbee2mqtt as z2m_module
from devintel.ingest.inbound import (
    Availability,
    DeviceInfo,
    DeviceLeft,
    Skipped,
)

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
    rejected = orjson.dumps({"linkquality": 50, "power_outage_count": 12, "last_seen": "never"})
    assert reject_reason(adapter, topic, rejected) == "bad_timestamp"
    assert telemetry(adapter, topic, {"linkquality": 50, "power_outage_count": 12})["restart_count"] == 2.0


def test_a_bad_value_beside_the_outage_counter_is_dropped_alone_and_the_counter_moves() -> None:
    adapter = Zigbee2MqttAdapter()
    topic = "zigbee2mqtt/plug"
    telemetry(adapter, topic, {"linkquality": 50, "power_outage_count": 10})
    event = telemetry(adapter, topic, {"linkquality": 999, "power_outage_count": 12})
    assert "linkquality" not in event
    assert event["restart_count"] == 2.0
    assert telemetry(adapter, topic, {"linkquality": 50, "power_outage_count": "many"}).keys() >= {"linkquality"}
    assert telemetry(adapter, topic, {"linkquality": 50, "power_outage_count": 13})["restart_count"] == 1.0


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
