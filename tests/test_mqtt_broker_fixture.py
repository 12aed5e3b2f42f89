"""The ``mqtt_broker`` fixture: a real broker that the integration tests can publish to, subscribe on and restart."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import aiomqtt
import pytest

from harness.broker import Broker, BrokerError, accepts, describe_broker, find_mosquitto, next_message


def state(broker: Broker) -> tuple[bool, bool]:
    """Whether the broker process runs, and whether its port accepts connections."""
    return broker.running, accepts(broker.port)


async def test_publish_subscribe(mqtt_broker: Broker, topic_namespace: str) -> None:
    async with aiomqtt.Client(mqtt_broker.host, mqtt_broker.port) as subscriber:
        await subscriber.subscribe(f"{topic_namespace}/#", qos=1)
        async with aiomqtt.Client(mqtt_broker.host, mqtt_broker.port) as publisher:
            await publisher.publish(f"{topic_namespace}/events/lamp", b"on", qos=1)
            await publisher.publish("elsewhere/events/lamp", b"off", qos=1)
            await publisher.publish(f"{topic_namespace}/events/lamp", b"off", qos=1)
        first = await next_message(subscriber)
        second = await next_message(subscriber)
    assert (str(first.topic), first.payload) == (f"{topic_namespace}/events/lamp", b"on")
    assert (str(second.topic), second.payload) == (f"{topic_namespace}/events/lamp", b"off")


async def test_retained_message(mqtt_broker: Broker, topic_namespace: str) -> None:
    async with aiomqtt.Client(mqtt_broker.host, mqtt_broker.port) as publisher:
        await publisher.publish(f"{topic_namespace}/status", b"online", qos=1, retain=True)
    async with aiomqtt.Client(mqtt_broker.host, mqtt_broker.port) as subscriber:
        await subscriber.subscribe(f"{topic_namespace}/status", qos=1)
        message = await next_message(subscriber)
    assert message.payload == b"online"
    assert message.retain


async def test_queued_qos1_message_survives_a_restart(mqtt_broker: Broker, topic_namespace: str) -> None:
    if not mqtt_broker.persistent:
        pytest.skip(f"{mqtt_broker.kind} keeps no sessions across a restart (needs mosquitto)")
    topic = f"{topic_namespace}/predictions/plug-1"
    identifier = f"{topic_namespace}-persistent"
    async with aiomqtt.Client(mqtt_broker.host, mqtt_broker.port, identifier=identifier, clean_session=False) as sub:
        await sub.subscribe(topic, qos=1)
    async with aiomqtt.Client(mqtt_broker.host, mqtt_broker.port) as publisher:
        await publisher.publish(topic, b"queued while away", qos=1)

    old_port = mqtt_broker.port
    await asyncio.to_thread(mqtt_broker.restart)
    assert mqtt_broker.port == old_port

    async with aiomqtt.Client(mqtt_broker.host, mqtt_broker.port, identifier=identifier, clean_session=False) as sub:
        message = await next_message(sub)  # no new subscription: the session and its queue were restored
    assert (str(message.topic), message.payload, message.qos) == (topic, b"queued while away", 1)


def test_stop_kill_and_restart_keep_the_port(mqtt_broker: Broker) -> None:
    port = mqtt_broker.port
    assert state(mqtt_broker) == (True, True)
    mqtt_broker.stop()
    assert state(mqtt_broker) == (False, False)
    mqtt_broker.start()
    assert mqtt_broker.port == port
    assert state(mqtt_broker) == (True, True)
    mqtt_broker.kill()
    assert state(mqtt_broker) == (False, False)
    mqtt_broker.restart()
    assert mqtt_broker.port == port
    assert state(mqtt_broker) == (True, True)


@pytest.mark.parametrize("kind", ["mosquitto", "amqtt"])
async def test_each_kind_serves_and_stops(kind: str, tmp_path: Path, topic_namespace: str) -> None:
    if kind == "mosquitto" and find_mosquitto() is None:
        pytest.skip("mosquitto is not installed")
    broker = Broker(tmp_path, "mosquitto" if kind == "mosquitto" else "amqtt")
    with broker:
        assert broker.kind == kind
        async with aiomqtt.Client(broker.host, broker.port) as client:
            await client.subscribe(f"{topic_namespace}/#", qos=1)
            await client.publish(f"{topic_namespace}/ping", b"pong", qos=1)
            message = await next_message(client)
        assert message.payload == b"pong"
    assert state(broker) == (False, False)


def test_a_broker_that_cannot_start_fails_with_its_log(tmp_path: Path) -> None:
    if find_mosquitto() is None:
        pytest.skip("mosquitto is not installed")
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))  # bound, not listening: mosquitto cannot bind, and nothing accepts
        port = taken.getsockname()[1]
        broker = Broker(tmp_path, "mosquitto", port=port, startup_timeout=5.0)
        with pytest.raises(BrokerError, match=r"(?s)exited with \d+ on start; its log:\n.*(?i:address already in use)"):
            broker.start()
    assert not broker.running


def test_report_header_names_the_broker(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MQTT_TEST_BROKER", "amqtt")
    assert describe_broker() == "mqtt broker for integration tests: amqtt (embedded; MQTT_TEST_BROKER=amqtt)"
    monkeypatch.delenv("MQTT_TEST_BROKER")
    if find_mosquitto():
        assert describe_broker() == f"mqtt broker for integration tests: mosquitto ({find_mosquitto()})"
    else:
        assert describe_broker() == "mqtt broker for integration tests: amqtt (embedded; mosquitto not on PATH)"
