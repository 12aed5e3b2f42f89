"""A partition's state: every home's handler, the stream sequence it covers, and its snapshot codec (pure).

A snapshot holds each home's handler (features, waiting labels, alarm decisions, evidence, device registry,
counters) and, per home and topic, how many events were handled, together with the last stream sequence whose
message it includes. The shared model objects are not written: they are pickled as references
(``persistent_id``) and resolved against the worker's current model version on load, so a snapshot costs the
per-home state only.
"""

from __future__ import annotations

import io
import pickle
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from devintel.fleet.codec import seal, unseal
from devintel.fleet.homes import switch_models
from devintel.fleet.modelset import ModelSet
from devintel.ingest.handler import Handler
from devintel.models.live import GLOBAL

KIND = "partition"
#: The layout of the per-home state this version writes: a snapshot of another layout does not read (its partition
#: is rebuilt from the stream, docs/fleet.md). 2: the devices' schedule of evidence and retention checks.
STATE_LAYOUT = 2


@dataclass(slots=True)
class PartitionState:
    """What a worker holds for one partition."""

    partition: int
    seq: int = 0
    """The last stream sequence whose message this state includes (0: none)."""
    version: str = ""
    """The model version the homes serve."""
    homes: dict[str, Handler] = field(default_factory=dict)
    handled: dict[str, Counter[str]] = field(default_factory=dict)
    """Per home, per topic of its broker: telemetry events handled (duplicates and rejects not counted)."""
    errors: int = 0
    """Messages whose handling raised (logged and dropped)."""
    bad: Counter[str] = field(default_factory=Counter)
    """Messages dropped before a handler: the reason, counted."""
    layout: int = STATE_LAYOUT
    """The layout of the per-home state (:data:`STATE_LAYOUT` of the version that wrote it)."""

    def totals(self) -> dict[str, Any]:
        """Counters of the whole partition (for ``devintel-fleet status`` and the tests)."""
        counters: Counter[str] = Counter()
        rejected: Counter[str] = Counter()
        dropped: Counter[str] = Counter()
        for handler in self.homes.values():
            counters["messages"] += handler.counters.messages
            counters["events"] += handler.counters.events
            counters["published"] += handler.counters.published
            rejected.update(handler.counters.rejected)
            dropped.update(handler.counters.dropped_values)
        return {
            "partition": self.partition,
            "seq": self.seq,
            "version": self.version,
            "homes": len(self.homes),
            "devices": sum(len(h.devices) for h in self.homes.values()),
            **counters,
            "rejected": dict(rejected),
            "dropped_values": dict(dropped),
            "errors": self.errors,
            "bad": dict(self.bad),
        }


class _Pickler(pickle.Pickler):
    def __init__(self, file: io.BytesIO, models: ModelSet) -> None:
        super().__init__(file, protocol=pickle.HIGHEST_PROTOCOL)
        self.shared: dict[int, str] = {id(models.models): "models"}
        self.shared.update({id(model): f"model:{name}" for name, model in models.models.items()})

    def persistent_id(self, obj: Any) -> str | None:
        """A shared model (or the dict of them) is written as its name."""
        return self.shared.get(id(obj))


class _Unpickler(pickle.Unpickler):
    def __init__(self, file: io.BytesIO, models: ModelSet) -> None:
        super().__init__(file)
        self.models = models

    def persistent_load(self, pid: Any) -> Any:
        """The current version's model of that name (the global one when the version has no such model)."""
        if pid == "models":
            return self.models.models
        if isinstance(pid, str) and pid.startswith("model:"):
            return self.models.models.get(pid[len("model:") :], self.models.models[GLOBAL])
        raise pickle.UnpicklingError(f"unknown shared object {pid!r}")


def encode_state(state: PartitionState, models: ModelSet) -> bytes:
    """``state`` as a sealed blob, the models of ``models`` written as references."""
    buffer = io.BytesIO()
    _Pickler(buffer, models).dump(state)
    return seal(KIND, buffer.getvalue())


def decode_state(blob: bytes, models: ModelSet) -> PartitionState:
    """The state of a blob of :func:`encode_state`, serving ``models`` (switched to them when the snapshot served
    another version). Raises :class:`~devintel.fleet.codec.CorruptBlobError`, or another exception of unpickling, on a
    blob that does not read."""
    state = _Unpickler(io.BytesIO(unseal(KIND, blob)), models).load()  # sealed blobs of the cluster only
    if not isinstance(state, PartitionState):
        raise TypeError(f"a partition snapshot holds a {type(state).__name__}")
    layout = getattr(state, "layout", 1)  # written before the layout was: 1
    if layout != STATE_LAYOUT:
        raise ValueError(f"a partition snapshot of state layout {layout}, not this version's {STATE_LAYOUT}")
    if state.version != models.version:
        for handler in state.homes.values():
            switch_models(handler, models)
        state.version = models.version
    return state
