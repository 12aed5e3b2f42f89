"""A dense view of the shipped learner's parameters, for predictions: the same probability as River, faster.

River stays the learner: models learn through ``learn_one`` and are pickled as River pipelines. Predicting
through River walks dicts (``FuncTransformer`` -> ``StandardScaler.transform_one`` -> the logistic regression's
dot product) at every event; :class:`DenseView` keeps the scaler's means and the logistic regression's weights
divided by the scaler's standard deviations as numpy arrays over a fixed feature order, and computes

    p = sigmoid(intercept + sum over the inputs x_i present: (x_i - mean_i) * weight_i / std_i)

which is River's arithmetic (an input River has not seen, or of zero variance, counts 0, as River scales it to
0). The view follows the model: before each prediction it compares a stamp of the model's state (the optimizer's
step count, the intercept, the scaler's counts) with the one it was built from and rebuilds when they differ, so
it is never stale after ``learn_one``, ``learn_many``, a scaler learning alone, or new inputs appearing; a
pickled copy of a model is another object and gets its own view. ``tests/test_dense.py`` proves it equal to
River's ``predict_proba_one`` to 1e-12 after every kind of update.

:func:`probability` is the entry point: the dense view of a model of the shipped shape
(:func:`~devintel.models.learners.default_model`: function transformers, ``StandardScaler``, ``LogisticRegression``
with the log loss), River's ``predict_proba_one`` for any other learner. :meth:`DenseView.probabilities` scores
a whole matrix of inputs at once.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Final

import numpy as np
import numpy.typing as npt
from river import compose, linear_model, optim, preprocessing

from devintel.models.features import Features, features_read_by

#: Views kept (one per live model object); past this the cache starts afresh (models are replaced on reload).
MAX_VIEWS: Final = 64
#: Key orders of model inputs remembered per view (a handful in practice: one per device type and field pattern).
MAX_LAYOUTS: Final = 4096
#: River's sigmoid saturates here (``river.utils.math.sigmoid``).
_SATURATED: Final = 30.0


def pipeline_parts(model: object) -> tuple[list[Callable[[Features], Features]], Any, Any] | None:
    """(the function transformers, the scaler, the logistic regression) of a pipeline of the shipped shape."""
    if not isinstance(model, compose.Pipeline):
        return None
    steps = list(model.steps.values())
    if len(steps) < 2:
        return None
    *transformers, scaler, regression = steps
    if not all(isinstance(step, compose.FuncTransformer) for step in transformers):
        return None
    if not isinstance(scaler, preprocessing.StandardScaler) or not scaler.with_std or scaler.window_size is not None:
        return None
    if not isinstance(regression, linear_model.LogisticRegression) or not isinstance(regression.loss, optim.losses.Log):
        return None
    return [step.func for step in transformers], scaler, regression


def supports(model: object) -> bool:
    """Whether ``model`` has the shape a :class:`DenseView` computes exactly."""
    return pipeline_parts(model) is not None


class DenseView:
    """The parameters of one River pipeline as arrays (see the module docstring)."""

    def __init__(self, model: object) -> None:
        shape = pipeline_parts(model)
        if shape is None:
            raise TypeError(f"no dense view of {type(model).__name__}: see devintel.models.dense.supports")
        self.model = model
        self._funcs, self._scaler, self._regression = shape
        self._stamp: tuple[float, ...] | None = None
        self.names: list[str] = []
        """The feature order of the arrays."""
        self.index: dict[str, int] = {}
        self.mean: npt.NDArray[np.float64] = np.zeros(1)
        self.coef: npt.NDArray[np.float64] = np.zeros(1)
        """Weight over standard deviation (0 where the variance is 0); the last slot is 0, for unseen inputs."""
        self.intercept = 0.0
        self._layouts: dict[tuple[str, ...], npt.NDArray[np.intp]] = {}
        """Rows of the arrays for each key order of model inputs seen (valid while ``names`` does not change)."""
        self._gathered: dict[tuple[str, ...], tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]] = {}
        """``mean`` and ``coef`` at each layout's rows (valid until the arrays are rebuilt)."""
        self.rebuilds = 0

    def _state(self) -> tuple[float, ...]:
        regression = self._regression
        counts = self._scaler.counts
        return (
            regression.optimizer.n_iterations,
            regression.intercept,
            len(regression._weights),
            len(counts),
            sum(counts.values()),
        )

    def refresh(self) -> None:
        """Rebuild the arrays when the model changed since they were built."""
        stamp = self._state()
        if stamp == self._stamp:
            return
        scaler, regression = self._scaler, self._regression
        weights = regression._weights.to_dict()
        names = list(dict.fromkeys([*scaler.means, *weights]))
        if names != self.names:
            self.names, self.index = names, {name: i for i, name in enumerate(names)}
            self._layouts.clear()
        means, variances = scaler.means, scaler.vars
        mean = np.zeros(len(names) + 1)
        coef = np.zeros(len(names) + 1)
        for i, name in enumerate(names):
            variance = variances.get(name, 0.0)
            mean[i] = means.get(name, 0.0)
            # River scales (x - mean) / var ** 0.5, and to 0 when the variance is 0.
            coef[i] = weights.get(name, 0.0) / variance**0.5 if variance else 0.0
        self.mean, self.coef = mean, coef
        self._gathered.clear()
        self.intercept = float(regression.intercept)
        self._stamp = stamp
        self.rebuilds += 1

    @property
    def inputs_function(self) -> list[Callable[[Features], Features]]:
        """The pipeline's function transformers' functions, in order (what makes model inputs of features)."""
        return list(self._funcs)

    def inputs(self, features: Features) -> Features:
        """What the pipeline's function transformers make of ``features`` (the model inputs)."""
        x = features
        for func in self._funcs:
            x = func(x)
        return x

    def _layout(self, keys: tuple[str, ...]) -> npt.NDArray[np.intp]:
        rows = self._layouts.get(keys)
        if rows is None:
            unseen = len(self.names)
            rows = np.fromiter((self.index.get(k, unseen) for k in keys), dtype=np.intp, count=len(keys))
            if len(self._layouts) < MAX_LAYOUTS:
                self._layouts[keys] = rows
        return rows

    def raw(self, x: Mapping[str, float]) -> float:
        """The logit of model inputs ``x`` (no refresh: call :meth:`refresh` first). ``x`` is read once per object:
        change model inputs by making new ones, not in place (as the input transforms do)."""
        keys, values = _values(x)
        gathered = self._gathered.get(keys)
        if gathered is None:
            rows = self._layout(keys)
            gathered = (self.mean[rows], self.coef[rows])
            if len(self._gathered) < MAX_LAYOUTS:
                self._gathered[keys] = gathered
        mean, coef = gathered
        return float(np.dot(values - mean, coef)) + self.intercept

    def pushes(self, x: Mapping[str, float]) -> list[float]:
        """Each model input's push on the logit, in the order of ``x`` (model inputs): its weight times its scaled
        value, River's ``weights[i] * StandardScaler.transform_one(x)[i]`` (to rounding; 0 for an input River has
        not seen or of zero variance). The logit is their sum plus the intercept."""
        self.refresh()
        rows = self._layout(tuple(x))
        values = np.fromiter(x.values(), dtype=np.float64, count=len(rows))
        terms: list[float] = ((values - self.mean[rows]) * self.coef[rows]).tolist()
        return terms

    def probability(self, features: Features) -> float:
        """The failure probability of one feature vector: River's ``predict_proba_one(features)[True]``."""
        return self.probability_of_inputs(self.inputs(features))

    def probability_of_inputs(self, x: Mapping[str, float]) -> float:
        """The failure probability of model inputs ``x`` (what :meth:`inputs` made of a feature vector): several
        models with the same input transform can share one computation of it (:func:`probabilities`)."""
        self.refresh()
        return _sigmoid(self.raw(x))

    def probabilities(self, matrix: npt.NDArray[np.float64], names: Sequence[str]) -> npt.NDArray[np.float64]:
        """The failure probability of every row of a matrix of model inputs (columns ``names``, NaN: absent), as
        :meth:`probability` computes it row by row."""
        self.refresh()
        unseen = len(self.names)
        rows = np.fromiter((self.index.get(k, unseen) for k in names), dtype=np.intp, count=len(names))
        present = ~np.isnan(matrix)
        terms = np.where(present, (matrix - self.mean[rows]) * self.coef[rows], 0.0)
        raw = terms.sum(axis=1) + self.intercept
        clipped = np.clip(raw, -_SATURATED, _SATURATED)
        p: npt.NDArray[np.float64] = 1.0 / (1.0 + np.exp(-clipped))
        p[raw < -_SATURATED] = 0.0
        p[raw > _SATURATED] = 1.0
        return p

    def probabilities_of_columns(
        self, columns: Mapping[str, npt.NDArray[np.float64]], size: int
    ) -> npt.NDArray[np.float64]:
        """:meth:`probabilities` of model inputs given as one array per input (NaN: absent), ``size`` rows, without
        a matrix of them all."""
        self.refresh()
        raw = np.full(size, self.intercept)
        for name, values in columns.items():
            i = self.index.get(name)
            if i is None or self.coef[i] == 0.0:
                continue  # River scales an unseen input, or one of zero variance, to 0
            term = (values - self.mean[i]) * self.coef[i]
            raw += np.where(np.isnan(values), 0.0, term)
        clipped = np.clip(raw, -_SATURATED, _SATURATED)
        p: npt.NDArray[np.float64] = 1.0 / (1.0 + np.exp(-clipped))
        p[raw < -_SATURATED] = 0.0
        p[raw > _SATURATED] = 1.0
        return p


