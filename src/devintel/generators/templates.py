"""The templates the synthetic stream is built from: home types, device types and failure modes.

The event they make is the contract's (:mod:`devintel.contract`: fields, ranges, vocabularies): a template
holds to it, and is checked against it at import (:func:`_check_templates`), never the other way round.

Everything here is data. A home template says how common the home type is, how many devices such a
home has and what its building does to radio links and indoor climate. A device template says how the
device is powered, how it talks, how often it reports, which canonical fields it reports and how it
tends to fail. The numbers are plausible values for consumer Zigbee, Z-Wave and Wi-Fi devices, not
measurements; they are documented so that a reader can change them with intent.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

from devintel import contract
from devintel.contract import METRIC_FIELDS, VALID_RANGES

__all__ = [
    "DEVICE_TYPES",
    "FAILURE_MODES",
    "HOME_TYPES",
    "METRIC_FIELDS",
    "MODE_SIGNATURE_FIELDS",
    "VALID_RANGES",
    "DeviceTemplate",
    "HomeTemplate",
]

#: Failure modes, in the order used for integer codes. ``none`` is not a mode and has no code.
FAILURE_MODES: Final[tuple[str, ...]] = (
    "battery_depletion",
    "link_degradation",
    "error_burst",
    "latency_creep",
    "stuck_sensor",
    "overheating",
)

#: The field(s) a failure mode shows up in first; a device can only fail in a mode it can report.
MODE_SIGNATURE_FIELDS: Final[dict[str, tuple[str, ...]]] = {
    "battery_depletion": ("battery_level",),
    "link_degradation": ("linkquality", "signal_strength"),
    "error_burst": ("error_rate",),
    "latency_creep": ("response_time",),
    "stuck_sensor": ("value",),
    "overheating": ("temperature",),
}


@dataclass(frozen=True, slots=True)
class HomeTemplate:
    """What a home type looks like and how it shapes its devices' telemetry."""

    share: float
    """Share of homes of this type in the population (the shares sum to 1)."""
    devices: tuple[int, int]
    """Inclusive range of the number of devices in such a home."""
    floors: tuple[int, int]
    """Inclusive range of floors; every floor between a device and the hub costs link quality."""
    area_m2: tuple[float, float]
    """Floor area range; distance to the nearest router grows with its square root."""
    crowding: float
    """0..1: how crowded the 2.4 GHz band is (neighbours' Wi-Fi): noise, drops and errors."""
    climate_swing: float
    """Multiplier on indoor seasonal and daily temperature and humidity swings (1 = insulated house)."""


#: The 8 home types. Shares are the population mix; larger and taller homes have weaker links,
#: apartments and studios a crowded band, cottages and ranch houses wide climate swings.
HOME_TYPES: Final[dict[str, HomeTemplate]] = {
    "single_family_house": HomeTemplate(0.35, (20, 60), (2, 2), (120.0, 250.0), 0.20, 1.0),
    "apartment": HomeTemplate(0.20, (10, 25), (1, 1), (50.0, 100.0), 0.90, 0.6),
    "condo": HomeTemplate(0.15, (12, 30), (1, 1), (60.0, 130.0), 0.70, 0.7),
    "townhouse": HomeTemplate(0.12, (15, 40), (2, 3), (100.0, 180.0), 0.50, 0.9),
    "ranch_house": HomeTemplate(0.08, (20, 50), (1, 1), (150.0, 300.0), 0.10, 1.6),
    "multi_story": HomeTemplate(0.05, (40, 80), (3, 4), (200.0, 400.0), 0.20, 1.0),
    "cottage": HomeTemplate(0.03, (10, 25), (1, 2), (60.0, 120.0), 0.05, 1.8),
    "studio": HomeTemplate(0.02, (5, 15), (1, 1), (25.0, 45.0), 0.90, 0.6),
}


