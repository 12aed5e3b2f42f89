"""Captures of synthetic worlds, and the alarms a replay of them published (pure: no I/O).

:func:`synthetic_capture` turns a generated stream into the capture lines ``devintel replay`` reads: every event on
``<prefix>/events/<device_id>`` at its own time, and a person's ``failure`` feedback on ``<prefix>/feedback/...``
when a device fails (the world's own evidence, as a household would give it). :func:`flags_after_events` reads the
replay's output back: the ``needs_attention`` each event's device had right after it (every change is published, so
the latest published state before the next event is the state). The benchmark of live learning and its test judge
a replay of a world the models never saw with these two.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from devintel.models.online import events, failure_times

if TYPE_CHECKING:
    import pandas as pd


def synthetic_capture(frame: pd.DataFrame, prefix: str = "devintel", feedback: bool = True) -> list[dict[str, object]]:
    """Capture lines (``{"ts", "topic", "payload"}``) of a generated stream, in time order (see the module)."""
    lines: list[dict[str, object]] = []
    for event in events(frame):
        event.pop("home_id", None)
        lines.append({"ts": event["ts"], "topic": f"{prefix}/events/{event['device_id']}", "payload": event})
    if feedback:
        for device_id, ts in failure_times(frame).items():
            body = {"event": "failure", "ts": ts}
            lines.append({"ts": ts, "topic": f"{prefix}/feedback/{device_id}", "payload": body})
        lines.sort(key=lambda line: float(line["ts"]))  # type: ignore[arg-type]
    return lines


def flags_after_events(
    capture: Sequence[Mapping[str, object]], output: Iterable[Mapping[str, object]], prefix: str = "devintel"
) -> npt.NDArray[np.bool_]:
    """For every event line of ``capture`` (in order), whether its device needed attention after it, read from the
    prediction messages of the replay's ``output`` (in the order they were written)."""
    published: dict[tuple[str, float], bool] = {}
    for record in output:
        topic = str(record.get("topic", ""))
        payload = record.get("payload")
        if topic.startswith(f"{prefix}/predictions/") and isinstance(payload, dict):
            published[(str(payload["device_id"]), float(payload["ts"]))] = bool(payload["needs_attention"])
    state: dict[str, bool] = {}
    flags = []
    for line in capture:
        if not str(line["topic"]).startswith(f"{prefix}/events/"):
            continue
        payload = line["payload"]
        assert isinstance(payload, dict)
        device_id = str(payload["device_id"])
        key = (device_id, float(payload["ts"]))
        if key in published:
            state[device_id] = published[key]
        flags.append(state.get(device_id, False))
    return np.asarray(flags, dtype=np.bool_)
