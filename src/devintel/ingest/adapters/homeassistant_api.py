"""Home Assistant as a source: its device, entity and area registries and its state changes, as canonical events.

Pure: the websocket client (:mod:`devintel.daemon.homeassistant_api`) does the I/O and hands over what HA sent as
messages on ``$homeassistant-api/...`` pseudo-topics (``$`` topics are never an MQTT subscription of devintel's,
so nothing on the broker can reach this adapter; a capture of them replays as the live client would):

- ``$homeassistant-api/registries``: ``{"devices": [...], "entities": [...], "areas": [...], "states": [...],
  "current": bool}``, the answers of ``config/device_registry/list``, ``config/entity_registry/list``,
  ``config/area_registry/list`` and ``get_states``. Each HA device with at least one mapped entity becomes a
  :class:`DeviceInfo` (named by the HA device's name, in its area, with its registry ``connections`` so that
  devintel's entities attach to it) and, unless ``current`` is false (a backfill follows), one :class:`Telemetry`
  event of its current readings.
- ``$homeassistant-api/state_changed``: the ``data`` of a ``state_changed`` event. A mapped entity's new state
  becomes its device's event (the device's latest readings of all its entities), ``unavailable`` on all of a
  device's entities is an :class:`Availability` offline, and a reading after that online again.
- ``$homeassistant-api/history``: ``{"history": {entity_id: [{"s": state, "lu": epoch s}, ...]}}``, a slice of
  ``history/history_during_period``; its states go through the same path in time order (the backfill).

How entities map (by device class, unit and entity naming), per HA device: a ``battery`` sensor (%) ->
``battery_level`` (its ``battery_voltage`` attribute, V, as ZHA reports it -> ``battery_voltage`` in mV); a
``voltage`` sensor named for the battery -> ``battery_voltage``; a ``signal_strength`` sensor in dBm (or named
``rssi``) -> ``signal_strength``; an entity named ``lqi`` / ``linkquality`` -> ``linkquality``; a temperature that
is the device's own (a diagnostic entity, or named ``device``/``internal``/``chip`` temperature) ->
``temperature``; ambient temperature and humidity as Zigbee2MQTT's adapter takes them; motion, door, moisture and
smoke binary sensors, lights, switches, plugs' power, locks and thermostats give the device type and ``value``. A
battery level of at most 25 % that rises by 40 points or more is a battery replaced: :class:`Feedback` ``replaced``
at that time (a failure, as the person's word would be), so a backfill labels the readings before it.

A device that Zigbee2MQTT reports (``zigbee2mqtt_<ieee>`` identifiers) is left to the Zigbee2MQTT adapter, and a
device with a Zigbee IEEE address (ZHA's ``zigbee`` connection) gets that address as its id, as there: a device
that both report is one device. devintel's own devices and HA's service entries are skipped.

Why one module of over 400 lines: one adapter per dialect (``base.py``); the registries' memory and the entity
mappings that read it belong together.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Final, Literal

import orjson

from devintel.contract import DEFAULT_HOME_TYPE, REPORTS_TEMPERATURE
from devintel.ingest.adapters.base import Adapter
from devintel.ingest.adapters.zigbee2mqtt import infer_device_type
from devintel.ingest.inbound import Availability, DeviceInfo, Feedback, Inbound, Rejected, Skipped, Telemetry
from devintel.ingest.validation import (
    TimeWindow,
    canonical_event,
    check_home_type,
    clean_name,
    metric_value,
    sanitize_device_id,
    to_number,
)

#: The pseudo-topic prefix of what the websocket client hands over (a ``$`` topic: never subscribed on MQTT).
API_TOPIC: Final = "$homeassistant-api"
#: Largest message of the client's accepted (the registries of a large home, a slice of history).
MAX_API_BYTES: Final = 32 * 1024 * 1024
#: A battery level at most this low followed by a rise of at least ``REPLACED_RISE`` points is a battery replaced:
#: evidence of a failure (its battery ran out, or was about to), like a person's ``replaced`` feedback.
REPLACED_FROM: Final = 25.0
REPLACED_RISE: Final = 40.0
#: States that say nothing about a reading (``unavailable`` is availability evidence, handled apart).
_NO_READING: Final = frozenset({"unknown", "none", ""})
_OWN_TEMPERATURE: Final = re.compile(r"(device|internal|chip|cpu|board|core)[ _]?temperature")
_BATTERY_VOLTAGE: Final = re.compile(r"battery[ _]?(voltage|volt)|voltage[ _]?battery")
_LQI: Final = re.compile(r"(^|_)(lqi|linkquality|link_quality)($|_)")
_RSSI: Final = re.compile(r"(^|_)(rssi|signal_strength|wifi_signal)($|_)")
#: Binary sensor device classes -> (property name as Zigbee2MQTT's adapter infers a type from it).
_BINARY_PROPERTIES: Final[dict[str, str]] = {
    "motion": "occupancy",
    "occupancy": "occupancy",
    "presence": "presence",
    "door": "contact",
    "window": "contact",
    "opening": "contact",
    "garage_door": "contact",
    "moisture": "water_leak",
    "smoke": "smoke",
    "gas": "smoke",
    "carbon_monoxide": "smoke",
}
#: Entity domains that name what a device is (as Zigbee2MQTT's composite exposes do).
_DOMAIN_KINDS: Final[dict[str, str]] = {"light": "light", "switch": "switch", "climate": "climate", "lock": "lock"}
_ON_OFF: Final[dict[str, float]] = {"on": 1.0, "off": 0.0, "locked": 1.0, "unlocked": 0.0, "open": 1.0}

Field = Literal[
    "battery_level",
    "battery_voltage",
    "signal_strength",
    "linkquality",
    "temperature",
    "ambient_temperature",
    "humidity",
    "power",
    "reading",
]


@dataclass(frozen=True, slots=True)
class EntityRole:
    """What one HA entity tells about its device: the field its state fills, and the property name that tells the
    device type (``occupancy``, ``contact``, ...) or the composite kind (``light``, ``climate``, ...)."""

    field: Field | None
    prop: str | None = None
    kind: str | None = None


def _object_id(entity_id: str) -> str:
    return entity_id.split(".", 1)[-1].lower()


def entity_role(entity_id: str, attributes: Mapping[str, object], entity_category: object = None) -> EntityRole:
    """The role of an entity, by its domain, device class, unit and naming (see the module docstring)."""
    domain = entity_id.split(".", 1)[0]
    oid = _object_id(entity_id)
    device_class = str(attributes.get("device_class") or "")
    unit = str(attributes.get("unit_of_measurement") or "")
    if domain == "sensor":
        if device_class == "battery" or (unit == "%" and "battery" in oid):
            return EntityRole("battery_level")
        if device_class == "voltage" and _BATTERY_VOLTAGE.search(oid):
            return EntityRole("battery_voltage")
        if (device_class == "signal_strength" and unit == "dBm") or (_RSSI.search(oid) and unit == "dBm"):
            return EntityRole("signal_strength")
        if _LQI.search(oid):
            return EntityRole("linkquality")
        if device_class == "temperature":
            if entity_category == "diagnostic" or _OWN_TEMPERATURE.search(oid):
                return EntityRole("temperature")
            return EntityRole("ambient_temperature", prop="temperature")
        if device_class == "humidity":
            return EntityRole("humidity", prop="humidity")
        if device_class == "power" and unit in ("W", "kW"):
            return EntityRole("power", prop="power")
        return EntityRole(None)
    if domain == "binary_sensor" and device_class in _BINARY_PROPERTIES:
        return EntityRole("reading", prop=_BINARY_PROPERTIES[device_class])
    if domain in _DOMAIN_KINDS:
        return EntityRole("reading", kind=_DOMAIN_KINDS[domain])
    return EntityRole(None)


def _number(state: str, attributes: Mapping[str, object], role: EntityRole, domain: str) -> float | None:
    """The canonical number of a state (units converted), None when the state is no reading; raises
    :class:`Rejected` for a reading that is not a number or out of range."""
    unit = str(attributes.get("unit_of_measurement") or "")
    if role.field == "reading":
        if domain == "light":
            if state == "off":
                return 0.0
            brightness = attributes.get("brightness")
            return to_number(brightness, field="brightness") if brightness is not None else 1.0
        if domain == "climate":
            current = attributes.get("current_temperature")
            return to_number(current, field="current_temperature") if current is not None else None
        return _ON_OFF.get(state)
    number = to_number(state, field=role.field or "value")
    if role.field in ("temperature", "ambient_temperature") and unit in ("°F", "F"):
        number = (number - 32.0) * 5.0 / 9.0
    if role.field == "battery_voltage" and unit == "V":
        number *= 1000.0
    if role.field == "power" and unit == "kW":
        number *= 1000.0
    if role.field in ("battery_level", "battery_voltage", "signal_strength", "linkquality", "temperature"):
        return metric_value(str(role.field), number)
    if role.field == "humidity":
        return metric_value("humidity", number)
    return number


def ieee_of(device: Mapping[str, object]) -> str | None:
    """The Zigbee IEEE address of an HA registry device (``0x`` and 16 hex digits), from a ``zigbee`` connection
    (ZHA) or a ``zigbee2mqtt_<ieee>`` identifier; None for a device that is not a Zigbee device."""
    for pair in _pairs(device.get("connections")):
        if pair[0] == "zigbee":
            digits = pair[1].replace(":", "").lower()
            if re.fullmatch(r"[0-9a-f]{16}", digits):
                return f"0x{digits}"
    for _, identifier in _pairs(device.get("identifiers")):
        match = re.fullmatch(r"zigbee2mqtt_(0x[0-9a-fA-F]{16})", identifier)
        if match:
            return match.group(1).lower()
    return None


def _pairs(value: object) -> list[tuple[str, str]]:
    """Registry ``connections`` / ``identifiers``: lists of two strings (others are skipped)."""
    if not isinstance(value, list):
        return []
    return [(str(p[0]), str(p[1])) for p in value if isinstance(p, list | tuple) and len(p) == 2]


def _time(value: object) -> float | None:
    """An HA time (ISO 8601 string, or epoch seconds in the compressed history) as epoch seconds."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value).timestamp()
        except ValueError:
            raise Rejected("bad_timestamp", f"not ISO 8601: {value[:40]!r}") from None
    return None


