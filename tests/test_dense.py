"""The dense prediction path equals River's ``predict_proba_one`` to 1e-12 after every kind of update."""

from __future__ import annotations

import math
import pickle
import random

import numpy as np
import pytest
from river import compose, naive_bayes

from devintel.generators import generate
from devintel.models import dense
from devintel.models.features import FeatureExtractor, Features
from devintel.models.learners import default_model, model_inputs
from devintel.models.online import Classifier, events

TOLERANCE = 1e-12


@pytest.fixture(scope="module")
def stream() -> list[Features]:
    """Feature vectors of a generated stream (every device type, batteries, failures)."""
    frame = generate(samples=6_000, days=30, seed=21)
    extractor = FeatureExtractor()
    return [extractor.update(event) for event in events(frame)]


def river_p(model: Classifier, x: Features) -> float:
    return float(model.predict_proba_one(x).get(True, 0.0))


def worst(model: Classifier, probes: list[Features]) -> float:
    """The largest difference between the dense view and River over ``probes``."""
    return max(abs(dense.probability(model, x) - river_p(model, x)) for x in probes)


def test_fresh_model_predicts_as_river(stream: list[Features]) -> None:
    model = default_model()
    assert worst(model, stream[:50]) <= TOLERANCE


def test_equal_after_every_learn_one(stream: list[Features]) -> None:
    model = default_model()
    rng = random.Random(3)
    probes = stream[::97]
    checked = 0
    for i, x in enumerate(stream[:1_500]):
        model.learn_one(x, rng.random() < 0.2)
        # The learned example itself after every update, a spread of others now and then.
        assert abs(dense.probability(model, x) - river_p(model, x)) <= TOLERANCE
        if i % 50 == 0:
            assert worst(model, probes) <= TOLERANCE
            checked += 1
    assert checked == 30
    spread = [dense.probability(model, x) for x in probes]
    assert max(spread) - min(spread) > 0.1  # the model learned something: the check is not of constants


def test_equal_after_a_pickle_round_trip_and_diverging_copies(stream: list[Features]) -> None:
    model = default_model()
    for i, x in enumerate(stream[:800]):
        model.learn_one(x, i % 7 == 0)
    probes = stream[800::40]
    before = [dense.probability(model, x) for x in probes]
    restored = pickle.loads(pickle.dumps(model))
    assert worst(restored, probes) <= TOLERANCE
    assert [dense.probability(restored, x) for x in probes] == pytest.approx(before, abs=TOLERANCE)
    for i, x in enumerate(stream[800:1_200]):
        restored.learn_one(x, i % 3 == 0)  # only the copy learns: each keeps its own view
    assert worst(restored, probes) <= TOLERANCE
    assert worst(model, probes) <= TOLERANCE
    assert [dense.probability(model, x) for x in probes] == pytest.approx(before, abs=TOLERANCE)


def test_equal_when_new_inputs_appear(stream: list[Features]) -> None:
    model = default_model()
    plain = [x for x in stream if "type_smoke_detector" not in x][:300]
    for i, x in enumerate(plain):
        model.learn_one(x, i % 5 == 0)
    novel = dict(stream[-1])
    for key in [k for k in novel if k.startswith("type_")]:
        del novel[key]
    novel["type_smoke_detector"] = 1.0
    novel["brand_new_signal_ewm"] = 3.5  # passes through model_inputs: an input River never saw
    assert "brand_new_signal_ewm" in model_inputs(novel)
    assert abs(dense.probability(model, novel) - river_p(model, novel)) <= TOLERANCE
    model.learn_one(novel, True)
    assert abs(dense.probability(model, novel) - river_p(model, novel)) <= TOLERANCE
    assert worst(model, plain[::10]) <= TOLERANCE


def test_equal_after_the_scaler_learns_alone(stream: list[Features]) -> None:
    model = default_model()
    for i, x in enumerate(stream[:300]):
        model.learn_one(x, i % 4 == 0)
    probes = stream[300::60]
    before = dense.probability(model, probes[0])
    scaler = model["StandardScaler"]  # type: ignore[index]
    for x in stream[300:400]:
        scaler.learn_one(model_inputs(x))
    assert worst(model, probes) <= TOLERANCE
    assert dense.probability(model, probes[0]) != before