@dataclass(frozen=True, slots=True)
class DeviceTemplate:
    """How one device type is powered, reports and fails."""

    power_source: str
    """``battery`` or ``mains``."""
    protocol: str
    """``zigbee`` (reports ``linkquality``), ``zwave`` or ``wifi`` (report ``signal_strength`` in dBm)."""
    interval_h: float
    """Mean time between health reports, in hours; each report is jittered by up to ±30 %."""
    fields: frozenset[str]
    """The canonical fields this device type reports; the others are always missing (NaN)."""
    value_kind: str
    """What ``value`` holds: ``binary`` (0/1 state), ``ambient`` (°C), ``power`` (W), ``level``
    (0-254 brightness), ``trace`` (a near-constant reading such as smoke density) or ``none``."""
    mode_weights: dict[str, float]
    """Relative rates of the failure modes this device type can have."""
    weight: float
    """How common the device type is in a home, relative to the others."""
    response_ms: tuple[float, float] = (20.0, 80.0)
    """Range of the healthy median response time."""
    self_heating_c: tuple[float, float] = (0.0, 0.0)
    """Range of how much warmer than the room the device runs when fully in use."""
    usage_base: float = 0.3
    """Scale of ``usage_frequency`` at the daily activity peak."""
    mix_by_home: dict[str, float] = field(default_factory=dict)
    """Multipliers on ``weight`` for particular home types (houses have more cameras and locks)."""


_BATTERY_ZIGBEE = frozenset({"battery_level", "battery_voltage", "linkquality"})
_ZIGBEE_ROUTER = frozenset({"linkquality", "response_time", "error_rate", "usage_frequency"})
_WIFI_HEALTH = frozenset(
    {"signal_strength", "response_time", "error_rate", "connection_drops", "restart_count", "uptime_hours"}
)
_HOUSE = {"single_family_house": 1.4, "ranch_house": 1.4, "multi_story": 1.5, "cottage": 1.2}
_FLAT = {"apartment": 0.5, "studio": 0.4, "condo": 0.7}

#: Every device type of DESIGN.md as a template.
DEVICE_TYPES: Final[dict[str, DeviceTemplate]] = {
    "motion_sensor": DeviceTemplate(
        "battery",
        "zigbee",
        4.0,
        _BATTERY_ZIGBEE | {"temperature", "usage_frequency", "value"},
        "binary",
        {"battery_depletion": 5, "link_degradation": 3, "stuck_sensor": 2},
        1.6,
        usage_base=0.35,
    ),
    "contact_sensor": DeviceTemplate(
        "battery",
        "zigbee",
        6.0,
        _BATTERY_ZIGBEE | {"usage_frequency", "value"},
        "binary",
        {"battery_depletion": 5, "link_degradation": 3, "stuck_sensor": 2},
        1.8,
        usage_base=0.15,
    ),
    "temperature_sensor": DeviceTemplate(
        "battery",
        "zigbee",
        2.0,
        _BATTERY_ZIGBEE | {"temperature", "humidity", "value"},
        "ambient",
        {"battery_depletion": 5, "link_degradation": 3, "stuck_sensor": 3},
        1.5,
    ),
    "leak_sensor": DeviceTemplate(
        "battery",
        "zigbee",
        12.0,
        _BATTERY_ZIGBEE | {"value"},
        "trace",
        {"battery_depletion": 6, "link_degradation": 4},
        0.6,
        mix_by_home=_HOUSE,
    ),
    "smoke_detector": DeviceTemplate(
        "battery",
        "zigbee",
        12.0,
        _BATTERY_ZIGBEE | {"temperature", "value"},
        "trace",
        {"battery_depletion": 7, "link_degradation": 3},
        0.6,
    ),
    "smart_plug": DeviceTemplate(
        "mains",
        "zigbee",
        2.0,
        _ZIGBEE_ROUTER | {"temperature", "value"},
        "power",
        {"link_degradation": 3, "error_burst": 2, "latency_creep": 2, "overheating": 3, "stuck_sensor": 1},
        1.5,
        self_heating_c=(3.0, 12.0),
        usage_base=0.4,
    ),
    "light": DeviceTemplate(
        "mains",
        "zigbee",
        4.0,
        _ZIGBEE_ROUTER | {"value"},
        "level",
        {"link_degradation": 4, "error_burst": 3, "latency_creep": 3},
        2.5,
        usage_base=0.45,
    ),
    "switch": DeviceTemplate(
        "mains",
        "zigbee",
        6.0,
        _ZIGBEE_ROUTER | {"value"},
        "binary",
        {"link_degradation": 4, "error_burst": 3, "latency_creep": 3},
        1.2,
        usage_base=0.3,
    ),
    "thermostat": DeviceTemplate(
        "mains",
        "wifi",
        2.0,
        _WIFI_HEALTH | {"temperature", "humidity", "usage_frequency", "value"},
        "ambient",
        {"link_degradation": 3, "error_burst": 3, "latency_creep": 2, "stuck_sensor": 2},
        0.4,
        response_ms=(30.0, 120.0),
        usage_base=0.5,
    ),
    "lock": DeviceTemplate(
        "battery",
        "zwave",
        6.0,
        frozenset(
            {
                "battery_level",
                "battery_voltage",
                "signal_strength",
                "response_time",
                "error_rate",
                "usage_frequency",
                "value",
            }
        ),
        "binary",
        {"battery_depletion": 5, "link_degradation": 2, "latency_creep": 2, "error_burst": 1},
        0.5,
        response_ms=(150.0, 400.0),
        usage_base=0.1,
        mix_by_home=_HOUSE,
    ),
    "camera": DeviceTemplate(
        "mains",
        "wifi",
        1.0,
        _WIFI_HEALTH | {"temperature", "usage_frequency", "data_transfer_rate"},
        "none",
        {"link_degradation": 3, "error_burst": 2, "latency_creep": 2, "overheating": 3},
        0.8,
        self_heating_c=(8.0, 18.0),
        usage_base=0.6,
        mix_by_home=_HOUSE,
    ),
    "media_player": DeviceTemplate(
        "mains",
        "wifi",
        3.0,
        _WIFI_HEALTH | {"temperature", "usage_frequency", "data_transfer_rate"},
        "none",
        {"link_degradation": 3, "error_burst": 3, "latency_creep": 3, "overheating": 1},
        0.8,
        self_heating_c=(4.0, 12.0),
        usage_base=0.35,
    ),
    "vacuum": DeviceTemplate(
        "battery",
        "wifi",
        6.0,
        _WIFI_HEALTH | {"battery_level", "temperature", "usage_frequency"},
        "none",
        {"battery_depletion": 3, "link_degradation": 2, "error_burst": 3, "overheating": 2},
        0.3,
        self_heating_c=(3.0, 10.0),
        usage_base=0.1,
        mix_by_home={**_HOUSE, **_FLAT},
    ),
    "remote": DeviceTemplate(
        "battery",
        "zigbee",
        12.0,
        _BATTERY_ZIGBEE | {"usage_frequency"},
        "none",
        {"battery_depletion": 7, "link_degradation": 3},
        0.7,
        usage_base=0.05,
    ),
    "hub": DeviceTemplate(
        "mains",
        "wifi",
        1.0,
        _WIFI_HEALTH | {"temperature", "usage_frequency", "data_transfer_rate"},
        "none",
        {"error_burst": 3, "latency_creep": 3, "overheating": 3, "link_degradation": 1},
        0.25,
        response_ms=(5.0, 20.0),
        self_heating_c=(6.0, 15.0),
        usage_base=0.7,
    ),
    "generic": DeviceTemplate(
        "mains",
        "wifi",
        4.0,
        _WIFI_HEALTH | {"temperature"},
        "none",
        {"link_degradation": 3, "error_burst": 3, "latency_creep": 3, "overheating": 1},
        0.6,
        self_heating_c=(2.0, 8.0),
    ),
}


