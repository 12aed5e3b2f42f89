"""Home Assistant as its users see devintel, through a real broker (mosquitto when installed) and the daemon as
a subprocess: every device block named, devintel's own device with its diagnostic entities, ``origin`` complete,
removal in the order HA handles without a log line, and re-discovery on HA's birth message of every device
devintel knows, those of a previous run included."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiomqtt
import orjson

from harness.broker import Broker
from harness.collector import WAIT_S, Collector, collect, leak_event
from harness.daemon_env import daemon_env

IEEE = "0x00158d0001e50d78"


def _start(env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "devintel.daemon.service"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _stop(process: subprocess.Popen[str]) -> str:
    process.send_signal(signal.SIGTERM)
    try:
        _, err = process.communicate(timeout=WAIT_S)
    except subprocess.TimeoutExpired:
        process.kill()
        _, err = process.communicate()
        raise AssertionError(f"the daemon did not stop within {WAIT_S} s:\n{err[-3000:]}") from None
    assert process.returncode == 0, err[-3000:]
    return err


def _client(broker: Broker, name: str) -> aiomqtt.Client:
    return aiomqtt.Client(broker.host, broker.port, identifier=f"{name}-{time.monotonic_ns()}")


def _configs(seen: Collector, ha: str) -> dict[str, dict[str, Any]]:
    """The latest non-empty discovery config of every topic under ``ha``."""
    configs: dict[str, dict[str, Any]] = {}
    for topic, payload, _ in seen.messages:
        if topic.startswith(f"{ha}/") and topic.endswith("/config"):
            if payload:
                configs[topic] = orjson.loads(payload)
            else:
                configs.pop(topic, None)
    return configs


async def test_named_devices_service_device_and_removal_order(
    mqtt_broker: Broker, topic_namespace: str, small_snapshot: Path
) -> None:
    ns, ha, z2m = topic_namespace, f"{topic_namespace}-ha", f"{topic_namespace}-z2m"
    daemon = _start(daemon_env(small_snapshot, ns, mqtt_broker))
    try:
        async with collect(_client(mqtt_broker, "watch"), f"{ns}/#", f"{ha}/#") as seen:
            await seen.wait_for(lambda: seen.latest.get(f"{ns}/status") == b"online", "status online")
            now = time.time() - 600
            devices = [{"ieee_address": IEEE, "friendly_name": "Hall motion", "type": "EndDevice"}]
            async with _client(mqtt_broker, "pub") as pub:
                await pub.publish(f"{z2m}/bridge/devices", orjson.dumps(devices), qos=1)
                await pub.publish(f"{z2m}/Hall motion", b'{"battery": 81, "occupancy": false}', qos=1)
                body = orjson.loads(leak_event(now, 0))
                await pub.publish(f"{ns}/events/cellar.leak", orjson.dumps({**body, "name": "Cellar leak"}), qos=1)
            await seen.wait_for(lambda: seen.counters(ns).get("events") == 2, "2 events handled")
            await seen.wait_for(lambda: len(_configs(seen, ha)) >= 4 + 7, "device and service configs")
            configs = _configs(seen, ha)

            motion = configs[f"{ha}/sensor/{ns}/{IEEE}_failure_probability/config"]
            assert motion["device"] == {"identifiers": [f"zigbee2mqtt_{IEEE}"], "name": "Hall motion"}
            assert motion["default_entity_id"] == "sensor.hall_motion_failure_probability"
            leak = configs[f"{ha}/binary_sensor/{ns}/cellar_leak_needs_attention/config"]
            assert leak["device"]["name"] == "Cellar leak"
            assert leak["object_id"] == "cellar_leak_needs_attention"
            for config in configs.values():
                assert config["device"].get("name"), config  # HA: "device information always needs a name"
                assert config["origin"]["name"] == "devintel"
                assert config["origin"]["sw_version"]
            service = {t: c for t, c in configs.items() if f"/{ns}_service/" in t}
            assert {c["name"] for c in service.values()} >= {
                "Running", "Status", "Model version", "Devices needing attention", "Last snapshot",
                "Live false alarm share",
            }  # fmt: skip
            assert all(c["entity_category"] == "diagnostic" for c in service.values())
            assert leak["device"]["via_device"] == next(iter(service.values()))["device"]["identifiers"][0]
            # What those entities read is in the health report.
            health = seen.health(ns)
            assert health["snapshot"]["written_at"]
            assert health["false_alarms"]["alarmed"] >= 0
            prediction = seen.predictions(ns)[-1]
            assert prediction["time"].endswith("+00:00")

            # The device leaves: its entities are removed before its retained state empties.
            mark = len(seen.messages)
            async with _client(mqtt_broker, "pub2") as pub:
                leave = {"type": "device_leave", "data": {"ieee_address": IEEE, "friendly_name": "Hall motion"}}
                await pub.publish(f"{z2m}/bridge/event", orjson.dumps(leave), qos=1)
            await seen.wait_for(
                lambda: any(t == f"{ns}/predictions/{IEEE}" and not p for t, p, _ in seen.messages[mark:]),
                "the empty retained prediction",
            )
            emptied = [t for t, p, _ in seen.messages[mark:] if not p and IEEE in t]
            assert emptied == [
                f"{ha}/sensor/{ns}/{IEEE}_failure_probability/config",
                f"{ha}/binary_sensor/{ns}/{IEEE}_needs_attention/config",
                f"{ns}/predictions/{IEEE}",
            ]
        _stop(daemon)
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.communicate()


async def _clear(broker: Broker, topics: list[str]) -> None:
    """Remove retained messages, as a fresh Home Assistant's broker would not have them."""
    async with _client(broker, "clear") as client:
        for topic in topics:
            await client.publish(topic, b"", qos=1, retain=True)


