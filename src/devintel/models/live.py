"""Live prediction: the snapshot's models serving and learning from a stream of real events.

:class:`LiveModels` is the pure core of the daemon (no I/O, no asyncio): the routed models of a snapshot (the
global model, and a home type's own model where the router chose it), the :class:`OnlineLearner` that computes
features, holds delayed labels and learns, and the live evidence of failure that resolves those labels:

- feedback (a person says the device failed, or was replaced or repaired): failure at the feedback's time;
- an availability ``offline`` that lasts longer than ``offline_grace_s`` of stream time: failure at the time it
  went offline;
- silence: no report for more than ``silence_factor`` times the device's usual interval, and at least
  ``min_silence_s``: failure at its last report.

Time is the stream clock: the largest event time seen, so a replay of months runs in seconds and behaves as
live would; each source (devintel's topic, Zigbee2MQTT, Home Assistant) also keeps its own, on which its devices'
evidence is judged. Every event is learned from only once its label resolves, through the same buffer as the warm start.
Learning goes to the global model and to the device's home-type model when the snapshot has one (as in the
bootstrap); prediction comes from the model the router names for the device's home type.
"""

from __future__ import annotations

import copy
import pickle
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

from devintel.models.features import FeatureExtractor, Features
from devintel.models.learners import reasons
from devintel.models.metrics import RollingMetrics
from devintel.models.online import Classifier, FeaturePacker, OnlineLearner
from devintel.models.snapshots import STORE_FIELDS

GLOBAL: Final = "global"
#: Folder of the pickled models inside a snapshot (``models/<name>.pkl``), as the bootstrap writes them.
MODELS_DIR: Final = "models"
#: Resolved outcomes and rolling-metric history points kept live (bounded: the daemon runs for months).
LIVE_OUTCOMES_KEPT: Final = 10_000
LIVE_HISTORY_KEPT: Final = 1_000
#: Predictions from this probability on (and those that need attention) name their reasons.
EXPLAINED_FROM: Final = 0.2
#: Lower bounds of the risk levels (DESIGN.md), highest first.
RISK_LEVELS: Final[tuple[tuple[float, str], ...]] = (
    (0.8, "critical"),
    (0.6, "high"),
    (0.4, "medium"),
    (0.2, "low"),
    (0.0, "minimal"),
)


def risk_level(probability: float) -> str:
    """The risk level of a failure probability: critical ≥ 0.8, high ≥ 0.6, medium ≥ 0.4, low ≥ 0.2, else minimal."""
    for bound, level in RISK_LEVELS:
        if probability >= bound:
            return level
    return "minimal"


@dataclass(frozen=True, slots=True)
class Prediction:
    """One device's failure prediction after one event (the payload of ``<prefix>/predictions/<device_id>``)."""

    device_id: str
    ts: float
    failure_probability: float
    needs_attention: bool
    risk_level: str
    model: str
    model_version: str
    reasons: list[str]

    def as_dict(self) -> dict[str, object]:
        """The JSON payload (DESIGN.md)."""
        return {
            "device_id": self.device_id,
            "ts": self.ts,
            "failure_probability": round(self.failure_probability, 6),
            "needs_attention": self.needs_attention,
            "risk_level": self.risk_level,
            "model": self.model,
            "model_version": self.model_version,
            "reasons": self.reasons,
        }


@dataclass(frozen=True, slots=True)
class LiveEvidence:
    """When live evidence counts as a failure (DESIGN.md's defaults)."""

    offline_grace_s: float = 3600.0
    silence_factor: float = 10.0
    min_silence_s: float = 6 * 3600.0


@dataclass(frozen=True, slots=True)
class DetectedFailure:
    """A failure the live evidence established: the device, its time, and the evidence (``feedback``,
    ``offline``, ``silence``)."""

    device_id: str
    ts: float
    evidence: str