def test_saturates_as_river(stream: list[Features]) -> None:
    model = default_model()
    for i, x in enumerate(stream[:200]):
        model.learn_one(x, i % 4 == 0)
    regression = model["LogisticRegression"]  # type: ignore[index]
    for intercept, expected in ((40.0, 1.0), (-40.0, 0.0)):
        regression.intercept = intercept
        x = stream[0]
        assert river_p(model, x) == expected
        assert dense.probability(model, x) == expected


def test_matrix_scoring_equals_row_by_row(stream: list[Features]) -> None:
    model = default_model()
    for i, x in enumerate(stream[:1_000]):
        model.learn_one(x, i % 6 == 0)
    rows = [model_inputs(x) for x in stream[1_000:2_000]]
    names = sorted({name for x in rows for name in x} | {"never_seen"})
    column = {name: j for j, name in enumerate(names)}
    matrix = np.full((len(rows), len(names)), np.nan)
    for i, x in enumerate(rows):
        for name, value in x.items():
            matrix[i, column[name]] = value
    view = dense.view(model)
    assert view is not None
    expected = np.array([river_p(model, x) for x in stream[1_000:2_000]])
    assert np.max(np.abs(view.probabilities(matrix, names) - expected)) <= TOLERANCE


def test_other_learners_predict_through_river(stream: list[Features]) -> None:
    model: Classifier = compose.FuncTransformer(model_inputs) | naive_bayes.GaussianNB()
    for i, x in enumerate(stream[:300]):
        model.learn_one(x, i % 4 == 0)
    assert not dense.supports(model)
    assert dense.view(model) is None
    assert all(dense.probability(model, x) == river_p(model, x) for x in stream[300:400])


def test_models_sharing_their_inputs_predict_as_river(stream: list[Features]) -> None:
    first, second = default_model(), default_model()
    for i, x in enumerate(stream[:600]):
        first.learn_one(x, i % 5 == 0)
        if i % 3 == 0:
            second.learn_one(x, i % 2 == 0)
    for x in stream[600::25]:
        both = dense.probabilities([first, second], x)
        assert abs(both[0] - river_p(first, x)) <= TOLERANCE
        assert abs(both[1] - river_p(second, x)) <= TOLERANCE
        first.learn_one(x, False)  # learning between predictions: each view follows its own model


def test_inputs_known_from_another_model_are_reused_only_for_the_same_features(stream: list[Features]) -> None:
    serving, learning = default_model(), default_model()
    for i, x in enumerate(stream[:500]):
        serving.learn_one(x, i % 5 == 0)
        learning.learn_one(x, i % 4 == 0)
    other: Classifier = compose.FuncTransformer(lambda f: dict(f)) | naive_bayes.GaussianNB()
    for x in stream[500::37]:
        p, known = dense.probability_with_inputs(serving, x)
        assert known is not None
        assert abs(p - river_p(serving, x)) <= TOLERANCE
        assert abs(dense.probability(learning, x, known=known) - river_p(learning, x)) <= TOLERANCE
        copy = dict(x)  # another object: the known inputs are not trusted for it
        copy["gap_ewm"] += 3.0  # an input every event has
        assert abs(dense.probability(learning, copy, known=known) - river_p(learning, copy)) <= TOLERANCE
        assert dense.probability_with_inputs(other, x)[1] is None


def test_pushes_are_river_weights_times_scaled_inputs(stream: list[Features]) -> None:
    """The dense view's pushes explain a prediction as River's weights and scaler do (``learners.reasons``)."""
    model = default_model()
    rng = random.Random(5)
    for x in stream[:1_000]:
        model.learn_one(x, rng.random() < 0.2)
    view = dense.view(model)
    assert view is not None
    assert isinstance(model, compose.Pipeline)
    scaler, regression = model["StandardScaler"], model["LogisticRegression"]
    for x in stream[1_000::41]:
        inputs = model_inputs(x)
        scaled = scaler.transform_one(inputs)
        pushes = view.pushes(inputs)
        assert len(pushes) == len(inputs)
        for (name, push), scaled_value in zip(zip(inputs, pushes, strict=True), scaled.values(), strict=True):
            assert push == pytest.approx(regression.weights.get(name, 0.0) * scaled_value, rel=1e-12, abs=1e-12)
        assert sum(pushes) + regression.intercept == pytest.approx(
            math.log(river_p(model, x) / (1.0 - river_p(model, x))), rel=1e-9, abs=1e-9
        )
