"""Hypothesis strategies of hostile MQTT messages, and the property every adapter keeps (``check_items``).

Shared by the fuzz suite (``test_reliability_fuzz.py``) and the adapter contract (``test_adapter_contract.py``).
:data:`DIALECT_MESSAGES` holds the message shapes a registered adapter's dialect knows (deeper than the generic
topics-under-its-subscriptions of :func:`generic_messages`, which every registered adapter gets).
"""

from __future__ import annotations

import json
import math
import os
import re

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from devintel.contract import DEVICE_TYPES, HOME_TYPES, POWER_SOURCES, VALID_RANGES
from devintel.ingest.adapters.base import Adapter
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
from devintel.ingest.validation import MAX_NAME_CHARS

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


def object_payloads(keys: list[str]) -> st.SearchStrategy[bytes]:
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


def any_payloads(keys: list[str]) -> st.SearchStrategy[bytes]:
    return (
        st.binary(max_size=200)
        | json_values.map(lambda v: json.dumps(v, allow_nan=True).encode())
        | object_payloads(keys)
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


def check_items(items: list[Inbound]) -> None:
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
                known = {"device_id", "ts", "home_type", "device_type", "power_source", "name", *VALID_RANGES}
                extra = set(event) - known
                assert not extra, extra
                if "name" in event:  # the optional display name (validation.event_name)
                    name = event["name"]
                    assert isinstance(name, str), name
                    assert 0 < len(name) <= MAX_NAME_CHARS, name
                    assert not any(ord(c) < 32 or ord(c) == 127 for c in name), name
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


def parse_checked(adapter: Adapter, topic: str, payload: bytes, received: float = RECEIVED) -> list[Inbound] | str:
    """``adapter.parse`` under the property: the items (checked) or the reject reason."""
    assert adapter.claims(topic), topic
    try:
        items = adapter.parse(topic, payload, received)
    except Rejected as rejected:
        reason = rejected.reason
    else:
        check_items(items)
        return items
    assert reason in REJECT_REASONS
    return reason


native_topics = st.tuples(st.sampled_from(["events", "feedback", "cmd"]), topic_level).map(
    lambda parts: f"devintel/{parts[0]}/{parts[1]}"
)
NATIVE_KEYS = CANONICAL_KEYS


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
    st.tuples(z2m_topics, any_payloads(Z2M_KEYS)),
    st.tuples(z2m_names.map(lambda n: f"zigbee2mqtt/{n}"), object_payloads(Z2M_KEYS)),
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
    any_payloads(["entity_id", "new_state", "history", "devices"]).map(
        lambda p: ("$homeassistant-api/state_changed", p)
    ),
)


Message = tuple[str, bytes]


def generic_messages(adapter: Adapter) -> st.SearchStrategy[Message]:
    """Messages on topics that ``adapter``'s subscriptions match (each ``+`` a hostile level, ``#`` one to three of
    them), with any payload: what every registered adapter is fuzzed with, whatever its dialect."""

    def topic_of(topic_filter: str) -> st.SearchStrategy[str]:
        parts: list[st.SearchStrategy[str]] = []
        for level in topic_filter.split("/"):
            if level == "+":
                parts.append(topic_level)
            elif level == "#":
                parts.append(st.lists(topic_level, min_size=1, max_size=3).map("/".join))
            else:
                parts.append(st.just(level))
        return st.tuples(*parts).map("/".join)

    topics = st.one_of([topic_of(f) for f in adapter.subscriptions()]).filter(adapter.claims)
    return st.tuples(topics, any_payloads(CANONICAL_KEYS))


#: The deeper message shapes of each dialect, by adapter registry name (an adapter without one still gets
#: :func:`generic_messages`).
DIALECT_MESSAGES: dict[str, st.SearchStrategy[Message]] = {
    "native": st.tuples(native_topics, any_payloads(NATIVE_KEYS)),
    "zigbee2mqtt": z2m_messages,
    "homeassistant": st.tuples(st.just("homeassistant/status"), any_payloads(["state"])),
    "homeassistant_api": ha_messages,
}
