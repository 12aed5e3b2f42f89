"""The River learners devintel knows (the registry), the one it ships, the inputs they see, and why a prediction
was made.

The learner is a River pipeline: :func:`model_inputs` shapes the per-device features into evidence of
failure, ``preprocessing.StandardScaler`` scales it, and ``linear_model.LogisticRegression`` weighs it.
It was chosen by measurement (``bench/bench_learners.py``): on homes never seen in training it had the
best F1 of the River learners compared, it learns and predicts in microseconds, pickles to a few KB,
and its weights say which signals drove a prediction (:func:`reasons`).

:func:`model_inputs` keeps what transfers from one home to another: a signal's deviation from the
device's own baseline in the direction that failing takes it (a link weakens, latency rises) over 12 hours,
over 2 days, net of the baseline's steady drift, and as a CUSUM; lost reports, drops, restarts, errors,
how unlikely the current run of identical values is, a low battery, slopes and peaks, and the device's
type (every other feature passes through). It leaves out what does not: the calendar, the device's age
and uptime, and raw levels whose meaning changes with the device type (they let a learner memorise the
training homes; held-out F1 fell when they were in).

:data:`LEARNERS` is the registry: every learner devintel can build, by name, each a :class:`Learner` with a
seeded factory. The shipped one is ``logistic`` (:func:`default_model`); the others are the candidates
``bench/bench_learners.py`` compares. ``tests/test_learner_contract.py`` runs every registered learner through
the same contract: it learns and predicts on the online path, pickles, is deterministic for a seed, and is
explained by :func:`reasons`. A learner added to the registry is held to that contract without a new test.

:func:`reasons` explains any of them. A pipeline whose last step is linear (it has ``weights``, as
``LogisticRegression`` does) is explained exactly: an input's push is its weight times its value after the
pipeline's transformers (the scaler). Any other learner is explained by occlusion: a signal's push is how much
the failure probability falls when that signal's inputs are left out of the example (River learners treat an
absent feature as unobserved). Both rank signals the same way and name only those that pushed towards failure.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from river import compose, forest, linear_model, naive_bayes, optim, preprocessing, tree

from devintel.models.dense import DenseView, Known, inputs_of, view
from devintel.models.features import Features
from devintel.models.online import Classifier

#: Signals that fall when a device is failing (battery, radio link).
FAILING_LOW: Final[tuple[str, ...]] = ("battery_level", "battery_voltage", "linkquality", "signal_strength")
#: Signals that rise when a device is failing (latency, errors, heat).
FAILING_HIGH: Final[tuple[str, ...]] = ("response_time", "error_rate", "temperature")
#: Features the learner never sees: the calendar, age and uptime ...
LEFT_OUT_PREFIXES: Final[tuple[str, ...]] = ("hour_", "season_", "weekend", "age_days", "uptime_hours")
#: ... features it sees only as shaped inputs (a CUSUM in the failing direction) ...
LEFT_OUT_SUFFIXES: Final[tuple[str, ...]] = ("_cusum_up", "_cusum_down")
#: ... and raw latest levels, whose meaning changes with the device type, and raw value statistics.
LEFT_OUT: Final[frozenset[str]] = frozenset(
    (
        *FAILING_LOW,
        *FAILING_HIGH,
        "value_repeats",
        "value_stuck_surprise",
        "value_var_ratio",
        "value_flip_ratio",
        "gap_ratio",
        "gap_z",
    )
)
#: Largest stuck-value surprise counted (nats): beyond it a frozen reading is no more certain.
STUCK_SURPRISE_CAP: Final = 50.0
#: Largest unusual-gap score counted (spreads): beyond it a gap is no more surely a lost report.
GAP_EXCESS_CAP: Final = 10.0
#: Battery level (%) below which every point counts as evidence of depletion.
LOW_BATTERY: Final = 30.0


#: Per signal of FAILING_LOW: the features read (deviation over 12 h and 2 days, net of drift, CUSUM down) and the
#: inputs made (the drops and the CUSUM); the same for FAILING_HIGH (rises, CUSUM up). Spelled once, not per event.
_FALLING: Final = tuple(
    (f"{n}_dev", f"{n}_dev2d", f"{n}_tdev", f"{n}_cusum_down", f"{n}_drop", f"{n}_drop2d", f"{n}_tdrop", f"{n}_cusum")
    for n in FAILING_LOW
)
_RISING: Final = tuple(
    (f"{n}_dev", f"{n}_dev2d", f"{n}_tdev", f"{n}_cusum_up", f"{n}_rise", f"{n}_rise2d", f"{n}_trise", f"{n}_cusum")
    for n in FAILING_HIGH
)


def model_inputs(features: Features) -> Features:
    """The evidence the learner sees, from one event's features (see the module docstring)."""
    x: Features = {}
    for dev_key, dev2d_key, tdev_key, cusum_key, drop, drop2d, tdrop, cusum in _FALLING:
        dev = features.get(dev_key)
        if dev is not None:
            x[drop] = max(-dev, 0.0)
            x[drop2d] = max(-features[dev2d_key], 0.0)
            x[tdrop] = max(-features[tdev_key], 0.0)
            x[cusum] = features[cusum_key]
    for dev_key, dev2d_key, tdev_key, cusum_key, rise, rise2d, trise, cusum in _RISING:
        dev = features.get(dev_key)
        if dev is not None:
            x[rise] = max(dev, 0.0)
            x[rise2d] = max(features[dev2d_key], 0.0)
            x[trise] = max(features[tdev_key], 0.0)
            x[cusum] = features[cusum_key]
    level = features.get("battery_level_ewm")
    if level is not None:
        x["battery_low"] = max(LOW_BATTERY - level, 0.0)
    gap = features.get("gap_z")
    if gap is not None:
        x["gap_excess"] = min(max(gap, 0.0), GAP_EXCESS_CAP)
    if "value_repeats" in features:
        x["value_stuck"] = min(features["value_stuck_surprise"], STUCK_SURPRISE_CAP)
        x["value_frozen"] = -math.log(features["value_var_ratio"] + 1e-3)
        x["value_flips_lost"] = max(1.0 - features["value_flip_ratio"], 0.0)
    passes = _PASSES
    for name, value in features.items():
        through = passes.get(name)
        if through is None:
            through = passes[name] = passes_through(name)
        if through and name not in x:
            x[name] = value
    return x


