"""The one path from an event to a prediction, and from a resolved label to learning.

:class:`OnlineLearner` folds each event into the device's features, asks the model for the failure
probability, and holds the event in the delayed-label buffer; when labels resolve (failure evidence, or
the horizon passing) it learns from them with River's ``learn_one`` and updates the rolling metrics.
The warm start feeds synthetic events through it (:func:`warm_start`), with each device's simulated
failure time delivered as failure evidence when the stream clock reaches it; replay and the live daemon feed
it real events through the same learner (:class:`devintel.models.live.LiveModels`, driven by
:mod:`devintel.ingest.handler`).

Class imbalance: failures are rare (about 2 % of events), so by default every positive is learned but
only a share ``negative_rate`` of negatives, drawn from a seeded generator.
"""

from __future__ import annotations

import heapq
import random
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, MutableMapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, Protocol

import numpy as np
from river import drift

from devintel.models.dense import Known, probability_with_inputs
from devintel.models.dense import probability as probability_of
from devintel.models.features import FeatureExtractor, Features
from devintel.models.labels import DelayedLabels, Resolved
from devintel.models.metrics import RollingMetrics
from devintel.models.scored import FeaturePacker, Packed, ScoredRows
from devintel.models.scored import Scored as Scored  # re-exported: devintel.fleet.homes imports it from here

if TYPE_CHECKING:
    import pandas as pd

#: Rows of a frame that :func:`events` turns into Python values at a time (its memory stays small).
EVENTS_CHUNK: Final = 8192
#: Resolved outcomes an :class:`OnlineLearner` keeps (the newest), so its memory stays bounded live.
OUTCOMES_KEPT: Final = 200_000


class Classifier(Protocol):
    """What a River binary classifier offers (the verbs devintel uses)."""

    def learn_one(self, x: dict[str, float], y: bool) -> Any:
        """Learn from one labelled example."""

    def predict_proba_one(self, x: dict[str, float]) -> dict[bool, float]:
        """Class probabilities for one example."""


