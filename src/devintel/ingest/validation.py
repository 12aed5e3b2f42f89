"""Input validation for live messages: pure functions, no I/O.

Every adapter runs what it receives through these, so a bad payload is dropped the same way whatever its
source: with a :class:`~devintel.ingest.inbound.Rejected` carrying one of
:data:`~devintel.ingest.inbound.REJECT_REASONS`. The canonical fields, ranges and vocabularies are the
contract's (:mod:`devintel.contract`), which the synthetic generator holds to as well: live and synthetic events
obey one definition.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

import orjson

from devintel.contract import DEVICE_TYPES, HOME_TYPES, POWER_SOURCES, VALID_RANGES
from devintel.ingest.inbound import MAX_PAYLOAD_BYTES, DroppedValue, Rejected, Telemetry

#: Longest device id accepted, after sanitising (DESIGN.md).
MAX_DEVICE_ID_CHARS: Final = 128
#: Longest device name accepted (a person's name for the device: Zigbee2MQTT friendly name, HA device name).
MAX_NAME_CHARS: Final = 128
#: Numbers above this are taken as epoch milliseconds (1e11 s is the year 5138).
EPOCH_MS_THRESHOLD: Final = 1e11

_UNSAFE_ID_CHARS: Final = re.compile(r"[^A-Za-z0-9_.:-]")
_SAFE_ID: Final = re.compile(r"[A-Za-z0-9_.:-]+")
#: Unicode category Cc: C0 and C1 control characters and DEL.
_CONTROL_CHARS: Final = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_NUMERIC: Final = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?|[+-]?(?:nan|inf|infinity)", re.IGNORECASE)


def parse_json(payload: bytes) -> object:
    """Decode a JSON payload; ``too_large`` over :data:`MAX_PAYLOAD_BYTES`, ``malformed_json`` otherwise bad
    (including invalid UTF-8 and the non-standard ``NaN``/``Infinity`` literals)."""
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise Rejected("too_large", f"{len(payload)} bytes > {MAX_PAYLOAD_BYTES}")
    try:
        return orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise Rejected("malformed_json", str(exc)) from None


def sanitize_device_id(raw: object) -> str:
    """A device id safe in a topic, a path and a metric label: ``[A-Za-z0-9_.:-]``, at most 128 chars.

    Rejects (``bad_device_id``) an empty id, a non-string, and one holding MQTT wildcards (``+``, ``#``),
    control characters (NUL included) or ``..``; any other character outside the safe set becomes ``_``, so
    Zigbee2MQTT friendly names such as ``Motion Sensor`` or ``bedroom/radiator`` become ``Motion_Sensor`` and
    ``bedroom_radiator``. Sanitising a sanitised id returns it unchanged.
    """
    if not isinstance(raw, str) or not raw:
        raise Rejected("bad_device_id", f"empty or not a string: {raw!r}")
    if "+" in raw or "#" in raw or ".." in raw:
        raise Rejected("bad_device_id", f"wildcard or '..' in {raw!r}")
    if _SAFE_ID.fullmatch(raw) and len(raw) <= MAX_DEVICE_ID_CHARS and raw.strip("_."):
        return raw  # the common case, already safe: one regular-expression match
    if _CONTROL_CHARS.search(raw):
        raise Rejected("bad_device_id", f"control character in {raw!r}")
    safe = _UNSAFE_ID_CHARS.sub("_", raw)
    if len(safe) > MAX_DEVICE_ID_CHARS:
        raise Rejected("bad_device_id", f"{len(safe)} chars > {MAX_DEVICE_ID_CHARS}")
    if not safe.strip("_."):
        raise Rejected("bad_device_id", f"nothing but '_' and '.' in {raw!r}")
    return safe


def to_number(value: object, *, field: str = "value") -> float:
    """A JSON number or numeric string (Zigbee2MQTT sends ``"80.00"``) as a float.

    ``wrong_type`` for bools, other strings and other types; ``not_finite`` for NaN and the infinities,
    whether a number or a string (``"NaN"``, ``"Infinity"``).
    """
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise Rejected("wrong_type", f"{field}: {type(value).__name__} is not a number")
    if isinstance(value, str):
        text = value.strip()
        if not _NUMERIC.fullmatch(text):
            raise Rejected("wrong_type", f"{field}: {value[:40]!r} is not a number")
        value = text
    try:
        number = float(value)
    except OverflowError:
        raise Rejected("not_finite", f"{field}: too large for a float") from None
    if not math.isfinite(number):
        raise Rejected("not_finite", f"{field}: {number}")
    return number


def metric_value(field: str, value: object) -> float:
    """A canonical metric field's value, checked: a finite number within :data:`VALID_RANGES` (``value`` also
    takes a bool as 1.0/0.0). Raises ``wrong_type``, ``not_finite`` or ``out_of_range``."""
    low, high = VALID_RANGES[field]
    kind = type(value)
    # The common case, a number in range, taken as it is (NaN compares false; the ranges are finite; an int is
    # compared before it is converted, so a huge one cannot overflow here).
    if (kind is float or kind is int) and low <= value <= high:  # type: ignore[operator]
        return float(value)  # type: ignore[arg-type]
    if field == "value" and isinstance(value, bool):
        return float(value)
    number = to_number(value, field=field)
    if not low <= number <= high:
        raise Rejected("out_of_range", f"{field}: {number} outside [{low}, {high}]")
    return number


@dataclass(frozen=True, slots=True)
class TimeWindow:
    """How far an event time may lie from the time of receipt and still be believed."""

    max_future_s: float = 86_400.0
    """Seconds an event may be ahead of its receipt (clock skew, time zones gone wrong)."""
    max_past_s: float = 400 * 86_400.0
    """Seconds an event may be behind its receipt (replays of old captures, retained messages)."""


def _parse_iso(text: str) -> float:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise Rejected("bad_timestamp", f"not ISO 8601: {text[:40]!r}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def _epoch_seconds(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise Rejected("bad_timestamp", f"{type(value).__name__} is not a time")
    if isinstance(value, str) and not _NUMERIC.fullmatch(value.strip()):
        return _parse_iso(value.strip())
    try:
        number = to_number(value, field="ts")
    except Rejected as exc:
        raise Rejected("bad_timestamp", exc.detail) from None
    return number / 1000.0 if number > EPOCH_MS_THRESHOLD else number


def event_time(value: object, received: float, window: TimeWindow) -> float:
    """An event time in epoch seconds, from epoch seconds, epoch milliseconds (numbers over 1e11), a numeric
    string or an ISO 8601 string (an offset or ``Z``; naive means UTC); ``None`` means ``received``.

    ``bad_timestamp`` for bools, other types, unparseable strings, non-finite numbers and times more than
    ``window.max_future_s`` after or ``window.max_past_s`` before ``received``.
    """
    if value is None:
        return received
    ts = _epoch_seconds(value)
    if ts - received > window.max_future_s:
        raise Rejected("bad_timestamp", f"{ts} is {ts - received:.0f} s after receipt")
    if received - ts > window.max_past_s:
        raise Rejected("bad_timestamp", f"{ts} is {received - ts:.0f} s before receipt")
    return ts


def clean_name(raw: object) -> str | None:
    """A person's name for a device as devintel shows it: surrounding whitespace stripped, runs of whitespace
    made one space; None for a non-string or a blank name (a name is optional, never a reason to drop data)."""
    if not isinstance(raw, str):
        return None
    name = " ".join(raw.split())
    return name or None


def event_name(raw: object) -> str | None:
    """The optional ``name`` field of a canonical event: a string of at most :data:`MAX_NAME_CHARS` characters,
    without control characters (``wrong_type`` otherwise; absent or blank: None)."""
    if raw is None:
        return None
    if not isinstance(raw, str):
        raise Rejected("wrong_type", f"name: {type(raw).__name__} is not a string")
    if _CONTROL_CHARS.search(raw):
        raise Rejected("wrong_type", f"name: control character in {raw[:40]!r}")
    name = clean_name(raw)
    if name is not None and len(name) > MAX_NAME_CHARS:
        raise Rejected("out_of_range", f"name: {len(name)} chars > {MAX_NAME_CHARS}")
    return name


def check_home_type(home_type: str) -> str:
    """``home_type`` if it is one of the home types, else ValueError: a bad default is a settings bug, not bad
    input, so an adapter refuses it when it is built."""
    if home_type not in HOME_TYPES:
        raise ValueError(f"unknown home type {home_type!r}")
    return home_type


def _home_type(value: object, default: str) -> str:
    if value is None:
        return default
    if not isinstance(value, str) or value not in HOME_TYPES:
        raise Rejected("unknown_value", f"home_type {value!r}")
    return value


def _power_source(value: object) -> str:
    if not isinstance(value, str) or value not in POWER_SOURCES:
        raise Rejected("unknown_value", f"power_source {value!r}")
    return value


def canonical_event(
    raw: Mapping[str, object],
    *,
    device_id: str,
    received: float,
    default_home_type: str,
    window: TimeWindow,
) -> Telemetry:
    """The canonical telemetry event (DESIGN.md) of a mapping that already uses canonical field names.

    The event always holds ``device_id`` (sanitised), ``ts`` (epoch s, :func:`event_time` of ``raw["ts"]``)
    and ``home_type`` (``default_home_type`` when absent); ``name`` (:func:`event_name`), ``device_type``
    (unknown names become ``generic``), ``power_source`` and each metric of :data:`VALID_RANGES` only when
    present and not null. Metrics become floats (see :func:`metric_value`); a metric value that does not pass
    is left out and listed in :attr:`Telemetry.dropped` (the validation policy of
    :mod:`devintel.ingest.inbound`). Unknown keys are ignored. Raises :class:`Rejected` for what makes the whole
    message unreadable (the device id, the time, the name, the power source).
    """
    event: dict[str, object] = {
        "device_id": sanitize_device_id(device_id),
        "ts": event_time(raw.get("ts"), received, window),
        "home_type": _home_type(raw.get("home_type"), default_home_type),
    }
    name = event_name(raw.get("name"))
    if name is not None:
        event["name"] = name
    device_type = raw.get("device_type")
    if device_type is not None:
        event["device_type"] = (
            device_type if isinstance(device_type, str) and device_type in DEVICE_TYPES else "generic"
        )
    power_source = raw.get("power_source")
    if power_source is not None:
        event["power_source"] = _power_source(power_source)
    dropped: list[DroppedValue] = []
    for field in VALID_RANGES:
        value = raw.get(field)
        if value is not None:
            try:
                event[field] = metric_value(field, value)
            except Rejected as bad:
                dropped.append(DroppedValue(field, bad.reason, bad.detail))
    return Telemetry(event, tuple(dropped))