@dataclass(slots=True)
class LiveModels:
    """The models of one snapshot serving and learning live (see the module docstring)."""

    models: dict[str, Classifier]
    thresholds: dict[str, float]
    router: dict[str, str]
    version: str
    horizon_s: float
    evidence: LiveEvidence = field(default_factory=LiveEvidence)
    negative_rate: float = 0.2
    seed: int = 0
    label_interval_s: float = 0.0
    """See :attr:`OnlineLearner.label_interval_s`."""
    learner: OnlineLearner = field(init=False)
    clock: float = field(default=float("-inf"), init=False)
    """The stream clock: the largest event time seen."""
    clocks: dict[str, float] = field(default_factory=dict, init=False)
    """Each source's own stream clock (the largest event time of its events): a device's evidence (offline,
    silence) is judged on its source's clock, so one source cannot age out another's devices."""
    source_of: dict[str, str] = field(default_factory=dict, init=False)
    """The source each device was last heard from."""
    offline_since: dict[str, float] = field(default_factory=dict, init=False)
    home_type_of: dict[str, str] = field(default_factory=dict, init=False)
    failures: int = field(default=0, init=False)
    """Failures established by live evidence (each resolves the device's waiting labels)."""
    _latest: tuple[str, float, Features] = field(default=("", 0.0, {}), init=False, repr=False)

    def __post_init__(self) -> None:
        if GLOBAL not in self.models or GLOBAL not in self.thresholds:
            raise ValueError("a snapshot needs a global model and its threshold")
        unknown = {m for m in self.router.values() if m not in self.models or m not in self.thresholds}
        if unknown:
            raise ValueError(f"the router names models the snapshot lacks: {sorted(unknown)}")
        self.learner = OnlineLearner(
            model=self.models[GLOBAL],
            horizon_s=self.horizon_s,
            threshold=self.thresholds[GLOBAL],
            negative_rate=self.negative_rate,
            seed=self.seed,
            on_learn=self._teach_home_type_model,
            packer=FeaturePacker(),
            label_interval_s=self.label_interval_s,
            outcomes=deque(maxlen=LIVE_OUTCOMES_KEPT),
            rolling=RollingMetrics(window_size=5_000, every=1_000, max_history=LIVE_HISTORY_KEPT),
        )

    def _teach_home_type_model(self, device_id: str, features: Features, label: bool) -> None:
        model = self.models.get(self.home_type_of.get(device_id, ""))
        if model is not None:
            model.learn_one(features, label)

    def route(self, home_type: str) -> str:
        """The name of the model that serves devices of ``home_type``."""
        return self.router.get(home_type, GLOBAL)

    def observe(
        self, event: Mapping[str, object], explain: bool = True, clock_limit: float | None = None, source: str = ""
    ) -> Prediction:
        """One canonical event in (already validated), its device's prediction out; labels that the new stream
        time resolves are learned from. ``explain`` False leaves ``reasons`` empty (they cost more than the
        prediction): :meth:`explain` fills them in for the latest observed event, when it is to be published.
        ``clock_limit`` caps how far this event moves the stream clock (an event far ahead of its receipt);
        ``source`` names the clock of :attr:`clocks` it moves too."""
        device_id = str(event["device_id"])
        ts = float(event["ts"])  # type: ignore[arg-type]
        home_type = str(event.get("home_type", ""))
        self.home_type_of[device_id] = home_type
        self.offline_since.pop(device_id, None)  # a device that reports is online
        moved = ts if clock_limit is None else min(ts, clock_limit)
        self.clock = max(self.clock, moved)
        self.clocks[source] = max(self.clocks.get(source, moved), moved)
        self.source_of[device_id] = source
        name = self.route(home_type)
        scored = self.learner.process(event, self.models[name], self.thresholds[name], clock=self.clock)
        features = scored.features
        assert isinstance(features, dict)  # process() returns the features unpacked
        self._latest = (device_id, ts, features)
        return self._prediction(device_id, ts, name, scored.probability, features if explain else None)

    def explain(self, prediction: Prediction) -> Prediction:
        """``prediction`` with its reasons, when it is the latest observed event's (else unchanged)."""
        device_id, ts, features = self._latest
        if prediction.reasons or (device_id, ts) != (prediction.device_id, prediction.ts):
            return prediction
        explained = self._prediction(device_id, ts, prediction.model, prediction.failure_probability, features)
        return explained

    def score(self, event: Mapping[str, object]) -> Prediction:
        """The prediction ``observe`` would make for ``event``, changing nothing (an ad-hoc question)."""
        device_id = str(event["device_id"])
        extractor = FeatureExtractor()  # a scratch extractor holding a copy of this one device's state
        state = self.learner.features.states.get(device_id)
        if state is not None:
            extractor.states[device_id] = copy.deepcopy(state)
        features = extractor.update(event)
        name = self.route(str(event.get("home_type", "")))
        probability = float(self.models[name].predict_proba_one(features).get(True, 0.0))
        return self._prediction(device_id, float(event["ts"]), name, probability, features)  # type: ignore[arg-type]

    def _prediction(
        self, device_id: str, ts: float, name: str, probability: float, features: Features | None
    ) -> Prediction:
        attention = probability >= self.thresholds[name]
        explain = features is not None and (attention or probability >= EXPLAINED_FROM)
        return Prediction(
            device_id=device_id,
            ts=ts,
            failure_probability=probability,
            needs_attention=attention,
            risk_level=risk_level(probability),
            model=name,
            model_version=self.version,
            reasons=reasons(self.models[name], features) if explain and features is not None else [],
        )

    def feedback(self, device_id: str, ts: float) -> DetectedFailure:
        """A person reported the device failed, replaced or repaired at ``ts``: a failure then."""
        return self._fail(device_id, ts, "feedback")

    def availability(self, device_id: str, online: bool, ts: float, source: str | None = None) -> None:
        """The device went offline (its failure, once the grace period passes) or came back."""
        if online:
            self.offline_since.pop(device_id, None)
        else:
            self.offline_since.setdefault(device_id, ts)
        self.clock = max(self.clock, ts)
        if source is not None:
            self.clocks[source] = max(self.clocks.get(source, ts), ts)
            self.source_of.setdefault(device_id, source)

    def clock_of(self, device_id: str, default: float | None = None) -> float:
        """The stream clock of the device's source (``default``, else the stream clock, for a device of no
        known source)."""
        source = self.source_of.get(device_id)
        if source is not None and source in self.clocks:
            return self.clocks[source]
        return self.clock if default is None else default

    def tick(self, now: float | None = None) -> list[DetectedFailure]:
        """Check the live evidence at stream time ``now`` (default: the stream clock): devices offline past the
        grace period and devices silent too long have failed. Returns the failures found. Without ``now``, each
        device is judged on its source's clock (:meth:`clock_of`); ``now`` is the time for every device."""
        explicit = now is not None
        now = self.clock if now is None else max(self.clock, now)
        self.clock = now

        def clock_of(device: str) -> float:
            return now if explicit else self.clock_of(device, now)

        found = [
            self._fail(device, since, "offline")
            for device, since in list(self.offline_since.items())
            if clock_of(device) - since > self.evidence.offline_grace_s
        ]
        for device, state in list(self.learner.features.states.items()):
            if state.usual_gap <= 0.0:
                continue
            limit = max(self.evidence.silence_factor * state.usual_gap, self.evidence.min_silence_s)
            if clock_of(device) - state.last_ts > limit:
                found.append(self._fail(device, state.last_ts, "silence"))
        self.learner.finish(now)
        return found

    def _fail(self, device_id: str, ts: float, evidence: str) -> DetectedFailure:
        self.learner.failure(device_id, ts)
        self.offline_since.pop(device_id, None)
        self.home_type_of.pop(device_id, None)
        self.failures += 1
        return DetectedFailure(device_id, ts, evidence)

    def forget(self, device_id: str) -> None:
        """Drop everything about a device (evicted, or gone for good): features, waiting labels, evidence."""
        self.learner.forget(device_id)
        self.source_of.pop(device_id, None)
        self.offline_since.pop(device_id, None)
        self.home_type_of.pop(device_id, None)

    def adopt_state(self, previous: LiveModels) -> None:
        """Carry the per-device state of ``previous`` (features, waiting labels, live evidence, rolling metrics)
        over to these models, which take over serving (a reload or refresh must not forget every device)."""
        mine, theirs = self.learner, previous.learner
        mine.features, mine.labels, mine.packer = theirs.features, theirs.labels, theirs.packer
        mine.last_held = theirs.last_held
        mine.rolling, mine.error_drift, mine.drifts = theirs.rolling, theirs.error_drift, theirs.drifts
        mine.outcomes, mine.resolved, mine.shed = theirs.outcomes, theirs.resolved, theirs.shed
        self.clock = previous.clock
        self.clocks, self.source_of = previous.clocks, previous.source_of
        self.offline_since = previous.offline_since
        self.home_type_of = previous.home_type_of
        self.failures = previous.failures

    def devices(self) -> int:
        """Devices with feature state."""
        return len(self.learner.features)


