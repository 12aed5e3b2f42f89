"""Home Assistant as a source: the pure mapping of HA's registries and state changes into canonical events
(:mod:`devintel.ingest.adapters.homeassistant_api`), through the handler (discovery attached to the HA device,
one device when Zigbee2MQTT reports it too), and the websocket client against a stand-in HA on loopback
(``ha_websocket.py``): authentication, registries, state changes, a refused token, reconnection, and the history
backfill reaching the models."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
from pydantic import SecretStr

from devintel.daemon.from_settings import build_handler
from devintel.daemon.homeassistant_api import HomeAssistantSource, websocket_url
from devintel.daemon.mqtt import Received
from devintel.daemon.settings import HomeAssistantSettings, Settings
from devintel.ingest.adapters.homeassistant_api import API_TOPIC, HomeAssistantApiAdapter, entity_role, ieee_of
from devintel.ingest.counters import Counters
from devintel.ingest.handler import Handler
from devintel.ingest.inbound import Availability, DeviceInfo, Feedback, Rejected, Telemetry
from devintel.ingest.outbound import Outgoing
from devintel.models.snapshots import SnapshotStore
from ha_websocket import TOKEN, FakeHomeAssistant, fake_home_assistant

NOW = time.time()
ZHA_IEEE = "0x00158d0001e50d78"
ZHA_CONNECTION = ["zigbee", "00:15:8d:00:01:e5:0d:78"]


def _state(entity_id: str, state: str, ts: float = NOW, **attributes: object) -> dict[str, Any]:
    iso = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(ts))
    return {"entity_id": entity_id, "state": state, "attributes": attributes, "last_updated": iso, "last_changed": iso}


def _home() -> FakeHomeAssistant:
    """A home as HA's registries describe it: a ZHA motion sensor, an ESPHome plug, a demo sensor with no
    connections, a Zigbee2MQTT device (left to the Zigbee2MQTT adapter) and HA's own service entry."""
    devices: list[dict[str, Any]] = [
        {"id": "d_zha", "name": "TRADFRI motion", "name_by_user": "Hall motion", "area_id": "hall",
         "connections": [ZHA_CONNECTION], "identifiers": [["zha", "00:15:8d:00:01:e5:0d:78"]]},
        {"id": "d_esp", "name": "Desk plug", "area_id": "office", "connections": [["mac", "a4:cf:12:00:00:01"]],
         "identifiers": [["esphome", "desk-plug"], ["mqtt", "devintel_ha_d_esp"]]},  # devintel's entities merged in
        {"id": "d_own", "name": "Cellar leak", "connections": [], "identifiers": [["mqtt", "devintel_cellar_leak"]]},
        {"id": "d_demo", "name": "Outside thermometer", "area_id": None, "connections": [],
         "identifiers": [["demo", "thermo-1"]]},
        {"id": "d_z2m", "name": "Kitchen door", "connections": [],
         "identifiers": [["mqtt", "zigbee2mqtt_0x0000000000000abc"]]},
        {"id": "d_svc", "name": "Sun", "entry_type": "service", "connections": [], "identifiers": [["sun", "x"]]},
    ]  # fmt: skip
    entities = [
        {"entity_id": "binary_sensor.hall_motion_motion", "device_id": "d_zha"},
        {"entity_id": "sensor.hall_motion_battery", "device_id": "d_zha", "entity_category": "diagnostic"},
        {"entity_id": "sensor.hall_motion_lqi", "device_id": "d_zha", "entity_category": "diagnostic"},
        {"entity_id": "sensor.hall_motion_rssi", "device_id": "d_zha", "entity_category": "diagnostic"},
        {"entity_id": "sensor.hall_motion_device_temperature", "device_id": "d_zha", "entity_category": "diagnostic"},
        {"entity_id": "switch.desk_plug", "device_id": "d_esp"},
        {"entity_id": "sensor.desk_plug_power", "device_id": "d_esp"},
        {"entity_id": "sensor.desk_plug_wifi_signal", "device_id": "d_esp", "entity_category": "diagnostic"},
        {"entity_id": "sensor.desk_plug_battery_failure", "device_id": "d_esp", "unique_id": "devintel_ha_d_esp_x"},
        {"entity_id": "sensor.cellar_leak_battery", "device_id": "d_own", "unique_id": "devintel_cellar_leak_b"},
        {"entity_id": "sensor.outside_temperature", "device_id": "d_demo"},
        {"entity_id": "sensor.outside_battery", "device_id": "d_demo"},
        {"entity_id": "sensor.outside_disabled", "device_id": "d_demo", "disabled_by": "user"},
        {"entity_id": "sensor.kitchen_door_battery", "device_id": "d_z2m"},
        {"entity_id": "sensor.sun_next_dawn", "device_id": "d_svc"},
    ]
    states = [
        _state("binary_sensor.hall_motion_motion", "off", device_class="motion"),
        _state("sensor.hall_motion_battery", "87", device_class="battery", unit_of_measurement="%",
               battery_voltage=2.9),
        _state("sensor.hall_motion_lqi", "120"),
        _state("sensor.hall_motion_rssi", "-71", device_class="signal_strength", unit_of_measurement="dBm"),
        _state("sensor.hall_motion_device_temperature", "23.5", device_class="temperature", unit_of_measurement="°C"),
        _state("switch.desk_plug", "on"),
        _state("sensor.desk_plug_power", "42.5", device_class="power", unit_of_measurement="W"),
        _state("sensor.desk_plug_wifi_signal", "-58", device_class="signal_strength", unit_of_measurement="dBm"),
        _state("sensor.desk_plug_battery_failure", "3", unit_of_measurement="%"),  # devintel's own: not a battery
        _state("sensor.cellar_leak_battery", "5", device_class="battery", unit_of_measurement="%"),
        _state("sensor.outside_temperature", "50", device_class="temperature", unit_of_measurement="°F"),
        _state("sensor.outside_battery", "64", device_class="battery", unit_of_measurement="%"),
        _state("sensor.kitchen_door_battery", "90", device_class="battery", unit_of_measurement="%"),
    ]  # fmt: skip
    areas = [{"area_id": "hall", "name": "Hall"}, {"area_id": "office", "name": "Office"}]
    return FakeHomeAssistant(devices=devices, entities=entities, areas=areas, states=states)