#: The latest model inputs :func:`_values` read, with their keys and values (a serving model and the live learning
#: copy score the same inputs one after the other).
_LAST_VALUES: list[tuple[Mapping[str, float], tuple[str, ...], npt.NDArray[np.float64]]] = []


def _values(x: Mapping[str, float]) -> tuple[tuple[str, ...], npt.NDArray[np.float64]]:
    """The keys of model inputs ``x`` in order, and its values as an array; read once for the same object (model
    inputs are not changed once made)."""
    if _LAST_VALUES and _LAST_VALUES[0][0] is x:
        _, keys, values = _LAST_VALUES[0]
        return keys, values
    keys = tuple(x)
    values = np.fromiter(x.values(), dtype=np.float64, count=len(keys))
    _LAST_VALUES[:] = [(x, keys, values)]
    return keys, values


def _sigmoid(z: float) -> float:
    """River's sigmoid (saturated beyond +-30)."""
    if z < -_SATURATED:
        return 0.0
    if z > _SATURATED:
        return 1.0
    return 1.0 / (1.0 + math.exp(-z))


_VIEWS: dict[int, DenseView] = {}


def view(model: object) -> DenseView | None:
    """The dense view of ``model`` (one per model object, kept while the model is in use), or None when it has
    another shape."""
    found = _VIEWS.get(id(model))
    if found is not None and found.model is model:
        return found
    if not supports(model):
        return None
    if len(_VIEWS) >= MAX_VIEWS:
        _VIEWS.clear()
    made = _VIEWS[id(model)] = DenseView(model)
    return made


