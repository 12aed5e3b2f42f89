"""What the daemon publishes: topics and payloads of predictions, status, health and Home Assistant discovery.

Pure functions from what the daemon knows to :class:`Outgoing` messages; the MQTT session sends them, and
replay writes them to a file, so both produce exactly the same bytes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

import orjson

from devintel.ingest.inbound import DeviceInfo
from devintel.models.live import Prediction

#: Characters Home Assistant allows in a discovery node or object id.
_OBJECT_ID_UNSAFE: Final = re.compile(r"[^A-Za-z0-9_-]")
#: The entities devintel publishes per device: (component, object suffix).
ENTITIES: Final[tuple[tuple[str, str], ...]] = (("sensor", "failure_probability"), ("binary_sensor", "needs_attention"))


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One message to publish."""

    topic: str
    payload: bytes
    retain: bool = False
    qos: int = 1

    def as_record(self) -> dict[str, object]:
        """The replay output line: ``{"topic", "payload"}`` with the payload as JSON where it is JSON
        (an empty payload, which removes a retained message, is an empty string)."""
        try:
            payload: object = orjson.loads(self.payload) if self.payload else ""
        except orjson.JSONDecodeError:
            payload = self.payload.decode("utf-8", "replace")
        return {"topic": self.topic, "payload": payload, "retain": self.retain}


@dataclass(frozen=True, slots=True)
class Topics:
    """The topic names of one installation."""

    prefix: str = "devintel"
    ha_prefix: str = "homeassistant"

    @property
    def status(self) -> str:
        """Retained ``online`` / ``offline`` (the will) / ``stopped``."""
        return f"{self.prefix}/status"

    @property
    def health(self) -> str:
        """Retained health JSON."""
        return f"{self.prefix}/health"

    def prediction(self, device_id: str) -> str:
        """A device's predictions."""
        return f"{self.prefix}/predictions/{device_id}"

    def discovery(self, component: str, device_id: str, suffix: str) -> str:
        """A Home Assistant discovery config topic (``<ha>/<component>/devintel/<object>/config``)."""
        return f"{self.ha_prefix}/{component}/{self.prefix}/{object_id(device_id)}_{suffix}/config"


def object_id(device_id: str) -> str:
    """A device id as Home Assistant accepts it in topics and unique ids (``.`` and ``:`` become ``_``)."""
    return _OBJECT_ID_UNSAFE.sub("_", device_id)


def _json(value: object) -> bytes:
    return orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY)


def iso_time(ts: float) -> str:
    """An epoch time as ISO 8601 in UTC, to the second (``2026-11-30T22:41:07+00:00``)."""
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds")


def prediction_message(topics: Topics, prediction: Prediction) -> Outgoing:
    """The retained prediction of one device (retained, so Home Assistant shows it again after a restart): the
    prediction's fields, and ``time``, its event time as ISO 8601 (what Home Assistant's attributes show)."""
    payload = prediction.as_dict()
    payload["time"] = iso_time(prediction.ts)
    return Outgoing(topics.prediction(prediction.device_id), _json(payload), retain=True)


@dataclass(frozen=True, slots=True)
class Origin:
    """The ``origin`` block of every discovery config: what published it, its version, where to read about it."""

    name: str = "devintel"
    sw_version: str = ""
    support_url: str = ""

    def as_dict(self) -> dict[str, object]:
        """The block, without empty fields."""
        block: dict[str, object] = {"name": self.name}
        if self.sw_version:
            block["sw_version"] = self.sw_version
        if self.support_url:
            block["support_url"] = self.support_url
        return block


def service_identifier(topics: Topics) -> str:
    """The identifier of devintel's own device in Home Assistant (one per topic prefix)."""
    return f"devintel_service_{object_id(topics.prefix)}"


def entity_slug(name: str) -> str:
    """An entity id part from a device name as Zigbee2MQTT suggests it (spaces to ``_``, lower case), kept to
    what Home Assistant accepts in an entity id (``[a-z0-9_]``)."""
    slug = re.sub(r"[^a-z0-9_]", "_", re.sub(r"\s+", "_", name.strip()).lower())
    return re.sub(r"_+", "_", slug).strip("_") or "device"