def _registries(home: FakeHomeAssistant, current: bool = True) -> bytes:
    return orjson.dumps(
        {"devices": home.devices, "entities": home.entities, "areas": home.areas, "states": home.states,
         "current": current}
    )  # fmt: skip


def _changed(entity_id: str, state: str, ts: float, **attributes: object) -> bytes:
    return orjson.dumps({"entity_id": entity_id, "new_state": _state(entity_id, state, ts, **attributes)})


def _handler(model_dir: Path, **overrides: object) -> Handler:
    settings = Settings(model_dir=model_dir, **overrides)  # type: ignore[arg-type]
    return build_handler(settings, SnapshotStore(model_dir).load())


# --- the pure mapping -------------------------------------------------------------------------------------------


def test_entity_roles_by_device_class_unit_and_naming() -> None:
    assert entity_role("sensor.x_battery", {"device_class": "battery", "unit_of_measurement": "%"}).field == (
        "battery_level"
    )
    assert entity_role("sensor.x_battery_voltage", {"device_class": "voltage", "unit_of_measurement": "V"}).field == (
        "battery_voltage"
    )
    assert entity_role("sensor.mains_voltage", {"device_class": "voltage", "unit_of_measurement": "V"}).field is None
    assert entity_role("sensor.x_rssi", {"unit_of_measurement": "dBm"}).field == "signal_strength"
    assert entity_role("sensor.x_lqi", {}).field == "linkquality"
    assert entity_role("sensor.x_linkquality", {"unit_of_measurement": "lqi"}).field == "linkquality"
    own = entity_role("sensor.x_temp", {"device_class": "temperature"}, entity_category="diagnostic")
    assert own.field == "temperature"
    assert entity_role("sensor.x_internal_temperature", {"device_class": "temperature"}).field == "temperature"
    assert entity_role("sensor.x_temperature", {"device_class": "temperature"}).field == "ambient_temperature"
    assert entity_role("binary_sensor.x", {"device_class": "moisture"}).prop == "water_leak"
    assert entity_role("light.x", {}).kind == "light"
    assert entity_role("sensor.x_energy", {"device_class": "energy"}).field is None


def test_ieee_address_from_zha_connection_or_zigbee2mqtt_identifier() -> None:
    assert ieee_of({"connections": [ZHA_CONNECTION]}) == ZHA_IEEE
    assert ieee_of({"identifiers": [["mqtt", "zigbee2mqtt_0x00158D0001E50D78"]]}) == ZHA_IEEE
    assert ieee_of({"connections": [["mac", "a4:cf:12:00:00:01"]]}) is None


