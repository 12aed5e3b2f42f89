"""Helpers of the adapter tests (``test_daemon_adapters.py``, ``test_adapter_zigbee2mqtt.py``): the real payloads
of tests/fixtures, a receipt time, and the outcome of one parse.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

from devintel.ingest.adapters import (
    Adapter,
)
from devintel.ingest.adapters.registry import build_adapters
from devintel.ingest.inbound import (
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
    """A fresh set of every registered adapter with the default prefixes, in the handler's order."""
    return build_adapters()


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
