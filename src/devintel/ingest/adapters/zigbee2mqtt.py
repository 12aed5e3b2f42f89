"""Zigbee2MQTT: device state, availability, the device list and bridge events, as canonical events.

The adapter remembers what ``bridge/devices`` said (friendly name -> IEEE address, device type, power source)
and each device's last ``power_outage_count``, so it is stateful: one instance per message stream. A device's
id is its IEEE address once the device list named it, else its sanitised friendly name. The mapping is made
so that live events resemble the synthetic ones (docs/synthetic-data.md): ``battery`` -> ``battery_level``;
``voltage`` -> ``battery_voltage`` on battery devices only; ``device_temperature`` (or the ambient
``temperature`` on device types whose synthetic template reports a temperature) -> ``temperature``;
``power_outage_count`` -> ``restart_count`` as the increase since the device's previous message; the
device type's primary reading (occupancy, contact, leak, smoke: 1/0; a plug's power in W; a light's
brightness, 0 when off; a thermostat's local temperature; ...) -> ``value``; ``last_seen`` -> ``ts``.

Why one module of over 400 lines: one adapter per dialect (``base.py``); the device list's memory and the
mappings that read it belong together.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Final, Literal, TypeVar

from devintel.contract import DEFAULT_HOME_TYPE, REPORTS_TEMPERATURE, VALID_RANGES
from devintel.ingest.adapters.base import Adapter
from devintel.ingest.inbound import (
    MAX_PAYLOAD_BYTES,
    Availability,
    DeviceInfo,
    DeviceLeft,
    Inbound,
    Rejected,
    Skipped,
)
from devintel.ingest.validation import (
    TimeWindow,
    canonical_event,
    check_home_type,
    clean_name,
    event_time,
    parse_json,
    sanitize_device_id,
    to_number,
)

logger = logging.getLogger(__name__)

PowerSource = Literal["battery", "mains"]
V = TypeVar("V")

#: Devices remembered at most (friendly names, counters); the oldest is forgotten first.
MAX_REMEMBERED: Final = 10_000
#: Sub-topics of a device that are requests to it, not reports from it.
_REQUEST_LEVELS: Final = frozenset({"set", "get"})
#: Composite expose types (``definition.exposes[].type``) that name what a device is.
_COMPOSITE_KINDS: Final = frozenset({"light", "switch", "climate", "lock", "cover", "fan"})
#: State keys that reveal a composite kind when the device list is unknown.
_STATE_KIND_HINTS: Final[dict[str, str]] = {
    "local_temperature": "climate",
    "occupied_heating_setpoint": "climate",
    "system_mode": "climate",
    "lock_state": "lock",
    "brightness": "light",
    "color_temp": "light",
    "color": "light",
}
#: Where a device type's primary reading (``value``) comes from, in order of preference.
_VALUE_KEYS: Final[dict[str, tuple[str, ...]]] = {
    "motion_sensor": ("occupancy", "presence"),
    "contact_sensor": ("contact",),
    "leak_sensor": ("water_leak",),
    "smoke_detector": ("smoke",),
    "temperature_sensor": ("temperature", "humidity"),
    "thermostat": ("local_temperature", "temperature"),
    "smart_plug": ("power",),
    "switch": ("state",),
    "lock": ("lock_state", "state"),
    "remote": (),
}
_GENERIC_VALUE_KEYS: Final = (
    "occupancy",
    "contact",
    "water_leak",
    "smoke",
    "local_temperature",
    "temperature",
    "humidity",
    "illuminance",
    "power",
    "state",
)
_ON_OFF: Final[dict[str, float]] = {
    "on": 1.0,
    "off": 0.0,
    "lock": 1.0,
    "locked": 1.0,
    "unlock": 0.0,
    "unlocked": 0.0,
    "open": 1.0,
    "closed": 0.0,
}


def infer_device_type(kinds: Iterable[str], properties: Iterable[str]) -> str | None:
    """The canonical device type of composite expose kinds and property names, or None when nothing tells."""
    kind, prop = set(kinds), set(properties)
    rules: tuple[tuple[bool, str], ...] = (
        ("water_leak" in prop, "leak_sensor"),
        ("smoke" in prop, "smoke_detector"),
        ("climate" in kind, "thermostat"),
        ("lock" in kind, "lock"),
        (bool(prop & {"occupancy", "presence"}), "motion_sensor"),
        ("contact" in prop, "contact_sensor"),
        ("light" in kind, "light"),
        ("switch" in kind and bool(prop & {"power", "energy"}), "smart_plug"),
        ("switch" in kind, "switch"),
        ("action" in prop, "remote"),
        (bool(prop & {"temperature", "humidity"}), "temperature_sensor"),
        (bool(prop & {"power", "energy"}), "smart_plug"),
    )
    return next((device_type for matched, device_type in rules if matched), None)


def _collect_exposes(exposes: object, kinds: set[str], properties: set[str]) -> None:
    if not isinstance(exposes, list):
        return
    for expose in exposes:
        if not isinstance(expose, dict):
            continue
        if expose.get("type") in _COMPOSITE_KINDS:
            kinds.add(str(expose["type"]))
        name = expose.get("property") or expose.get("name")
        if isinstance(name, str):
            properties.add(name)
        _collect_exposes(expose.get("features"), kinds, properties)


def device_type_of_exposes(exposes: object) -> str:
    """The device type of a ``definition.exposes`` list; ``generic`` when it tells nothing."""
    kinds: set[str] = set()
    properties: set[str] = set()
    _collect_exposes(exposes, kinds, properties)
    return infer_device_type(kinds, properties) or "generic"


def device_type_of_state(state: Mapping[str, object]) -> str | None:
    """The device type a state payload's keys suggest (when the device list is unknown), or None."""
    kinds = {_STATE_KIND_HINTS[key] for key in state if key in _STATE_KIND_HINTS}
    if "light" in kinds and "state" not in state:
        kinds.discard("light")  # a dimmer remote reports brightness but has no state
    if "state" in state and not kinds & {"light", "climate", "lock"}:
        kinds.add("switch")
    return infer_device_type(kinds, state.keys())


