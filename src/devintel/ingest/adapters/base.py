"""The adapter interface: how a source's MQTT messages become the daemon's inbound vocabulary.

Contract of every :class:`Adapter`:

- :meth:`~Adapter.subscriptions` lists the MQTT topic filters to subscribe to; :meth:`~Adapter.claims` is true
  exactly for the topics those filters match (so a replayed capture is routed as the live broker would route
  it). The handler gives a message to the first adapter that claims its topic; no claim is the handler's
  ``unknown_topic`` skip.
- :meth:`~Adapter.parse` turns one message into a non-empty list of
  :data:`~devintel.ingest.inbound.Inbound` items; a well-formed message that carries nothing for devintel
  becomes a :class:`~devintel.ingest.inbound.Skipped` with a reason from ``SKIP_REASONS``. Bad input raises
  :class:`~devintel.ingest.inbound.Rejected` (a reason from ``REJECT_REASONS``) and nothing else: any other
  exception is a bug of ours.
- :meth:`~Adapter.parse` does no I/O and does not block; it may remember what earlier messages said (the
  Zigbee2MQTT device list), so one adapter instance serves one message stream, in order.
- Every telemetry event goes through :func:`devintel.ingest.validation.canonical_event`, so a metric is
  checked the same way whatever its source, and a bad metric value is dropped alone (the validation policy of
  :mod:`devintel.ingest.inbound`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

from devintel.ingest.inbound import Inbound


def topic_matches(topic_filter: str, topic: str) -> bool:
    """Whether an MQTT topic filter (``+`` one level, ``#`` this level and all below) matches a topic."""
    filter_levels = topic_filter.split("/")
    topic_levels = topic.split("/")
    for index, level in enumerate(filter_levels):
        if level == "#":
            return True
        if index >= len(topic_levels):
            return False
        if level not in ("+", topic_levels[index]):
            return False
    return len(filter_levels) == len(topic_levels)


class Adapter(ABC):
    """Turns the MQTT messages of one source (devintel's own topics, Zigbee2MQTT, Home Assistant) into
    :data:`~devintel.ingest.inbound.Inbound` items; see the module docstring for the contract."""

    source: ClassVar[str]
    """The source this adapter reads (``native``, ``zigbee2mqtt``, ``homeassistant``): each source keeps its own
    stream clock, so one cannot age out another's devices."""

    @abstractmethod
    def subscriptions(self) -> list[str]:
        """The MQTT topic filters this adapter needs."""

    def claims(self, topic: str) -> bool:
        """Whether this adapter handles ``topic``: true exactly when one of its subscriptions matches it."""
        return any(topic_matches(topic_filter, topic) for topic_filter in self.subscriptions())

    @abstractmethod
    def parse(self, topic: str, payload: bytes, received: float) -> list[Inbound]:
        """What one message (``received`` = epoch s of receipt) means; raises
        :class:`~devintel.ingest.inbound.Rejected` for bad input."""
