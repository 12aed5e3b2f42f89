"""The one path from an event to a prediction, and from a resolved label to learning.

:class:`OnlineLearner` folds each event into the device's features, asks the model for the failure
probability, and holds the event in the delayed-label buffer; when labels resolve (failure evidence, or
the horizon passing) it learns from them with River's ``learn_one`` and updates the rolling metrics.
The warm start feeds synthetic events through it (:func:`warm_start`), with each device's simulated
failure time delivered as failure evidence when the stream clock reaches it; replay and the live daemon
will feed it real events.

Class imbalance: failures are rare (about 2 % of events), so by default every positive is learned but
only a share ``negative_rate`` of negatives, drawn from a seeded generator.
"""

from __future__ import annotations

import heapq
import random
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

import numpy as np
import pandas as pd
from river import drift

from devintel.generators.api import TRUTH_COLUMNS
from devintel.models.features import FeatureExtractor, Features
from devintel.models.labels import DelayedLabels, Resolved
from devintel.models.metrics import RollingMetrics

#: Resolved outcomes an :class:`OnlineLearner` keeps (the newest), so its memory stays bounded live.
OUTCOMES_KEPT: Final = 200_000


class Classifier(Protocol):
    """What a River binary classifier offers (the verbs devintel uses)."""

    def learn_one(self, x: dict[str, float], y: bool) -> Any:
        """Learn from one labelled example."""

    def predict_proba_one(self, x: dict[str, float]) -> dict[bool, float]:
        """Class probabilities for one example."""


@dataclass(frozen=True, slots=True)
class Scored:
    """What the label buffer keeps for an event: its features and the probability predicted then."""

    features: Features
    probability: float
    flagged: bool | None = None
    """The decision made then (probability against the serving model's threshold); None: against the
    learner's own ``threshold`` when the label resolves."""


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
    error_drift: drift.ADWIN = field(default_factory=lambda: drift.ADWIN())  # type: ignore[no-untyped-call]
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
    labels: DelayedLabels[Scored] = field(init=False)
    _rng: random.Random = field(init=False)

    def __post_init__(self) -> None:
        self.labels = DelayedLabels(self.horizon_s)
        self._rng = random.Random(self.seed)

    def predict(self, features: Features) -> float:
        """The model's failure probability for one feature vector."""
        return float(self.model.predict_proba_one(features).get(True, 0.0))

    def process(
        self, event: Mapping[str, object], model: Classifier | None = None, threshold: float | None = None
    ) -> Scored:
        """Handle one event: features, prediction, label buffer, and any labels the clock resolves.

        ``model`` and ``threshold`` serve this event instead of the learner's own (the daemon routes a device to
        its home type's model); learning, when its label resolves, still goes to the learner's model."""
        features = self.features.update(event)
        serving = self.model if model is None else model
        probability = float(serving.predict_proba_one(features).get(True, 0.0))
        ts = float(event["ts"])  # type: ignore[arg-type]
        self._resolve(self.labels.advance(ts))
        flagged = None if threshold is None else probability >= threshold
        scored = Scored(features, probability, flagged)
        self.labels.add(str(event["device_id"]), ts, scored)
        return scored

    def failure(self, device_id: str, ts: float) -> None:
        """Failure evidence for a device: resolve its waiting events and forget its state."""
        self._resolve(self.labels.failure(device_id, ts))
        self.features.forget(device_id)

    def finish(self, now: float) -> None:
        """Advance the clock to ``now`` (the end of a warm start) and resolve what has expired."""
        self._resolve(self.labels.advance(now))

    def _resolve(self, resolved: list[Resolved[Scored]]) -> None:
        for item in resolved:
            self.resolved += 1
            self.outcomes.append((item.label, item.payload.probability))
            flagged = item.payload.flagged
            if flagged is None:
                flagged = item.payload.probability >= self.threshold
            self.rolling.update(item.label, flagged)
            self.error_drift.update(float(flagged != item.label))  # type: ignore[no-untyped-call]
            if self.error_drift.drift_detected:
                self.drifts.append(item.resolved_at)
            if item.label or self._rng.random() < self.negative_rate:
                if not self.learn:
                    self.shed += 1
                    continue
                self.model.learn_one(item.payload.features, item.label)
                self.learned += 1
                if self.on_learn is not None:
                    self.on_learn(item.device_id, item.payload.features, item.label)


def events(frame: pd.DataFrame) -> Iterator[dict[str, object]]:
    """The canonical events of a generated frame, in order, without its ground-truth columns."""
    columns = [c for c in frame.columns if c not in TRUTH_COLUMNS]
    strings = [c for c in columns if isinstance(frame[c].dtype, pd.CategoricalDtype)]
    view = frame[columns].astype(dict.fromkeys(strings, str))
    for record in view.to_dict("records"):
        yield {str(k): v for k, v in record.items() if not (isinstance(v, float) and v != v)}  # drop NaN fields


def failure_times(frame: pd.DataFrame) -> dict[str, float]:
    """Each failing device's simulated failure time (epoch s), from ``ts + time_to_failure_h``."""
    ttf = frame["time_to_failure_h"].to_numpy()
    known = np.isfinite(ttf)
    when = frame["ts"].to_numpy()[known] + ttf[known] * 3600.0
    devices = frame["device_id"].astype(str).to_numpy()[known]
    return dict(zip(devices.tolist(), when.tolist(), strict=True))


def warm_start(
    learner: OnlineLearner,
    stream: Iterable[Mapping[str, object]],
    failures: Mapping[str, float],
    on_event: Callable[[int], None] | None = None,
) -> None:
    """Feed ``stream`` (time-ordered events) through ``learner``, delivering each device's failure
    evidence when the stream clock reaches its failure time; resolve what is left at the end."""
    pending = [(t, d) for d, t in failures.items()]
    heapq.heapify(pending)
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