def ha_device(
    topics: Topics, device_id: str, info: DeviceInfo | None, device_type: str | None, name: str | None
) -> dict[str, object]:
    """The ``device`` block of a device's discovery configs, always named.

    A Zigbee2MQTT device attaches to Zigbee2MQTT's own HA device (``zigbee2mqtt_<ieee>``, its identifier); a
    device from Home Assistant's registry attaches to that HA device through its ``connections`` (HA merges devices
    on a shared connection); any other device becomes a device of devintel's, linked to devintel's own device."""
    label = name or (info.name if info is not None else None) or device_id
    if info is not None and info.ieee_address and info.source == "zigbee2mqtt":
        return {"identifiers": [f"zigbee2mqtt_{info.ieee_address}"], "name": label}
    block: dict[str, object] = {"identifiers": [f"devintel_{object_id(device_id)}"], "name": label}
    if info is not None and info.connections:
        block["connections"] = [list(pair) for pair in info.connections]
    if info is not None and info.area:
        block["suggested_area"] = info.area
    if info is None or not info.connections:
        block["manufacturer"] = "devintel"
        block["model"] = device_type or "generic"
        block["via_device"] = service_identifier(topics)
    return block


#: The attributes Home Assistant shows next to a device's entities, from its prediction: what a person reads
#: (the probability in %, as the sensor shows it, the risk level, the reasons as text, the time as ISO 8601), and
#: devintel's id of the device as ``devintel_id``, not under ``device_id``, a name HA uses for its own ids.
ATTRIBUTES_TEMPLATE: Final = (
    "{% if value_json is defined %}"
    "{{ {'failure_probability': (value_json.failure_probability * 100) | round(1), "
    "'risk_level': value_json.risk_level, 'reasons': value_json.reasons | join(', '), "
    "'predicted_at': value_json.time, 'model': value_json.model, 'model_version': value_json.model_version, "
    "'devintel_id': value_json.device_id} | tojson }}"
    "{% else %}{}{% endif %}"
)


def discovery_messages(
    topics: Topics,
    device_id: str,
    info: DeviceInfo | None = None,
    device_type: str | None = None,
    name: str | None = None,
    origin: Origin | None = None,
) -> list[Outgoing]:
    """Retained discovery configs of a device's two entities: the failure probability (%) and the
    ``problem`` binary sensor, both available while devintel's status is ``online``.

    The entity ids Home Assistant gives them are suggested as Zigbee2MQTT suggests its own (``object_id``, and
    ``default_entity_id`` which replaces it from HA 2025.10): the device's name, then the entity's."""
    state_topic = topics.prediction(device_id)
    oid = object_id(device_id)
    device = ha_device(topics, device_id, info, device_type, name)
    slug = entity_slug(str(device["name"]))
    common: dict[str, object] = {
        "state_topic": state_topic,
        "json_attributes_topic": state_topic,
        "json_attributes_template": ATTRIBUTES_TEMPLATE,
        "availability": [
            {"topic": topics.status, "value_template": "{{ 'online' if value == 'online' else 'offline' }}"}
        ],
        "device": device,
        "origin": (origin or Origin()).as_dict(),
    }
    sensor = {
        **common,
        "name": "Failure probability",
        "unique_id": f"devintel_{oid}_failure_probability",
        "object_id": f"{slug}_failure_probability",
        "default_entity_id": f"sensor.{slug}_failure_probability",
        "value_template": "{{ (value_json.failure_probability * 100) | round(1) }}",
        "unit_of_measurement": "%",
        "state_class": "measurement",
        "suggested_display_precision": 1,
        "icon": "mdi:heart-pulse",
    }
    problem = {
        **common,
        "name": "Needs attention",
        "unique_id": f"devintel_{oid}_needs_attention",
        "object_id": f"{slug}_needs_attention",
        "default_entity_id": f"binary_sensor.{slug}_needs_attention",
        "device_class": "problem",
        "value_template": "{{ 'ON' if value_json.needs_attention else 'OFF' }}",
        "payload_on": "ON",
        "payload_off": "OFF",
    }
    return [
        Outgoing(topics.discovery("sensor", device_id, "failure_probability"), _json(sensor), retain=True),
        Outgoing(topics.discovery("binary_sensor", device_id, "needs_attention"), _json(problem), retain=True),
    ]


