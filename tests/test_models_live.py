"""LiveModels: routed prediction, live evidence of failure (feedback, offline, silence), scoring without side
effects, and snapshots of live models."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest

from devintel.contract import risk_level
from devintel.models.learners import default_model
from devintel.models.live import (
    GLOBAL,
    LiveEvidence,
    LiveModels,
    from_snapshot,
    snapshot_contents,
)
from devintel.models.scored import FeaturePacker
from devintel.models.snapshots import SnapshotStore

H = 7 * 86_400.0
HOUR = 3600.0


def _live(router: dict[str, str] | None = None, evidence: LiveEvidence | None = None) -> LiveModels:
    return LiveModels(
        models={GLOBAL: default_model(), "studio": default_model()},
        thresholds={GLOBAL: 0.5, "studio": 0.3},
        router=router or {},
        version="v1",
        horizon_s=H,
        evidence=evidence or LiveEvidence(),
    )


def _event(device: str, ts: float, home_type: str = "apartment", **fields: float) -> dict[str, object]:
    return {"device_id": device, "ts": ts, "home_type": home_type, "battery_level": 90.0, **fields}


@pytest.mark.parametrize(
    ("p", "level"),
    [
        (0.0, "minimal"),
        (0.19999, "minimal"),
        (0.2, "low"),
        (0.4, "medium"),
        (0.6, "high"),
        (0.8, "critical"),
        (1.0, "critical"),
    ],
)
def test_risk_levels_follow_the_design_bounds(p: float, level: str) -> None:
    assert risk_level(p) == level


def test_router_picks_the_home_type_model_and_its_threshold() -> None:
    live = _live(router={"studio": "studio"})
    assert live.observe(_event("a", 0.0, "studio")).model == "studio"
    assert live.observe(_event("b", 0.0, "apartment")).model == GLOBAL
    with pytest.raises(ValueError, match="router"):
        _live(router={"studio": "cottage"})


def test_feedback_resolves_waiting_events_as_positive_and_learns() -> None:
    live = _live()
    for i in range(10):
        live.observe(_event("a", i * HOUR))
    assert len(live.learner.labels) == 10
    live.feedback("a", 10 * HOUR)
    assert len(live.learner.labels) == 0
    assert live.learner.learned == 10  # every positive is learned
    assert "a" not in live.learner.features.states  # a failed device starts afresh


def test_offline_is_a_failure_only_once_gone_for_good() -> None:
    live = _live(evidence=LiveEvidence(offline_grace_s=HOUR, gone_for_good_s=24 * HOUR))
    live.observe(_event("a", 0.0))
    live.availability("a", False, 100.0)
    assert live.tick(100.0 + 2 * HOUR) == []
    live.availability("a", True, 100.0 + 2 * HOUR)  # came back (a lamp switched off at the wall): no failure
    assert live.tick(100.0 + 30 * HOUR) == []
    live.availability("a", False, 40 * HOUR)
    assert live.tick(40 * HOUR + 23 * HOUR) == []
    (failure,) = live.tick(40 * HOUR + 24 * HOUR)
    assert (failure.device_id, failure.ts, failure.evidence) == ("a", 40 * HOUR, "offline")
    assert live.learner.learned == 1


def test_silence_beyond_the_factor_of_the_usual_interval_is_a_failure_once_gone_for_good() -> None:
    evidence = LiveEvidence(silence_factor=10.0, min_silence_s=6 * HOUR, gone_for_good_s=12 * HOUR)
    live = _live(evidence=evidence)
    for i in range(30):  # hourly reports
        live.observe(_event("a", i * HOUR))
    live.observe(_event("b", 0.0))  # one report only: no usual interval yet, never "silent"
    assert live.tick(29 * HOUR + 9 * HOUR) == []
    assert live.tick(29 * HOUR + 11 * HOUR) == []  # suspected: silent past 10 intervals, not yet gone for good
    assert live.learner.labels.held("a")
    (failure,) = live.tick(29 * HOUR + 12 * HOUR)
    assert (failure.device_id, failure.ts, failure.evidence) == ("a", 29 * HOUR, "silence")


def test_score_changes_nothing() -> None:
    live = _live()
    for i in range(5):
        live.observe(_event("a", i * HOUR))
    before = pickle.dumps((live.learner.features.states, live.models, len(live.learner.labels)))
    prediction = live.score(_event("a", 6 * HOUR, battery_level=10.0))
    assert prediction.device_id == "a"
    assert pickle.dumps((live.learner.features.states, live.models, len(live.learner.labels))) == before
    assert live.score(_event("new", 0.0)).device_id == "new"
    assert "new" not in live.learner.features.states


def test_adopt_state_keeps_devices_and_waiting_labels() -> None:
    old = _live()
    for i in range(5):
        old.observe(_event("a", i * HOUR))
    fresh = _live()
    fresh.adopt_state(old)
    assert fresh.table is old.table  # every device's state, handed over as one object
    assert fresh.learner.features.states["a"] is old.learner.features.states["a"]
    assert len(fresh.learner.labels) == 5
    assert fresh.clock == old.clock


def test_snapshot_round_trip_of_live_models(small_snapshot: Path, tmp_path: Path) -> None:
    store = SnapshotStore(small_snapshot)
    loaded = store.load()
    live = from_snapshot(loaded.files, loaded.manifest, loaded.version, H)
    assert set(live.models) == set(loaded.manifest["models"])
    for i in range(50):
        live.observe(_event("a", i * HOUR))
    live.feedback("a", 50 * HOUR)
    files, manifest = snapshot_contents(live, loaded.files, loaded.manifest)
    target = SnapshotStore(tmp_path / "models")
    version = target.write(files, manifest)
    again = target.load(version)
    assert again.manifest["live"]["learned"] == live.learner.learned > 0
    assert again.manifest["live"]["base_version"] == loaded.version
    assert again.files["report/report.md"] == loaded.files["report/report.md"]
    reloaded = from_snapshot(again.files, again.manifest, version, H)
    x = live.learner.features.update(_event("z", 0.0))
    assert reloaded.models[GLOBAL].predict_proba_one(x) == live.models[GLOBAL].predict_proba_one(x)


def test_from_snapshot_refuses_a_manifest_without_models() -> None:
    with pytest.raises(ValueError, match="no models"):
        from_snapshot({}, {"models": {}}, "v", H)
    with pytest.raises(ValueError, match="holds no"):
        from_snapshot({}, {"models": {GLOBAL: {"threshold": 0.5}}}, "v", H)


def test_live_models_hold_at_most_one_event_per_label_interval() -> None:
    live = LiveModels(
        models={GLOBAL: default_model()}, thresholds={GLOBAL: 0.5}, router={}, version="v", horizon_s=H,
        label_interval_s=HOUR,
    )  # fmt: skip
    for i in range(60):  # a report every 10 minutes for 10 hours
        assert live.observe(_event("a", i * 600.0)).device_id == "a"  # every event is predicted
    assert len(live.learner.labels) == 10  # one held per hour
    live.feedback("a", 61 * 600.0)
    assert live.learner.learned == 10


def test_packed_features_unpack_to_the_same_keys_in_order_at_float32() -> None:
    packer = FeaturePacker(max_layouts=1)
    features = {"b": 1.0 / 3.0, "a": 2.5, "c": -7.0}
    packed = packer.pack(features)
    assert not isinstance(packed, dict)
    restored = packer.unpack(packed)
    assert list(restored) == ["b", "a", "c"]
    assert restored == pytest.approx(features, rel=1e-7)
    assert restored["a"] == 2.5
    other = {"z": 1.0}
    assert packer.pack(other) is other  # the layout table is full: kept as it is
    assert packer.unpack(other) is other