def passes_through(name: str) -> bool:
    """Whether :func:`model_inputs` hands the feature ``name`` to the learner as it is (unless it made an input of
    that name itself)."""
    return not name.startswith(LEFT_OUT_PREFIXES) and not name.endswith(LEFT_OUT_SUFFIXES) and name not in LEFT_OUT


#: :func:`passes_through` by feature name, memoised (the names are the feature extractor's fixed vocabulary).
_PASSES: dict[str, bool] = {}


#: The signal each model input speaks for, by prefix (checked in order; the first match names it).
_SIGNAL_OF_PREFIX: Final[tuple[tuple[str, str], ...]] = (
    *((name, name) for name in FAILING_LOW + FAILING_HIGH),
    ("battery_low", "battery_level"),
    ("value_", "value"),
    ("gap_", "missed_reports"),
    ("drops_", "connection_drops"),
    ("restarts_", "restart_count"),
)


def signal_of(model_input: str) -> str | None:
    """The telemetry signal a model input is evidence about (``linkquality_drop2d`` -> ``linkquality``), or None
    for inputs that describe the device rather than its health (its type, its power source)."""
    try:
        return _SIGNAL_OF[model_input]
    except KeyError:
        pass
    found = next((signal for prefix, signal in _SIGNAL_OF_PREFIX if model_input.startswith(prefix)), None)
    if len(_SIGNAL_OF) < _SIGNAL_OF_KEPT:
        _SIGNAL_OF[model_input] = found
    return found


#: :func:`signal_of` by model input, memoised (the inputs are a fixed vocabulary; the bound guards odd callers).
_SIGNAL_OF: dict[str, str | None] = {}
_SIGNAL_OF_KEPT: Final = 4096


def reasons(model: Classifier, features: Features, top: int = 3, known: Known | None = None) -> list[str]:
    """The signals that pushed this prediction towards failure, most important first (at most ``top``).

    A signal's push is the sum of its inputs' pushes (see the module docstring: exact for a linear last step,
    by occlusion for any other learner); only signals that pushed towards failure are named. ``model`` is a
    pipeline that starts with ``compose.FuncTransformer(model_inputs)``, as every registered learner does.
    A model of the shipped shape is explained from its dense view (:mod:`~devintel.models.dense`: the same pushes
    as River's weights times scaled values, to rounding), reusing ``known`` model inputs of ``features``."""
    if top <= 0:
        return []
    dense = view(model)
    if dense is not None:
        push = _dense_push(dense, features, known)
    else:
        steps = _steps(model)
        push = _linear_push(steps, features) if hasattr(steps[-1], "weights") else _occlusion_push(steps, features)
    ranked = sorted((p, s) for s, p in push.items() if p > 0.0)
    return [signal for _, signal in reversed(ranked[-top:])]


