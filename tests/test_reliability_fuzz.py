"""Reliability under bad input: property-based fuzzing of every adapter, and 100,000 bad messages through the
handler.

1. **Adapters** (hypothesis, a few hundred examples per property): for arbitrary topics under an adapter's
   subscriptions and arbitrary payloads (raw bytes; JSON values of any shape; objects carrying the canonical
   keys with hostile values: huge integers, ``NaN``/``Infinity`` literals and strings, bools, nested values,
   unicode, control characters, very long strings; device ids holding ``+ # \\0 ..``), ``parse`` returns a
   list of inbound items or raises :class:`Rejected` with a reason of ``REJECT_REASONS``, never another
   exception; every item names a sanitised device id (``[A-Za-z0-9_.:-]``, at most 128 characters) and every
   telemetry event holds only finite, in-range metric values of :data:`VALID_RANGES`. The Zigbee2MQTT adapter
   is stateful, so it is fuzzed with whole sequences of messages on one instance.
2. **The handler under a flood** (a seeded generator, for speed): two handlers on one snapshot get the same
   good stream (20 devices, 2,000 events, native and Zigbee2MQTT, with failure feedback so labels resolve and
   the models learn); the second also gets 100,000 bad messages interleaved, of every reject reason and every
   skip reason. No exception; every bad message is counted under the reason of its kind; the models, the
   feature states, the label buffer and the Zigbee2MQTT adapter's memory are identical (pickles) and so is
   every message published.
"""

from __future__ import annotations

