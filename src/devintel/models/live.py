"""Live prediction: the snapshot's models serving and learning from a stream of real events.

:class:`LiveModels` is the pure core of the daemon (no I/O, no asyncio): the routed models of a snapshot (the
global model, and a home type's own model where the router chose it), the :class:`OnlineLearner` that computes
features, holds delayed labels and learns, and the live evidence of failure that resolves those labels:

- feedback ``failure`` or ``replaced`` (a person says the device failed, or replaced it): failure at the
  feedback's time. ``repaired`` is no failure: the device works again; its waiting events are dropped unlabelled
  (nobody knows what they would have been) and its baseline starts afresh;
- gone for good: an availability ``offline``, or silence (no report for more than ``silence_factor`` times the
  device's usual interval, and at least ``min_silence_s``), that lasts ``gone_for_good_s``: failure at the time it
  went away. Until then the device is only *suspected*: its waiting events are held (none resolves negative), and
  a device that comes back was no failure at all (a lamp switched off at the wall for an evening).

``needs_attention`` is the alarm decision (:mod:`devintel.models.decision`), per device over stream time, with the
parameters the bootstrap tuned; ``replaced`` and ``repaired`` clear it. Learning goes to a *challenger*, a copy of
the serving models that serves only once it beats them on recently resolved labels
(:mod:`devintel.models.challenger`): learning live cannot make the alarms worse.

Time is the stream clock: the largest event time seen, so a replay of months runs in seconds and behaves as
live would; each source (devintel's topic, Zigbee2MQTT, Home Assistant) also keeps its own, on which its devices'
evidence is judged. Every event is learned from only once its label resolves, through the same buffer as the warm
start. Learning goes to the challenger's global model and to its home-type model when the snapshot has one (as in the
bootstrap); prediction comes from the serving model the router names for the device's home type.

Every device's state (features, waiting labels, evidence, alarm decisions) is a record of one
:class:`~devintel.models.devices.DeviceTable` (one ``forget``, one cap, one snapshot form), which a reload or
refresh hands over whole (:meth:`LiveModels.adopt_state`).

Why one module of over 400 lines: :class:`LiveModels` is the one place where the serving models, the learning copy,
the live evidence and the alarm decisions meet on each event; split, each part would reach into the others' state.
"""

from __future__ import annotations

import copy
import json
import logging
import pickle
import sys
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

from devintel.contract import risk_level
from devintel.models.challenger import ChallengerScore
from devintel.models.checks import CheckSchedule
from devintel.models.decision import AlarmState, DecisionParams, step
from devintel.models.dense import features_needed
from devintel.models.dense import probability as probability_of
from devintel.models.devices import Column, Device, DeviceTable
from devintel.models.features import FeatureExtractor, Features
from devintel.models.household import EpisodeLedger
from devintel.models.labels import DelayedLabels, Resolved
from devintel.models.learners import reasons
from devintel.models.metrics import RollingMetrics
from devintel.models.online import Classifier, OnlineLearner
from devintel.models.scored import FeaturePacker, Scored
from devintel.models.snapshots import STORE_FIELDS

logger = logging.getLogger(__name__)

GLOBAL: Final = "global"
#: Folder of the pickled models inside a snapshot (``models/<name>.pkl``), as the bootstrap writes them.
MODELS_DIR: Final = "models"
#: Folder of the learning copy's pickled models inside a live snapshot.
CHALLENGER_DIR: Final = "challenger"
#: The per-device alarm decisions inside a live snapshot (so a restart neither re-raises nor drops an alarm).
ALARMS_FILE: Final = "state/alarms.json"
#: Resolved labels between two looks at whether the challenger should serve.
CHALLENGE_EVERY: Final = 500
#: Resolved outcomes and rolling-metric history points kept live (bounded: the daemon runs for months).
LIVE_OUTCOMES_KEPT: Final = 10_000
LIVE_HISTORY_KEPT: Final = 1_000
#: Predictions from this probability on (and those that need attention) name their reasons.
EXPLAINED_FROM: Final = 0.2


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
    """Offline longer than this: the device is suspected (its events wait)."""
    silence_factor: float = 10.0
    min_silence_s: float = 6 * 3600.0
    gone_for_good_s: float = 72 * 3600.0
    """Offline or silent this long: the device failed, at the time it went away."""


