"""The registry of adapters: every source dialect devintel reads, by name, in the order the handler asks them.

The daemon builds its adapters from :data:`ADAPTERS` (:func:`build_adapters`, through
``devintel.daemon.from_settings.adapters``), and the contract tests (``tests/test_adapter_contract.py``) and the
fuzz suite iterate it, so an adapter added here is served live, fuzzed (bad input is rejected with a known reason,
counted and dropped by the handler, never raised) and run over its fixture payloads without a new test of its own.
Order matters: the handler gives a message to the first adapter that claims its topic.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

from devintel.contract import DEFAULT_HOME_TYPE
from devintel.ingest.adapters.base import Adapter
from devintel.ingest.adapters.homeassistant import HomeAssistantAdapter
from devintel.ingest.adapters.homeassistant_api import HomeAssistantApiAdapter
from devintel.ingest.adapters.native import NativeAdapter
from devintel.ingest.adapters.zigbee2mqtt import Zigbee2MqttAdapter
from devintel.ingest.validation import TimeWindow


@dataclass(frozen=True)
class AdapterOptions:
    """What configures the adapters (the settings map onto it; the defaults are the adapters' own)."""

    topic_prefix: str = "devintel"
    """devintel's own topics (``topic_prefix``)."""
    zigbee2mqtt_base_topic: str = "zigbee2mqtt"
    """Zigbee2MQTT's base topic (``zigbee2mqtt.base_topic``)."""
    ha_prefix: str = "homeassistant"
    """Home Assistant's MQTT discovery prefix (``ha.prefix``)."""
    default_home_type: str = DEFAULT_HOME_TYPE
    """The home type of events that name none (``home_type``)."""
    window: TimeWindow = field(default_factory=TimeWindow)
    """How far event times may stray from their receipt (``live.max_future_s``, ``live.max_past_days``)."""


#: Every adapter, by name, as a factory of the options; the handler asks them in this order.
ADAPTERS: Final[dict[str, Callable[[AdapterOptions], Adapter]]] = {
    "native": lambda o: NativeAdapter(prefix=o.topic_prefix, default_home_type=o.default_home_type, window=o.window),
    "zigbee2mqtt": lambda o: Zigbee2MqttAdapter(
        base_topic=o.zigbee2mqtt_base_topic, default_home_type=o.default_home_type, window=o.window
    ),
    "homeassistant": lambda o: HomeAssistantAdapter(prefix=o.ha_prefix),
    "homeassistant_api": lambda o: HomeAssistantApiAdapter(default_home_type=o.default_home_type, window=o.window),
}


def build_adapters(options: AdapterOptions | None = None) -> list[Adapter]:
    """One fresh adapter of every registered kind, configured by ``options`` (the defaults when None)."""
    options = options or AdapterOptions()
    return [build(options) for build in ADAPTERS.values()]