def _steps(model: Classifier) -> list[Any]:
    """The steps of a River pipeline (a lone estimator is a pipeline of one step)."""
    steps = getattr(model, "steps", None)
    return list(steps.values()) if steps is not None else [model]


def _transformed(steps: list[Any], x: Features) -> Features:
    """``x`` after every step but the last (the transformers, without learning from ``x``)."""
    for step in steps[:-1]:
        x = step.transform_one(x)
    return x


def _linear_push(steps: list[Any], features: Features) -> dict[str, float]:
    """Each signal's push under a linear last step: the sum of weight times transformed value of its inputs."""
    weights = steps[-1].weights
    push: dict[str, float] = {}
    for name, value in _transformed(steps, features).items():
        signal = signal_of(name)
        if signal is not None:
            push[signal] = push.get(signal, 0.0) + weights.get(name, 0.0) * value
    return push


def _dense_push(dense: DenseView, features: Features, known: Known | None) -> dict[str, float]:
    """:func:`_linear_push` of a model of the shipped shape, from its dense view."""
    x = inputs_of(dense, features, known)
    push: dict[str, float] = {}
    for name, term in zip(x, dense.pushes(x), strict=True):
        signal = signal_of(name)
        if signal is not None:
            push[signal] = push.get(signal, 0.0) + term
    return push


def _occlusion_push(steps: list[Any], features: Features) -> dict[str, float]:
    """Each signal's push for any learner: the failure probability with the example as it is, less the probability
    with that signal's model inputs left out (the first step makes the model inputs; the rest see the rest)."""
    inputs = steps[0].transform_one(features) if len(steps) > 1 else dict(features)
    rest = steps[1:] if len(steps) > 1 else steps

    def probability(x: Features) -> float:
        return float(rest[-1].predict_proba_one(_transformed(rest, x)).get(True, 0.0))

    whole = probability(inputs)
    by_signal: dict[str, list[str]] = {}
    for name in inputs:
        signal = signal_of(name)
        if signal is not None:
            by_signal.setdefault(signal, []).append(name)
    return {
        signal: whole - probability({k: v for k, v in inputs.items() if k not in names})
        for signal, names in by_signal.items()
    }


def default_model() -> Classifier:
    """A fresh copy of the learner devintel ships (see the module docstring)."""
    model: Classifier = (
        compose.FuncTransformer(model_inputs)
        | preprocessing.StandardScaler()
        | linear_model.LogisticRegression(optimizer=optim.SGD(0.01))
    )
    return model


def on_inputs(learner: Any) -> Classifier:
    """A River estimator behind :func:`model_inputs`, as every registered learner is."""
    model: Classifier = compose.FuncTransformer(model_inputs) | learner
    return model


@dataclass(frozen=True)
class Learner:
    """One registered learner: how to build a fresh one for a seed, and what it is."""

    name: str
    build: Callable[[int], Classifier]
    """A fresh, untrained pipeline; the seed drives whatever randomness the learner has (same seed, same model)."""
    description: str
    shipped: bool = False
    """Whether devintel ships it (exactly one registered learner does: :func:`default_model`)."""


#: Every learner devintel can build, by name (see the module docstring); ``logistic`` is the one it ships.
LEARNERS: Final[dict[str, Learner]] = {
    learner.name: learner
    for learner in (
        Learner(
            "logistic",
            lambda _seed: default_model(),
            "StandardScaler + LogisticRegression (SGD 0.01); deterministic, explained exactly by its weights",
            shipped=True,
        ),
        Learner(
            "hoeffding_tree",
            lambda _seed: on_inputs(tree.HoeffdingTreeClassifier(grace_period=100, delta=1e-5)),
            "Hoeffding tree (grace period 100, delta 1e-5); deterministic",
        ),
        Learner(
            "hoeffding_adaptive_tree",
            lambda seed: on_inputs(tree.HoeffdingAdaptiveTreeClassifier(grace_period=100, delta=1e-5, seed=seed)),
            "Hoeffding adaptive tree (grace period 100, delta 1e-5), seeded",
        ),
        Learner(
            "arf",
            lambda seed: on_inputs(forest.ARFClassifier(n_models=3, seed=seed)),
            "adaptive random forest of 3 trees, seeded",
        ),
        Learner(
            "gaussian_nb", lambda _seed: on_inputs(naive_bayes.GaussianNB()), "Gaussian naive Bayes; deterministic"
        ),
    )
}
