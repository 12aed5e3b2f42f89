"""The contract of every registered learner (:data:`devintel.models.learners.LEARNERS`), parametrised over the
registry: on the online path it learns and predicts probabilities, pickles to the same predictions, is the same
model for the same seed, and :func:`reasons` explains its predictions with telemetry signals."""

from __future__ import annotations

import pickle
from typing import Any

import pytest

from devintel.generators import generate
from devintel.models.features import FeatureExtractor, Features
from devintel.models.learners import (
    FAILING_HIGH,
    FAILING_LOW,
    LEARNERS,
    default_model,
    model_inputs,
    on_inputs,
    reasons,
)
from devintel.models.online import OnlineLearner, events, failure_times, warm_start

H = 7 * 86_400.0
#: Every signal :func:`reasons` may name.
SIGNALS = {*FAILING_LOW, *FAILING_HIGH, "value", "missed_reports", "connection_drops", "restart_count"}


@pytest.fixture(scope="module")
def stream() -> tuple[list[dict[str, object]], dict[str, float]]:
    frame = generate(samples=12_000, days=40, seed=8)
    return list(events(frame)), failure_times(frame)


@pytest.fixture(scope="module")
def probes() -> list[Features]:
    extractor = FeatureExtractor()
    return [extractor.update(e) for e in list(events(generate(samples=2_000, days=15, seed=9)))[::20]]


def _trained(name: str, seed: int, stream: tuple[list[dict[str, object]], dict[str, float]]) -> OnlineLearner:
    learner = OnlineLearner(model=LEARNERS[name].build(seed), horizon_s=H, seed=1)
    warm_start(learner, stream[0], stream[1])
    return learner


def test_exactly_one_learner_ships_and_it_is_the_default() -> None:
    shipped = [learner for learner in LEARNERS.values() if learner.shipped]
    assert len(shipped) == 1
    assert repr(shipped[0].build(0)) == repr(default_model())


@pytest.mark.parametrize("name", list(LEARNERS))
def test_learns_predicts_pickles_and_is_seeded(
    name: str, stream: tuple[list[dict[str, object]], dict[str, float]], probes: list[Features]
) -> None:
    trained = _trained(name, 7, stream)
    assert trained.learned > 200
    again = _trained(name, 7, stream)
    restored = pickle.loads(pickle.dumps(trained.model))
    probabilities = []
    for x in probes:
        p = trained.predict(x)
        assert 0.0 <= p <= 1.0
        assert again.predict(x) == p  # same seed, same stream: the same model
        assert restored.predict_proba_one(x).get(True, 0.0) == trained.model.predict_proba_one(x).get(True, 0.0)
        probabilities.append(p)
    assert len(set(probabilities)) > 1, "the model says the same for every device"


@pytest.mark.parametrize("name", list(LEARNERS))
def test_every_learner_is_explained(
    name: str, stream: tuple[list[dict[str, object]], dict[str, float]], probes: list[Features]
) -> None:
    model = _trained(name, 7, stream).model
    explained = 0
    for x in probes:
        named = reasons(model, x)
        assert len(named) <= 3
        assert len(set(named)) == len(named)
        assert set(named) <= SIGNALS, named
        assert reasons(model, x) == named  # explaining does not change the model
        assert reasons(model, x, top=0) == []
        explained += bool(named)
    assert explained > 0, f"{name}: no prediction was explained"


class _OnlyLink:
    """A classifier whose failure probability rises with the link's drop alone (not linear: no ``weights``)."""

    def learn_one(self, x: dict[str, float], y: bool) -> None:
        pass

    def predict_proba_one(self, x: dict[str, float]) -> dict[bool, float]:
        p = min(1.0, 0.1 + 0.01 * x.get("linkquality_drop", 0.0))
        return {True: p, False: 1.0 - p}


def test_a_learner_without_weights_is_explained_by_occlusion() -> None:
    """Occlusion names exactly the signal the model listens to, and nothing when that signal did not push."""
    model: Any = on_inputs(_OnlyLink())
    extractor = FeatureExtractor()
    x: Features = {}
    for i in range(120):
        lqi = 180.0 + (i % 3) if i < 90 else 180.0 - 4.0 * (i - 90)
        event = {"device_id": "d", "ts": i * 3600.0, "linkquality": lqi, "battery_level": 80.0 - 0.5 * i}
        x = extractor.update(event | {"device_type": "motion_sensor", "power_source": "battery"})
    assert model_inputs(x)["linkquality_drop"] > 0
    assert reasons(model, x) == ["linkquality"]
    healthy = FeatureExtractor()
    for i in range(40):
        x = healthy.update({"device_id": "h", "ts": i * 3600.0, "linkquality": 180.0})
    assert reasons(model, x) == []
