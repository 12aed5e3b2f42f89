"""What a test sees on the broker: a subscriber that keeps every message, and the event a test device sends."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import aiomqtt
import orjson

#: Seconds a test waits for what it expects before it fails.
WAIT_S = 30.0


class Collector:
    """Every message on the subscribed filters as (topic, payload, retained), and the newest payload per topic."""

    def __init__(self, client: aiomqtt.Client) -> None:
        self.client = client
        self.messages: list[tuple[str, bytes, bool]] = []
        self.latest: dict[str, bytes] = {}

    async def run(self) -> None:
        async for message in self.client.messages:
            payload = message.payload if isinstance(message.payload, bytes) else str(message.payload).encode()
            self.messages.append((message.topic.value, payload, message.retain))
            self.latest[message.topic.value] = payload

    async def wait_for(self, predicate: Callable[[], bool], what: str, timeout: float = WAIT_S) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}; last: {self.messages[-5:]}")
            await asyncio.sleep(0.05)

    def health(self, namespace: str) -> dict[str, Any]:
        raw = self.latest.get(f"{namespace}/health")
        health: dict[str, Any] = orjson.loads(raw) if raw else {}
        return health

    def counters(self, namespace: str) -> dict[str, Any]:
        counters: dict[str, Any] = self.health(namespace).get("counters", {})
        return counters

    def predictions(self, namespace: str) -> list[dict[str, Any]]:
        prefix = f"{namespace}/predictions/"
        return [orjson.loads(p) for t, p, _ in self.messages if t.startswith(prefix) and p]


@asynccontextmanager
async def collect(client: aiomqtt.Client, *filters: str) -> AsyncIterator[Collector]:
    """Connect ``client`` (not yet connected), subscribe it to ``filters`` (QoS 1) and collect until the block ends."""
    async with client:
        for topic in filters:
            await client.subscribe(topic, qos=1)
        collector = Collector(client)
        task = asyncio.create_task(collector.run())
        try:
            yield collector
        finally:
            task.cancel()


def leak_event(ts: float, i: int, **extra: object) -> bytes:
    """Event ``i`` of a battery leak sensor at ``ts``: its battery and link quality fall slowly with ``i``."""
    return orjson.dumps(
        {
            "ts": ts,
            "device_type": "leak_sensor",
            "power_source": "battery",
            "battery_level": 95.0 - 0.5 * i,
            "linkquality": 120.0 - i,
            "value": 0.0,
            **extra,
        }
    )
