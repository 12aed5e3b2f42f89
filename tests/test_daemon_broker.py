"""The embedded amqtt broker of ``devintel-daemon --embedded-broker``, exercised through aiomqtt."""

from __future__ import annotations

import logging
import socket

import aiomqtt
import pytest
from amqtt.errors import BrokerError

from devintel.daemon.broker import broker_config, embedded_broker
from harness.broker import accepts, free_port, next_message


async def test_publish_subscribe_and_retained(topic_namespace: str) -> None:
    port = free_port()
    async with embedded_broker("127.0.0.1", port):
        async with aiomqtt.Client("127.0.0.1", port, identifier=f"{topic_namespace}-pub") as publisher:
            await publisher.publish(f"{topic_namespace}/status", b"online", qos=1, retain=True)
        async with aiomqtt.Client("127.0.0.1", port, identifier=f"{topic_namespace}-sub") as subscriber:
            await subscriber.subscribe(f"{topic_namespace}/#", qos=1)
            retained = await next_message(subscriber)
            assert str(retained.topic) == f"{topic_namespace}/status"
            assert retained.payload == b"online"
            assert retained.retain

            async with aiomqtt.Client("127.0.0.1", port) as publisher:
                await publisher.publish(f"{topic_namespace}/events/plug-1", b'{"battery_level": 80}', qos=1)
            live = await next_message(subscriber)
            assert str(live.topic) == f"{topic_namespace}/events/plug-1"
            assert live.payload == b'{"battery_level": 80}'
            assert not live.retain
    assert not accepts(port), "the listener is closed after the block"


async def test_quiet_logging_and_clients_are_disconnected_on_exit(topic_namespace: str) -> None:
    port = free_port()
    client = aiomqtt.Client("127.0.0.1", port, identifier=f"{topic_namespace}-left")
    async with embedded_broker("127.0.0.1", port):
        assert logging.getLogger("amqtt").level == logging.WARNING
        assert logging.getLogger("amqtt.broker").getEffectiveLevel() == logging.WARNING
        await client.__aenter__()
    try:
        assert not accepts(port)
        with pytest.raises(aiomqtt.MqttError):
            await next_message(client)  # the connected client learns that the broker went away
    finally:
        await client.__aexit__(None, None, None)


def test_config_allows_anonymous_clients_and_has_no_sys_topics() -> None:
    config = broker_config("127.0.0.1", 1883)
    assert config["listeners"] == {"default": {"type": "tcp", "bind": "127.0.0.1:1883"}}
    assert config["plugins"] == {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}}
    assert "sys_interval" not in config  # deprecated in amqtt 0.12: leaving out BrokerSysPlugin is interval 0


@pytest.mark.parametrize("host", ["::1", "[::1]"])
async def test_ipv6_loopback(host: str) -> None:
    if not _ipv6_loopback():
        pytest.skip("no IPv6 loopback")
    port = free_port("::1")
    async with embedded_broker(host, port), aiomqtt.Client("::1", port) as client:
        await client.subscribe("devintel/status")
        await client.publish("devintel/status", b"online")
        assert (await next_message(client)).payload == b"online"


async def test_a_taken_port_is_an_error() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        with pytest.raises(BrokerError, match=r"(?i)address already in use"):
            async with embedded_broker("127.0.0.1", taken.getsockname()[1]):
                pass


def _ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as sock:
            sock.bind(("::1", 0))
            return True
    except OSError:
        return False