def _check_templates() -> None:
    """Fail at import when a template contradicts itself (a mode the device cannot show) or the contract."""
    if tuple(HOME_TYPES) != contract.HOME_TYPES or tuple(DEVICE_TYPES) != contract.DEVICE_TYPES:
        raise ValueError("the home or device templates are not the contract's home and device types, in order")
    temperature = {name for name, dev in DEVICE_TYPES.items() if "temperature" in dev.fields}
    if temperature != contract.REPORTS_TEMPERATURE:
        raise ValueError(f"templates with a temperature {sorted(temperature)} are not the contract's")
    shares = sum(h.share for h in HOME_TYPES.values())
    if abs(shares - 1.0) > 1e-9:
        raise ValueError(f"home type shares sum to {shares}, not 1")
    for name, dev in DEVICE_TYPES.items():
        unknown = dev.fields - set(METRIC_FIELDS)
        if unknown:
            raise ValueError(f"{name}: unknown fields {sorted(unknown)}")
        for mode in dev.mode_weights:
            if not set(MODE_SIGNATURE_FIELDS[mode]) & dev.fields:
                raise ValueError(f"{name}: failure mode {mode} needs one of {MODE_SIGNATURE_FIELDS[mode]}")
        if ("value" in dev.fields) != (dev.value_kind != "none"):
            raise ValueError(f"{name}: value_kind {dev.value_kind} disagrees with its fields")
        if dev.power_source not in contract.POWER_SOURCES:
            raise ValueError(f"{name}: power source {dev.power_source} is not one of the contract's")
        if (dev.power_source == "battery") != ("battery_level" in dev.fields):
            raise ValueError(f"{name}: power source {dev.power_source} disagrees with battery_level")


_check_templates()