def power_source_of(text: object) -> PowerSource | None:
    """``battery`` or ``mains`` of Zigbee2MQTT's ``power_source`` ("Battery", "Mains (single phase)", "DC
    Source"), None when unknown."""
    if not isinstance(text, str):
        return None
    lowered = text.lower()
    if lowered.startswith("battery"):
        return "battery"
    if "mains" in lowered or lowered.startswith("dc"):
        return "mains"
    return None


def _reading(value: object) -> object:
    """A state reading as ``value`` takes it: ON/OFF-like words as 1/0, words that are no number dropped
    (None), anything else as it is (so a ``"NaN"`` or an object is still rejected by the validation)."""
    if not isinstance(value, str):
        return value
    word = value.strip().lower()
    if word in _ON_OFF:
        return _ON_OFF[word]
    try:
        to_number(value)
    except Rejected as exc:
        return value if exc.reason == "not_finite" else None
    return value


def primary_value(device_type: str | None, state: Mapping[str, object]) -> object:
    """The raw primary reading of a state payload for ``value`` (None when it has none); checked later."""
    if device_type == "light":
        if _reading(state.get("state")) == 0.0:
            return 0.0
        return _reading(state.get("brightness"))
    keys = _VALUE_KEYS.get(device_type or "generic", _GENERIC_VALUE_KEYS)
    for key in keys:
        reading = _reading(state.get(key))
        if reading is not None:
            return reading
    return None


def _count(value: object) -> float | None:
    """A counter's reading as a number; None when absent or not a number (the value is then dropped alone)."""
    if value is None:
        return None
    try:
        return to_number(value, field="power_outage_count")
    except Rejected:
        return None


@dataclass(frozen=True, slots=True)
class _Known:
    """What the device list said about a device."""

    device_type: str
    power_source: PowerSource | None


@dataclass(frozen=True, slots=True)
class _Outages:
    """A device's ``power_outage_count`` in its latest accepted message, the count before that message, and the
    message's event time when it carried ``last_seen`` (to recognise a redelivery of it)."""

    count: float
    before: float | None
    seen: float | None


def _store(memory: dict[str, V], key: str, value: V) -> None:
    """Set ``memory[key]`` in a memory bounded to :data:`MAX_REMEMBERED` keys (the oldest go first)."""
    if key not in memory and len(memory) >= MAX_REMEMBERED:
        del memory[next(iter(memory))]
    memory[key] = value


