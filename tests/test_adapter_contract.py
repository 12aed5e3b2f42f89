"""The contract of every registered adapter (:data:`devintel.ingest.adapters.registry.ADAPTERS`), parametrised
over the registry: its fixture payloads are accepted (the native adapter's round-trip canonical events exactly),
and bad input on its topics is counted and dropped by the handler, never raised. An adapter added to the registry
must bring fixtures here (:data:`FIXTURES`) and is fuzzed by ``test_reliability_fuzz.py`` without more code."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from devintel.contract import VALID_RANGES
from devintel.daemon.from_settings import build_handler
from devintel.daemon.settings import Settings
from devintel.generators import generate
from devintel.ingest.adapters import claiming
from devintel.ingest.adapters.registry import ADAPTERS, AdapterOptions, build_adapters
from devintel.ingest.inbound import MAX_PAYLOAD_BYTES, Skipped, Telemetry
from devintel.ingest.validation import TimeWindow, event_time
from devintel.models.online import events
from devintel.models.snapshots import SnapshotStore
from fuzz_strategies import RECEIVED, check_items

FIXTURE_DIR = Path(__file__).parent / "fixtures"  # copies of /work/shared/fixtures (real devices' payloads)
Message = tuple[str, bytes, float]


def _zigbee2mqtt() -> list[Message]:
    """Every real Zigbee2MQTT message of the fixtures, at a receipt a minute after its own ``last_seen``."""
    messages: list[dict[str, Any]] = json.loads((FIXTURE_DIR / "zigbee2mqtt_payloads.json").read_text())["messages"]
    out: list[Message] = []
    for m in messages:
        raw = m["payload_raw"]
        payload = m.get("payload")
        seen = payload.get("last_seen") if isinstance(payload, dict) else None
        received = RECEIVED if seen is None else event_time(seen, 0.0, TimeWindow(max_future_s=1e12)) + 60.0
        out.append((m["topic"], b"" if raw is None else str(raw).encode(), received))
    return out


def _native() -> list[Message]:
    """Canonical events of a synthetic home, as devintel's own topics carry them."""
    frame = generate(samples=300, days=5, seed=3)
    return [
        (f"devintel/events/{e['device_id']}", orjson.dumps(e), float(str(e["ts"])) + 1.0)
        for e in list(events(frame))[::10]
    ]


def _homeassistant_api() -> list[Message]:
    """Home Assistant's registries (a ZHA motion sensor) and a state change, as the websocket client hands them."""
    now = time.time()
    iso = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(now))

    def state(entity_id: str, value: str, **attributes: object) -> dict[str, object]:
        return {"entity_id": entity_id, "state": value, "attributes": attributes, "last_updated": iso}

    registries = {
        "devices": [{"id": "d1", "name": "Hall motion", "connections": [["zigbee", "00:15:8d:00:01:e5:0d:78"]]}],
        "entities": [
            {"entity_id": "binary_sensor.hall_motion", "device_id": "d1"},
            {"entity_id": "sensor.hall_battery", "device_id": "d1"},
        ],
        "areas": [],
        "states": [
            state("binary_sensor.hall_motion", "off", device_class="motion"),
            state("sensor.hall_battery", "87", device_class="battery", unit_of_measurement="%"),
        ],
        "current": True,
    }
    changed = {
        "entity_id": "sensor.hall_battery",
        "new_state": state("sensor.hall_battery", "86", device_class="battery", unit_of_measurement="%"),
    }
    return [
        ("$homeassistant-api/registries", orjson.dumps(registries), now),
        ("$homeassistant-api/state_changed", orjson.dumps(changed), now),
    ]


#: Good messages of each registered adapter, by registry name (every one must have some).
FIXTURES = {
    "native": _native,
    "zigbee2mqtt": _zigbee2mqtt,
    "homeassistant": lambda: [
        ("homeassistant/status", b"online", RECEIVED),
        ("homeassistant/status", b"offline", RECEIVED),
    ],
    "homeassistant_api": _homeassistant_api,
}


def test_every_registered_adapter_has_fixtures() -> None:
    assert set(FIXTURES) == set(ADAPTERS)


def test_the_daemon_builds_the_registry_in_order(tmp_path: Path) -> None:
    from devintel.daemon.from_settings import adapters

    built = adapters(Settings(model_dir=tmp_path))
    assert [type(a) for a in built] == [type(build(AdapterOptions())) for build in ADAPTERS.values()]


@pytest.mark.parametrize("name", list(ADAPTERS))
def test_fixtures_are_claimed_by_their_adapter_and_accepted(name: str) -> None:
    """Each fixture message is routed to its adapter by topic (as the handler does) and parses to inbound items
    that keep the property of the fuzz suite; telemetry reaches the canonical event."""
    adapters = build_adapters()
    adapter = ADAPTERS[name](AdapterOptions())
    kinds = set()
    for topic, payload, received in FIXTURES[name]():
        claimed = claiming(adapters, topic)
        assert type(claimed) is type(adapter), (topic, claimed)
        items = adapter.parse(topic, payload, received)
        check_items(items)
        kinds |= {type(item) for item in items}
    assert kinds - {Skipped}, f"{name}: no fixture message meant anything"


def test_native_events_round_trip() -> None:
    """A canonical event published on devintel's own topic comes back as the same event."""
    adapter = ADAPTERS["native"](AdapterOptions())
    for topic, payload, received in _native():
        sent = orjson.loads(payload)
        (item,) = adapter.parse(topic, payload, received)
        assert isinstance(item, Telemetry)
        for key in ("device_id", "ts", "home_type", "device_type", "power_source", *VALID_RANGES):
            if key in sent:
                assert item.event[key] == sent[key], key


def _bad_payloads() -> list[bytes]:
    return [
        b"\xff\xfe{",
        b"{",
        b'{"ts": NaN}',
        b"[" * 2000 + b"]" * 2000,
        b"{" + b" " * (16 * MAX_PAYLOAD_BYTES) + b"}",
    ]


@pytest.mark.parametrize("name", list(ADAPTERS))
def test_bad_input_is_counted_and_dropped_never_raised(name: str, small_snapshot: Path) -> None:
    """Junk on every topic an adapter subscribes to: the handler counts each message (rejected or skipped), publishes
    nothing and raises nothing."""
    handler = build_handler(Settings(model_dir=small_snapshot), SnapshotStore(small_snapshot).load())
    adapter = ADAPTERS[name](AdapterOptions())
    topics = [f.replace("+", "dev1").replace("#", "dev1/x") for f in adapter.subscriptions()]
    sent = 0
    for topic in topics:
        for payload in _bad_payloads():
            before = handler.counters.rejected.total() + handler.counters.skipped.total()
            out = handler.handle(topic, payload, RECEIVED)
            sent += 1
            assert out.messages == [], (topic, payload[:40])
            assert out.commands == [], (topic, payload[:40])
            assert handler.counters.rejected.total() + handler.counters.skipped.total() == before + 1, topic
    assert handler.counters.messages == sent
    assert handler.counters.events == 0
