"""Consolidation of warm-started models: the example buffer, determinism, and a fit nearer the optimum."""

from __future__ import annotations

import math
import pickle
import random

import numpy as np
import pytest
from river import compose, naive_bayes

from devintel.models import dense
from devintel.models.consolidate import ExampleBuffer, consolidate, model_inputs_of
from devintel.models.features import Features
from devintel.models.learners import default_model, model_inputs
from devintel.models.online import Classifier


def correlated_examples(n: int, seed: int) -> list[tuple[Features, bool]]:
    """Examples whose label follows the small difference of two strongly correlated inputs (an ill-conditioned
    problem, as a signal's 12-hour and 2-day evidence are): one SGD pass stays far from the optimum. Some examples
    lack the second input, as model inputs of a device without that signal do."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        a = rng.gauss(0.0, 1.0)
        b = a + rng.gauss(0.0, 0.05)
        x = {"a_dev": a, "b_dev": b} if rng.random() < 0.8 else {"a_dev": a}
        p = 1.0 / (1.0 + math.exp(-(a + 30.0 * (x.get("b_dev", a) - a) - 1.0)))
        out.append((x, rng.random() < p))
    return out


def optimum_loss(model: Classifier, examples: list[tuple[Features, bool]]) -> float:
    """The least mean log loss of a logistic regression on the inputs as ``model``'s scaler scales them (Newton's
    method in numpy: the oracle consolidation is judged against)."""
    scaler = model["StandardScaler"]  # type: ignore[index]
    rows = [scaler.transform_one(x) for x, _ in examples]
    design = np.array([[1.0, r.get("a_dev", 0.0), r.get("b_dev", 0.0)] for r in rows])
    y = np.array([label for _, label in examples], dtype=np.float64)
    w = np.zeros(3)
    for _ in range(50):
        p = 1.0 / (1.0 + np.exp(-design @ w))
        hessian = design.T @ (design * (p * (1 - p))[:, None]) + 1e-9 * np.eye(3)
        w -= np.linalg.solve(hessian, design.T @ (p - y))
    p = np.clip(1.0 / (1.0 + np.exp(-design @ w)), 1e-12, 1 - 1e-12)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def pipeline() -> Classifier:
    """The shipped learner without its feature shaping (the examples are model inputs already)."""
    model = default_model()
    return model["StandardScaler"] | model["LogisticRegression"]  # type: ignore[index, no-any-return]


def log_loss(model: Classifier, examples: list[tuple[Features, bool]]) -> float:
    total = 0.0
    for x, y in examples:
        p = min(max(model.predict_proba_one(x).get(True, 0.0), 1e-12), 1 - 1e-12)
        total -= math.log(p if y else 1 - p)
    return total / len(examples)


def warm(examples: list[tuple[Features, bool]]) -> tuple[Classifier, ExampleBuffer]:
    model, buffer = pipeline(), ExampleBuffer()
    for x, y in examples:
        model.learn_one(x, y)
        inputs = model_inputs_of(model, x)
        assert inputs is not None
        buffer.add(inputs, y, "group_a" if y else "group_b")
    return model, buffer


def test_the_buffer_returns_each_example_with_nan_where_an_input_is_absent() -> None:
    buffer = ExampleBuffer()
    buffer.add({"x": 1.0, "y": 2.0}, True, "a")
    buffer.add({"x": 3.0}, False, "b")
    buffer.add({"y": 4.0, "x": 5.0}, False, "a")  # another key order: another layout
    names, matrix, labels = buffer.matrix()
    assert names == ["x", "y"]
    assert len(buffer) == 3
    np.testing.assert_array_equal(matrix, np.array([[1.0, 2.0], [3.0, np.nan], [5.0, 4.0]], dtype=np.float32))
    assert labels.tolist() == [True, False, False]
    names, matrix, labels = buffer.matrix("a")
    np.testing.assert_array_equal(matrix, np.array([[1.0, 2.0], [5.0, 4.0]], dtype=np.float32))
    assert labels.tolist() == [True, False]


def test_the_buffer_keeps_dicts_when_the_packer_is_full() -> None:
    buffer = ExampleBuffer()
    buffer.packer.max_layouts = 1
    buffer.add({"x": 1.0}, True)
    buffer.add({"y": 2.0}, False)  # a second layout: kept as a dict
    names, matrix, _ = buffer.matrix()
    assert names == ["x", "y"]
    np.testing.assert_array_equal(matrix, np.array([[1.0, np.nan], [np.nan, 2.0]], dtype=np.float32))


def test_consolidation_brings_the_loss_near_the_optimum() -> None:
    train = correlated_examples(6_000, seed=1)
    model, buffer = warm(train)
    best = optimum_loss(model, train)
    one_pass = log_loss(model, train) - best
    assert consolidate(model, buffer, seed=0) > 0
    consolidated = log_loss(model, train) - best
    assert one_pass > 5e-4  # the problem is one that one pass does not solve (measured: 1.0e-3)
    assert consolidated < 0.1 * one_pass  # measured: 1.1e-5


def test_consolidation_is_deterministic_and_follows_its_group() -> None:
    examples = correlated_examples(2_000, seed=3)
    first, buffer_first = warm(examples)
    second, buffer_second = warm(examples)
    consolidate(first, buffer_first, seed=7, group="group_a")
    consolidate(second, buffer_second, seed=7, group="group_a")
    assert pickle.dumps(first) == pickle.dumps(second)
    other, buffer_other = warm(examples)
    consolidate(other, buffer_other, seed=7)  # every example, not only group_a's
    assert pickle.dumps(other) != pickle.dumps(first)


def test_consolidation_keeps_the_live_optimizer_and_the_dense_view_follows() -> None:
    examples = correlated_examples(2_000, seed=4)
    model, buffer = warm(examples)
    regression = model["LogisticRegression"]  # type: ignore[index]
    optimizer, intercept_lr = regression.optimizer, regression.intercept_lr
    probes = [x for x, _ in examples[::37]]
    before = [dense.probability(model, x) for x in probes]  # builds the dense view
    steps_before = optimizer.n_iterations
    steps = consolidate(model, buffer, seed=0)
    assert regression.optimizer is optimizer
    assert regression.intercept_lr is intercept_lr
    assert optimizer.n_iterations == steps_before + steps
    after = [dense.probability(model, x) for x in probes]
    assert after != before
    assert max(abs(a - model.predict_proba_one(x)[True]) for a, x in zip(after, probes, strict=True)) <= 1e-12


def test_the_shipped_pipeline_keeps_its_model_inputs() -> None:
    features = {"linkquality_dev": -2.0, "linkquality_dev2d": -1.0, "linkquality_tdev": -1.5}
    features |= {"linkquality_cusum_down": 3.0, "battery": 0.0}
    assert model_inputs_of(default_model(), features) == model_inputs(features)


@pytest.mark.parametrize("model", [naive_bayes.GaussianNB(), compose.Pipeline(naive_bayes.GaussianNB())])
def test_other_learners_are_left_as_they_learned(model: Classifier) -> None:
    examples = correlated_examples(200, seed=5)
    for x, y in examples:
        model.learn_one(x, y)
    assert model_inputs_of(model, examples[0][0]) is None
    buffer = ExampleBuffer()
    buffer.add(examples[0][0], examples[0][1])
    before = pickle.dumps(model)
    assert consolidate(model, buffer, seed=0) == 0
    assert pickle.dumps(model) == before


def test_no_examples_no_steps() -> None:
    model = pipeline()
    assert consolidate(model, ExampleBuffer(), seed=0) == 0