def from_snapshot(
    files: Mapping[str, bytes],
    manifest: Mapping[str, object],
    version: str,
    horizon_s: float,
    evidence: LiveEvidence | None = None,
    seed: int = 0,
    label_interval_s: float = 0.0,
) -> LiveModels:
    """The live models of a verified snapshot: ``files`` are the bytes the snapshot store checked against the
    manifest (``models/<name>.pkl``); thresholds and router come from the manifest."""
    listed = manifest.get("models")
    if not isinstance(listed, dict) or not listed:
        raise ValueError(f"snapshot {version} lists no models")
    models: dict[str, Classifier] = {}
    thresholds: dict[str, float] = {}
    for name, entry in listed.items():
        blob = files.get(f"{MODELS_DIR}/{name}.pkl")
        if blob is None:
            raise ValueError(f"snapshot {version} lists model {name!r} but holds no {MODELS_DIR}/{name}.pkl")
        models[str(name)] = pickle.loads(blob)  # verified bytes only: see the threat model of SnapshotStore
        thresholds[str(name)] = float(entry["threshold"])
    router = manifest.get("router") or {}
    if not isinstance(router, dict):
        raise ValueError(f"snapshot {version} has a malformed router")
    return LiveModels(
        models=models,
        thresholds=thresholds,
        router={str(k): str(v) for k, v in router.items()},
        version=version,
        horizon_s=horizon_s,
        evidence=evidence or LiveEvidence(),
        seed=seed,
        label_interval_s=label_interval_s,
    )


def snapshot_contents(
    live: LiveModels, base_files: Mapping[str, bytes], base_manifest: Mapping[str, object]
) -> tuple[dict[str, bytes], dict[str, object]]:
    """The files and manifest of a snapshot of ``live``: its models as they have learned since, the base
    snapshot's other files (the bootstrap report) carried over, and the base manifest with a ``live`` section
    (what was learned live, and from which version)."""
    files = {name: blob for name, blob in base_files.items() if not name.startswith(MODELS_DIR + "/")}
    files.update({f"{MODELS_DIR}/{name}.pkl": pickle.dumps(model) for name, model in live.models.items()})
    manifest = {key: value for key, value in base_manifest.items() if key not in STORE_FIELDS}
    previous = base_manifest.get("live")
    learned_before = int(previous.get("learned", 0)) if isinstance(previous, dict) else 0
    manifest["live"] = {
        "base_version": live.version,
        "learned": learned_before + live.learner.learned,
        "resolved": live.learner.resolved,
        "failures": live.failures,
        "rolling": live.learner.rolling.get(),
    }
    return files, manifest
