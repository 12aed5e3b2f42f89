"""Home Assistant's birth and will messages: on ``online`` devintel publishes its discovery again."""

from __future__ import annotations

from devintel.ingest.adapters.base import Adapter
from devintel.ingest.inbound import MAX_PAYLOAD_BYTES, HomeAssistantOnline, Inbound, Rejected, Skipped


class HomeAssistantAdapter(Adapter):
    """``<prefix>/status``: ``online`` -> :class:`HomeAssistantOnline`, ``offline`` -> skipped."""

    source = "homeassistant"

    def __init__(self, prefix: str = "homeassistant") -> None:
        self.prefix = prefix

    def subscriptions(self) -> list[str]:
        """Only Home Assistant's status topic."""
        return [f"{self.prefix}/status"]

    def parse(self, topic: str, payload: bytes, received: float) -> list[Inbound]:
        """Plain-text ``online``/``offline`` (case and surrounding whitespace ignored)."""
        if len(payload) > MAX_PAYLOAD_BYTES:
            raise Rejected("too_large", f"{len(payload)} bytes")
        try:
            text = payload.decode().strip().lower()
        except UnicodeDecodeError:
            raise Rejected("malformed_json", "status is not UTF-8") from None
        if text == "online":
            return [HomeAssistantOnline()]
        if text == "offline":
            return [Skipped("not_telemetry", "Home Assistant went offline")]
        raise Rejected("unknown_value", f"Home Assistant status {text[:40]!r}")
