"""The health report in the Prometheus text exposition format (``GET /metrics``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

#: Counters of the health report's ``counters`` section exported as Prometheus counters.
_COUNTERS: Final[tuple[tuple[str, str], ...]] = (
    ("messages", "MQTT messages handled"),
    ("events", "telemetry events that reached the models"),
    ("predictions", "predictions made"),
    ("published", "prediction messages published"),
    ("shed_events", "messages dropped because the processing queue was full"),
    ("shed_publish", "messages not published because the outbox was full"),
    ("superseded_publish", "retained messages replaced unsent by a newer one for the same topic"),
    ("held_publish", "predictions not published while catching up on a backlog (each device's latest was)"),
    ("evicted", "devices evicted"),
    ("drift_alerts", "drifts of the live error rate detected"),
)
#: Counters broken down by a label: (section, label name, help).
_LABELLED: Final[tuple[tuple[str, str, str], ...]] = (
    ("rejected", "reason", "messages dropped as bad input"),
    ("dropped_values", "reason", "metric values dropped as bad input from events used otherwise"),
    ("skipped", "reason", "well-formed messages with nothing for devintel"),
    ("failures", "evidence", "failures established by live evidence"),
)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value: object) -> float:
    return float(value) if isinstance(value, int | float) else 0.0


def prometheus_text(report: Mapping[str, object]) -> str:
    """The metrics of a health report (:meth:`devintel.daemon.runtime.Runtime.health`) as Prometheus text."""
    lines: list[str] = []

    def metric(name: str, kind: str, help_text: str, samples: list[tuple[str, float]]) -> None:
        lines.append(f"# HELP devintel_{name} {help_text}")
        lines.append(f"# TYPE devintel_{name} {kind}")
        lines.extend(f"devintel_{name}{labels} {value:g}" for labels, value in samples)

    counters = report.get("counters")
    counters = counters if isinstance(counters, Mapping) else {}
    for key, help_text in _COUNTERS:
        metric(f"{key}_total", "counter", help_text, [("", _number(counters.get(key)))])
    for section, label, help_text in _LABELLED:
        values = counters.get(section)
        samples = (
            [(f'{{{label}="{_escape(str(k))}"}}', _number(v)) for k, v in sorted((values or {}).items())]
            if isinstance(values, Mapping)
            else []
        )
        metric(f"{section}_total", "counter", help_text, samples)
    metric("up", "gauge", "1 while the service is ok", [("", 1.0 if report.get("status") == "ok" else 0.0)])
    mqtt = report.get("mqtt")
    connected = isinstance(mqtt, Mapping) and bool(mqtt.get("connected"))
    metric("mqtt_connected", "gauge", "1 while connected to the broker", [("", 1.0 if connected else 0.0)])
    metric("uptime_seconds", "gauge", "seconds since start", [("", _number(report.get("uptime_s")))])
    metric("devices", "gauge", "devices tracked", [("", _number(report.get("devices")))])
    metric("needs_attention", "gauge", "devices that need attention", [("", _number(report.get("needs_attention")))])
    queue = report.get("queue")
    queue = queue if isinstance(queue, Mapping) else {}
    metric("queue_depth", "gauge", "messages waiting for the processing worker", [("", _number(queue.get("depth")))])
    metric(
        "queue_received",
        "gauge",
        "messages received from the broker, not yet taken by the receive loop (a backlog waits here)",
        [("", _number(queue.get("received")))],
    )
    metric(
        "handler_busy_seconds_total",
        "counter",
        "seconds the processing worker spent handling messages (its rate: the share of a core it uses)",
        [("", _number(queue.get("busy_s")))],
    )
    rolling = report.get("rolling")
    if isinstance(rolling, Mapping):
        samples = [(f'{{metric="{_escape(str(k))}"}}', _number(v)) for k, v in sorted(rolling.items())]
        metric("rolling_quality", "gauge", "rolling live quality of resolved labels", samples)
    alarms = report.get("alarms")
    if isinstance(alarms, Mapping):
        samples = [(f'{{metric="{_escape(str(k))}"}}', _number(v)) for k, v in sorted(alarms.items())]
        metric(
            "alarm_quality", "gauge", "live alarm episodes judged by resolved labels (false alarms, catches)", samples
        )
    challenger = report.get("challenger")
    if isinstance(challenger, Mapping):
        counts = {k: v for k, v in challenger.items() if isinstance(v, int | float) and not isinstance(v, bool)}
        samples = [(f'{{metric="{_escape(str(k))}"}}', _number(v)) for k, v in sorted(counts.items())]
        metric("challenger", "gauge", "serving models vs the live-learning challenger on settled labels", samples)
    return "\n".join(lines) + "\n"