@dataclass(frozen=True, slots=True)
class DetectedFailure:
    """A failure the live evidence established: the device, its time, and the evidence (``feedback``,
    ``offline``, ``silence``)."""

    device_id: str
    ts: float
    evidence: str


#: Feedback that reports a failure (the device's waiting events within the horizon become positive).
FAILURE_FEEDBACK: Final = frozenset({"failure", "replaced"})
#: Feedback that clears a device's alarm.
CLEARING_FEEDBACK: Final = frozenset({"replaced", "repaired"})


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
    decision: DecisionParams | None = None
    """The alarm decision's parameters (None: the plain flag at the global model's threshold, for snapshots
    written before the decision layer)."""
    challenger: dict[str, Classifier] | None = None
    """The learning copy of ``models`` (None: a fresh copy of them)."""
    learner: OnlineLearner = field(init=False)
    table: DeviceTable = field(init=False)
    """Every device's state, in one table (:mod:`devintel.models.devices`): the columns below, the learner's
    features, waiting labels and label pacing, and the ledger's waiting onsets are views of it."""
    alarms: Column[AlarmState] = field(init=False)
    """Per device, the serving models' alarm decision."""
    challenger_alarms: Column[AlarmState] = field(init=False)
    """Per device, the challenger's alarm decision (stepped on the events that wait for a label)."""
    guard: ChallengerScore = field(default_factory=ChallengerScore, init=False)
    verdict: str = field(default="waiting for evidence", init=False)
    """Why the serving models serve (or why the challenger took over), in words."""
    ledger: EpisodeLedger = field(init=False)
    """The household measures of the live alarms, as their labels resolve."""
    clock: float = field(default=float("-inf"), init=False)
    """The stream clock: the largest event time seen."""
    clocks: dict[str, float] = field(default_factory=dict, init=False)
    """Each source's own stream clock (the largest event time of its events): a device's evidence (offline,
    silence) is judged on its source's clock, so one source cannot age out another's devices."""
    source_of: Column[str] = field(init=False)
    """The source each device was last heard from."""
    offline_since: Column[float] = field(init=False)
    home_type_of: Column[str] = field(init=False)
    failures: int = field(default=0, init=False)
    """Failures established by live evidence (each resolves the device's waiting labels)."""
    checks: CheckSchedule = field(default_factory=CheckSchedule, init=False)
    """When each device's live evidence is next worth a look (:meth:`tick` looks at those devices only)."""
    _latest: tuple[str, float, Features] = field(default=("", 0.0, {}), init=False, repr=False)
    _onset: float | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        if GLOBAL not in self.models or GLOBAL not in self.thresholds:
            raise ValueError("a snapshot needs a global model and its threshold")
        unknown = {m for m in self.router.values() if m not in self.models or m not in self.thresholds}
        if unknown:
            raise ValueError(f"the router names models the snapshot lacks: {sorted(unknown)}")
        if self.decision is None:
            self.decision = DecisionParams.plain(self.thresholds[GLOBAL])
        self.guard = ChallengerScore(horizon_s=self.horizon_s)
        if self.challenger is None:
            self.challenger = copy.deepcopy(self.models)
        if set(self.challenger) != set(self.models):
            raise ValueError("the challenger must hold the same models as the serving set")
        self.learner = OnlineLearner(
            model=self.challenger[GLOBAL],
            horizon_s=self.horizon_s,
            threshold=self.thresholds[GLOBAL],
            negative_rate=self.negative_rate,
            seed=self.seed,
            on_learn=self._teach_home_type_model,
            features=FeatureExtractor(
                only=features_needed([*self.models.values(), *self.challenger.values()]), states={}
            ),
            packer=FeaturePacker(),
            label_interval_s=self.label_interval_s,
            outcomes=deque(maxlen=LIVE_OUTCOMES_KEPT),
            rolling=RollingMetrics(window_size=5_000, every=1_000, max_history=LIVE_HISTORY_KEPT),
            on_resolve=self._judge,
        )
        table = DeviceTable()
        self._bind(table)
        self.learner.labels = DelayedLabels(
            self.horizon_s,
            devices=table.column("waiting"),
            held=table.column("held"),
            rows=self.learner.labels.rows,  # the learner's: its events as columns (ScoredRows over its packer)
        )
        self.ledger = EpisodeLedger(self.horizon_s, pending=table.column("onsets"))

    def _bind(self, table: DeviceTable) -> None:
        """Keep every device's state in ``table`` (the label buffer and the ledger are bound by their makers)."""
        self.table = table
        self.alarms = table.column("alarm")
        self.challenger_alarms = table.column("challenger_alarm")
        self.source_of = table.column("source")
        self.offline_since = table.column("offline_since")
        self.home_type_of = table.column("home_type")
        self.learner.features.states = table.column("features")
        self.learner.last_held = table.column("last_held")

    def _teach_home_type_model(self, device_id: str, features: Features, label: bool) -> None:
        assert self.challenger is not None
        model = self.challenger.get(self.home_type_of.get(device_id, ""))
        if model is not None:
            model.learn_one(features, label)

    def _alarm(self, device_id: str, ts: float, probability: float) -> bool:
        assert self.decision is not None
        state = self.alarms.get(device_id)
        if state is None:
            state = self.alarms[device_id] = AlarmState()
        before = state.active
        self._onset = ts if step(self.decision, state, ts, probability) and not before else None
        return state.active

    def _challenger_alarm(self, device_id: str, ts: float, features: Features) -> bool:
        assert self.decision is not None
        assert self.challenger is not None
        model = self.challenger[self.route(self.home_type_of.get(device_id, ""))]
        probability = probability_of(model, features, known=self.learner.last_inputs)
        state = self.challenger_alarms.get(device_id)
        if state is None:
            state = self.challenger_alarms[device_id] = AlarmState()
        return step(self.decision, state, ts, probability)

    def _judge(self, item: Resolved[Scored]) -> None:
        """A label resolved: score both model sets on it, and now and then see whether the challenger serves."""
        self.guard.update(item.ts, item.label, item.payload.alarm, item.payload.challenger_alarm)
        if self.learner.resolved % CHALLENGE_EVERY:
            return
        self.guard.settle(self.clock)
        promote, self.verdict = self.guard.verdict()
        if promote:
            assert self.challenger is not None
            logger.info("the live-learning challenger now serves: %s", self.verdict)
            self.models = copy.deepcopy(self.challenger)
            self.guard.promoted()

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
        home_type = sys.intern(str(event.get("home_type", "")))  # one string per home type, not a copy per device
        device = self.table.record(device_id)
        device.home_type = home_type
        device.offline_since = None  # a device that reports is online
        moved = ts if clock_limit is None else min(ts, clock_limit)
        self.clock = max(self.clock, moved)
        self.clocks[source] = max(self.clocks.get(source, moved), moved)
        device.source = source
        name = self.route(home_type)
        if device.held is not None:
            self.learner.labels.release(device_id)
        previous = device.features
        gap = ts - previous.last_ts if previous is not None else 0.0
        scored = self.learner.process(
            event,
            self.models[name],
            self.thresholds[name],
            clock=self.clock,
            alarm=self._alarm,
            challenger=self._challenger_alarm if self.learner.learn else None,
        )
        features = scored.features
        assert isinstance(features, dict)  # process() returns the features unpacked
        self._latest = (device_id, ts, features)
        self._schedule(device_id, device)
        self.ledger.observe(device_id, gap, self._onset)
        return self._prediction(device_id, ts, name, scored.probability, scored.alarm, features if explain else None)

    def explain(self, prediction: Prediction) -> Prediction:
        """``prediction`` with its reasons, when it is the latest observed event's and names them (else unchanged)."""
        if not _explained(prediction.needs_attention, prediction.failure_probability):
            return prediction  # no reasons to name: the same prediction
        device_id, ts, features = self._latest
        if prediction.reasons or (device_id, ts) != (prediction.device_id, prediction.ts):
            return prediction
        return self._prediction(
            device_id, ts, prediction.model, prediction.failure_probability, prediction.needs_attention, features
        )

    def score(self, event: Mapping[str, object]) -> Prediction:
        """The prediction ``observe`` would make for ``event``, changing nothing (an ad-hoc question)."""
        device_id = str(event["device_id"])
        # A scratch extractor holding a copy of this one device's state.
        extractor = FeatureExtractor(only=self.learner.features.only)
        state = self.learner.features.states.get(device_id)
        if state is not None:
            extractor.states[device_id] = copy.deepcopy(state)
        features = extractor.update(event)
        name = self.route(str(event.get("home_type", "")))
        probability = probability_of(self.models[name], features)
        ts = float(event["ts"])  # type: ignore[arg-type]
        assert self.decision is not None
        alarm = step(self.decision, copy.copy(self.alarms.get(device_id, AlarmState())), ts, probability)
        return self._prediction(device_id, ts, name, probability, alarm, features)

    def _prediction(
        self, device_id: str, ts: float, name: str, probability: float, attention: bool, features: Features | None
    ) -> Prediction:
        explain = features is not None and _explained(attention, probability)
        return Prediction(
            device_id=device_id,
            ts=ts,
            failure_probability=probability,
            needs_attention=attention,
            risk_level=risk_level(probability),
            model=name,
            model_version=self.version,
            reasons=reasons(self.models[name], features, known=self.learner.last_inputs)
            if explain and features is not None
            else [],
        )

    def feedback(self, device_id: str, ts: float, kind: str = "failure") -> DetectedFailure | None:
        """A person's word at ``ts``: ``failure`` and ``replaced`` are a failure then; ``replaced`` and ``repaired``
        clear the device's alarm; ``repaired`` drops its waiting events unlabelled and starts its baseline afresh.
        Returns the failure, if it was one."""
        failure = self._fail(device_id, ts, "feedback") if kind in FAILURE_FEEDBACK else None
        if kind in CLEARING_FEEDBACK:
            self.alarms.pop(device_id, None)
            self.challenger_alarms.pop(device_id, None)
        if failure is None:
            self.learner.forget(device_id)
            self.offline_since.pop(device_id, None)
            self.ledger.forget(device_id)
        return failure

    def availability(self, device_id: str, online: bool, ts: float, source: str | None = None) -> None:
        """The device went offline (suspected, then failed once it stays away) or came back (no failure)."""
        if online:
            self.offline_since.pop(device_id, None)
            self.learner.labels.release(device_id)
        else:
            device = self.table.record(device_id)
            if device.offline_since is None:
                device.offline_since = ts
            self._schedule(device_id, device)
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
        """Check the live evidence at stream time ``now`` (default: the stream clock): devices offline or silent
        past their grace are suspected (their events wait); those away for ``gone_for_good_s`` have failed, at the
        time they went away. Returns the failures found. Without ``now``, each device is judged on its source's
        clock (:meth:`clock_of`); ``now`` is the time for every device."""
        explicit = now is not None
        now = self.clock if now is None else max(self.clock, now)
        self.clock = now

        # Each device's clock, as :meth:`clock_of` (its source's clock, else ``now``), read inline. Only the devices
        # whose time has come are looked at (:attr:`checks`); every source's clock is at most ``now``.
        clocks: Mapping[str, float] = {} if explicit else self.clocks
        evidence = self.evidence
        gone, grace = evidence.gone_for_good_s, evidence.offline_grace_s
        factor, floor = evidence.silence_factor, evidence.min_silence_s
        hold = self.learner.labels.hold
        found = []
        records = self.table.records
        due = [(device, records[device]) for device in self.checks.due(now, records.get, len(records))]
        suspected = set()
        for device, record in due:
            since = record.offline_since
            if since is None:
                continue
            source = record.source
            away = (now if source is None else clocks.get(source, now)) - since
            if away >= gone:
                found.append(self._fail(device, since, "offline"))
            elif away > grace:
                hold(device)
                suspected.add(device)
        for device, record in due:
            state = record.features  # read now: a device that failed above has none
            if state is None:
                continue
            usual_gap = state.usual_gap
            if usual_gap <= 0.0:
                continue
            limit = max(factor * usual_gap, floor)
            last_ts = state.last_ts
            source = record.source
            silent = (now if source is None else clocks.get(source, now)) - last_ts
            if silent >= max(limit, gone):
                found.append(self._fail(device, last_ts, "silence"))
            elif silent > limit:
                hold(device)
                suspected.add(device)
        for device, record in due:
            # A suspected device is held again at every tick until it fails or is back (as it was before the
            # schedule: something in between may have released it); the others when their time comes.
            if device in suspected:
                self.checks.at(device, record, now)
            else:
                self._schedule(device, record)
        self.learner.finish(now)
        self.ledger.advance(now)
        return found

    def _schedule(self, device_id: str, record: Device) -> None:
        """Put the device on :attr:`checks` at the earliest time its evidence may call for something: its offline
        time past the grace (or gone for good, if sooner), its silence past ``silence_factor`` usual intervals (at
        least ``min_silence_s``)."""
        evidence = self.evidence
        if record.offline_since is not None:
            away = min(evidence.offline_grace_s, evidence.gone_for_good_s)
            self.checks.at(device_id, record, record.offline_since + away)
        state = record.features
        if state is not None and state.usual_gap > 0.0:
            silent = max(evidence.silence_factor * state.usual_gap, evidence.min_silence_s)
            self.checks.at(device_id, record, state.last_ts + silent)

    def _fail(self, device_id: str, ts: float, evidence: str) -> DetectedFailure:
        alarm = self.alarms.get(device_id)
        self.ledger.failure(device_id, ts, alarm.changed_at if alarm is not None and alarm.active else None)
        lead = self.ledger.min_lead_s
        self.guard.failure(_on_since(alarm, ts, lead), _on_since(self.challenger_alarms.get(device_id), ts, lead))
        self.learner.failure(device_id, ts)
        self.offline_since.pop(device_id, None)
        self.home_type_of.pop(device_id, None)
        self.failures += 1
        return DetectedFailure(device_id, ts, evidence)

    def forget(self, device_id: str) -> None:
        """Drop everything about a device (evicted, or gone for good): its record in :attr:`table`."""
        self.table.forget(device_id)

    def adopt_state(self, previous: LiveModels) -> None:
        """Take over the state of ``previous``, whose models these replace in serving (a reload or refresh must not
        forget every device): its device table, as one object (every device's features, waiting labels, evidence,
        alarm decisions, serving and challenger), and the stream's state over those devices (the label buffer's
        and the ledger's queues, the packer's layouts, the schedule of evidence checks, the clocks, the rolling
        metrics and drift)."""
        self._bind(previous.table)
        self.checks = previous.checks
        mine, theirs = self.learner, previous.learner
        mine.labels, mine.packer, self.ledger = theirs.labels, theirs.packer, previous.ledger
        mine.rolling, mine.error_drift, mine.drifts = theirs.rolling, theirs.error_drift, theirs.drifts
        mine.outcomes, mine.resolved, mine.shed = theirs.outcomes, theirs.resolved, theirs.shed
        self.clock, self.clocks, self.failures = previous.clock, previous.clocks, previous.failures

    def alarm_states(self) -> dict[str, object]:
        """The per-device state the snapshot keeps (:meth:`DeviceTable.snapshot`: the alarm decisions that carry
        anything, serving and challenger), as JSON-ready values."""
        return dict(self.table.snapshot())

    def restore_alarms(self, saved: Mapping[str, object]) -> None:
        """Take over the per-device state of :meth:`alarm_states`."""
        self.table.restore(saved)

    def challenge(self) -> dict[str, object]:
        """Serving versus challenger, for the health message and ``devintel models``."""
        return {"verdict": self.verdict, "promotions": self.guard.promotions, **self.guard.counts()}

    def alarm_quality(self) -> dict[str, float | int]:
        """The live household measures from resolved labels (:class:`~devintel.models.household.EpisodeLedger`)."""
        return self.ledger.report()


