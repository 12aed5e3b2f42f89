"""Subject names of the fleet and the mapping between a home's MQTT topics and NATS subjects (pure).

NATS's MQTT listener turns an MQTT topic into a subject by replacing ``/`` with ``.``: a home's
``homes/h1/devintel/events/dev1`` is the subject ``homes.h1.devintel.events.dev1``. The servers' account mappings
(:func:`ingress_mappings`) move a home's *ingress* subjects (telemetry, feedback, Zigbee2MQTT, Home Assistant's
status) to ``devintel.in.<partition>.homes.<home_id>...``, the partition chosen by the server's
``partition(n, 1)`` function of the home id, so that every message of a home lands in one partition of the events
stream. Workers publish what a home's daemon would publish on ``fleet.out.homes.<home_id>...``, which the servers
map back to ``homes.<home_id>...`` (a mapping applies once, so output is never taken for input).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

#: The MQTT topic level under which every home publishes (``homes/<home_id>/...``).
HOMES: Final = "homes"
#: Subject prefix of the events stream's partitions (``devintel.in.<partition>.homes.<home_id>.<topic>``).
INGRESS: Final = "devintel.in"
#: Subject prefix of the workers' output (mapped back to ``homes.<home_id>...`` by the servers).
EGRESS: Final = "fleet.out"
#: Subject prefix of the examples stream (``devintel.examples.<home_type>``).
EXAMPLES: Final = "devintel.examples"
#: A home id: one MQTT topic level that is also one NATS subject token.
HOME_ID: Final = re.compile(r"^[A-Za-z0-9_-]{1,64}$")

#: A home's ingress topics, as subject patterns after ``homes.<home_id>.`` (the daemon's adapters' subscriptions
#: at their default prefixes: native events and feedback, Zigbee2MQTT, Home Assistant's status).
INGRESS_TOPICS: Final = ("devintel.events.*", "devintel.feedback.*", "zigbee2mqtt.>", "homeassistant.status")


def ingress_mappings(partitions: int) -> dict[str, str]:
    """The servers' account mappings (config ``mappings``): each ingress pattern of a home to its partition, and
    the workers' output back to the homes' namespace."""
    if partitions < 1:
        raise ValueError("at least one partition")
    mappings: dict[str, str] = {}
    for pattern in INGRESS_TOPICS:
        source = f"{HOMES}.*.{pattern}"
        rest, wildcard = [], 2
        for token in pattern.split("."):
            if token == "*":
                rest.append(f"{{{{wildcard({wildcard})}}}}")
                wildcard += 1
            else:
                rest.append(token)
        target = f"{INGRESS}.{{{{partition({partitions},1)}}}}.{HOMES}.{{{{wildcard(1)}}}}.{'.'.join(rest)}"
        mappings[source] = target
    mappings[f"{EGRESS}.{HOMES}.>"] = f"{HOMES}.>"
    return mappings


def partition_subject(partition: int) -> str:
    """The filter subject of one partition of the events stream."""
    return f"{INGRESS}.{partition}.>"


@dataclass(frozen=True, slots=True)
class Inbound:
    """Where a message of the events stream came from: its partition, its home, and its topic as the home's own
    broker knew it (without ``homes/<home_id>/``)."""

    partition: int
    home_id: str
    topic: str


def parse_ingress(subject: str) -> Inbound:
    """The :class:`Inbound` of an events-stream subject; ValueError when it is not of the form."""
    tokens = subject.split(".")
    prefix = INGRESS.split(".")
    if len(tokens) < len(prefix) + 4 or tokens[: len(prefix)] != prefix or tokens[len(prefix) + 1] != HOMES:
        raise ValueError(f"not an ingress subject: {subject[:200]!r}")
    partition_token, home_id = tokens[len(prefix)], tokens[len(prefix) + 2]
    if not partition_token.isdigit() or not HOME_ID.match(home_id):
        raise ValueError(f"bad partition or home id in {subject[:200]!r}")
    return Inbound(int(partition_token), home_id, "/".join(tokens[len(prefix) + 3 :]))


def egress_subject(home_id: str, topic: str) -> str:
    """The subject a worker publishes a home's message on (``topic`` as the home's daemon would publish it)."""
    return f"{EGRESS}.{HOMES}.{home_id}.{topic.replace('/', '.')}"


def home_topic(home_id: str, topic: str) -> str:
    """The MQTT topic a home sees for ``topic`` (``homes/<home_id>/<topic>``)."""
    return f"{HOMES}/{home_id}/{topic}"


def examples_subject(home_type: str) -> str:
    """The subject of one learned example of a home of ``home_type``."""
    return f"{EXAMPLES}.{home_type or 'unknown'}"
