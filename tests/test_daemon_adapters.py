"""The MQTT adapters (devintel.ingest.adapters) over real payloads (tests/fixtures) and hand-made bad ones: the
fixtures, claims and subscriptions, native topics, every reject reason. Zigbee2MQTT's mappings:
``test_adapter_zigbee2mqtt.py``; the contract every registered adapter keeps: ``test_adapter_contract.py``."""

from __future__ import annotations

from typing import Any

import pytest

from adapter_helpers import (
    INBOUND_TYPES,
    OTHER_MESSAGES,
    RECEIVED,
    Z2M_MESSAGES,
    adapters,
    only,
    outcome,
    raw_bytes,
    receipt_of,
    reject_reason,
    telemetry,
)
from devintel.ingest.adapters import (
    Adapter,
    HomeAssistantAdapter,
    NativeAdapter,
    Zigbee2MqttAdapter,
    claiming,
    topic_matches,
)
from devintel.ingest.inbound import (
    MAX_PAYLOAD_BYTES,
    REJECT_REASONS,
    Command,
    Feedback,
    HomeAssistantOnline,
    Inbound,
    Skipped,
    Telemetry,
)

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
    (Zigbee2MqttAdapter, "zigbee2mqtt/bridge/devices", b'{"devices": []}', "wrong_type"),
    (Zigbee2MqttAdapter, "zigbee2mqtt/bridge/event", b'["device_leave"]', "wrong_type"),
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
    (NativeAdapter, "devintel/events/d1", b'{"name": "' + b"n" * 129 + b'"}', "out_of_range"),
    (HomeAssistantAdapter, "homeassistant/status", b"restarting", "unknown_value"),
]


@pytest.mark.parametrize(("factory", "topic", "payload", "reason"), REJECT_CASES)
def test_bad_input_is_rejected_with_its_reason(factory: type[Adapter], topic: str, payload: bytes, reason: str) -> None:
    adapter = factory()
    assert adapter.claims(topic)
    assert reject_reason(adapter, topic, payload) == reason


#: A bad metric value in an otherwise good message: the value is dropped alone (field, reason), the event kept.
DROP_CASES = [
    (NativeAdapter, "devintel/events/d1", b'{"battery_level": true, "linkquality": 5}', "battery_level", "wrong_type"),
    (Zigbee2MqttAdapter, "zigbee2mqtt/lamp", b'{"linkquality": "strong", "battery": 5}', "linkquality", "wrong_type"),
    (
        Zigbee2MqttAdapter,
        "zigbee2mqtt/lamp",
        b'{"linkquality": 5, "power_outage_count": "many"}',
        "restart_count",
        "wrong_type",
    ),
    (NativeAdapter, "devintel/events/d1", b'{"temperature": "NaN", "linkquality": 5}', "temperature", "not_finite"),
    (
        Zigbee2MqttAdapter,
        "zigbee2mqtt/lamp",
        b'{"battery": "Infinity", "linkquality": 5}',
        "battery_level",
        "not_finite",
    ),
    (Zigbee2MqttAdapter, "zigbee2mqtt/lamp", b'{"occupancy": "NaN", "linkquality": 5}', "value", "not_finite"),
    (NativeAdapter, "devintel/events/d1", b'{"battery_level": 255, "linkquality": 5}', "battery_level", "out_of_range"),
    (Zigbee2MqttAdapter, "zigbee2mqtt/lamp", b'{"battery": 255, "linkquality": 5}', "battery_level", "out_of_range"),
    (Zigbee2MqttAdapter, "zigbee2mqtt/lamp", b'{"linkquality": 300, "battery": 5}', "linkquality", "out_of_range"),
    (
        Zigbee2MqttAdapter,
        "zigbee2mqtt/lamp",
        b'{"device_temperature": -273.15, "linkquality": 5}',
        "temperature",
        "out_of_range",
    ),
]


@pytest.mark.parametrize(("factory", "topic", "payload", "field", "reason"), DROP_CASES)
def test_a_bad_value_is_dropped_alone_and_the_rest_of_the_message_used(
    factory: type[Adapter], topic: str, payload: bytes, field: str, reason: str
) -> None:
    (item,) = factory().parse(topic, payload, RECEIVED)
    assert isinstance(item, Telemetry)
    assert [(bad.field, bad.reason) for bad in item.dropped] == [(field, reason)]
    assert field not in item.event
    assert any(name in item.event for name in ("linkquality", "battery_level"))  # the good value is used


def test_the_reject_and_drop_cases_cover_every_reject_reason() -> None:
    assert {case[3] for case in REJECT_CASES} | {case[4] for case in DROP_CASES} == set(REJECT_REASONS)
    assert {case[4] for case in DROP_CASES} == {"wrong_type", "not_finite", "out_of_range"}
