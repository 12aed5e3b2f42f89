"""Reliability under bad input: property-based fuzzing of every registered adapter
(:data:`devintel.ingest.adapters.registry.ADAPTERS`).

For arbitrary topics under an adapter's subscriptions and arbitrary payloads (raw bytes; JSON values of any shape;
objects carrying the canonical keys with hostile values: huge integers, ``NaN``/``Infinity`` literals and strings,
bools, nested values, unicode, control characters, very long strings; device ids holding ``+ # \\0 ..``), and the
deeper shapes of its dialect (``fuzz_strategies.DIALECT_MESSAGES``), ``parse`` returns a list of inbound items or
raises :class:`Rejected` with a reason of ``REJECT_REASONS``, never another exception; every item names a
sanitised device id (``[A-Za-z0-9_.:-]``, at most 128 characters) and every telemetry event holds only finite,
in-range metric values of :data:`VALID_RANGES`. Adapters may be stateful, so each is fuzzed with whole sequences
of messages on one instance. (The handler under a flood of 100,000 bad messages: ``test_reliability_flood.py``.)
"""

from __future__ import annotations

import json
import pickle

import pytest
from hypothesis import given
from hypothesis import strategies as st

from devintel.ingest.adapters import NativeAdapter, Zigbee2MqttAdapter
from devintel.ingest.adapters.homeassistant_api import HomeAssistantApiAdapter
from devintel.ingest.adapters.registry import ADAPTERS, AdapterOptions
from devintel.ingest.inbound import Rejected
from fuzz_strategies import (
    DIALECT_MESSAGES,
    FUZZ,
    NATIVE_KEYS,
    RECEIVED,
    SAFE_ID,
    Z2M_KEYS,
    Message,
    generic_messages,
    key_values,
    object_payloads,
    parse_checked,
    topic_level,
)


def test_every_dialect_strategy_names_a_registered_adapter() -> None:
    assert set(DIALECT_MESSAGES) <= set(ADAPTERS)


@pytest.mark.parametrize("name", list(ADAPTERS))
@FUZZ
@given(data=st.data())
def test_every_adapter_parses_or_rejects_whole_sequences(name: str, data: st.DataObject) -> None:
    """Sequences on one (possibly stateful) adapter: its dialect's shapes when it has some, and anything on the
    topics its subscriptions match."""
    adapter = ADAPTERS[name](AdapterOptions())
    strategy = generic_messages(adapter)
    if name in DIALECT_MESSAGES:
        strategy = DIALECT_MESSAGES[name] | strategy
    messages: list[Message] = data.draw(st.lists(strategy, min_size=1, max_size=12))
    for topic, payload in messages:
        parse_checked(adapter, topic, payload)
    if isinstance(adapter, Zigbee2MqttAdapter):
        for memory in (adapter._known, adapter._inferred_type, adapter._battery_seen, adapter._outages):
            assert all(SAFE_ID.fullmatch(key) for key in memory)
    if isinstance(adapter, HomeAssistantApiAdapter):
        assert all(SAFE_ID.fullmatch(device) for device in adapter.devices())


@FUZZ
@given(
    device=topic_level,
    body=st.dictionaries(st.sampled_from(NATIVE_KEYS), key_values, max_size=10),
    received=st.floats(min_value=0, max_value=4e9) | st.just(RECEIVED),
)
def test_native_events_with_hostile_values(device: str, body: dict[str, object], received: float) -> None:
    """Canonical objects whose every value may be hostile (the common shape of a bad event, explored deeper)."""
    parse_checked(NativeAdapter(), f"devintel/events/{device}", json.dumps(body, allow_nan=True).encode(), received)


@FUZZ
@given(name=topic_level, payload=object_payloads(Z2M_KEYS))
def test_a_rejected_zigbee2mqtt_state_leaves_the_adapter_unchanged(name: str, payload: bytes) -> None:
    """A rejected device state changes nothing the adapter remembers (its counters, inferred types)."""
    adapter = Zigbee2MqttAdapter()
    adapter.parse("zigbee2mqtt/known", b'{"battery": 80, "power_outage_count": 3, "occupancy": true}', RECEIVED)
    before = pickle.dumps(adapter.__dict__)
    try:
        adapter.parse(f"zigbee2mqtt/{name}", payload, RECEIVED)
    except Rejected:
        assert pickle.dumps(adapter.__dict__) == before