@dataclass(slots=True)
class OnlineLearner:
    """Features, prediction, delayed labels and learning for a stream of events (see the module)."""

    model: Classifier
    horizon_s: float
    threshold: float = 0.5
    negative_rate: float = 0.2
    seed: int = 0
    learn: bool = True
    features: FeatureExtractor = field(default_factory=FeatureExtractor)
    rolling: RollingMetrics = field(default_factory=lambda: RollingMetrics(window_size=5_000, every=1_000))
    learned: int = 0
    resolved: int = 0
    shed: int = 0
    """Examples not learned because learning was switched off (``learn`` False) when they resolved: the live
    daemon sheds learning before prediction when it falls behind."""
    error_drift: drift.ADWIN = field(default_factory=lambda: drift.ADWIN())
    """ADWIN on the stream of decision errors of resolved events: it flags a change in the error rate."""
    drifts: deque[float] = field(default_factory=lambda: deque(maxlen=1_000))
    """Stream times (epoch s) at which ``error_drift`` detected a drift, the newest 1,000."""
    on_learn: Callable[[str, Features, bool], None] | None = None
    """Called with (device id, features, label) for every example learned: the bootstrap teaches the same
    examples to the device's home-type model (features are computed once for every model), and the learner
    benchmark keeps them to replay into a bare model."""
    outcomes: deque[tuple[bool, float]] = field(default_factory=lambda: deque(maxlen=OUTCOMES_KEPT))
    """(label, probability predicted then) of the latest resolved events, for inspection (the bootstrap
    calibrates thresholds on validation homes instead)."""
    packer: FeaturePacker | None = None
    """Packs the features of waiting events (the live daemon, whose buffer spans thousands of devices: its label
    buffer keeps them as :class:`ScoredRows`); None keeps them as dicts (the warm start, whose figures are then
    exactly reproducible)."""
    label_interval_s: float = 0.0
    """An event waits for its label only when at least this much stream time has passed since the device's
    previous waiting event (0: every event). Every event is predicted; this bounds the buffer, and so memory,
    for devices that report often: at most horizon / interval events per device."""
    labels: DelayedLabels[Scored] = field(init=False)
    _rng: random.Random = field(init=False)
    last_held: MutableMapping[str, float] = field(init=False, default_factory=dict)
    """Per device, the time of its latest event held for a label (for ``label_interval_s``)."""
    on_resolve: Callable[[Resolved[Scored]], None] | None = None
    """Called with every resolved event (the live models compare their serving and learning copies on them)."""
    last_inputs: Known | None = field(default=None, init=False, repr=False)
    """The model inputs of the latest event's features, as the serving model computed them (the live learning
    copy's prediction of the same event reuses them)."""

    def __post_init__(self) -> None:
        self.labels = DelayedLabels(self.horizon_s, rows=None if self.packer is None else ScoredRows(self.packer))
        self._rng = random.Random(self.seed)

    def predict(self, features: Features) -> float:
        """The model's failure probability for one feature vector."""
        return probability_of(self.model, features)

    def process(
        self,
        event: Mapping[str, object],
        model: Classifier | None = None,
        threshold: float | None = None,
        clock: float | None = None,
        alarm: Callable[[str, float, float], bool] | None = None,
        challenger: Callable[[str, float, Features], bool] | None = None,
    ) -> Scored:
        """Handle one event: features, prediction, label buffer, and any labels the clock resolves.

        ``model`` and ``threshold`` serve this event instead of the learner's own (the daemon routes a device to
        its home type's model); learning, when its label resolves, still goes to the learner's model. ``clock`` is
        the stream time that labels resolve against (default: the event's own time; the daemon passes its
        stream clock, which an event far ahead of its receipt does not move). ``alarm`` (device, time,
        probability) folds the prediction into the device's alarm decision and says whether it is on;
        ``challenger`` (device, time, features) does the same with the learning copy, for the events that wait for
        a label only."""
        features = self.features.update(event)
        serving = self.model if model is None else model
        probability, self.last_inputs = probability_with_inputs(serving, features)
        ts = float(event["ts"])  # type: ignore[arg-type]
        self._resolve(self.labels.advance(ts if clock is None else clock))
        flagged = None if threshold is None else probability >= threshold
        device_id = str(event["device_id"])
        on = alarm(device_id, ts, probability) if alarm is not None else False
        scored = Scored(features, probability, flagged, on, on)
        previous = self.last_held.get(device_id)
        if previous is None or ts - previous >= self.label_interval_s or ts < previous:
            rival = challenger(device_id, ts, features) if challenger is not None else on
            waiting = scored if rival == on else Scored(features, probability, flagged, on, rival)  # frozen: shared
            self.labels.add(device_id, ts, waiting)  # packed by the rows
            self.last_held[device_id] = ts
        return scored

    def failure(self, device_id: str, ts: float) -> None:
        """Failure evidence for a device: resolve its waiting events and forget its state."""
        self._resolve(self.labels.failure(device_id, ts))
        self.features.forget(device_id)
        self.last_held.pop(device_id, None)

    def forget(self, device_id: str) -> None:
        """Drop a device without labels (evicted): its features and its waiting events."""
        self.features.forget(device_id)
        self.labels.forget(device_id)
        self.last_held.pop(device_id, None)

    def finish(self, now: float) -> None:
        """Advance the clock to ``now`` (the end of a warm start) and resolve what has expired."""
        self._resolve(self.labels.advance(now))

    def _resolve(self, resolved: list[Resolved[Scored]]) -> None:
        for item in resolved:
            self.resolved += 1
            if self.on_resolve is not None:
                self.on_resolve(item)
            self.outcomes.append((item.label, item.payload.probability))
            flagged = item.payload.flagged
            if flagged is None:
                flagged = item.payload.probability >= self.threshold
            self.rolling.update(item.label, flagged)
            self.error_drift.update(float(flagged != item.label))
            if self.error_drift.drift_detected:
                self.drifts.append(item.resolved_at)
            if item.label or self._rng.random() < self.negative_rate:
                if not self.learn:
                    self.shed += 1
                    continue
                x = item.payload.features
                if not isinstance(x, dict):
                    x = self.packer.unpack(x) if self.packer is not None else {}
                self.model.learn_one(x, item.label)
                self.learned += 1
                if self.on_learn is not None:
                    self.on_learn(item.device_id, x, item.label)


class ExampleCollector:
    """The examples an :class:`OnlineLearner` would learn from a stream, without a model: features, the delayed-label
    buffer and the same seeded sampling of negatives (every positive, a share ``negative_rate`` of negatives, drawn
    in resolution order), so the same examples come out in the same order; ``on_example`` (device id, features,
    label) gets each one. No prediction and no ``learn_one``: the bootstrap fits its models on the examples
    afterwards (:mod:`devintel.models.consolidate`), so an online pass of the model is not needed to make them.
    Offers the verbs :func:`warm_start` and :func:`warm_start_batches` use (``process``, ``failure``, ``finish``)."""

    def __init__(
        self,
        on_example: Callable[[str, Features, bool], None],
        horizon_s: float,
        negative_rate: float = 0.2,
        seed: int = 0,
        features: FeatureExtractor | None = None,
    ) -> None:
        self.on_example = on_example
        self.negative_rate = negative_rate
        self.features = FeatureExtractor() if features is None else features
        self.labels: DelayedLabels[Features | Packed] = DelayedLabels(horizon_s)
        self.packer = FeaturePacker(typecode="d")
        """Packs the waiting events' features as float64 (exact; about a fifth of a dict's memory)."""
        self.learned = 0
        """Examples handed to ``on_example``."""
        self.resolved = 0
        self._rng = random.Random(seed)

    def process(self, event: Mapping[str, object]) -> None:
        """Fold one event into its device's features, resolve what the clock resolves, and hold the event."""
        features = self.features.update(event)
        ts = float(event["ts"])  # type: ignore[arg-type]
        self._resolve(self.labels.advance(ts))
        self.labels.add(str(event["device_id"]), ts, self.packer.pack(features))

    def failure(self, device_id: str, ts: float) -> None:
        """Failure evidence for a device: resolve its waiting events and forget its state."""
        self._resolve(self.labels.failure(device_id, ts))
        self.features.forget(device_id)

    def finish(self, now: float) -> None:
        """Advance the clock to ``now`` and resolve what has expired."""
        self._resolve(self.labels.advance(now))

    def _resolve(self, resolved: list[Resolved[Features | Packed]]) -> None:
        rate, draw, unpack = self.negative_rate, self._rng.random, self.packer.unpack
        for item in resolved:
            self.resolved += 1
            if item.label or draw() < rate:
                self.learned += 1
                self.on_example(item.device_id, unpack(item.payload), item.label)