def _explained(attention: bool, probability: float) -> bool:
    """Whether a prediction names its reasons (:data:`EXPLAINED_FROM`)."""
    return attention or probability >= EXPLAINED_FROM


def _on_since(alarm: AlarmState | None, ts: float, lead_s: float) -> bool:
    """Whether ``alarm`` has been on since at least ``lead_s`` before ``ts``."""
    return alarm is not None and alarm.active and ts - alarm.changed_at >= lead_s


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
    challenger = {
        name: pickle.loads(files[f"{CHALLENGER_DIR}/{name}.pkl"])  # verified bytes, as above
        for name in models
        if f"{CHALLENGER_DIR}/{name}.pkl" in files
    }
    decision = manifest.get("decision")
    live = LiveModels(
        models=models,
        thresholds=thresholds,
        router={str(k): str(v) for k, v in router.items()},
        version=version,
        horizon_s=horizon_s,
        evidence=evidence or LiveEvidence(),
        seed=seed,
        label_interval_s=label_interval_s,
        decision=DecisionParams.from_dict(decision) if isinstance(decision, dict) else None,
        challenger=challenger if set(challenger) == set(models) else None,
    )
    alarms = files.get(ALARMS_FILE)
    if alarms is not None:
        live.restore_alarms(json.loads(alarms))
    return live


