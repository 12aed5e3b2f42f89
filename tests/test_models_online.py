"""The online path: warm start through features, delayed labels and learning, checked against ground truth."""

from __future__ import annotations

import numpy as np
from river import linear_model, preprocessing

from devintel.generators import generate
from devintel.models.online import OnlineLearner, events, failure_times, warm_start
from devintel.models.scored import Scored

H = 7 * 86_400.0


def test_warm_start_resolves_exactly_the_labels_ground_truth_allows() -> None:
    frame = generate(samples=30_000, days=60, seed=4)
    learner = OnlineLearner(
        model=preprocessing.StandardScaler() | linear_model.LogisticRegression(), horizon_s=H, negative_rate=1.0
    )
    failures = failure_times(frame)
    warm_start(learner, events(frame), failures)
    ts = frame["ts"].to_numpy()
    truth = frame["fails_within_horizon"].to_numpy()
    failure_at = ts + frame["time_to_failure_h"].to_numpy() * 3600.0
    last = ts[-1]
    with np.errstate(invalid="ignore"):
        expected_pos = int((truth & (failure_at <= last)).sum())
    expected_neg = int((~truth & (ts + H < last)).sum())
    labels = np.array([label for label, _ in learner.outcomes])
    assert int(labels.sum()) == expected_pos > 0
    assert int((~labels).sum()) == expected_neg > 0
    assert learner.learned == learner.resolved  # negative_rate 1: every resolved event is learned
    assert learner.rolling.n == learner.resolved


def test_negatives_are_sampled_and_features_have_no_ground_truth() -> None:
    frame = generate(samples=20_000, days=60, seed=5)
    stream = list(events(frame))
    assert not {"failure_mode", "time_to_failure_h", "fails_within_horizon", "precursor"} & set(stream[0])
    learner = OnlineLearner(model=linear_model.LogisticRegression(), horizon_s=H, negative_rate=0.2, seed=1)
    warm_start(learner, stream, failure_times(frame))
    labels = np.array([label for label, _ in learner.outcomes])
    assert learner.learned < 0.5 * learner.resolved
    assert learner.learned >= labels.sum()  # every positive is learned


def test_adwin_flags_a_change_in_the_error_rate() -> None:
    """Errors jump from none to all: ADWIN on the decision errors must notice, and only after the jump."""
    learner = OnlineLearner(model=linear_model.LogisticRegression(), horizon_s=H, learn=False)
    features = {"x": 1.0}
    for i in range(4_000):
        ts = float(i)
        learner.labels.add("d", ts, Scored(features, 0.0 if i < 2_000 else 1.0))  # flagged from event 2000 on
        learner.finish(ts + H + 1.0)
    assert learner.resolved == 4_000
    assert learner.drifts
    assert min(learner.drifts) > 2_000 + H
