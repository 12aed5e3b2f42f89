"""The canonical telemetry event (DESIGN.md, "Canonical telemetry event"): its fields and their valid ranges, the
home, device and power vocabularies, the risk levels of a prediction, and the event's type.

Every layer holds to this one definition: the synthetic generator makes events of this shape (its templates are
checked against it at import), the adapters and validation turn live messages into it, the features read it, and
the settings and the daemon name its vocabularies. It is data and two small functions: no I/O, no dependency.

>>> risk_level(0.85), risk_level(0.2), risk_level(0.0)
('critical', 'low', 'minimal')
>>> "studio" in HOME_TYPES, "castle" in HOME_TYPES
(True, False)
"""

from __future__ import annotations

from typing import Final, TypedDict

#: The canonical metric fields of a telemetry event, in column order.
METRIC_FIELDS: Final[tuple[str, ...]] = (
    "battery_level",
    "battery_voltage",
    "signal_strength",
    "linkquality",
    "response_time",
    "error_rate",
    "connection_drops",
    "restart_count",
    "uptime_hours",
    "temperature",
    "humidity",
    "usage_frequency",
    "data_transfer_rate",
    "value",
)

#: Valid range of each canonical metric field (inclusive); a value outside it is a glitch, rejected live.
VALID_RANGES: Final[dict[str, tuple[float, float]]] = {
    "battery_level": (0.0, 100.0),
    "battery_voltage": (0.0, 5000.0),
    "signal_strength": (-100.0, -10.0),
    "linkquality": (0.0, 255.0),
    "response_time": (0.0, 60_000.0),
    "error_rate": (0.0, 1.0),
    "connection_drops": (0.0, 10_000.0),
    "restart_count": (0.0, 10_000.0),
    "uptime_hours": (0.0, 1e6),
    "temperature": (-40.0, 125.0),
    "humidity": (0.0, 100.0),
    "usage_frequency": (0.0, 1.0),
    "data_transfer_rate": (0.0, 1e7),
    "value": (-1e9, 1e9),
}

#: The 8 home types.
HOME_TYPES: Final[tuple[str, ...]] = (
    "single_family_house",
    "apartment",
    "condo",
    "townhouse",
    "ranch_house",
    "multi_story",
    "cottage",
    "studio",
)

#: The home type of an event that names none, when the settings name none either.
DEFAULT_HOME_TYPE: Final = "single_family_house"

#: The 16 device types; an unknown one is ``generic``.
DEVICE_TYPES: Final[tuple[str, ...]] = (
    "motion_sensor",
    "contact_sensor",
    "temperature_sensor",
    "leak_sensor",
    "smoke_detector",
    "smart_plug",
    "light",
    "switch",
    "thermostat",
    "lock",
    "camera",
    "media_player",
    "vacuum",
    "remote",
    "hub",
    "generic",
)

#: Device types whose ``temperature`` is a temperature they report (the room's, or their own); for the others a
#: bridge's ``temperature`` reading is not the canonical field.
REPORTS_TEMPERATURE: Final[frozenset[str]] = frozenset(
    {
        "camera",
        "generic",
        "hub",
        "media_player",
        "motion_sensor",
        "smart_plug",
        "smoke_detector",
        "temperature_sensor",
        "thermostat",
        "vacuum",
    }
)

#: Power sources.
POWER_SOURCES: Final[tuple[str, ...]] = ("battery", "mains")

#: Lower bounds of the risk levels of a failure probability, highest first.
RISK_LEVELS: Final[tuple[tuple[float, str], ...]] = (
    (0.8, "critical"),
    (0.6, "high"),
    (0.4, "medium"),
    (0.2, "low"),
    (0.0, "minimal"),
)


def risk_level(probability: float) -> str:
    """The risk level of a failure probability: critical ≥ 0.8, high ≥ 0.6, medium ≥ 0.4, low ≥ 0.2, else minimal."""
    for bound, level in RISK_LEVELS:
        if probability >= bound:
            return level
    return "minimal"


class CanonicalEvent(TypedDict, total=False):
    """A canonical telemetry event: ``ts`` and ``device_id`` always, the rest when known (a metric that was not
    reported is absent, or NaN in a synthetic frame)."""

    ts: float
    """Event time, epoch seconds."""
    device_id: str
    home_id: str
    home_type: str
    """One of :data:`HOME_TYPES`."""
    device_type: str
    """One of :data:`DEVICE_TYPES`."""
    power_source: str
    """One of :data:`POWER_SOURCES`."""
    name: str
    """A person's name for the device (a bridge's friendly name)."""
    battery_level: float
    battery_voltage: float
    signal_strength: float
    linkquality: float
    response_time: float
    error_rate: float
    connection_drops: float
    restart_count: float
    uptime_hours: float
    temperature: float
    humidity: float
    usage_frequency: float
    data_transfer_rate: float
    value: float