@dataclass(slots=True)
class _Device:
    """One mapped HA device: its id and info, its entities' roles, and its latest readings."""

    info: DeviceInfo
    roles: dict[str, EntityRole] = field(default_factory=dict)
    readings: dict[str, float] = field(default_factory=dict)
    unavailable: set[str] = field(default_factory=set)
    offline: bool = False


class HomeAssistantApiAdapter(Adapter):
    """What the Home Assistant websocket client hands over (see the module docstring); one instance per HA."""

    source = "homeassistant"

    def __init__(self, default_home_type: str = DEFAULT_HOME_TYPE, window: TimeWindow | None = None) -> None:
        self.default_home_type = check_home_type(default_home_type)
        self.window = window or TimeWindow()
        self._devices: dict[str, _Device] = {}
        """Mapped devices by devintel's device id."""
        self._entity_device: dict[str, str] = {}
        """Mapped entity id -> devintel's device id."""
        self._attributes: dict[str, Mapping[str, object]] = {}
        """The latest attributes of each mapped entity (the history carries none)."""

    def subscriptions(self) -> list[str]:
        """None on MQTT: the websocket client feeds this adapter."""
        return []

    def claims(self, topic: str) -> bool:
        """The client's pseudo-topics (``$homeassistant-api/...``)."""
        return topic.startswith(f"{API_TOPIC}/")

    def parse(self, topic: str, payload: bytes, received: float) -> list[Inbound]:
        """Registries, a state change, or a slice of history."""
        if len(payload) > MAX_API_BYTES:
            raise Rejected("too_large", f"{len(payload)} bytes")
        kind = topic[len(API_TOPIC) + 1 :]
        try:
            body = orjson.loads(payload)
        except orjson.JSONDecodeError as exc:
            raise Rejected("malformed_json", str(exc)) from None
        if not isinstance(body, dict):
            raise Rejected("wrong_type", f"{kind} is a {type(body).__name__}, not an object")
        if kind == "registries":
            return self._registries(body, received)
        if kind == "state_changed":
            return self._state_changed(body, received)
        if kind == "history":
            return self._history(body, received)
        return [Skipped("not_telemetry", f"Home Assistant message {kind[:40]!r}")]

    # registries ----------------------------------------------------------------------------------------------

    def _registries(self, body: Mapping[str, object], received: float) -> list[Inbound]:
        devices, entities = body.get("devices"), body.get("entities")
        areas, states = body.get("areas") or [], body.get("states") or []
        if not isinstance(devices, list) or not isinstance(entities, list):
            raise Rejected("wrong_type", "registries without device and entity lists")
        area_names = {
            str(a.get("area_id")): str(a.get("name"))
            for a in (areas if isinstance(areas, list) else [])
            if isinstance(a, dict)
        }
        current = {
            str(s.get("entity_id")): s for s in (states if isinstance(states, list) else []) if isinstance(s, dict)
        }
        by_ha_id: dict[str, DeviceInfo] = {}
        for device in devices:
            info = self._device_info(device, area_names)
            if info is not None and isinstance(device, dict):
                by_ha_id[str(device.get("id"))] = info
        mapped: dict[str, _Device] = {}
        entity_device: dict[str, str] = {}
        for entity in entities:
            if (
                not isinstance(entity, dict)
                or entity.get("disabled_by")
                or str(entity.get("device_id")) not in by_ha_id
                or str(entity.get("unique_id", "")).startswith("devintel_")  # devintel's own: no reading
            ):
                continue
            entity_id = str(entity.get("entity_id"))
            state = current.get(entity_id)
            attributes = state.get("attributes") if isinstance(state, dict) else None
            attributes = attributes if isinstance(attributes, dict) else {}
            role = entity_role(entity_id, attributes, entity.get("entity_category"))
            if role.field is None:
                continue
            info = by_ha_id[str(entity["device_id"])]
            target = mapped.get(info.device_id)
            if target is None:  # what an earlier read knew of the device carries over
                known = self._devices.get(info.device_id)
                target = mapped[info.device_id] = _Device(info)
                if known is not None:
                    target.readings, target.unavailable, target.offline = (
                        known.readings,
                        known.unavailable,
                        known.offline,
                    )
            target.roles[entity_id] = role
            entity_device[entity_id] = info.device_id
            self._attributes[entity_id] = attributes
        for device in mapped.values():
            device.info = _typed(device.info, device.roles.values())
        self._devices, self._entity_device = mapped, entity_device
        self._attributes = {e: a for e, a in self._attributes.items() if e in entity_device}
        out: list[Inbound] = [device.info for device in mapped.values()]
        if body.get("current", True) is not False:  # the current states as each device's event now
            for entity_id, state in current.items():
                if entity_id in entity_device:
                    out += self._apply(entity_id, state, received, emit=False)
            for device_id, device in mapped.items():
                event = None if device.offline else self._event(device_id, None, received)
                if event is not None:
                    out.append(event)
        return out or [Skipped("not_telemetry", "no Home Assistant device with a mapped entity")]

    def devices(self) -> list[str]:
        """devintel's ids of the HA devices mapped by the latest registries."""
        return list(self._devices)

    def entities(self) -> list[str]:
        """The entity ids mapped by the latest registries (those whose history a backfill reads)."""
        return list(self._entity_device)

    @staticmethod
    def _device_info(device: object, areas: Mapping[str, str]) -> DeviceInfo | None:
        if not isinstance(device, dict) or device.get("entry_type") == "service" or device.get("disabled_by"):
            return None
        identifiers = [i for _, i in _pairs(device.get("identifiers"))]
        if any(i.startswith("zigbee2mqtt_") for i in identifiers):
            return None  # Zigbee2MQTT's: devintel hears it directly
        if identifiers and all(i.startswith("devintel_") for i in identifiers):
            return None  # a device of devintel's own making (devintel's entities on another device add one too)
        ha_id = device.get("id")
        ieee = ieee_of(device)
        try:
            device_id = ieee or sanitize_device_id(f"ha_{ha_id}")
        except Rejected:
            return None
        name = clean_name(device.get("name_by_user")) or clean_name(device.get("name"))
        return DeviceInfo(
            device_id=device_id,
            ieee_address=ieee,
            name=name,
            area=areas.get(str(device.get("area_id"))),
            connections=tuple(_pairs(device.get("connections"))),
            source="homeassistant",
        )

    # state changes and history -------------------------------------------------------------------------------

    def _state_changed(self, body: Mapping[str, object], received: float) -> list[Inbound]:
        entity_id = body.get("entity_id")
        if not isinstance(entity_id, str) or entity_id not in self._entity_device:
            return [Skipped("not_telemetry", "an entity devintel does not map")]
        new_state = body.get("new_state")
        if not isinstance(new_state, dict):
            return [Skipped("not_telemetry", f"{entity_id} removed")]
        attributes = new_state.get("attributes")
        if isinstance(attributes, dict):
            self._attributes[entity_id] = attributes
        return self._apply(entity_id, new_state, received, emit=True) or [
            Skipped("no_metrics", f"{entity_id}: no reading")
        ]

    def _history(self, body: Mapping[str, object], received: float) -> list[Inbound]:
        history = body.get("history")
        if not isinstance(history, dict):
            raise Rejected("wrong_type", "history is not an object of entity ids")
        states: list[tuple[float, str, dict[str, object]]] = []
        for entity_id, entries in history.items():
            if entity_id not in self._entity_device or not isinstance(entries, list):
                continue
            for entry in entries:
                if not isinstance(entry, dict):
                    continue
                ts = _time(entry.get("lu", entry.get("lc", entry.get("last_updated"))))
                state = entry.get("s", entry.get("state"))
                if ts is not None and isinstance(state, str):
                    states.append((ts, entity_id, {"state": state, "last_updated": ts}))
        out: list[Inbound] = []
        for _, entity_id, state in sorted(states, key=lambda item: item[0]):
            try:
                out += self._apply(entity_id, state, received, emit=True)
            except Rejected:
                continue  # one bad reading in months of history drops that reading only
        return out or [Skipped("no_metrics", "no mapped reading in this slice of history")]

    def _apply(self, entity_id: str, state: Mapping[str, object], received: float, emit: bool) -> list[Inbound]:
        """Take one entity's state into its device's readings: the device's availability when it changes, and
        its event when ``emit``."""
        device_id = self._entity_device[entity_id]
        device = self._devices[device_id]
        role = device.roles[entity_id]
        value = state.get("state")
        ts = _time(state.get("last_updated")) or received
        if value == "unavailable":
            device.unavailable.add(entity_id)
            if not device.offline and device.unavailable >= set(device.roles):
                device.offline = True
                return [Availability(device_id, False, ts)]
            return []
        device.unavailable.discard(entity_id)
        out: list[Inbound] = []
        if device.offline:
            device.offline = False
            out.append(Availability(device_id, True, ts))
        if not isinstance(value, str) or value.lower() in _NO_READING:
            return out
        attributes = self._attributes.get(entity_id, {})
        number = _number(value.lower(), attributes, role, entity_id.split(".", 1)[0])
        if number is None:
            return out
        assert role.field is not None  # mapped entities have a field
        before = device.readings.get(role.field)
        if (
            role.field == "battery_level"
            and before is not None
            and before <= REPLACED_FROM
            and number - before >= REPLACED_RISE
            and emit
        ):
            out.append(Feedback(device_id, "replaced", ts))  # the battery ran out, or nearly: a failure then
        device.readings[role.field] = number
        volts = attributes.get("battery_voltage") if role.field == "battery_level" else None
        if volts is not None:
            device.readings["battery_voltage"] = metric_value("battery_voltage", to_number(volts) * 1000.0)
        if emit:
            event = self._event(device_id, ts, received)
            if event is not None:
                out.append(event)
        return out

    def _event(self, device_id: str, ts: float | None, received: float) -> Telemetry | None:
        """The device's canonical event of its latest readings at ``ts``; None before any reading."""
        device = self._devices[device_id]
        readings = device.readings
        if not readings:
            return None
        info = device.info
        device_type = info.device_type or "generic"
        raw: dict[str, object] = {
            "ts": ts,
            "name": info.name,
            "device_type": device_type,
            "power_source": info.power_source,
            "battery_level": readings.get("battery_level"),
            "battery_voltage": readings.get("battery_voltage"),
            "signal_strength": readings.get("signal_strength"),
            "linkquality": readings.get("linkquality"),
            "humidity": readings.get("humidity"),
            "temperature": readings.get("temperature"),
            "value": _primary(device_type, readings),
        }
        if raw["temperature"] is None and device_type in REPORTS_TEMPERATURE:
            raw["temperature"] = readings.get("ambient_temperature")
        return canonical_event(
            {k: v for k, v in raw.items() if v is not None},
            device_id=device_id,
            received=received,
            default_home_type=self.default_home_type,
            window=self.window,
        )


def _primary(device_type: str, readings: Mapping[str, float]) -> float | None:
    """The device type's primary reading (``value``), as Zigbee2MQTT's adapter picks it."""
    if device_type == "temperature_sensor":
        return readings.get("ambient_temperature", readings.get("humidity"))
    if device_type == "smart_plug":
        return readings.get("power", readings.get("reading"))
    return readings.get("reading")


def _typed(info: DeviceInfo, roles: Iterable[EntityRole]) -> DeviceInfo:
    """``info`` with the device type and power source its entities tell."""
    roles = list(roles)
    kinds = {r.kind for r in roles if r.kind}
    props = {r.prop for r in roles if r.prop}
    device_type = infer_device_type(kinds, props) or "generic"
    battery = any(r.field in ("battery_level", "battery_voltage") for r in roles)
    return DeviceInfo(
        device_id=info.device_id,
        device_type=device_type,
        power_source="battery" if battery else None,
        ieee_address=info.ieee_address,
        name=info.name,
        area=info.area,
        connections=info.connections,
        source=info.source,
    )