def removal_messages(topics: Topics, device_id: str, discovery: bool) -> list[Outgoing]:
    """Empty retained messages that remove a device gone for good: its entities first when ``discovery`` (so Home
    Assistant removes them before their state topic empties and never renders an empty payload), then its
    prediction."""
    out = []
    if discovery:
        out += [Outgoing(topics.discovery(c, device_id, s), b"", retain=True) for c, s in ENTITIES]
    out.append(Outgoing(topics.prediction(device_id), b"", retain=True))
    return out


#: devintel's own entities in Home Assistant: (component, object suffix, entity name, config). They read the
#: retained health report (``<prefix>/health``), except ``running``, which reads ``<prefix>/status``.
SERVICE_ENTITIES: Final[tuple[tuple[str, str, str, dict[str, object]], ...]] = (
    (
        "binary_sensor",
        "running",
        "Running",
        {"device_class": "running", "value_template": "{{ 'ON' if value == 'online' else 'OFF' }}"},
    ),
    ("sensor", "status", "Status", {"value_template": "{{ value_json.status }}", "icon": "mdi:list-status"}),
    (
        "sensor",
        "model_version",
        "Model version",
        {"value_template": "{{ value_json.model_version }}", "icon": "mdi:source-commit"},
    ),
    (
        "sensor",
        "devices",
        "Devices watched",
        {"value_template": "{{ value_json.devices }}", "state_class": "measurement", "icon": "mdi:devices"},
    ),
    (
        "sensor",
        "needs_attention",
        "Devices needing attention",
        {
            "value_template": "{{ value_json.needs_attention }}",
            "state_class": "measurement",
            "icon": "mdi:alert-circle-outline",
        },
    ),
    (
        "sensor",
        "last_snapshot",
        "Last snapshot",
        {
            "device_class": "timestamp",
            "value_template": "{{ value_json.snapshot.written_at if value_json.snapshot.written_at else None }}",
        },
    ),
    (
        "sensor",
        "false_alarm_share",
        "Live false alarm share",
        {
            "value_template": (
                "{{ (value_json.false_alarms.share * 100) | round(1) "
                "if value_json.false_alarms.share is number else None }}"
            ),
            "unit_of_measurement": "%",
            "state_class": "measurement",
            "icon": "mdi:alarm-light-outline",
        },
    ),
)


def service_discovery_topic(topics: Topics, component: str, suffix: str) -> str:
    """Where the discovery config of one of devintel's own entities goes (node id ``<prefix>_service``, apart
    from the devices' node id ``<prefix>``, so no device id can collide with it)."""
    return f"{topics.ha_prefix}/{component}/{object_id(topics.prefix)}_service/{suffix}/config"


def service_discovery_messages(topics: Topics, origin: Origin | None = None) -> list[Outgoing]:
    """Retained discovery configs of devintel's own device and its diagnostic entities (running, status, model
    version, devices watched and needing attention, last snapshot, live false-alarm share)."""
    origin = origin or Origin()
    device: dict[str, object] = {
        "identifiers": [service_identifier(topics)],
        "name": "devintel" if topics.prefix == "devintel" else f"devintel ({topics.prefix})",
        "manufacturer": "devintel",
        "model": "Device failure prediction",
    }
    if origin.sw_version:
        device["sw_version"] = origin.sw_version
    slug = entity_slug(str(device["name"]))
    messages = []
    for component, suffix, name, extra in SERVICE_ENTITIES:
        config: dict[str, object] = {
            "name": name,
            "unique_id": f"{service_identifier(topics)}_{suffix}",
            "object_id": f"{slug}_{suffix}",
            "default_entity_id": f"{component}.{slug}_{suffix}",
            "entity_category": "diagnostic",
            "device": device,
            "origin": origin.as_dict(),
            **extra,
        }
        if suffix == "running":
            config.update({"state_topic": topics.status, "payload_on": "ON", "payload_off": "OFF"})
        else:
            config.update(
                {
                    "state_topic": topics.health,
                    "availability": [
                        {"topic": topics.status, "value_template": "{{ 'online' if value == 'online' else 'offline' }}"}
                    ],
                }
            )
        messages.append(Outgoing(service_discovery_topic(topics, component, suffix), _json(config), retain=True))
    return messages


def json_message(topic: str, value: object, retain: bool = False) -> Outgoing:
    """A JSON message (the health report)."""
    return Outgoing(topic, _json(value), retain=retain)
