"""Input validation of live messages (devintel.ingest.validation): every reject reason, every coercion."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from devintel.generators.templates import VALID_RANGES
from devintel.ingest.inbound import MAX_PAYLOAD_BYTES, Rejected, Telemetry
from devintel.ingest.validation import (
    TimeWindow,
    canonical_event,
    event_time,
    metric_value,
    parse_json,
    sanitize_device_id,
    to_number,
)

RECEIVED = datetime(2026, 7, 27, 8, 0, tzinfo=UTC).timestamp()
WINDOW = TimeWindow()


def reason_of(call: object, *args: object, **kwargs: object) -> str:
    """The reject reason of ``call(*args, **kwargs)``; fails the test when it does not reject."""
    assert callable(call)
    with pytest.raises(Rejected) as info:
        call(*args, **kwargs)
    return info.value.reason


def telemetry(raw: dict[str, object], device_id: str = "dev-1") -> Telemetry:
    """canonical_event with the test defaults."""
    return canonical_event(raw, device_id=device_id, received=RECEIVED, default_home_type="apartment", window=WINDOW)


def event(raw: dict[str, object], device_id: str = "dev-1") -> dict[str, object]:
    """The event of :func:`telemetry`, which must have dropped no value."""
    checked = telemetry(raw, device_id)
    assert checked.dropped == ()
    return checked.event


def dropped(raw: dict[str, object]) -> tuple[dict[str, object], dict[str, str]]:
    """The event of :func:`telemetry` and the values it dropped (field: reason)."""
    checked = telemetry(raw)
    return checked.event, {bad.field: bad.reason for bad in checked.dropped}


# parse_json ---------------------------------------------------------------------------------------------------


def test_parse_json_decodes_objects_lists_and_scalars() -> None:
    assert parse_json(b'{"battery": "80.00", "a": [1, null]}') == {"battery": "80.00", "a": [1, None]}
    assert parse_json(b"[1, 2]") == [1, 2]
    assert parse_json(b"0") == 0


def test_parse_json_accepts_exactly_the_limit_and_rejects_one_byte_more() -> None:
    at_limit = b'"' + b"a" * (MAX_PAYLOAD_BYTES - 2) + b'"'
    assert parse_json(at_limit) == "a" * (MAX_PAYLOAD_BYTES - 2)
    assert reason_of(parse_json, at_limit + b" ") == "too_large"


@pytest.mark.parametrize(
    "payload",
    [b"", b"{", b'{"a": 1,}', b"online", b"\xff\xfe{}", b'{"t": NaN}', b'{"t": Infinity}', b"[1,]", b"1e400"],
)
def test_parse_json_rejects_malformed(payload: bytes) -> None:
    assert reason_of(parse_json, payload) == "malformed_json"


# sanitize_device_id -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("0x00158d0001e50d78", "0x00158d0001e50d78"),
        ("Motion Sensor", "Motion_Sensor"),
        ("bedroom/radiator", "bedroom_radiator"),
        ("Küche Decke", "K_che_Decke"),
        ("a.b:c-d_e", "a.b:c-d_e"),
        ("x" * 128, "x" * 128),
    ],
)
def test_sanitize_device_id_keeps_safe_chars_and_replaces_the_rest(raw: str, expected: str) -> None:
    assert sanitize_device_id(raw) == expected
    assert sanitize_device_id(expected) == expected  # idempotent


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "living+room",
        "sensor/#",
        "a\x00b",
        "line\nbreak",
        "del\x7f",
        "../etc/passwd",
        "a..b",
        "x" * 129,
        "___",
        "/./",
        None,
        42,
    ],
)
def test_sanitize_device_id_rejects_unsafe_ids(raw: object) -> None:
    assert reason_of(sanitize_device_id, raw) == "bad_device_id"


# numbers and metrics ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("raw", "expected"), [("80.00", 80.0), (" 12 ", 12.0), ("-1e2", -100.0), (7, 7.0), (0.5, 0.5)])
def test_to_number_coerces_numbers_and_numeric_strings(raw: object, expected: float) -> None:
    assert to_number(raw) == expected


@pytest.mark.parametrize("raw", ["abc", "", "1_000", "0x10", True, False, [1], {"v": 1}, None])
def test_to_number_rejects_non_numbers_as_wrong_type(raw: object) -> None:
    assert reason_of(to_number, raw) == "wrong_type"


@pytest.mark.parametrize("raw", ["NaN", "nan", "Infinity", "-inf", float("nan"), float("inf"), -float("inf")])
def test_to_number_rejects_non_finite(raw: object) -> None:
    assert reason_of(to_number, raw) == "not_finite"


def test_metric_value_checks_the_canonical_range() -> None:
    assert metric_value("battery_level", "80.00") == 80.0
    assert metric_value("battery_level", 100) == 100.0
    assert metric_value("linkquality", 0) == 0.0
    assert reason_of(metric_value, "battery_level", 255) == "out_of_range"
    assert reason_of(metric_value, "battery_level", -0.5) == "out_of_range"
    assert reason_of(metric_value, "error_rate", "1.5") == "out_of_range"


def test_metric_value_gives_numbers_past_float_or_not_finite_their_reason() -> None:
    assert isinstance(metric_value("battery_level", 80), float)
    assert reason_of(metric_value, "battery_level", 10**400) == "not_finite"  # an int too large for a float
    assert reason_of(metric_value, "battery_level", float("nan")) == "not_finite"
    assert reason_of(metric_value, "temperature", float("inf")) == "not_finite"
    assert reason_of(metric_value, "temperature", -float("inf")) == "not_finite"


def test_metric_value_takes_bools_only_for_value() -> None:
    assert metric_value("value", True) == 1.0
    assert metric_value("value", False) == 0.0
    assert reason_of(metric_value, "battery_level", True) == "wrong_type"


# event_time ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (None, RECEIVED),
        (RECEIVED - 60, RECEIVED - 60),
        (int(RECEIVED), float(int(RECEIVED))),
        (RECEIVED * 1000 - 1500, RECEIVED - 1.5),  # epoch milliseconds
        (str(int(RECEIVED)), float(int(RECEIVED))),
        (str(int(RECEIVED * 1000)), RECEIVED),
        ("2026-07-27T09:41:41+02:00", datetime(2026, 7, 27, 7, 41, 41, tzinfo=UTC).timestamp()),
        ("2026-07-27T07:41:41Z", datetime(2026, 7, 27, 7, 41, 41, tzinfo=UTC).timestamp()),
        ("2026-07-27T07:41:41.250", datetime(2026, 7, 27, 7, 41, 41, 250_000, tzinfo=UTC).timestamp()),  # naive=UTC
    ],
)
def test_event_time_parses_every_accepted_form(raw: object, expected: float) -> None:
    assert event_time(raw, RECEIVED, WINDOW) == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize(
    "raw",
    [True, False, "yesterday", "2026-13-01T00:00:00", "", [RECEIVED], {"ts": 1}, float("nan"), float("inf"), "NaN"],
)
def test_event_time_rejects_what_is_no_time(raw: object) -> None:
    assert reason_of(event_time, raw, RECEIVED, WINDOW) == "bad_timestamp"


def test_event_time_rejects_far_future_and_far_past_at_the_window_edges() -> None:
    window = TimeWindow(max_future_s=3600, max_past_s=86_400)
    assert event_time(RECEIVED + 3600, RECEIVED, window) == RECEIVED + 3600
    assert event_time(RECEIVED - 86_400, RECEIVED, window) == RECEIVED - 86_400
    assert reason_of(event_time, RECEIVED + 3601, RECEIVED, window) == "bad_timestamp"
    assert reason_of(event_time, RECEIVED - 86_401, RECEIVED, window) == "bad_timestamp"


def test_default_window_is_one_day_ahead_and_400_days_back() -> None:
    assert reason_of(event_time, RECEIVED + 2 * 86_400, RECEIVED, WINDOW) == "bad_timestamp"
    assert reason_of(event_time, "2022-10-11T21:45:07+01:00", RECEIVED, WINDOW) == "bad_timestamp"
    assert event_time(RECEIVED - 399 * 86_400, RECEIVED, WINDOW) == RECEIVED - 399 * 86_400


# canonical_event ----------------------------------------------------------------------------------------------


def test_canonical_event_builds_the_canonical_shape() -> None:
    result = event(
        {
            "device_id": "ignored here",
            "ts": RECEIVED - 10,
            "device_type": "motion_sensor",
            "home_type": "condo",
            "power_source": "battery",
            "battery_level": "80.00",
            "linkquality": 0,
            "value": True,
            "humidity": None,
            "firmware": "1.2.3",
        },
        device_id="Motion Sensor",
    )
    assert result == {
        "device_id": "Motion_Sensor",
        "ts": RECEIVED - 10,
        "home_type": "condo",
        "device_type": "motion_sensor",
        "power_source": "battery",
        "battery_level": 80.0,
        "linkquality": 0.0,
        "value": 1.0,
    }


def test_canonical_event_always_has_id_time_and_home_type() -> None:
    assert event({}) == {"device_id": "dev-1", "ts": RECEIVED, "home_type": "apartment"}


@pytest.mark.parametrize("device_type", ["toaster", 3, ""])
def test_canonical_event_maps_unknown_device_types_to_generic(device_type: object) -> None:
    assert event({"device_type": device_type})["device_type"] == "generic"


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ({"home_type": "castle"}, "unknown_value"),
        ({"home_type": 1}, "unknown_value"),
        ({"power_source": "solar"}, "unknown_value"),
        ({"power_source": "Battery"}, "unknown_value"),
        ({"ts": "not a time"}, "bad_timestamp"),
        ({"ts": RECEIVED + 5 * 86_400}, "bad_timestamp"),
        ({"name": 7}, "wrong_type"),
    ],
)
def test_canonical_event_rejects_what_makes_the_whole_message_unreadable(raw: dict[str, object], reason: str) -> None:
    assert reason_of(telemetry, raw) == reason


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        ({"battery_level": 255}, "out_of_range"),
        ({"battery_level": "NaN"}, "not_finite"),
        ({"temperature": "Infinity"}, "not_finite"),
        ({"linkquality": True}, "wrong_type"),
        ({"linkquality": "good"}, "wrong_type"),
        ({"linkquality": [1]}, "wrong_type"),
    ],
)
def test_a_bad_metric_value_is_dropped_alone_and_the_rest_of_the_event_kept(
    bad: dict[str, object], reason: str
) -> None:
    good = {"ts": RECEIVED - 5, "device_type": "leak_sensor", "value": 1, "error_rate": 0.25}
    kept, why = dropped({**good, **bad})
    assert kept == event(good)
    assert why == dict.fromkeys(bad, reason)


def test_every_bad_value_of_an_event_is_named_and_an_event_of_bad_values_only_is_kept_bare() -> None:
    kept, why = dropped({"battery_level": -1, "linkquality": "x", "temperature": "nan"})
    assert why == {"battery_level": "out_of_range", "linkquality": "wrong_type", "temperature": "not_finite"}
    assert kept == {"device_id": "dev-1", "ts": RECEIVED, "home_type": "apartment"}  # as the warm start sees it


@pytest.mark.parametrize("field", sorted(VALID_RANGES))
def test_canonical_event_uses_the_generator_ranges_for_every_metric(field: str) -> None:
    low, high = VALID_RANGES[field]
    assert event({field: low})[field] == low
    assert event({field: str(high)})[field] == high
    assert dropped({field: high + abs(high) * 0.01 + 1})[1] == {field: "out_of_range"}
    assert dropped({field: low - abs(low) * 0.01 - 1})[1] == {field: "out_of_range"}


def test_canonical_event_sanitises_and_checks_the_device_id() -> None:
    assert event({}, device_id="bedroom/radiator")["device_id"] == "bedroom_radiator"
    assert reason_of(event, {}, device_id="a/../b") == "bad_device_id"