def test_registries_become_named_devices_and_their_current_readings() -> None:
    adapter = HomeAssistantApiAdapter()
    items = adapter.parse(f"{API_TOPIC}/registries", _registries(_home()), NOW)
    infos = {i.device_id: i for i in items if isinstance(i, DeviceInfo)}
    events = {i.device_id: i.event for i in items if isinstance(i, Telemetry)}
    assert set(infos) == {ZHA_IEEE, "ha_d_esp", "ha_d_demo"}  # no Zigbee2MQTT device, no service
    zha = infos[ZHA_IEEE]
    assert (zha.name, zha.area, zha.device_type, zha.power_source) == (
        "Hall motion",
        "Hall",
        "motion_sensor",
        "battery",
    )
    assert zha.connections == (("zigbee", "00:15:8d:00:01:e5:0d:78"),)
    assert events[ZHA_IEEE] == {
        "device_id": ZHA_IEEE, "ts": NOW, "home_type": "single_family_house", "name": "Hall motion",
        "device_type": "motion_sensor", "power_source": "battery", "battery_level": 87.0, "battery_voltage": 2900.0,
        "signal_strength": -71.0, "linkquality": 120.0, "temperature": 23.5, "value": 0.0,
    }  # fmt: skip
    assert infos["ha_d_esp"].device_type == "smart_plug"
    assert events["ha_d_esp"]["value"] == 42.5
    assert events["ha_d_esp"]["signal_strength"] == -58.0
    assert "battery_level" not in events["ha_d_esp"]  # devintel's own "%" entity on the plug is no battery
    demo = events["ha_d_demo"]
    assert demo["device_type"] == "temperature_sensor"
    assert demo["value"] == pytest.approx(10.0)  # 50 °F
    assert demo["battery_level"] == 64.0
    assert adapter.entities()
    assert "sensor.outside_disabled" not in adapter.entities()


def test_state_changes_unavailable_and_bad_readings() -> None:
    adapter = HomeAssistantApiAdapter()
    adapter.parse(f"{API_TOPIC}/registries", _registries(_home()), NOW)
    (event,) = adapter.parse(f"{API_TOPIC}/state_changed", _changed("sensor.hall_motion_battery", "85", NOW + 60,
                             device_class="battery", unit_of_measurement="%"), NOW + 61)  # fmt: skip
    assert isinstance(event, Telemetry)
    assert event.event["battery_level"] == 85.0
    assert event.event["ts"] == pytest.approx(NOW + 60, abs=1.0)
    assert event.event["linkquality"] == 120.0  # the device's other readings come along
    # A device is offline once all its mapped entities are unavailable, and online with its next reading.
    entities = [e["entity_id"] for e in _home().entities if e["device_id"] == "d_esp" and "unique_id" not in e]
    seen = []
    for entity_id in entities:
        seen += adapter.parse(f"{API_TOPIC}/state_changed", _changed(entity_id, "unavailable", NOW + 120), NOW + 120)
    offline = [item for item in seen if isinstance(item, Availability)]
    assert offline == [Availability("ha_d_esp", False, pytest.approx(NOW + 120, abs=1.0))]  # type: ignore[arg-type]
    assert seen[-1] is offline[0]  # only when the last of them went
    back = adapter.parse(f"{API_TOPIC}/state_changed", _changed("switch.desk_plug", "off", NOW + 180), NOW + 180)
    assert isinstance(back[0], Availability)
    assert back[0].online
    assert isinstance(back[1], Telemetry)
    with pytest.raises(Rejected) as rejected:
        adapter.parse(f"{API_TOPIC}/state_changed", _changed("sensor.hall_motion_battery", "250", NOW), NOW)
    assert rejected.value.reason == "out_of_range"
    with pytest.raises(Rejected) as rejected:
        adapter.parse(f"{API_TOPIC}/state_changed", b"[1]", NOW)
    assert rejected.value.reason == "wrong_type"
    skipped = adapter.parse(f"{API_TOPIC}/state_changed", _changed("sun.sun", "above_horizon", NOW), NOW)
    assert [type(s).__name__ for s in skipped] == ["Skipped"]


def _configs(messages: list[Outgoing]) -> dict[str, dict[str, Any]]:
    return {m.topic: orjson.loads(m.payload) for m in messages if m.topic.endswith("/config") and m.payload}