async def test_birth_re_announces_every_known_device_across_a_restart(
    mqtt_broker: Broker, topic_namespace: str, small_snapshot: Path
) -> None:
    ns, ha = topic_namespace, f"{topic_namespace}-ha"
    env = daemon_env(small_snapshot, ns, mqtt_broker)
    daemon = _start(env)
    try:
        async with collect(_client(mqtt_broker, "watch"), f"{ns}/status", f"{ns}/health") as seen:
            await seen.wait_for(lambda: seen.latest.get(f"{ns}/status") == b"online", "status online")
            async with _client(mqtt_broker, "pub") as pub:
                for i, device in enumerate(("kitchen.leak", "bath.leak")):
                    body = {**orjson.loads(leak_event(time.time() - 600, i)), "name": f"Leak {i}"}
                    await pub.publish(f"{ns}/events/{device}", orjson.dumps(body), qos=1)
            await seen.wait_for(lambda: seen.counters(ns).get("events") == 2, "2 events handled")
        _stop(daemon)  # the final snapshot writes the registry
        assert (small_snapshot / "devices.json").is_file()
        device_topics = [
            f"{ha}/{component}/{ns}/{device}_{suffix}/config"
            for device in ("kitchen_leak", "bath_leak")
            for component, suffix in (("sensor", "failure_probability"), ("binary_sensor", "needs_attention"))
        ]
        await _clear(mqtt_broker, device_topics)

        daemon = _start(env)
        async with collect(_client(mqtt_broker, "watch2"), f"{ns}/status", f"{ha}/#") as seen:
            await seen.wait_for(lambda: seen.latest.get(f"{ns}/status") == b"online", "status online again")
            # Announced at start, though neither device has reported since the restart.
            await seen.wait_for(lambda: set(device_topics) <= set(_configs(seen, ha)), "announced at start")
            await _clear(mqtt_broker, device_topics)
            await seen.wait_for(lambda: not set(device_topics) & set(_configs(seen, ha)), "configs cleared")
            async with _client(mqtt_broker, "ha") as home_assistant:
                await home_assistant.publish(f"{ha}/status", b"online", qos=1)
            await seen.wait_for(lambda: set(device_topics) <= set(_configs(seen, ha)), "re-announced on birth")
            names = {_configs(seen, ha)[t]["device"]["name"] for t in device_topics}
            assert names == {"Leak 0", "Leak 1"}
        err = _stop(daemon)
        assert "2 known devices restored" in err
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.communicate()


async def test_the_daemon_reads_home_assistant_with_the_token_as_a_credential(
    mqtt_broker: Broker, topic_namespace: str, small_snapshot: Path, tmp_path: Path
) -> None:
    """The daemon as a subprocess against a stand-in HA websocket API and a real broker: the token comes from
    ``$CREDENTIALS_DIRECTORY``, the HA devices' entities attach to those devices, and a state change is a
    prediction; the health report says what the source does."""
    from ha_websocket import TOKEN, FakeHomeAssistant, fake_home_assistant

    ns, ha = topic_namespace, f"{topic_namespace}-ha"
    home = FakeHomeAssistant(
        devices=[
            {"id": "d1", "name": "Porch sensor", "area_id": "porch", "identifiers": [["zha", "x"]],
             "connections": [["zigbee", "00:12:4b:00:22:33:44:55"]]},
        ],
        entities=[{"entity_id": "sensor.porch_battery", "device_id": "d1", "entity_category": "diagnostic"}],
        areas=[{"area_id": "porch", "name": "Porch"}],
        states=[{"entity_id": "sensor.porch_battery", "state": "77", "last_updated": "2026-11-30T20:00:00+00:00",
                 "attributes": {"device_class": "battery", "unit_of_measurement": "%"}}],
    )  # fmt: skip
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    (credentials / "ha__api_token").write_text(TOKEN + "\n")
    async with fake_home_assistant(home):
        env = daemon_env(
            small_snapshot,
            ns,
            mqtt_broker,
            DEVINTEL_HA__API_URL=home.url.replace("ws://", "http://").removesuffix("/api/websocket"),
            DEVINTEL_HA__HISTORY_DAYS="0",
            CREDENTIALS_DIRECTORY=str(credentials),
        )
        daemon = _start(env)
        try:
            async with collect(_client(mqtt_broker, "watch"), f"{ns}/#", f"{ha}/#") as seen:
                await seen.wait_for(lambda: seen.counters(ns).get("events") == 1, "the HA device's first event")
                configs = _configs(seen, ha)
                sensor = configs[f"{ha}/sensor/{ns}/0x00124b0022334455_failure_probability/config"]
                assert sensor["device"]["connections"] == [["zigbee", "00:12:4b:00:22:33:44:55"]]
                assert sensor["device"]["name"] == "Porch sensor"
                assert sensor["device"]["suggested_area"] == "Porch"
                await home.state_changed(
                    "sensor.porch_battery",
                    {"entity_id": "sensor.porch_battery", "state": "76", "last_updated": "2026-11-30T21:00:00+00:00",
                     "attributes": {"device_class": "battery", "unit_of_measurement": "%"}},
                )  # fmt: skip
                await seen.wait_for(lambda: seen.counters(ns).get("events") == 2, "the state change")
                await seen.wait_for(
                    lambda: seen.health(ns).get("homeassistant", {}).get("connected") is True, "health: connected"
                )
                assert seen.health(ns)["homeassistant"]["devices"] == 1
            _stop(daemon)
        finally:
            if daemon.poll() is None:
                daemon.kill()
                daemon.communicate()