def snapshot_contents(
    live: LiveModels, base_files: Mapping[str, bytes], base_manifest: Mapping[str, object]
) -> tuple[dict[str, bytes], dict[str, object]]:
    """The files and manifest of a snapshot of ``live``: its models as they have learned since, the base
    snapshot's other files (the bootstrap report) carried over, the learning copy (``challenger/<name>.pkl``), the
    per-device alarm decisions (``state/alarms.json``), and the base manifest with a ``live`` section (what was
    learned live, from which version, and how the challenger fares)."""
    ours = (f"{MODELS_DIR}/", f"{CHALLENGER_DIR}/", ALARMS_FILE)
    files = {name: blob for name, blob in base_files.items() if not name.startswith(ours)}
    files.update({f"{MODELS_DIR}/{name}.pkl": pickle.dumps(model) for name, model in live.models.items()})
    assert live.challenger is not None
    files.update({f"{CHALLENGER_DIR}/{name}.pkl": pickle.dumps(model) for name, model in live.challenger.items()})
    files[ALARMS_FILE] = json.dumps(live.alarm_states()).encode()
    manifest = {key: value for key, value in base_manifest.items() if key not in STORE_FIELDS}
    previous = base_manifest.get("live")
    learned_before = int(previous.get("learned", 0)) if isinstance(previous, dict) else 0
    manifest["live"] = {
        "base_version": live.version,
        "learned": learned_before + live.learner.learned,
        "resolved": live.learner.resolved,
        "failures": live.failures,
        "rolling": live.learner.rolling.get(),
        "challenger": live.challenge(),
    }
    return files, manifest