def test_discovery_attaches_to_the_ha_device_and_zigbee2mqtt_and_ha_make_one_device(small_snapshot: Path) -> None:
    handler = _handler(small_snapshot)
    out = handler.handle(f"{API_TOPIC}/registries", _registries(_home()), NOW)
    configs = _configs(out.messages)
    zha = configs[f"homeassistant/sensor/devintel/{ZHA_IEEE}_failure_probability/config"]
    assert zha["device"]["connections"] == [ZHA_CONNECTION]  # HA merges it into the ZHA device
    assert zha["device"]["name"] == "Hall motion"
    assert zha["default_entity_id"] == "sensor.hall_motion_failure_probability"
    demo = configs["homeassistant/sensor/devintel/ha_d_demo_failure_probability/config"]
    assert demo["device"]["name"] == "Outside thermometer"  # no connection to attach by: a device of devintel's
    assert "connections" not in demo["device"]
    assert handler.counters.events == 3
    # The same Zigbee device through Zigbee2MQTT: the same device id, one device.
    bridge = [{"ieee_address": ZHA_IEEE, "friendly_name": "Hall motion z2m", "type": "EndDevice"}]
    handler.handle("zigbee2mqtt/bridge/devices", orjson.dumps(bridge), NOW + 1)
    handler.handle("zigbee2mqtt/Hall motion z2m", b'{"battery": 86, "occupancy": false}', NOW + 2)
    assert len(handler.devices) == 3
    bad = handler.handle(f"{API_TOPIC}/state_changed", _changed("sensor.outside_battery", "-5", NOW + 3), NOW + 3)
    assert bad.messages == []
    assert handler.counters.rejected == {"out_of_range": 1}


# --- the websocket client against a stand-in HA -----------------------------------------------------------------


def _source(url: str, inbox: asyncio.Queue[Received], token: str = TOKEN, **settings: Any) -> HomeAssistantSource:
    ha = HomeAssistantSettings(api_url=url, api_token=SecretStr(token), reconnect_max_s=0.2, **settings)
    return HomeAssistantSource(ha, inbox, Counters())


async def _drain(inbox: asyncio.Queue[Received], handler: Handler) -> list[Outgoing]:
    out = []
    while not inbox.empty():
        item = inbox.get_nowait()
        out += handler.handle(item.topic, item.payload, item.received).messages
    return out


def test_websocket_url_accepts_what_users_paste() -> None:
    assert websocket_url("http://127.0.0.1:8123") == "ws://127.0.0.1:8123/api/websocket"
    assert websocket_url("https://ha.local/") == "wss://ha.local/api/websocket"
    assert websocket_url("ws://127.0.0.1:8123/api/websocket") == "ws://127.0.0.1:8123/api/websocket"


async def test_client_reads_registries_and_state_changes_and_reconnects(small_snapshot: Path) -> None:
    handler = _handler(small_snapshot)
    inbox: asyncio.Queue[Received] = asyncio.Queue()
    stop = asyncio.Event()
    async with fake_home_assistant(_home()) as home:
        source = _source(home.url, inbox, history_days=0)
        task = asyncio.create_task(source.run(stop))
        try:
            await home.wait_for(lambda: source.state.connected, "connected")
            kinds = [c["type"] for c in home.commands]
            assert kinds[:4] == [
                "config/device_registry/list", "config/entity_registry/list", "config/area_registry/list", "get_states"
            ]  # fmt: skip
            assert {c.get("event_type") for c in home.commands if c["type"] == "subscribe_events"} >= {"state_changed"}
            await home.wait_for(lambda: not inbox.empty(), "registries handed over")
            configs = _configs(await _drain(inbox, handler))
            assert f"homeassistant/binary_sensor/devintel/{ZHA_IEEE}_needs_attention/config" in configs
            assert source.state.devices == 3
            await home.state_changed("sensor.hall_motion_lqi", _state("sensor.hall_motion_lqi", "99", NOW + 5))
            await home.wait_for(lambda: not inbox.empty(), "a state change handed over")
            await _drain(inbox, handler)
            assert handler.live.learner.features.states[ZHA_IEEE].signals["linkquality"].last == 99.0
            assert handler.counters.events == 4

            await home.drop()  # HA restarts: the client comes back by itself and reads the registries again
            await home.wait_for(lambda: source.state.connections == 2 and source.state.connected, "reconnected")
            assert home.auth_attempts == 2
        finally:
            stop.set()
            await asyncio.wait_for(task, 10)


