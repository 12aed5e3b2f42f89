"""The alarm decision in the live path: persistence, restarts, feedback that clears, honest evidence, and learning
live that cannot make the serving models' alarms worse (the challenger guard)."""

from __future__ import annotations

import copy
import pickle
import random
from collections.abc import Mapping
from pathlib import Path

import pytest

from devintel.models.challenger import ChallengerScore
from devintel.models.decision import DecisionParams
from devintel.models.learners import default_model
from devintel.models.live import GLOBAL, LiveEvidence, LiveModels, from_snapshot, snapshot_contents
from devintel.models.snapshots import SnapshotStore

H = 7 * 86_400.0
HOUR = 3600.0
DAY = 86_400.0


class _Fixed:
    """A stand-in classifier whose probability is the event's ``value`` field (what the decision sees is then
    chosen by the test). It learns nothing."""

    def learn_one(self, x: dict[str, float], y: bool) -> None:
        return None

    def predict_proba_one(self, x: dict[str, float]) -> dict[bool, float]:
        p = min(max(x.get("value_ewm_probe", 0.0), 0.0), 1.0)
        return {True: p, False: 1.0 - p}


def _fixed_live(decision: DecisionParams, evidence: LiveEvidence | None = None) -> LiveModels:
    live = LiveModels(
        models={GLOBAL: _Fixed()},
        thresholds={GLOBAL: 0.5},
        router={},
        version="v",
        horizon_s=H,
        decision=decision,
        evidence=evidence or LiveEvidence(),
    )
    # The features carry the probability through: the probe reads the event's battery level as a share.
    extractor_update = live.learner.features.update

    def update(event: Mapping[str, object]) -> dict[str, float]:
        features = extractor_update(event)
        features["value_ewm_probe"] = float(event.get("probe", 0.0))  # type: ignore[arg-type]
        return features

    live.learner.features.update = update  # type: ignore[method-assign]
    return live


def _event(device: str, ts: float, probe: float = 0.0) -> dict[str, object]:
    return {"device_id": device, "ts": ts, "home_type": "apartment", "battery_level": 90.0, "probe": probe}


PERSISTENT = DecisionParams(on_threshold=0.6, off_threshold=0.3, hold_on_s=6 * HOUR, hold_off_s=24 * HOUR)


def test_needs_attention_is_the_decision_not_the_threshold() -> None:
    live = _fixed_live(DecisionParams(on_threshold=0.6, off_threshold=0.3, hold_on_s=3 * HOUR, hold_off_s=DAY))
    probabilities = [0.2 if i % 5 == 4 else 0.9 for i in range(48)]  # above the threshold four reports in five
    flags = [live.observe(_event("a", i * HOUR, p), explain=False).needs_attention for i, p in enumerate(probabilities)]
    onsets = sum(1 for before, now in zip([False, *flags], flags, strict=False) if now and not before)
    assert onsets == 1  # one episode, where the plain threshold would have raised ten
    assert flags.index(True) == 3  # once the evidence held for 3 h
    assert live.observe(_event("a", 48 * HOUR, 0.9), explain=False).failure_probability == pytest.approx(0.9)


def test_a_restart_keeps_the_alarm(small_snapshot: Path, tmp_path: Path) -> None:
    store = SnapshotStore(small_snapshot)
    loaded = store.load()
    live = from_snapshot(loaded.files, loaded.manifest, loaded.version, H)
    live.decision = PERSISTENT
    live.alarms.clear()
    from devintel.models.decision import AlarmState

    live.alarms["a"] = AlarmState(active=True, raised_since=0.0, raised_count=9, changed_at=HOUR)
    files, manifest = snapshot_contents(live, loaded.files, loaded.manifest)
    manifest["decision"] = PERSISTENT.as_dict()
    target = SnapshotStore(tmp_path / "models")
    again = target.load(target.write(files, manifest))
    restarted = from_snapshot(again.files, again.manifest, again.version, H)
    assert restarted.decision == PERSISTENT
    assert restarted.alarms["a"].active
    # A healthy report right after the restart does not drop the alarm (the recovery must last 24 h) ...
    assert restarted.observe({"device_id": "a", "ts": 2 * HOUR, "battery_level": 90.0}).needs_attention
    # ... and the learning copy came back as it was written.
    assert set(restarted.challenger or {}) == set(restarted.models)


@pytest.mark.parametrize("kind", ["replaced", "repaired"])
def test_replaced_and_repaired_clear_the_alarm(kind: str) -> None:
    live = _fixed_live(PERSISTENT)
    for i in range(12):
        prediction = live.observe(_event("a", i * HOUR, 0.9), explain=False)
    assert prediction.needs_attention
    waiting = len(live.learner.labels)
    failure = live.feedback("a", 12 * HOUR, kind)
    assert "a" not in live.alarms
    assert not live.observe(
        _event("a", 13 * HOUR, 0.9), explain=False
    ).needs_attention  # raised afresh only after the hold
    if kind == "replaced":
        assert failure is not None
        assert live.learner.learned == waiting
    else:
        assert failure is None
        assert live.learner.learned == 0


def test_a_device_that_comes_back_was_no_failure() -> None:
    live = _fixed_live(PERSISTENT, LiveEvidence(offline_grace_s=HOUR, gone_for_good_s=3 * DAY))
    for i in range(24):
        live.observe(_event("lamp", i * HOUR), explain=False)
    live.availability("lamp", False, 24 * HOUR)
    for day in range(2, 20):  # off at the wall for two days, then back; the clock moves on with another device
        live.observe(_event("other", day * DAY), explain=False)
        live.tick()
        if day == 3:
            live.availability("lamp", True, day * DAY)
        if day >= 3:
            live.observe(_event("lamp", day * DAY), explain=False)
    assert live.failures == 0
    outcomes = [label for label, _ in live.learner.outcomes]
    assert len(outcomes) >= 24
    assert not any(outcomes)


