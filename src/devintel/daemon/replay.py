"""``devintel replay``: a recorded capture through the same handler as the live broker.

A capture line is ``{"ts": <epoch s of receipt>, "topic": "...", "payload": <JSON value or string>}``; a string
payload is the message's raw text (plain-text availability, say), any other JSON value is sent as its JSON.
Every message the live daemon would have published in answer is written as a line ``{"topic", "payload",
"retain"}``. Learning is on unless ``learn`` is False. Capture lines that are not of this form are counted and
skipped; the messages themselves meet the same validation as live ones.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import IO

import orjson

from devintel.ingest.counters import RateLimitedLog
from devintel.ingest.handler import Handler

logger = logging.getLogger(__name__)


@dataclass(slots=True)
class ReplayStats:
    """What a replay did."""

    lines: int = 0
    bad_lines: int = 0
    errors: int = 0
    """Messages whose handling failed (logged; the daemon drops them the same way)."""
    written: int = 0


def capture_message(line: str) -> tuple[str, bytes, float]:
    """(topic, payload bytes, time of receipt) of one capture line; ValueError when it is not of the form."""
    try:
        record = orjson.loads(line)
    except orjson.JSONDecodeError as error:
        raise ValueError(f"not JSON: {error}") from None
    if not isinstance(record, dict):
        raise ValueError("not a JSON object")
    topic, ts, payload = record.get("topic"), record.get("ts"), record.get("payload")
    if not isinstance(topic, str) or not topic:
        raise ValueError("no topic")
    if isinstance(ts, bool) or not isinstance(ts, int | float):
        raise ValueError("no numeric ts")
    data = payload.encode("utf-8") if isinstance(payload, str) else orjson.dumps(payload)
    return topic, data, float(ts)


def replay(handler: Handler, lines: Iterable[str], out: IO[bytes], learn: bool = True) -> ReplayStats:
    """Feed every capture line through ``handler`` and write what it would publish to ``out``."""
    stats = ReplayStats()
    handler.live.learner.learn = learn
    bad = RateLimitedLog(logger)
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        stats.lines += 1
        try:
            topic, payload, received = capture_message(line)
        except ValueError as error:
            stats.bad_lines += 1
            bad.warning("capture", "capture line %d skipped: %s", number, error)
            continue
        try:
            handled = handler.handle(topic, payload, received)
        except Exception:
            stats.errors += 1
            logger.exception("capture line %d: handling the message on %s failed; it is dropped", number, topic[:200])
            continue
        for message in handled.messages:
            out.write(orjson.dumps(message.as_record()) + b"\n")
            stats.written += 1
    return stats