async def test_a_refused_token_is_an_error_naming_the_setting_and_is_retried(caplog: pytest.LogCaptureFixture) -> None:
    inbox: asyncio.Queue[Received] = asyncio.Queue()
    stop = asyncio.Event()
    async with fake_home_assistant(_home()) as home:
        source = _source(home.url, inbox, token="wrong")
        task = asyncio.create_task(source.run(stop))
        try:
            await home.wait_for(lambda: home.auth_attempts >= 2, "a second attempt after the backoff")
            assert source.state.last_error is not None
            assert "ha.api_token" in source.state.last_error
            assert not source.state.connected
            assert inbox.empty()
            assert "wrong" not in caplog.text  # the token never reaches the log
        finally:
            stop.set()
            await asyncio.wait_for(task, 10)


async def test_history_backfill_feeds_the_same_path_and_reaches_the_models(
    small_snapshot: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Ten days of a ZHA sensor's battery draining, then the device unavailable for good: the recorded history goes
    through the handler in time order, the offline evidence labels its events, and the models learn from them."""
    caplog.set_level("INFO")
    home = _home()
    start = NOW - 10 * 86_400
    hourly = [start + i * 3600 for i in range(10 * 24 - 6)]
    home.history = {
        "sensor.hall_motion_battery": [{"s": str(round(90 - i * 0.3, 1)), "lu": ts} for i, ts in enumerate(hourly)],
        "sensor.hall_motion_lqi": [{"s": str(120 - i % 7), "lu": ts} for i, ts in enumerate(hourly)],
        "binary_sensor.hall_motion_motion": [{"s": "unavailable", "lu": hourly[-1] + 60}],
        "sensor.hall_motion_battery_": [{"s": "1", "lu": start}],  # not a mapped entity: ignored
    }
    for entity_id in ("sensor.hall_motion_battery", "sensor.hall_motion_lqi", "sensor.hall_motion_rssi",
                      "sensor.hall_motion_device_temperature"):  # fmt: skip
        home.history.setdefault(entity_id, []).append({"s": "unavailable", "lu": hourly[-1] + 60})
    home.states = [s for s in home.states if not s["entity_id"].startswith(("sensor.hall", "binary_sensor.hall"))] + [
        _state(e, "unavailable", hourly[-1] + 60, **a)
        for e, a in (
            ("sensor.hall_motion_battery", {"device_class": "battery", "unit_of_measurement": "%"}),
            ("binary_sensor.hall_motion_motion", {"device_class": "motion"}),
        )
    ]
    # Gone for good after an hour of being unavailable (the default waits 72 h, so a device back sooner is no failure).
    handler = _handler(
        small_snapshot, horizon_days=2.0, live={"label_interval_s": 0.0}, labels={"gone_for_good_s": 3600.0}
    )
    inbox: asyncio.Queue[Received] = asyncio.Queue()
    stop = asyncio.Event()
    async with fake_home_assistant(home):
        source = _source(home.url, inbox, history_days=10.0)
        task = asyncio.create_task(source.run(stop))
        try:
            await home.wait_for(lambda: "history backfill done" in caplog.text, "the backfill")
        finally:
            stop.set()
            await asyncio.wait_for(task, 10)
    requests = [c for c in home.commands if c["type"] == "history/history_during_period"]
    assert 10 <= len(requests) <= 11  # one day a request
    assert "sensor.hall_motion_battery" in requests[0]["entity_ids"]
    assert source.state.backfilled_states >= 2 * len(hourly)
    assert "history backfill: day 1/" in caplog.text
    await _drain(inbox, handler)
    assert handler.counters.events >= 2 * len(hourly) - 2
    assert handler.live.clocks["homeassistant"] >= hourly[-1]
    # The device went unavailable for good: once it has been away that long, its events are labelled and learned.
    handler.handle(f"{API_TOPIC}/state_changed", _changed("sensor.desk_plug_power", "40", NOW + 7200,
                   device_class="power", unit_of_measurement="W"), NOW + 7200)  # fmt: skip
    assert handler.counters.failures["offline"] == 1
    assert handler.live.learner.learned > 0


async def test_the_backfill_is_bounded_in_states(small_snapshot: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("INFO")
    home = _home()
    start = NOW - 5 * 86_400
    home.history = {"sensor.hall_motion_lqi": [{"s": "100", "lu": start + i * 60} for i in range(5 * 1440)]}
    inbox: asyncio.Queue[Received] = asyncio.Queue()
    stop = asyncio.Event()
    async with fake_home_assistant(home):
        source = _source(home.url, inbox, history_days=5.0, history_max_states=2000)
        task = asyncio.create_task(source.run(stop))
        try:
            await home.wait_for(lambda: "history backfill done" in caplog.text, "the backfill")
        finally:
            stop.set()
            await asyncio.wait_for(task, 10)
    assert "stopped at" in caplog.text
    assert 2000 <= source.state.backfilled_states < 2000 + 1441


def test_bootstrap_from_a_capture_adapts_the_snapshot(
    small_snapshot: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``devintel bootstrap --capture``: HA's registries and history in a capture, the device unavailable for good
    at its end, then a reading of another device hours later: labels resolve, the models learn, a new snapshot."""
    from devintel.daemon.cli import main

    home = _home()
    start = NOW - 3 * 86_400
    hourly = [start + i * 3600 for i in range(48)]
    history = {"sensor.hall_motion_lqi": [{"s": str(120 - i % 5), "lu": ts} for i, ts in enumerate(hourly)]}
    for entity in ("binary_sensor.hall_motion_motion", "sensor.hall_motion_battery", "sensor.hall_motion_lqi",
                   "sensor.hall_motion_rssi", "sensor.hall_motion_device_temperature"):  # fmt: skip
        history.setdefault(entity, []).append({"s": "unavailable", "lu": hourly[-1] + 60})
    later = orjson.loads(_changed("sensor.desk_plug_power", "40", hourly[-1] + 4 * 3600, device_class="power",
                                  unit_of_measurement="W"))  # fmt: skip
    lines = [
        {"ts": start, "topic": f"{API_TOPIC}/registries", "payload": orjson.loads(_registries(home, current=False))},
        {"ts": hourly[-1] + 3600, "topic": f"{API_TOPIC}/history", "payload": {"history": history}},
        {"ts": hourly[-1] + 4 * 3600, "topic": f"{API_TOPIC}/state_changed", "payload": later},
    ]
    monkeypatch.setenv("DEVINTEL_LABELS__GONE_FOR_GOOD_S", "3600")  # away an hour: gone (the default waits 72 h)
    capture = tmp_path / "capture.jsonl"
    capture.write_bytes(b"\n".join(orjson.dumps(line) for line in lines) + b"\n")
    store = SnapshotStore(small_snapshot)
    before = store.current_version()
    assert main(["bootstrap", "--capture", str(capture), "--model-dir", str(small_snapshot)]) == 0
    after = store.load()
    assert after.version != before
    assert after.manifest["live"]["learned"] > 0
    assert after.manifest["capture"]["events"] >= 48
    assert main(["bootstrap", "--capture", str(tmp_path / "missing.jsonl"), "--model-dir", str(small_snapshot)]) == 2
    assert main(["bootstrap", "--capture", str(capture), "--model-dir", str(tmp_path / "empty")]) == 2


def test_a_replaced_battery_in_the_history_labels_the_readings_before_it(small_snapshot: Path) -> None:
    """A battery draining to 10 % and then at 100 %: replaced, a failure at that time, so the readings of the
    horizon before it become positives and are learned from; a small rise is no replacement."""
    adapter = HomeAssistantApiAdapter()
    adapter.parse(f"{API_TOPIC}/registries", _registries(_home()), NOW)
    battery = {"device_class": "battery", "unit_of_measurement": "%"}
    small = adapter.parse(
        f"{API_TOPIC}/state_changed", _changed("sensor.hall_motion_battery", "90", NOW, **battery), NOW
    )
    assert not any(isinstance(item, Feedback) for item in small)  # 87 -> 90: no replacement

    handler = _handler(small_snapshot, horizon_days=2.0, live={"label_interval_s": 0.0})
    handler.handle(f"{API_TOPIC}/registries", _registries(_home(), current=False), NOW)
    start = NOW - 2 * 86_400
    levels = [30 - i for i in range(20)] + [100]
    history = {
        "sensor.hall_motion_battery": [{"s": str(level), "lu": start + i * 3600} for i, level in enumerate(levels)]
    }
    handler.handle(f"{API_TOPIC}/history", orjson.dumps({"history": history}), NOW)
    assert handler.counters.failures == {"feedback": 1}
    assert handler.live.learner.learned > 0
