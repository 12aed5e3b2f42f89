"""What the daemon counts, and the rate-limited log lines for bad input.

Every dropped message is counted by its reason and logged, but a flood of junk must not flood the journal:
:class:`RateLimitedLog` writes the first line of each reason at once and then at most one line per reason
per ``interval_s``, saying how many it held back.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(slots=True)
class Counters:
    """The daemon's counters (published in the health message and on ``/metrics``)."""

    messages: int = 0
    """MQTT messages handled (every topic)."""
    events: int = 0
    """Telemetry events that reached the models."""
    published: int = 0
    """Prediction messages published (a change of risk or attention, or the periodic refresh)."""
    rejected: Counter[str] = field(default_factory=Counter)
    """Messages dropped as bad input, by reason."""
    dropped_values: Counter[str] = field(default_factory=Counter)
    """Metric values dropped as bad input from events that were used otherwise, by reason."""
    skipped: Counter[str] = field(default_factory=Counter)
    """Well-formed messages with nothing for devintel, by reason."""
    failures: Counter[str] = field(default_factory=Counter)
    """Failures established by live evidence, by evidence (feedback, offline, silence)."""
    feedback: Counter[str] = field(default_factory=Counter)
    """Feedback messages, by kind (failure, replaced, repaired)."""
    shed_events: int = 0
    """Messages dropped because the queue was full (prediction shed)."""
    shed_publish: int = 0
    """Messages not published because the outbox was full (the broker away for long)."""
    superseded_publish: int = 0
    """Retained messages not published because a newer one for the same topic replaced them while they waited
    (the daemon catching up on a backlog faster than the broker takes its output)."""
    held_publish: int = 0
    """Predictions not published while the daemon caught up on a backlog, because the device's prediction was published
    less than ``live.backlog_publish_interval_s`` before (each device's latest is published once the backlog is
    handled)."""
    evicted: int = 0
    """Devices evicted (silent past retention, or over the device cap)."""
    drift_alerts: int = 0
    """Drifts of the live error rate detected."""

    @property
    def predictions(self) -> int:
        """Predictions made: one for every event that reached the models."""
        return self.events

    def as_dict(self) -> dict[str, object]:
        """A JSON-ready dict."""
        return {
            "messages": self.messages,
            "events": self.events,
            "predictions": self.predictions,
            "published": self.published,
            "rejected": dict(sorted(self.rejected.items())),
            "rejected_total": sum(self.rejected.values()),
            "dropped_values": dict(sorted(self.dropped_values.items())),
            "skipped": dict(sorted(self.skipped.items())),
            "failures": dict(sorted(self.failures.items())),
            "feedback": dict(sorted(self.feedback.items())),
            "shed_events": self.shed_events,
            "shed_publish": self.shed_publish,
            "superseded_publish": self.superseded_publish,
            "held_publish": self.held_publish,
            "evicted": self.evicted,
            "drift_alerts": self.drift_alerts,
        }


class RateLimitedLog:
    """Log lines keyed by a reason, at most one per reason per ``interval_s`` (the first at once)."""

    def __init__(
        self, logger: logging.Logger, interval_s: float = 60.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.logger = logger
        self.interval_s = interval_s
        self.clock = clock
        self._last: dict[str, float] = {}
        self._held: Counter[str] = Counter()

    def warning(self, reason: str, message: str, *args: object) -> bool:
        """Log ``message % args`` under ``reason`` unless one was logged within the interval; True when logged."""
        now = self.clock()
        last = self._last.get(reason)
        if last is not None and now - last < self.interval_s:
            self._held[reason] += 1
            return False
        held = self._held.pop(reason, 0)
        self._last[reason] = now
        suffix = f" ({held} more like it since the last line)" if held else ""
        self.logger.warning("%s%s", message % args, suffix)
        return True
