"""devintel's own input topics: canonical events, feedback labels and control commands."""

from __future__ import annotations

from typing import Final, Literal

from devintel.contract import DEFAULT_HOME_TYPE
from devintel.ingest.adapters.base import Adapter
from devintel.ingest.inbound import Command, Feedback, Inbound, Rejected, Telemetry
from devintel.ingest.validation import (
    TimeWindow,
    canonical_event,
    check_home_type,
    event_time,
    parse_json,
    sanitize_device_id,
)

_FEEDBACK_KINDS: Final[dict[str, Literal["failure", "replaced", "repaired"]]] = {
    "failure": "failure",
    "replaced": "replaced",
    "repaired": "repaired",
}
_COMMANDS: Final[dict[str, Literal["snapshot", "reload", "refresh"]]] = {
    "snapshot": "snapshot",
    "reload": "reload",
    "refresh": "refresh",
}


def _object(payload: bytes) -> dict[str, object]:
    """The payload as a JSON object, else ``wrong_type``."""
    value = parse_json(payload)
    if not isinstance(value, dict):
        raise Rejected("wrong_type", f"expected a JSON object, got {type(value).__name__}")
    return value


class NativeAdapter(Adapter):
    """``<prefix>/events/<device_id>`` -> :class:`Telemetry`, ``<prefix>/feedback/<device_id>`` ->
    :class:`Feedback`, ``<prefix>/cmd/<name>`` -> :class:`Command`. devintel's own outputs under the prefix
    (``predictions/...``, ``status``, ``health``) are not claimed."""

    source = "native"

    def __init__(
        self,
        prefix: str = "devintel",
        default_home_type: str = DEFAULT_HOME_TYPE,
        window: TimeWindow | None = None,
    ) -> None:
        self.prefix = prefix
        self.default_home_type = check_home_type(default_home_type)
        self.window = window or TimeWindow()

    def subscriptions(self) -> list[str]:
        """Events, feedback and commands, one topic level each."""
        return [f"{self.prefix}/events/+", f"{self.prefix}/feedback/+", f"{self.prefix}/cmd/+"]

    def parse(self, topic: str, payload: bytes, received: float) -> list[Inbound]:
        """Dispatch on the topic's second-to-last level."""
        kind, name = topic[len(self.prefix) + 1 :].split("/", 1)
        if kind == "events":
            return [self._telemetry(name, payload, received)]
        if kind == "feedback":
            return [self._feedback(name, payload, received)]
        return [self._command(name)]

    def _telemetry(self, name: str, payload: bytes, received: float) -> Telemetry:
        device_id = sanitize_device_id(name)
        raw = _object(payload)
        claimed = raw.get("device_id")
        if claimed is not None and (not isinstance(claimed, str) or sanitize_device_id(claimed) != device_id):
            raise Rejected("device_id_mismatch", f"payload says {claimed!r}, topic says {device_id!r}")
        return canonical_event(
            raw, device_id=device_id, received=received, default_home_type=self.default_home_type, window=self.window
        )

    def _feedback(self, name: str, payload: bytes, received: float) -> Feedback:
        device_id = sanitize_device_id(name)
        raw = _object(payload)
        kind = raw.get("event")
        if not isinstance(kind, str) or kind not in _FEEDBACK_KINDS:
            raise Rejected("unknown_value", f"feedback event {kind!r}")
        return Feedback(device_id, _FEEDBACK_KINDS[kind], event_time(raw.get("ts"), received, self.window))

    @staticmethod
    def _command(name: str) -> Command:
        if name not in _COMMANDS:
            raise Rejected("unknown_value", f"command {name[:40]!r}")
        return Command(_COMMANDS[name])
