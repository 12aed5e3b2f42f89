"""Each home of the fleet through the daemon's own handler, and the examples its resolved labels give.

A home's handler is built by :func:`~devintel.daemon.from_settings.build_handler` from the daemon's settings, so it
reads, validates, predicts, decides alarms and answers exactly as that home's own daemon would, on the topics of
the home's own broker (the fleet strips and adds ``homes/<home_id>/``). Its live models are the worker's shared
model version (:class:`~devintel.fleet.modelset.ModelSet`). :class:`ExampleTap` sits on the learner's resolved
labels and keeps the examples the daemon would have learned from (every positive, a seeded share of negatives) as
features and label without any identity, for the fleet trainer.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from dataclasses import dataclass

import orjson

from devintel.daemon.from_settings import build_handler
from devintel.daemon.settings import Settings
from devintel.fleet.modelset import ModelSet
from devintel.fleet.subjects import examples_subject
from devintel.ingest.handler import Handler
from devintel.models.labels import Resolved
from devintel.models.live import LiveModels
from devintel.models.online import Scored
from devintel.models.snapshots import LoadedSnapshot


@dataclass(frozen=True, slots=True)
class Example:
    """One example for the trainer: its subject, its JSON body, and a message id that a replay repeats."""

    subject: str
    body: bytes
    msg_id: str


def keep_negative(home_id: str, device_id: str, ts: float, rate: float) -> bool:
    """Whether a negative example is sent: a share ``rate``, decided by its identity (a replay decides alike)."""
    return zlib.crc32(f"{home_id}/{device_id}/{ts!r}".encode()) < rate * 2**32


class ExampleTap:
    """The learner's ``on_resolve``: passes every resolved event on to the live models' own, and keeps an
    :class:`Example` of those the daemon would learn from."""

    def __init__(self, home_id: str, live: LiveModels, negative_rate: float) -> None:
        self.home_id = home_id
        self.live = live
        self.negative_rate = negative_rate
        self.chained: Callable[[Resolved[Scored]], None] | None = live.learner.on_resolve
        self.pending: list[Example] = []
        live.learner.on_resolve = self

    def __call__(self, item: Resolved[Scored]) -> None:
        """One resolved event."""
        if self.chained is not None:
            self.chained(item)
        if not item.label and not keep_negative(self.home_id, item.device_id, item.ts, self.negative_rate):
            return
        packed = item.payload.features
        packer = self.live.learner.packer
        features = packed if isinstance(packed, dict) else packer.unpack(packed) if packer is not None else {}
        home_type = self.live.home_type_of.get(item.device_id, "")
        body = orjson.dumps({"x": features, "y": bool(item.label), "home_type": home_type})
        msg_id = f"{self.home_id}/{item.device_id}/{item.ts!r}"
        self.pending.append(Example(examples_subject(home_type), body, msg_id))

    def drain(self) -> list[Example]:
        """The examples kept since the last drain."""
        out, self.pending = self.pending, []
        return out


class HomeFactory:
    """Builds a home's handler from the daemon's settings and the worker's model version."""

    def __init__(self, settings: Settings, snapshot: LoadedSnapshot, negative_rate: float) -> None:
        self.settings = settings
        self.snapshot = snapshot
        self.negative_rate = negative_rate

    def new(self, home_id: str, models: ModelSet) -> Handler:
        """A fresh handler for ``home_id``, serving ``models``."""
        handler = build_handler(self.settings, self.snapshot, live=models.live())
        ExampleTap(home_id, handler.live, self.negative_rate)
        return handler


def tap_of(handler: Handler) -> ExampleTap | None:
    """The example tap on a home handler's learner (None when it has none)."""
    tap = handler.live.learner.on_resolve
    return tap if isinstance(tap, ExampleTap) else None


def switch_models(handler: Handler, models: ModelSet) -> None:
    """Serve ``models`` in ``handler`` from now on, keeping every device's state (features, waiting labels,
    evidence, alarm decisions), as the daemon's reload does."""
    old_tap = tap_of(handler)
    live = models.live()
    live.adopt_state(handler.live)
    handler.live = live
    if old_tap is not None:
        tap = ExampleTap(old_tap.home_id, live, old_tap.negative_rate)
        tap.pending = old_tap.pending
