"""Adapters: one per message source, each turning MQTT messages into the daemon's inbound vocabulary.

:class:`Adapter` (``base.py``) is the interface; :class:`NativeAdapter` reads devintel's own topics,
:class:`Zigbee2MqttAdapter` Zigbee2MQTT's, :class:`HomeAssistantAdapter` Home Assistant's birth message,
:class:`~devintel.ingest.adapters.homeassistant_api.HomeAssistantApiAdapter` what Home Assistant's websocket API
said. ``registry.py`` lists them all (:data:`~devintel.ingest.adapters.registry.ADAPTERS`): the daemon builds its
adapters from it, and the contract and fuzz tests iterate it.
"""

from __future__ import annotations

from collections.abc import Iterable

from devintel.ingest.adapters.base import Adapter, topic_matches
from devintel.ingest.adapters.homeassistant import HomeAssistantAdapter
from devintel.ingest.adapters.native import NativeAdapter
from devintel.ingest.adapters.zigbee2mqtt import Zigbee2MqttAdapter

__all__ = [
    "Adapter",
    "HomeAssistantAdapter",
    "NativeAdapter",
    "Zigbee2MqttAdapter",
    "claiming",
    "topic_matches",
]


def claiming(adapters: Iterable[Adapter], topic: str) -> Adapter | None:
    """The first adapter that claims ``topic``, or ``None`` (the handler's ``unknown_topic`` skip)."""
    return next((adapter for adapter in adapters if adapter.claims(topic)), None)