import json
import logging
import math
import os
import pickle
import random
import re
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from devintel.contract import POWER_SOURCES
from devintel.daemon.from_settings import build_handler
from devintel.daemon.settings import Settings
from devintel.generators.templates import DEVICE_TYPES, HOME_TYPES, VALID_RANGES
from devintel.ingest.adapters import HomeAssistantAdapter, NativeAdapter, Zigbee2MqttAdapter
from devintel.ingest.adapters.base import Adapter
from devintel.ingest.adapters.homeassistant_api import HomeAssistantApiAdapter
from devintel.ingest.handler import Handler
from devintel.ingest.inbound import (
    MAX_PAYLOAD_BYTES,
    REJECT_REASONS,
    SKIP_REASONS,
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
from devintel.models.snapshots import SnapshotStore

RECEIVED = 1_790_000_000.0
SAFE_ID = re.compile(r"[A-Za-z0-9_.:-]{1,128}")
#: Examples per hypothesis property (``RELIABILITY_FUZZ_EXAMPLES`` raises it for a longer local hunt).
EXAMPLES = int(os.environ.get("RELIABILITY_FUZZ_EXAMPLES", "300"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=EXAMPLES <= 300,  # the default run is reproducible; a longer hunt explores at random
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# -- strategies ---------------------------------------------------------------------------------------------------

#: Characters that make ids and values hostile: MQTT wildcards, NUL and other control characters, path parts,
#: unicode letters and digits (``\\d`` matches Arabic-Indic digits), a right-to-left override, an emoji.
HOSTILE_CHARS = "+#/\x00\x01\x1f\x7f\x85\u200f\u202e.. _-:é\u0661\U0001d7cf\U0001f600\ud7ff"
hostile_text = st.text(alphabet=st.sampled_from(HOSTILE_CHARS) | st.characters(codec="utf-8"), max_size=40)
#: A topic level: anything but ``/`` (which would make it two levels), including the empty level.
topic_level = (
    st.text(st.characters(codec="utf-8", exclude_characters="/"), max_size=30)
    | st.sampled_from(["+", "#", "..", "a+b", "a#", "\x00", "x" * 129, "x" * 128, ".", "_", "dev.1", "a..b"])
    | st.text(st.sampled_from("abc.+#\x00 "), min_size=1, max_size=6)
)
huge_numbers = st.sampled_from(
    [
        "1" + "0" * 400,
        "-" + "9" * 400,
        "1e400",
        "-1e400",
        "1e-400",
        "18446744073709551616",
        "NaN",
        "Infinity",
        "-Infinity",
        "1" * 5000,
    ]
)
number_strings = st.sampled_from(
    [
        "NaN",
        "nan",
        "-inf",
        "Infinity",
        "1e400",
        " 80.00 ",
        "80,5",
        "0x10",
        "1_000",
        "\u0661\u0662",
        "\U0001d7cf",
        "",
        "  ",
        "+.5",
        "-0",
    ]
)
scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.floats(min_value=-1000, max_value=1e6)
    | number_strings
    | hostile_text
    | st.text(max_size=20).map(lambda s: s * 200)
)
json_values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)
CANONICAL_KEYS = ["ts", "device_id", "device_type", "power_source", "home_type", "event", *VALID_RANGES]
Z2M_KEYS = [
    "battery",
    "voltage",
    "linkquality",
    "temperature",
    "device_temperature",
    "local_temperature",
    "humidity",
    "power_outage_count",
    "occupancy",
    "presence",
    "contact",
    "water_leak",
    "smoke",
    "state",
    "brightness",
    "power",
    "illuminance",
    "lock_state",
    "last_seen",
    "action",
    "color_temp",
    "system_mode",
]
#: Values near the edges of the canonical ranges, and plausible ones.
edge_values = st.sampled_from(
    [0, -0.0, 1, 100, 100.0001, 255, 256, -40, -40.1, 125, 125.5, 1e9, 1e9 + 1, -1e9 - 1, 5000, 60_000, 1e6, 1e7]
) | st.floats(min_value=-2e9, max_value=2e9, allow_nan=False)
key_values = scalars | edge_values | json_values


def _object_payloads(keys: list[str]) -> st.SearchStrategy[bytes]:
    """JSON objects over ``keys`` (and a few others) with hostile values, some with a raw huge number spliced in."""
    base = st.dictionaries(st.sampled_from(keys) | st.text(max_size=6), key_values, max_size=8)
    plain = base.map(lambda d: json.dumps(d, allow_nan=True).encode())

    @st.composite
    def spliced(draw: st.DrawFn) -> bytes:
        obj = draw(base)
        key = draw(st.sampled_from(keys))
        body = json.dumps(obj)[1:-1]
        raw = draw(huge_numbers)
        return ("{" + (body + ", " if body else "") + json.dumps(key) + ": " + raw + "}").encode()  # NaN literals too

    return plain | spliced()


def _any_payloads(keys: list[str]) -> st.SearchStrategy[bytes]:
    return (
        st.binary(max_size=200)
        | json_values.map(lambda v: json.dumps(v, allow_nan=True).encode())
        | _object_payloads(keys)
        | st.sampled_from(
            [
                b"",
                b"{",
                b"{}",
                b"[]",
                b"null",
                b'"online"',
                b"online",
                b"OFFLINE \n",
                b'{"state": "offline"}',
                b'{"state": 1}',
                b"\xff\xfe",
                b'{"a": "\xff"}',
                b"{" + b" " * MAX_PAYLOAD_BYTES + b"}",
                b"[" * 2000 + b"]" * 2000,
                b'{"ts": NaN}',
            ]
        )
    )


# -- the property every adapter keeps -----------------------------------------------------------------------------


def _check_items(items: list[Inbound]) -> None:
    """What any adapter's output must satisfy: known item types, sanitised ids, checked telemetry."""
    assert isinstance(items, list)
    assert items, "parse returns a non-empty list (a skip is an item too)"
    for item in items:
        match item:
            case Telemetry():
                event = item.event
                assert SAFE_ID.fullmatch(item.device_id), item.device_id
                assert ".." not in item.device_id
                ts = event["ts"]
                assert isinstance(ts, float)
                assert math.isfinite(ts)
                assert event["home_type"] in HOME_TYPES
                assert event.get("device_type", "generic") in DEVICE_TYPES
                assert event.get("power_source", "battery") in POWER_SOURCES
                extra = set(event) - {"device_id", "ts", "home_type", "device_type", "power_source", *VALID_RANGES}
                assert not extra, extra
                for name, (low, high) in VALID_RANGES.items():
                    if name in event:
                        value = event[name]
                        assert isinstance(value, float), (name, value)
                        assert math.isfinite(value), (name, value)
                        assert low <= value <= high, (name, value)
            case Availability() | Feedback() | DeviceLeft():
                assert SAFE_ID.fullmatch(item.device_id), item.device_id
                assert ".." not in item.device_id, item.device_id
                assert math.isfinite(item.ts)
            case DeviceInfo():
                assert SAFE_ID.fullmatch(item.device_id), item.device_id
                assert ".." not in item.device_id, item.device_id
                assert item.device_type is None or item.device_type in DEVICE_TYPES
                assert item.power_source in (None, *POWER_SOURCES)
            case Command():
                assert item.name in ("snapshot", "reload", "refresh")
            case Skipped():
                assert item.reason in SKIP_REASONS
            case HomeAssistantOnline():
                pass
            case _:  # pragma: no cover - a new item type must be added here
                raise AssertionError(f"unexpected item {item!r}")


def _parse_checked(adapter: Adapter, topic: str, payload: bytes, received: float = RECEIVED) -> list[Inbound] | str:
    """``adapter.parse`` under the property: the items (checked) or the reject reason."""
    assert adapter.claims(topic), topic
    try:
        items = adapter.parse(topic, payload, received)
    except Rejected as rejected:
        reason = rejected.reason
    else:
        _check_items(items)
        return items
    assert reason in REJECT_REASONS
    return reason


native_topics = st.tuples(st.sampled_from(["events", "feedback", "cmd"]), topic_level).map(
    lambda parts: f"devintel/{parts[0]}/{parts[1]}"
)
NATIVE_KEYS = CANONICAL_KEYS


@FUZZ
@given(topic=native_topics, payload=_any_payloads(NATIVE_KEYS))
def test_native_adapter_parses_or_rejects(topic: str, payload: bytes) -> None:
    """Any message on devintel's own topics: items that hold the property, or a known reject reason."""
    _parse_checked(NativeAdapter(), topic, payload)


@FUZZ
@given(
    device=topic_level,
    body=st.dictionaries(st.sampled_from(NATIVE_KEYS), key_values, max_size=10),
    received=st.floats(min_value=0, max_value=4e9) | st.just(RECEIVED),
)
def test_native_events_with_hostile_values(device: str, body: dict[str, object], received: float) -> None:
    """Canonical objects whose every value may be hostile (the common shape of a bad event, explored deeper)."""
    _parse_checked(NativeAdapter(), f"devintel/events/{device}", json.dumps(body, allow_nan=True).encode(), received)


z2m_names = (
    topic_level
    | st.lists(topic_level, min_size=1, max_size=3).map("/".join)
    | st.sampled_from(["bridge/state", "bridge/info", "lamp/set", "lamp/get/x", "a/availability", "bridge"])
)
z2m_topics = z2m_names.map(lambda name: f"zigbee2mqtt/{name}") | st.sampled_from(
    ["zigbee2mqtt/bridge/devices", "zigbee2mqtt/bridge/event", "zigbee2mqtt/", "zigbee2mqtt/x/availability"]
)
exposes = st.recursive(
    st.fixed_dictionaries(
        {},
        optional={
            "type": st.sampled_from(["light", "switch", "climate", "lock", "binary", "numeric", "enum"]) | scalars,
            "property": st.sampled_from(Z2M_KEYS) | scalars,
            "name": st.sampled_from(Z2M_KEYS) | scalars,
        },
    ),
    lambda children: st.fixed_dictionaries({"type": st.just("composite"), "features": st.lists(children, max_size=3)}),
    max_leaves=6,
)
device_entries = st.fixed_dictionaries(
    {},
    optional={
        "ieee_address": topic_level | scalars,
        "friendly_name": z2m_names | scalars,
        "type": st.sampled_from(["EndDevice", "Router", "Coordinator"]) | scalars,
        "power_source": st.sampled_from(["Battery", "Mains (single phase)", "DC Source", "Unknown"]) | scalars,
        "definition": st.fixed_dictionaries(
            {}, optional={"exposes": st.lists(exposes, max_size=4) | scalars, "vendor": scalars, "model": scalars}
        )
        | scalars,
    },
)
z2m_messages = st.one_of(
    st.tuples(z2m_topics, _any_payloads(Z2M_KEYS)),
    st.tuples(z2m_names.map(lambda n: f"zigbee2mqtt/{n}"), _object_payloads(Z2M_KEYS)),
    st.tuples(
        st.just("zigbee2mqtt/bridge/devices"),
        st.lists(device_entries | json_values, max_size=5).map(lambda v: json.dumps(v, allow_nan=True).encode()),
    ),
    st.tuples(
        st.just("zigbee2mqtt/bridge/event"),
        st.fixed_dictionaries(
            {"type": st.sampled_from(["device_leave", "device_joined"]) | scalars},
            optional={"data": st.fixed_dictionaries({}, optional={"ieee_address": scalars, "friendly_name": scalars})},
        ).map(lambda v: json.dumps(v, allow_nan=True).encode()),
    ),
)


@FUZZ
@given(messages=st.lists(z2m_messages, min_size=1, max_size=12))
def test_zigbee2mqtt_adapter_parses_or_rejects_whole_sequences(messages: list[tuple[str, bytes]]) -> None:
    """Sequences on one (stateful) adapter: device lists, leaves, states, availability, requests, junk."""
    adapter = Zigbee2MqttAdapter()
    for topic, payload in messages:
        _parse_checked(adapter, topic, payload)
    for memory in (adapter._known, adapter._inferred_type, adapter._battery_seen, adapter._outages):
        assert all(SAFE_ID.fullmatch(key) for key in memory)


@FUZZ
@given(payload=_any_payloads(["state"]))
def test_home_assistant_adapter_parses_or_rejects(payload: bytes) -> None:
    """Home Assistant's status topic with any payload."""
    _parse_checked(HomeAssistantAdapter(), "homeassistant/status", payload)


ha_entity_ids = st.sampled_from(
    ["sensor.a_battery", "sensor.a_lqi", "sensor.a_rssi", "binary_sensor.a_motion", "light.a", "climate.a", "x"]
)
ha_attributes = st.fixed_dictionaries(
    {},
    optional={
        "device_class": st.sampled_from(["battery", "signal_strength", "temperature", "motion", "power"]) | scalars,
        "unit_of_measurement": st.sampled_from(["%", "dBm", "°F", "V", "W", "kW"]) | scalars,
        "battery_voltage": key_values,
        "brightness": key_values,
        "current_temperature": key_values,
    },
)
ha_states = st.fixed_dictionaries(
    {"entity_id": ha_entity_ids, "state": st.sampled_from(["unavailable", "unknown", "on", "off"]) | key_values},
    optional={"attributes": ha_attributes | json_values, "last_updated": key_values},
)
ha_registries = st.fixed_dictionaries(
    {
        "devices": st.lists(
            st.fixed_dictionaries(
                {"id": st.sampled_from(["d1", "d2"]) | scalars},
                optional={
                    "name": scalars,
                    "connections": json_values | st.just([["zigbee", "00:11:22:33:44:55:66:77"]]),
                    "identifiers": json_values,
                    "area_id": scalars,
                },
            ),
            max_size=3,
        )
        | json_values,
        "entities": st.lists(
            st.fixed_dictionaries(
                {"entity_id": ha_entity_ids, "device_id": st.sampled_from(["d1", "d2"]) | json_values},
                optional={"entity_category": scalars, "disabled_by": scalars},
            ),
            max_size=6,
        )
        | json_values,
        "states": st.lists(ha_states, max_size=6) | json_values,
    },
    optional={"areas": json_values, "current": json_values},
)
ha_messages = st.one_of(
    ha_registries.map(lambda r: ("$homeassistant-api/registries", json.dumps(r, allow_nan=True).encode())),
    ha_states.map(
        lambda s: (
            "$homeassistant-api/state_changed",
            json.dumps({"entity_id": s["entity_id"], "new_state": s}, allow_nan=True).encode(),
        )
    ),
    st.dictionaries(
        ha_entity_ids, st.lists(st.fixed_dictionaries({"s": key_values, "lu": key_values}), max_size=4)
    ).map(lambda h: ("$homeassistant-api/history", json.dumps({"history": h}, allow_nan=True).encode())),
    _any_payloads(["entity_id", "new_state", "history", "devices"]).map(
        lambda p: ("$homeassistant-api/state_changed", p)
    ),
)


@FUZZ
@given(messages=st.lists(ha_messages, min_size=1, max_size=10))
def test_home_assistant_api_adapter_parses_or_rejects_whole_sequences(messages: list[tuple[str, bytes]]) -> None:
    """Sequences on the (stateful) HA websocket source adapter: registries, state changes, history, junk."""
    adapter = HomeAssistantApiAdapter()
    for topic, payload in messages:
        _parse_checked(adapter, topic, payload)
    assert all(SAFE_ID.fullmatch(device) for device in adapter.devices())


@FUZZ
@given(name=topic_level, payload=_object_payloads(Z2M_KEYS))
def test_a_rejected_zigbee2mqtt_state_leaves_the_adapter_unchanged(name: str, payload: bytes) -> None:
    """A rejected device state changes nothing the adapter remembers (its counters, inferred types)."""
    adapter = Zigbee2MqttAdapter()
    adapter.parse("zigbee2mqtt/known", b'{"battery": 80, "power_outage_count": 3, "occupancy": true}', RECEIVED)
    before = pickle.dumps(adapter.__dict__)
    try:
        adapter.parse(f"zigbee2mqtt/{name}", payload, RECEIVED)
    except Rejected:
        assert pickle.dumps(adapter.__dict__) == before


# -- 100,000 bad messages through the handler --------------------------------------------------------------------

T0 = 1_790_000_000.0
HOUR = 3600.0
GOOD_DEVICES = 20
GOOD_EVENTS = 2_000
BAD_MESSAGES = 100_000
#: Native devices that fail (feedback) part-way, and the event index (of theirs) at which they do.
FAILING = {"dev00": 60, "dev01": 75, "dev02": 90}
Z2M_DEVICES = {"hall/motion": "0x00158d0001e50d78", "porch plug": "0x00158d0001e50d79"}
Message = tuple[str, bytes, float]


def _good_stream(seed: int = 5) -> list[tuple[Message, bool]]:
    """The good stream: (message, is it an event) of 18 native devices and 2 Zigbee2MQTT ones, 100 reports each
    about 3 hours apart (12.5 days: labels resolve negative after the 7-day horizon), three native devices
    draining their battery and failing (feedback), a Zigbee2MQTT device list first."""
    rng = random.Random(seed)
    timed: list[tuple[float, int, Message, bool]] = []
    bridge = [
        {
            "ieee_address": ieee,
            "friendly_name": name,
            "type": "EndDevice",
            "power_source": "Battery" if "motion" in name else "Mains (single phase)",
            "definition": {"exposes": [{"property": "occupancy" if "motion" in name else "power"}]},
        }
        for name, ieee in Z2M_DEVICES.items()
    ]
    timed.append((T0 - 1, 0, ("zigbee2mqtt/bridge/devices", orjson.dumps(bridge), T0 - 1), False))
    native = [f"dev{d:02d}" for d in range(GOOD_DEVICES - len(Z2M_DEVICES))]
    for d, device in enumerate(native):
        phase = rng.uniform(0, 3 * HOUR)
        battery = rng.uniform(60, 100)
        kind = ("leak_sensor", "motion_sensor", "contact_sensor", "smoke_detector")[d % 4]
        for k in range(GOOD_EVENTS // GOOD_DEVICES):
            ts = T0 + phase + k * 3 * HOUR + rng.uniform(-600, 600)
            fail_at = FAILING.get(device)
            if fail_at is not None and k == fail_at:
                body = orjson.dumps({"event": "failure", "ts": ts})
                timed.append((ts, len(timed), (f"devintel/feedback/{device}", body, ts), False))
                break
            drain = 1.2 if fail_at is not None and k > fail_at - 30 else 0.05
            battery = max(0.0, battery - drain - rng.uniform(0, 0.05))
            body = orjson.dumps(
                {
                    "ts": round(ts, 3),
                    "device_type": kind,
                    "power_source": "battery",
                    "battery_level": round(battery, 2),
                    "linkquality": round(rng.uniform(60, 200), 1),
                    "response_time": round(rng.uniform(20, 400), 1),
                    "value": float(rng.random() < 0.1),
                }
            )
            timed.append((ts, len(timed), (f"devintel/events/{device}", body, ts), True))
    for d, (name, _) in enumerate(Z2M_DEVICES.items()):
        outages = 0
        for k in range(GOOD_EVENTS // GOOD_DEVICES):
            ts = T0 + d * 900 + k * 3 * HOUR
            outages += rng.random() < 0.05
            state: dict[str, object] = {"linkquality": rng.randint(40, 200), "power_outage_count": outages}
            state.update({"battery": "88.00", "occupancy": rng.random() < 0.2} if "motion" in name else {"power": 3.5})
            state["last_seen"] = int(ts * 1000)
            timed.append((ts, len(timed), (f"zigbee2mqtt/{name}", orjson.dumps(state), ts), True))
    timed.sort(key=lambda t: (t[0], t[1]))
    return [(message, is_event) for _, _, message, is_event in timed]


class BadMessages:
    """A seeded generator of bad messages, one kind at a time; each kind knows the counter it must land in
    (``("rejected" | "skipped", reason)``). The shapes are those the hypothesis properties above explore."""

    def __init__(self, seed: int, devices: list[str]) -> None:
        self.rng = random.Random(seed)
        self.devices = devices
        self.last_event: Message | None = None
        """The latest good event, for the ``duplicate`` kind (a QoS 1 redelivery)."""
        r = self.rng
        self.kinds: list[tuple[str, str, Callable[[float], Message]]] = [
            # too_large: over 64 KB, on every adapter
            ("rejected", "too_large", lambda now: self._native(self._padded(r.randint(1, 30_000)), now)),
            ("rejected", "too_large", lambda now: (self._z2m(), self._padded(r.randint(1, 9)), now)),
            ("rejected", "too_large", lambda now: ("homeassistant/status", b"online" * 11_000, now)),
            ("rejected", "too_large", lambda now: (self._z2m() + "/availability", b"o" * 70_000, now)),
            # malformed_json: not JSON, not UTF-8, non-standard literals, truncated
            ("rejected", "malformed_json", lambda now: self._native(self._garbage(), now)),
            ("rejected", "malformed_json", lambda now: self._native(b'{"battery_level": NaN}', now)),
            ("rejected", "malformed_json", lambda now: self._native(b'{"battery_level": 1e400}', now)),
            ("rejected", "malformed_json", lambda now: self._native(b'{"device_type": "\xff\xfe"}', now)),
            ("rejected", "malformed_json", lambda now: (self._z2m(), b'{"battery": 80, ', now)),
            ("rejected", "malformed_json", lambda now: ("homeassistant/status", b"\xff\xfeonline", now)),
            ("rejected", "malformed_json", lambda now: ("zigbee2mqtt/bridge/devices", b"[{", now)),
            # wrong_type: the wrong JSON shape
            ("rejected", "wrong_type", lambda now: self._native(r.choice([b"[1, 2]", b"42", b'"x"', b"null"]), now)),
            ("rejected", "wrong_type", lambda now: self._metric(r.choice([True, False, "high", [1], {"v": 1}]), now)),
            ("rejected", "wrong_type", lambda now: (self._z2m(), b'{"battery": "full", "linkquality": 9}', now)),
            ("rejected", "wrong_type", lambda now: ("zigbee2mqtt/bridge/devices", b'{"devices": []}', now)),
            ("rejected", "wrong_type", lambda now: ("zigbee2mqtt/bridge/event", b"[]", now)),
            ("rejected", "wrong_type", lambda now: (self._z2m() + "/availability", b'{"state": 1}', now)),
            # not_finite: NaN and infinities as strings (JSON has no literal for them)
            ("rejected", "not_finite", lambda now: self._metric(r.choice(["NaN", "nan", "Infinity", "-inf"]), now)),
            ("rejected", "not_finite", lambda now: (self._z2m(), b'{"battery": "NaN"}', now)),
            # out_of_range: outside VALID_RANGES
            ("rejected", "out_of_range", lambda now: self._out_of_range(now)),
            ("rejected", "out_of_range", lambda now: (self._z2m(), b'{"battery": 255, "linkquality": 80}', now)),
            # bad_device_id: wildcards, NUL, control characters, '..', too long
            ("rejected", "bad_device_id", lambda now: (f"devintel/events/{self._bad_id()}", self._body(now), now)),
            (
                "rejected",
                "bad_device_id",
                lambda now: (f"devintel/feedback/{self._bad_id()}", b'{"event": "failure"}', now),
            ),
            ("rejected", "bad_device_id", lambda now: (f"zigbee2mqtt/{self._bad_z2m_name()}", b'{"battery": 50}', now)),
            # device_id_mismatch: the payload names another device (or not a string)
            ("rejected", "device_id_mismatch", lambda now: self._native(self._body(now, device_id=self._other()), now)),
            # bad_timestamp: too far ahead or behind, not a time
            ("rejected", "bad_timestamp", lambda now: self._native(self._body(now, ts=self._bad_ts(now)), now)),
            (
                "rejected",
                "bad_timestamp",
                lambda now: (self._z2m(), orjson.dumps({"battery": 9, "last_seen": "x"}), now),
            ),
            # unknown_value: a string outside its vocabulary
            (
                "rejected",
                "unknown_value",
                lambda now: self._feedback(r.choice(["exploded", "FAILURE", "", "fail"]), now),
            ),
            (
                "rejected",
                "unknown_value",
                lambda now: (f"devintel/cmd/{r.choice(['rm', 'format', 'SNAPSHOT'])}", b"", now),
            ),
            ("rejected", "unknown_value", lambda now: self._native(self._body(now, power_source="solar"), now)),
            ("rejected", "unknown_value", lambda now: self._native(self._body(now, home_type="castle"), now)),
            ("rejected", "unknown_value", lambda now: ("homeassistant/status", b"rebooting", now)),
            ("rejected", "unknown_value", lambda now: (self._z2m() + "/availability", b"maybe", now)),
            # skipped: no adapter claims the topic
            ("skipped", "unknown_topic", lambda now: (self._unclaimed(), self._body(now), now)),
            # skipped: well-formed, but no device health in it
            ("skipped", "not_telemetry", lambda now: (r.choice(self._bridge_topics), b'{"state": "online"}', now)),
            (
                "skipped",
                "not_telemetry",
                lambda now: (self._z2m() + r.choice(["/set", "/get"]), b'{"state": "ON"}', now),
            ),
            ("skipped", "not_telemetry", lambda now: (self._z2m() + "/state", b"ON", now)),
            ("skipped", "not_telemetry", lambda now: ("homeassistant/status", b"offline", now)),
            ("skipped", "not_telemetry", lambda now: ("zigbee2mqtt/bridge/event", b'{"type": "device_joined"}', now)),
            ("skipped", "no_metrics", lambda now: ("zigbee2mqtt/remote1", b'{"action": "single"}', now)),
            ("skipped", "no_metrics", lambda now: (self._z2m(), b'{"linkquality": null, "update": {}}', now)),
            # skipped: a QoS 1 redelivery of the latest good event
            ("skipped", "duplicate", lambda now: self.last_event or self._native(b"{", now)),
        ]

    _bridge_topics = ("zigbee2mqtt/bridge/state", "zigbee2mqtt/bridge/logging", "zigbee2mqtt/bridge/info")

    def next(self, now: float) -> tuple[Message, tuple[str, str]]:
        """One bad message received at ``now`` and the (counter, reason) it must be counted under."""
        kinds = [k for k in self.kinds if k[1] != "duplicate"] if self.last_event is None else self.kinds
        counter, reason, make = self.rng.choice(kinds)
        return make(now), (counter, reason)

    # shapes --------------------------------------------------------------------------------------------------

    def _device(self) -> str:
        return self.rng.choice(self.devices)

    def _z2m(self) -> str:
        return f"zigbee2mqtt/{self.rng.choice([*Z2M_DEVICES, 'remote1', 'kitchen/lamp'])}"

    def _native(self, payload: bytes, now: float) -> Message:
        return f"devintel/events/{self._device()}", payload, now

    def _body(self, now: float, **fields: object) -> bytes:
        body: dict[str, object] = {"ts": now, "device_type": "leak_sensor", "battery_level": 50.0, "linkquality": 90}
        body.update(fields)
        return orjson.dumps(body)

    def _padded(self, extra: int) -> bytes:
        return orjson.dumps({"battery_level": 50.0, "pad": "x" * (MAX_PAYLOAD_BYTES + extra)})

    def _garbage(self) -> bytes:
        r = self.rng
        junk = bytes(b for b in (r.randrange(256) for _ in range(r.randint(1, 40))) if b != ord("}"))
        return r.choice([b'{"a": ' + junk, b"{not json", b"{'single': 'quotes'}", b'{"a": 1,}', b"\x00\x00"])

    def _metric(self, value: object, now: float) -> Message:
        field = self.rng.choice([f for f in VALID_RANGES if f != "value"])
        return self._native(self._body(now, **{field: value}), now)

    def _out_of_range(self, now: float) -> Message:
        field = self.rng.choice(list(VALID_RANGES))
        low, high = VALID_RANGES[field]
        value = self.rng.choice([high + 1 + abs(high) * self.rng.random(), low - 1 - abs(low) * self.rng.random()])
        return self._native(self._body(now, **{field: value}), now)

    def _bad_id(self) -> str:
        r = self.rng
        return r.choice(["a+b", "#", "dev#1", "..", "a..b", "dev\x00", "\x01x", "x\x7f", "d" * r.randint(129, 400)])

    def _bad_z2m_name(self) -> str:
        return self.rng.choice(["bad\x00name", "tab\tname", "a+b", "x/../y", "n" * 300])

    def _other(self) -> object:
        return self.rng.choice(["someone-else", "dev99", 42, ["dev00"]])

    def _bad_ts(self, now: float) -> object:
        r = self.rng
        return r.choice(
            [now + 2 * 86_400 + r.random() * 1e6, now - 401 * 86_400, 1.0, True, "yesterday", "2026-13-45", [now], {}]
        )

    def _feedback(self, kind: str, now: float) -> Message:
        return f"devintel/feedback/{self._device()}", orjson.dumps({"event": kind}), now

    def _unclaimed(self) -> str:
        r = self.rng
        return r.choice(
            [
                "tasmota/tele/plug/SENSOR",
                "shellies/shelly1/relay/0",
                "esphome/node/status",
                f"devintel/predictions/{self._device()}",
                "devintel/health",
                f"devintel/events/{self._device()}/extra",
                "devintel/events",
                "homeassistant/sensor/x/config",
                "zigbee2mqttx/lamp",
            ]
        )


def _handler(model_dir: Path) -> Handler:
    return build_handler(Settings(model_dir=model_dir), SnapshotStore(model_dir).load())


def test_100k_bad_messages_are_counted_and_change_nothing(small_snapshot: Path) -> None:
    """The acceptance run: 100,000 bad messages interleaved with 2,000 good ones (see the module docstring)."""
    logging.getLogger("devintel").setLevel(logging.ERROR)  # the rate-limited warnings are not the subject here
    good = _good_stream()
    clean, dirty = _handler(small_snapshot), _handler(small_snapshot)
    devices = sorted({m[0].rsplit("/", 1)[1] for m, _ in good if m[0].startswith("devintel/events/")})
    bad = BadMessages(seed=11, devices=devices)
    per_good = BAD_MESSAGES // len(good)
    extra = BAD_MESSAGES - per_good * len(good)
    expected: Counter[tuple[str, str]] = Counter()
    clean_out: list[dict[str, object]] = []
    dirty_out: list[dict[str, object]] = []
    bad_seconds = 0.0
    sent = 0
    for index, (message, is_event) in enumerate(good):
        clean_out += [m.as_record() for m in clean.handle(*message).messages]
        handled = dirty.handle(*message)
        dirty_out += [m.as_record() for m in handled.messages]
        if is_event:
            bad.last_event = message
        for _ in range(per_good + (1 if index < extra else 0)):
            bad_message, kind = bad.next(now=message[2])
            started = time.perf_counter()
            out = dirty.handle(*bad_message)
            bad_seconds += time.perf_counter() - started
            assert out.messages == [], (bad_message[0], bad_message[1][:200], kind)
            assert out.commands == [], (bad_message[0], bad_message[1][:200], kind)
            expected[kind] += 1
            sent += 1
    assert sent == BAD_MESSAGES

    rejected = Counter({reason: n for (counter, reason), n in expected.items() if counter == "rejected"})
    skipped = Counter({reason: n for (counter, reason), n in expected.items() if counter == "skipped"})
    assert set(rejected) == set(REJECT_REASONS), "every reject reason is exercised"
    assert set(skipped) == set(SKIP_REASONS), "every skip reason is exercised"
    c, k = dirty.counters, clean.counters
    assert c.rejected == rejected
    assert k.rejected == Counter()
    assert c.skipped - k.skipped == skipped
    assert sum(c.rejected.values()) + sum((c.skipped - k.skipped).values()) == BAD_MESSAGES
    assert c.messages == k.messages + BAD_MESSAGES
    assert (c.events, c.predictions, c.published, c.failures) == (k.events, k.predictions, k.published, k.failures)

    # The good stream did something: labels resolved (positive ones among them) and the models learned.
    learner = clean.live.learner
    assert k.events == sum(is_event for _, is_event in good) > 1_900
    assert learner.resolved > 500
    assert learner.learned > 100
    assert any(label for label, _ in learner.outcomes)
    assert k.failures["feedback"] == len(FAILING)

    # Nothing of the bad input reached a model, a feature, a label or the adapter's memory.
    assert pickle.dumps(dirty.live.models) == pickle.dumps(clean.live.models)
    assert pickle.dumps(dirty.live.learner.features.states) == pickle.dumps(clean.live.learner.features.states)
    assert pickle.dumps(dirty.live.learner.labels) == pickle.dumps(clean.live.learner.labels)
    assert (dirty.live.learner.learned, dirty.live.learner.resolved) == (learner.learned, learner.resolved)
    assert pickle.dumps(dirty.adapters[1].__dict__) == pickle.dumps(clean.adapters[1].__dict__)
    assert list(dirty.devices) == list(clean.devices)
    assert dirty_out == clean_out
    assert len(clean_out) > 1_000

    rate = BAD_MESSAGES / bad_seconds
    print(f"\n100,000 bad messages: {bad_seconds:.2f} s in the handler ({rate:,.0f}/s)")
    print("rejected:", dict(sorted(c.rejected.items())))
    print("skipped: ", dict(sorted((c.skipped - k.skipped).items())))
    assert bad_seconds < 30.0


@pytest.mark.parametrize("seed", [1, 2])
def test_bad_message_kinds_land_where_they_say(small_snapshot: Path, seed: int) -> None:
    """Each kind of the generator, alone on a fresh handler, is counted under its own reason (so the big run's
    tally cannot balance by accident)."""
    handler = _handler(small_snapshot)
    good = _good_stream()
    handler.handle(*good[0][0])  # the Zigbee2MQTT device list
    first_event = next(m for m, is_event in good if is_event)
    bad = BadMessages(seed=seed, devices=["dev03", "dev04"])
    bad.last_event = first_event
    handler.handle(*first_event)
    for counter, reason, make in bad.kinds:
        for _ in range(5):
            before = (Counter(handler.counters.rejected), Counter(handler.counters.skipped))
            message = make(first_event[2])
            handler.handle(*message)
            after = (handler.counters.rejected, handler.counters.skipped)
            delta = (after[0] - before[0]) if counter == "rejected" else (after[1] - before[1])
            assert delta == Counter({reason: 1}), (reason, message[0][:80], message[1][:120], delta)


def test_a_redelivered_zigbee2mqtt_state_is_the_same_event() -> None:
    """Regression (found by the 100k run): a QoS 1 redelivery of a Zigbee2MQTT state whose
    ``power_outage_count`` rose gave ``restart_count`` 0 the second time (the count was already remembered), so
    the handler saw a new event and learned it twice. The redelivery now reports the same rise; a new message
    with the same count still reports none."""
    adapter = Zigbee2MqttAdapter()
    first = orjson.dumps({"linkquality": 80, "power_outage_count": 3, "last_seen": int(RECEIVED * 1000)})
    rise = orjson.dumps({"linkquality": 80, "power_outage_count": 5, "last_seen": int(RECEIVED * 1000) + 60_000})
    later = orjson.dumps({"linkquality": 80, "power_outage_count": 5, "last_seen": int(RECEIVED * 1000) + 120_000})
    restarts = []
    for payload in (first, first, rise, rise, rise, later):
        (item,) = adapter.parse("zigbee2mqtt/plug", payload, RECEIVED + 200)
        assert isinstance(item, Telemetry)
        restarts.append(item.event["restart_count"])
    assert restarts == [0.0, 0.0, 2.0, 2.0, 2.0, 0.0]
