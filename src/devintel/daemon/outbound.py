"""What the daemon publishes: topics and payloads of predictions, status, health and Home Assistant discovery.

Pure functions from what the daemon knows to :class:`Outgoing` messages; the MQTT session sends them, and
replay writes them to a file, so both produce exactly the same bytes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

import orjson

from devintel.daemon.inbound import DeviceInfo
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


def prediction_message(topics: Topics, prediction: Prediction) -> Outgoing:
    """The retained prediction of one device (retained, so Home Assistant shows it again after a restart)."""
    return Outgoing(topics.prediction(prediction.device_id), _json(prediction.as_dict()), retain=True)


def _ha_device(device_id: str, info: DeviceInfo | None, device_type: str | None) -> dict[str, object]:
    if info is not None and info.ieee_address:
        # Zigbee2MQTT's own identifier: Home Assistant attaches devintel's entities to the bridge's device.
        return {"identifiers": [f"zigbee2mqtt_{info.ieee_address}"]}
    return {
        "identifiers": [f"devintel_{object_id(device_id)}"],
        "name": device_id,
        "manufacturer": "devintel",
        "model": device_type or "generic",
    }


def discovery_messages(
    topics: Topics, device_id: str, info: DeviceInfo | None = None, device_type: str | None = None
) -> list[Outgoing]:
    """Retained discovery configs of a device's two entities: the failure probability (%) and the
    ``problem`` binary sensor, both available while devintel's status is ``online``."""
    state_topic = topics.prediction(device_id)
    oid = object_id(device_id)
    common: dict[str, object] = {
        "state_topic": state_topic,
        "json_attributes_topic": state_topic,
        "availability": [
            {"topic": topics.status, "value_template": "{{ 'online' if value == 'online' else 'offline' }}"}
        ],
        "device": _ha_device(device_id, info, device_type),
        "origin": {"name": "devintel"},
    }
    sensor = {
        **common,
        "name": "Failure probability",
        "unique_id": f"devintel_{oid}_failure_probability",
        "value_template": "{{ (value_json.failure_probability * 100) | round(1) }}",
        "unit_of_measurement": "%",
        "state_class": "measurement",
        "icon": "mdi:heart-pulse",
    }
    problem = {
        **common,
        "name": "Needs attention",
        "unique_id": f"devintel_{oid}_needs_attention",
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
    """Empty retained messages that remove a device gone for good: its prediction, and its entities when
    ``discovery``."""
    out = [Outgoing(topics.prediction(device_id), b"", retain=True)]
    if discovery:
        out += [Outgoing(topics.discovery(c, device_id, s), b"", retain=True) for c, s in ENTITIES]
    return out


def json_message(topic: str, value: object, retain: bool = False) -> Outgoing:
    """A JSON message (the health report)."""
    return Outgoing(topic, _json(value), retain=retain)