class _Stepper(Protocol):
    """What the warm start's loop drives: an :class:`OnlineLearner` or an :class:`ExampleCollector`."""

    def process(self, event: Mapping[str, object]) -> object:
        """Handle one event."""

    def failure(self, device_id: str, ts: float) -> None:
        """Failure evidence for a device."""

    def finish(self, now: float) -> None:
        """The end of the stream."""


def events(frame: pd.DataFrame) -> Iterator[dict[str, object]]:
    """The canonical events of a generated frame, in order, without its ground-truth columns (a field that is NaN
    is left out). Lazy: one dict at a time, from :data:`EVENTS_CHUNK` rows of the frame's columns as Python lists at
    a time (no list of every row's dict, no column of a million Python floats)."""
    from devintel.generators.api import TRUTH_COLUMNS  # here, not at the top: the live daemon never loads pandas

    names = [str(c) for c in frame.columns if c not in TRUTH_COLUMNS]
    for start in range(0, len(frame), EVENTS_CHUNK):
        chunk = frame.iloc[start : start + EVENTS_CHUNK]
        columns = [chunk[name].tolist() for name in names]  # categoricals come out as their str values
        for row in zip(*columns, strict=True):
            yield {name: value for name, value in zip(names, row, strict=True) if value == value}  # NaN != NaN


def failure_times(frame: pd.DataFrame) -> dict[str, float]:
    """Each failing device's simulated failure time (epoch s), from ``ts + time_to_failure_h``."""
    ttf = frame["time_to_failure_h"].to_numpy()
    known = np.isfinite(ttf)
    when = frame["ts"].to_numpy()[known] + ttf[known] * 3600.0
    devices = frame["device_id"].astype(str).to_numpy()[known]
    return dict(zip(devices.tolist(), when.tolist(), strict=True))


def warm_start(
    learner: OnlineLearner | ExampleCollector,
    stream: Iterable[Mapping[str, object]],
    failures: Mapping[str, float],
    on_event: Callable[[int], None] | None = None,
) -> None:
    """Feed ``stream`` (time-ordered events) through ``learner``, delivering each device's failure
    evidence when the stream clock reaches its failure time; resolve what is left at the end."""
    pending = [(t, d) for d, t in failures.items()]
    heapq.heapify(pending)
    _feed(learner, stream, pending, on_event)


def warm_start_batches(
    learner: OnlineLearner | ExampleCollector,
    batches: Iterable[pd.DataFrame],
    on_batch: Callable[[pd.DataFrame], None] | None = None,
    on_event: Callable[[int], None] | None = None,
) -> None:
    """:func:`warm_start` over a generated stream in batches (``devintel.generators.iter_batches``), so memory stays
    flat: each device's failure time is taken from its first batch (a device's first event comes before its
    failure, so it is delivered when it would have been), and ``on_batch`` sees every batch before its events are
    fed, ``on_event`` every event's index. The same examples are learned, in the same order, as :func:`warm_start` on
    the whole frame."""
    pending: list[tuple[float, str]] = []
    known: set[str] = set()

    def stream() -> Iterator[dict[str, object]]:
        for batch in batches:
            if on_batch is not None:
                on_batch(batch)
            for device, t_fail in failure_times(batch).items():
                if device not in known:
                    known.add(device)
                    heapq.heappush(pending, (t_fail, device))
            yield from events(batch)

    _feed(learner, stream(), pending, on_event)


def _feed(
    learner: _Stepper,
    stream: Iterable[Mapping[str, object]],
    pending: list[tuple[float, str]],
    on_event: Callable[[int], None] | None,
) -> None:
    """The warm start's loop: ``pending`` is a heap of (failure time, device), which ``stream`` may push to."""
    last = -np.inf
    for i, event in enumerate(stream):
        ts = float(event["ts"])  # type: ignore[arg-type]
        while pending and pending[0][0] <= ts:
            t_fail, device = heapq.heappop(pending)
            learner.failure(device, t_fail)
        learner.process(event)
        last = ts
        if on_event is not None:
            on_event(i)
    while pending and pending[0][0] <= last:
        t_fail, device = heapq.heappop(pending)
        learner.failure(device, t_fail)
    learner.finish(last)
