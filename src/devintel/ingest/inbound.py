"""What the adapters make of an MQTT message: the inbound vocabulary of the daemon.

Every adapter (``devintel.ingest.adapters``) turns one message (topic, payload bytes, time of receipt) into
a list of these, or raises :class:`Rejected` with a reason from :data:`REJECT_REASONS`. The handler acts on
them: a :class:`Telemetry` goes to the features and the models, the others update what the daemon knows of
a device or trigger an action. Nothing else from a message reaches a model.

The validation policy, one for training and serving: a message that cannot be read as a whole (JSON, shape,
device id, time, a vocabulary) is :class:`Rejected`; a single metric value that is not a finite number inside
its canonical range is dropped alone (a :class:`DroppedValue` on the :class:`Telemetry`, counted by its reason)
and the rest of the event is used, as the warm start and replay do with the same value
(:func:`devintel.models.features.valid`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

#: Why a message was dropped as bad input (a counter each, in the health report and /metrics).
REJECT_REASONS: Final[tuple[str, ...]] = (
    "too_large",  # payload over MAX_PAYLOAD_BYTES
    "malformed_json",  # not JSON where JSON is expected (or not UTF-8)
    "wrong_type",  # JSON of the wrong shape (a list for an object, a string for a number, a bool for a number)
    "not_finite",  # NaN or an infinity
    "out_of_range",  # a number outside the field's canonical range
    "bad_device_id",  # empty, too long, or would inject into a topic or a path (+, #, NUL, ..)
    "device_id_mismatch",  # the payload's device_id differs from the topic's
    "bad_timestamp",  # unparseable, or too far in the future or the past
    "unknown_value",  # a string outside its vocabulary (feedback event, power source, command)
)
#: Why a well-formed message was skipped: not an error, but counted too.
SKIP_REASONS: Final[tuple[str, ...]] = (
    "not_telemetry",  # a bridge or sub-topic that carries no device health (bridge/state, bridge/logging, .../set)
    "unknown_topic",  # a topic no adapter claims
    "no_metrics",  # a device message with no canonical field at all (a button's action only)
    "duplicate",  # the same event again (QoS 1 is at least once: a broker redelivers after a reconnection)
)
#: Largest payload accepted, in bytes.
MAX_PAYLOAD_BYTES: Final = 64 * 1024


class Rejected(Exception):  # noqa: N818 (a verdict, not an error of ours)
    """A message dropped as bad input; ``reason`` is one of :data:`REJECT_REASONS`."""

    def __init__(self, reason: str, detail: str) -> None:
        if reason not in REJECT_REASONS:
            raise ValueError(f"unknown reject reason {reason!r}")
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True, slots=True)
class DroppedValue:
    """A metric value left out of an event as bad input (the rest of the event is used); ``reason`` is one of
    ``wrong_type``, ``not_finite`` and ``out_of_range``."""

    field: str
    reason: str
    detail: str


@dataclass(frozen=True, slots=True)
class Telemetry:
    """A canonical telemetry event (DESIGN.md): ``device_id`` (sanitised) and ``ts`` (epoch s) always present,
    every other field optional and already checked (finite, in range, of the vocabulary); ``dropped`` lists the
    metric values left out of it as bad input."""

    event: dict[str, object]
    dropped: tuple[DroppedValue, ...] = ()

    @property
    def device_id(self) -> str:
        """The event's device."""
        return str(self.event["device_id"])


@dataclass(frozen=True, slots=True)
class Availability:
    """A device went online or offline (Zigbee2MQTT's availability)."""

    device_id: str
    online: bool
    ts: float


@dataclass(frozen=True, slots=True)
class Feedback:
    """A person's word about a device: it failed, it was replaced, or it was repaired."""

    device_id: str
    kind: Literal["failure", "replaced", "repaired"]
    ts: float


@dataclass(frozen=True, slots=True)
class DeviceInfo:
    """What a bridge or registry says about a device (Zigbee2MQTT's ``bridge/devices``, Home Assistant's device
    registry): its type and power source, a person's name for it and its area, and what attaches devintel's
    entities to the source's own device in Home Assistant (Zigbee2MQTT's IEEE address, the registry's
    ``connections``)."""

    device_id: str
    device_type: str | None = None
    power_source: Literal["battery", "mains"] | None = None
    ieee_address: str | None = None
    name: str | None = None
    area: str | None = None
    connections: tuple[tuple[str, str], ...] = ()
    source: str = "zigbee2mqtt"


@dataclass(frozen=True, slots=True)
class DeviceLeft:
    """A device left the network (Zigbee2MQTT ``bridge/event`` ``device_leave``): a person removed it."""

    device_id: str
    ts: float


@dataclass(frozen=True, slots=True)
class Command:
    """A control command on ``<prefix>/cmd/<name>``."""

    name: Literal["snapshot", "reload", "refresh"]


@dataclass(frozen=True, slots=True)
class HomeAssistantOnline:
    """Home Assistant (re)started: publish discovery again."""


@dataclass(frozen=True, slots=True)
class Skipped:
    """A well-formed message that carries nothing for devintel; ``reason`` is one of :data:`SKIP_REASONS`."""

    reason: str
    detail: str = ""


Inbound = Telemetry | Availability | Feedback | DeviceInfo | DeviceLeft | Command | HomeAssistantOnline | Skipped
"""Everything an adapter can produce."""