#: Model inputs already computed for a feature vector: (the feature vector, the input transform's functions, the
#: inputs), from :func:`probability_with_inputs`.
Known = tuple[Features, list[Callable[[Features], Features]], Features]


def probability(model: Any, features: Features, known: Known | None = None) -> float:
    """The model's failure probability for one feature vector: the dense view where the model has the shipped
    shape, River's ``predict_proba_one`` otherwise (equal to 1e-12: ``tests/test_dense.py``). ``known``: the inputs
    another model with the same input transform computed for this very feature vector (the same object), reused."""
    dense = view(model)
    if dense is None or compose.Pipeline._LEARN_UNSUPERVISED_DURING_PREDICT:
        return float(model.predict_proba_one(features).get(True, 0.0))
    return dense.probability_of_inputs(inputs_of(dense, features, known))


def inputs_of(dense: DenseView, features: Features, known: Known | None = None) -> Features:
    """The model inputs of ``features`` under ``dense``'s input transform: ``known``'s, when another model with the
    same transform computed them for this very feature vector (the same object), else computed now."""
    if known is not None and known[0] is features and known[1] == dense._funcs:
        return known[2]
    return dense.inputs(features)


def probability_with_inputs(model: Any, features: Features) -> tuple[float, Known | None]:
    """:func:`probability`, and the model inputs it computed (None where River predicted), for another model's
    prediction of the same feature vector (the live learning copy's, right after the serving model's)."""
    dense = view(model)
    if dense is None or compose.Pipeline._LEARN_UNSUPERVISED_DURING_PREDICT:
        return float(model.predict_proba_one(features).get(True, 0.0)), None
    x = dense.inputs(features)
    return dense.probability_of_inputs(x), (features, dense._funcs, x)


def features_needed(models: Iterable[object]) -> frozenset[str] | None:
    """The features that ``models`` read (their first step's function, :func:`features_read_by`), for a
    ``FeatureExtractor(only=...)``; None (every feature) when one of them does not start with a function
    transformer."""
    needed: set[str] = set()
    for model in models:
        first = next(iter(model.steps.values()), None) if isinstance(model, compose.Pipeline) else None
        if not isinstance(first, compose.FuncTransformer):
            return None
        needed |= features_read_by(first.func)
    return frozenset(needed)


def probabilities(models: Sequence[Any], features: Features) -> list[float]:
    """Each model's failure probability for one feature vector (as :func:`probability`), computing the model
    inputs once for models whose dense views share their input transform."""
    views = [view(model) for model in models]
    first = views[0] if views else None
    if (
        first is None
        or compose.Pipeline._LEARN_UNSUPERVISED_DURING_PREDICT
        or any(v is None or v._funcs != first._funcs for v in views)
    ):
        return [probability(model, features) for model in models]
    x = first.inputs(features)
    return [v.probability_of_inputs(x) for v in views if v is not None]