def test_events_wait_while_a_device_is_suspected_and_turn_positive_when_it_is_gone() -> None:
    live = _fixed_live(PERSISTENT, LiveEvidence(offline_grace_s=HOUR, gone_for_good_s=10 * DAY))
    live.observe(_event("a", 0.0), explain=False)
    live.availability("a", False, HOUR)
    for day in range(1, 12):  # the event's horizon (7 days) passes while "a" is suspected
        live.observe(_event("other", day * DAY), explain=False)
        live.tick()
    assert live.failures == 1
    assert (True, 0.0) in [(label, p) for label, p in live.learner.outcomes]


def test_challenger_score_promotes_only_a_better_challenger() -> None:
    score = ChallengerScore(horizon_s=H, window=1000, min_positives=5, min_resolved=50)
    for i in range(300):  # the challenger raises no false alarm where the serving models raise 38
        score.update(i * HOUR, i % 10 == 0, serving_alarm=i % 10 == 0 or i % 7 == 0, challenger_alarm=i % 10 == 0)
    assert "waiting" in score.verdict()[1]  # nothing settled yet: a horizon has not passed
    score.settle(300 * HOUR + H)
    promote, why = score.verdict()
    assert promote
    assert "beats" in why
    worse = ChallengerScore(horizon_s=H, window=1000, min_positives=5, min_resolved=50)
    for i in range(100):
        worse.update(i * HOUR, i % 10 == 0, serving_alarm=i % 10 == 0, challenger_alarm=i % 10 == 0 or i % 3 == 0)
    worse.settle(100 * HOUR + H)
    assert worse.verdict()[0] is False
    marginal = ChallengerScore(horizon_s=H, window=1000, min_positives=5, min_resolved=50)
    for i in range(200):  # the challenger catches one more failure event of 20 and is otherwise the same: noise
        label = i % 10 == 0
        marginal.update(i * HOUR, label, serving_alarm=label and i != 0, challenger_alarm=label)
    marginal.settle(200 * HOUR + H)
    assert marginal.verdict()[0] is False


def test_fresh_labels_are_not_judged_before_they_settle() -> None:
    """Failures resolve at once, "no failure" only after the horizon: a challenger that alarms on everything
    must not win on the fresh, nearly all positive labels."""
    score = ChallengerScore(horizon_s=H, min_positives=5, min_resolved=10)
    for i in range(50):
        score.update(i * HOUR, True, serving_alarm=False, challenger_alarm=True)
    score.settle(50 * HOUR)
    assert score.counts()["resolved"] == 0
    assert score.verdict()[0] is False


def test_misleading_labels_do_not_degrade_the_serving_alarms(small_snapshot: Path) -> None:
    """Healthy devices reported failed at random (a lamp switched off, a wrong button): the challenger learns
    them, the serving models do not change, and their alarms are those of a run that learned nothing."""
    loaded = SnapshotStore(small_snapshot).load()

    def run(learn: bool) -> tuple[list[bool], LiveModels]:
        live = from_snapshot(loaded.files, loaded.manifest, loaded.version, H)
        live.guard = ChallengerScore(horizon_s=H, min_positives=10, min_resolved=200)
        live.learner.learn = learn
        rng = random.Random(7)
        flags = []
        for hour in range(24 * 30):
            for d in range(40):
                level = 90.0 - 0.01 * hour + rng.gauss(0.0, 1.0)
                event = {"device_id": f"d{d}", "ts": hour * HOUR, "battery_level": level, "linkquality": 120.0}
                flags.append(live.observe(event).needs_attention)
            if hour % 12 == 0:
                live.feedback(f"d{rng.randrange(40)}", hour * HOUR, "failure")  # misleading: the device is fine
            live.tick()
        return flags, live

    learned_flags, learned = run(learn=True)
    frozen_flags, frozen = run(learn=False)
    assert learned.learner.learned > 1000  # the challenger did learn the misleading labels
    assert learned.guard.promotions == 0
    assert pickle.dumps(learned.models) == pickle.dumps(frozen.models)
    assert learned_flags == frozen_flags
    assert pickle.dumps(learned.challenger) != pickle.dumps(frozen.challenger)


def test_a_promoted_challenger_serves() -> None:
    live = LiveModels(models={GLOBAL: default_model()}, thresholds={GLOBAL: 0.5}, router={}, version="v", horizon_s=H)
    live.guard = ChallengerScore(horizon_s=H, min_positives=1, min_resolved=1)
    for _ in range(30):
        live.guard.update(-2 * H, label=True, serving_alarm=False, challenger_alarm=True)
    assert live.challenger is not None
    live.challenger[GLOBAL].learn_one({"battery_level": 1.0}, True)
    before = copy.deepcopy(live.challenger)
    live.learner.resolved = 499
    live.observe({"device_id": "a", "ts": 0.0, "battery_level": 50.0})
    live.learner.resolved = 499
    live.feedback("a", HOUR)  # resolves the event: the 500th label triggers the look
    assert live.guard.promotions == 1
    probes = [{"battery_level": float(level)} for level in range(0, 100, 7)]
    assert [live.models[GLOBAL].predict_proba_one(x) for x in probes] == [
        before[GLOBAL].predict_proba_one(x) for x in probes
    ]  # the challenger as it was when it won