class Zigbee2MqttAdapter(Adapter):
    """Everything under ``<base_topic>/``: device state and availability, ``bridge/devices`` and
    ``bridge/event``; other bridge topics and request sub-topics (``/set``, ``/get``) are skipped."""

    source = "zigbee2mqtt"

    def __init__(
        self,
        base_topic: str = "zigbee2mqtt",
        default_home_type: str = DEFAULT_HOME_TYPE,
        window: TimeWindow | None = None,
    ) -> None:
        self.base_topic = base_topic
        self.default_home_type = check_home_type(default_home_type)
        self.window = window or TimeWindow()
        self._ieee_by_name: dict[str, str] = {}
        self._known: dict[str, _Known] = {}
        self._inferred_type: dict[str, str] = {}
        self._battery_seen: dict[str, bool] = {}
        self._outages: dict[str, _Outages] = {}

    def subscriptions(self) -> list[str]:
        """The whole base topic: friendly names may hold ``/``, so ``<base>/+`` would miss devices."""
        return [f"{self.base_topic}/#"]

    def device_id(self, friendly_name: str) -> str:
        """The id of a device by friendly name: its IEEE address when the device list named it, else the
        sanitised friendly name (``bad_device_id`` when that is unsafe)."""
        return self._ieee_by_name.get(friendly_name) or sanitize_device_id(friendly_name)

    def parse(self, topic: str, payload: bytes, received: float) -> list[Inbound]:
        """Route by the topic after the base: bridge topics, availability, request sub-topics, device state."""
        rest = topic[len(self.base_topic) + 1 :] if topic.startswith(f"{self.base_topic}/") else ""
        if rest == "bridge/devices":
            return self._devices(payload)
        if rest == "bridge/event":
            return [self._bridge_event(payload, received)]
        if not rest or rest == "bridge" or rest.startswith("bridge/"):
            return [Skipped("not_telemetry", f"bridge topic {topic!r}")]
        levels = rest.split("/")
        if len(levels) > 1 and levels[-1] == "availability":
            return [self._availability("/".join(levels[:-1]), payload, received)]
        if _REQUEST_LEVELS.intersection(levels[1:]):
            return [Skipped("not_telemetry", f"request sub-topic {topic!r}")]
        return [self._state(rest, payload, received)]

    # bridge/devices ------------------------------------------------------------------------------------------

    def _devices(self, payload: bytes) -> list[Inbound]:
        devices = parse_json(payload)
        if not isinstance(devices, list):
            raise Rejected("wrong_type", f"bridge/devices is a {type(devices).__name__}, not a list")
        infos = [info for entry in devices if (info := self._device_info(entry)) is not None]
        self._ieee_by_name = {name: info.device_id for name, info in infos}
        self._known = {info.device_id: _Known(info.device_type or "generic", info.power_source) for _, info in infos}
        if not infos:
            return [Skipped("not_telemetry", "bridge/devices lists no end device")]
        return [info for _, info in infos]

    @staticmethod
    def _device_info(entry: object) -> tuple[str, DeviceInfo] | None:
        """(friendly name, info) of one device-list entry; None for the coordinator and unusable entries."""
        if not isinstance(entry, dict) or entry.get("type") == "Coordinator":
            return None
        ieee = entry.get("ieee_address")
        try:
            device_id = sanitize_device_id(ieee)
        except Rejected as exc:
            logger.debug("bridge/devices entry skipped: %s", exc)
            return None
        name = entry.get("friendly_name")
        definition = entry.get("definition")
        definition = definition if isinstance(definition, dict) else {}
        info = DeviceInfo(
            device_id=device_id,
            device_type=device_type_of_exposes(definition.get("exposes")),
            power_source=power_source_of(entry.get("power_source")),
            ieee_address=str(ieee),
            name=clean_name(name),
            source="zigbee2mqtt",
        )
        return (name if isinstance(name, str) and name else str(ieee)), info

    # bridge/event --------------------------------------------------------------------------------------------

    def _bridge_event(self, payload: bytes, received: float) -> Inbound:
        event = parse_json(payload)
        if not isinstance(event, dict):
            raise Rejected("wrong_type", f"bridge/event is a {type(event).__name__}, not an object")
        kind = event.get("type")
        if kind != "device_leave":
            return Skipped("not_telemetry", f"bridge event {str(kind)[:40]!r}")
        data = event.get("data")
        data = data if isinstance(data, dict) else {}
        ieee, name = data.get("ieee_address"), data.get("friendly_name")
        if ieee is not None:
            device_id = sanitize_device_id(ieee)
        elif isinstance(name, str):
            device_id = self.device_id(name)
        else:
            raise Rejected("bad_device_id", "device_leave names no device")
        self._forget(device_id, name)
        return DeviceLeft(device_id, received)

    def _forget(self, device_id: str, name: object) -> None:
        if isinstance(name, str):
            self._ieee_by_name.pop(name, None)
        for memory in (self._known, self._inferred_type, self._battery_seen, self._outages):
            memory.pop(device_id, None)

    # <name>/availability -------------------------------------------------------------------------------------

    def _availability(self, name: str, payload: bytes, received: float) -> Availability:
        device_id = self.device_id(name)
        stripped = payload.strip()
        if stripped[:1] in (b"{", b'"'):
            parsed = parse_json(stripped)
            state = parsed.get("state") if isinstance(parsed, dict) else parsed
            if not isinstance(state, str):
                raise Rejected("wrong_type", f"availability state is a {type(state).__name__}")
        else:
            if len(payload) > MAX_PAYLOAD_BYTES:
                raise Rejected("too_large", f"{len(payload)} bytes")
            try:
                state = stripped.decode()
            except UnicodeDecodeError:
                raise Rejected("malformed_json", "availability is not UTF-8") from None
        if state.lower() not in ("online", "offline"):
            raise Rejected("unknown_value", f"availability {str(state)[:40]!r}")
        return Availability(device_id, state.lower() == "online", received)

    # <name> device state -------------------------------------------------------------------------------------

    def _state(self, name: str, payload: bytes, received: float) -> Inbound:
        if len(payload) > MAX_PAYLOAD_BYTES:
            raise Rejected("too_large", f"{len(payload)} bytes")
        if not payload.lstrip().startswith(b"{"):
            return Skipped("not_telemetry", "not a JSON object (an attribute sub-topic?)")
        state = parse_json(payload)
        if not isinstance(state, dict):  # pragma: no cover - a payload starting with { parses to an object
            raise Rejected("wrong_type", "device state is not an object")
        device_id = self.device_id(name)
        raw = self._canonical_fields(device_id, state, received)
        if not any(field in raw for field in VALID_RANGES):
            return Skipped("no_metrics", f"no canonical field from {device_id}")
        telemetry = canonical_event(
            raw, device_id=device_id, received=received, default_home_type=self.default_home_type, window=self.window
        )
        self._commit(device_id, state, telemetry.event["ts"] if state.get("last_seen") is not None else None)
        return telemetry

    def _device_type(self, device_id: str, state: Mapping[str, object]) -> str | None:
        known = self._known.get(device_id)
        if known is not None and known.device_type != "generic":
            return known.device_type
        inferred = device_type_of_state(state) or self._inferred_type.get(device_id)
        return inferred or (known.device_type if known else None)

    def _power_source(self, device_id: str, state: Mapping[str, object]) -> PowerSource | None:
        known = self._known.get(device_id)
        if known is not None and known.power_source is not None:
            return known.power_source
        if state.get("battery") is not None or self._battery_seen.get(device_id):
            return "battery"
        return None

    def _canonical_fields(self, device_id: str, state: Mapping[str, object], received: float) -> dict[str, object]:
        """The state payload under canonical names, values not yet checked (None = absent)."""
        device_type = self._device_type(device_id, state)
        power_source = self._power_source(device_id, state)
        raw: dict[str, object] = {
            "device_type": device_type,
            "power_source": power_source,
            "ts": state.get("last_seen"),
            "battery_level": state.get("battery"),
            "linkquality": state.get("linkquality"),
            "humidity": state.get("humidity"),
            "temperature": self._temperature(device_type, state),
            "restart_count": self._restarts(
                device_id, state.get("power_outage_count"), state.get("last_seen"), received
            ),
            "value": primary_value(device_type, state),
        }
        if power_source == "battery":
            raw["battery_voltage"] = state.get("voltage")
        return {key: value for key, value in raw.items() if value is not None}

    @staticmethod
    def _temperature(device_type: str | None, state: Mapping[str, object]) -> object:
        """The device's own temperature, else the one it senses where the contract says its type reports one."""
        if state.get("device_temperature") is not None:
            return state["device_temperature"]
        if (device_type or "generic") not in REPORTS_TEMPERATURE:
            return None
        if state.get("temperature") is not None:
            return state["temperature"]
        return state.get("local_temperature") if device_type == "thermostat" else None

    def _restarts(self, device_id: str, count: object, last_seen: object, received: float) -> object:
        """Power outages since the device's previous message (0 on the first, and after a counter reset).

        A redelivery of the latest message (QoS 1 is at least once: the same ``last_seen`` and the same count)
        reports the same rise as the original, so the handler sees the same event and skips it as a duplicate."""
        current = _count(count)
        if current is None:
            return count  # absent (None), or not a count: canonical_event drops restart_count and says why
        known = self._outages.get(device_id)
        if known is None:
            return 0.0
        previous: float | None = known.count
        if (
            last_seen is not None
            and known.seen is not None
            and current == known.count
            and event_time(last_seen, received, self.window) == known.seen
        ):
            previous = known.before
        return 0.0 if previous is None or current < previous else current - previous

    def _commit(self, device_id: str, state: Mapping[str, object], seen: object) -> None:
        """Remember what an accepted message said (its counter, its inferred type, its battery); ``seen`` is its
        event time when it carried ``last_seen``."""
        current = _count(state.get("power_outage_count"))
        if current is not None:
            known = self._outages.get(device_id)
            seen_ts = float(seen) if isinstance(seen, int | float) else None
            if known is None or not (seen_ts is not None and known.seen == seen_ts and known.count == current):
                _store(self._outages, device_id, _Outages(current, known.count if known else None, seen_ts))
        inferred = device_type_of_state(state)
        if inferred is not None:
            _store(self._inferred_type, device_id, inferred)
        if state.get("battery") is not None:
            _store(self._battery_seen, device_id, True)
