"""Metric math: rolling metrics against recomputation, the report against brute force, lead times by hand."""

from __future__ import annotations

import math
import pickle

import numpy as np
import pytest

from devintel.models.metrics import (
    BinaryReport,
    RollingMetrics,
    average_precision,
    binary_report,
    recall_by_group,
)

# --- brute-force oracles: plain Python, one definition each -------------------------------------------


def _counts(truth: list[bool], pred: list[bool]) -> tuple[int, int, int, int]:
    tp = sum(1 for t, p in zip(truth, pred, strict=True) if t and p)
    fp = sum(1 for t, p in zip(truth, pred, strict=True) if not t and p)
    fn = sum(1 for t, p in zip(truth, pred, strict=True) if t and not p)
    tn = sum(1 for t, p in zip(truth, pred, strict=True) if not t and not p)
    return tp, fp, fn, tn


def _div(a: float, b: float) -> float:
    return a / b if b else 0.0


def _oracle_basic(truth: list[bool], pred: list[bool]) -> dict[str, float]:
    tp, fp, fn, tn = _counts(truth, pred)
    precision = _div(tp, tp + fp)
    recall = _div(tp, tp + fn)
    return {
        "accuracy": _div(tp + tn, len(truth)),
        "precision": precision,
        "recall": recall,
        "f1": _div(2 * precision * recall, precision + recall),
    }


def _oracle_average_precision(truth: list[bool], prob: list[float]) -> float:
    """Step-wise area: for each distinct threshold, high to low, precision times the recall gained."""
    positives = sum(truth)
    if positives == 0:
        return 0.0
    area, previous_recall = 0.0, 0.0
    for threshold in sorted(set(prob), reverse=True):
        pred = [p >= threshold for p in prob]
        tp, fp, _, _ = _counts(truth, pred)
        recall = tp / positives
        area += (recall - previous_recall) * (tp / (tp + fp))
        previous_recall = recall
    return area


def _oracle_report(truth: list[bool], prob: list[float], threshold: float) -> dict[str, float]:
    pred = [p >= threshold for p in prob]
    tp, fp, fn, tn = _counts(truth, pred)
    denominator = math.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    return {
        **_oracle_basic(truth, pred),
        "mcc": _div(tp * tn - fp * fn, denominator),
        "pr_auc": _oracle_average_precision(truth, prob),
        "brier": sum((p - t) ** 2 for p, t in zip(prob, truth, strict=True)) / len(truth),
        "positives": tp + fn,
        "negatives": tn + fp,
        "support": len(truth),
        "threshold": threshold,
    }


# --- RollingMetrics -------------------------------------------------------------------------------------


@pytest.mark.parametrize("window_size", [1, 2, 7, 50])
def test_rolling_metrics_match_recomputation_on_the_last_window(window_size: int) -> None:
    rng = np.random.default_rng(window_size)
    truth = (rng.random(400) < 0.3).tolist()
    # Runs of all-negative predictions so the window sometimes has no predicted positives.
    pred = [bool(p) and (i // 60) % 3 != 1 for i, p in enumerate(rng.random(400) < 0.4)]
    rolling = RollingMetrics(window_size=window_size, every=1)
    for i, (t, p) in enumerate(zip(truth, pred, strict=True)):
        rolling.update(t, p)
        start = max(0, i + 1 - window_size)
        expected = _oracle_basic(truth[start : i + 1], pred[start : i + 1])
        assert rolling.get() == pytest.approx(expected, abs=1e-12), f"step {i}"


def test_rolling_metrics_sample_history_every_n_updates() -> None:
    rng = np.random.default_rng(0)
    rolling = RollingMetrics(window_size=20, every=7)
    seen: list[tuple[int, dict[str, float]]] = []
    for i in range(50):
        rolling.update(bool(rng.random() < 0.5), bool(rng.random() < 0.5))
        if (i + 1) % 7 == 0:
            seen.append((i + 1, rolling.get()))
    assert rolling.n == 50
    assert [n for n, _ in rolling.history] == [7, 14, 21, 28, 35, 42, 49]
    assert rolling.history == seen
    assert set(rolling.get()) == {"accuracy", "precision", "recall", "f1"}


def test_rolling_metrics_start_at_zero_and_survive_pickle() -> None:
    rolling = RollingMetrics(window_size=3, every=2)
    assert rolling.get() == {"accuracy": 0.0, "precision": 0.0, "recall": 0.0, "f1": 0.0}
    for t, p in [(True, True), (False, True), (True, False), (True, True)]:
        rolling.update(t, p)
    copy = pickle.loads(pickle.dumps(rolling))
    assert copy.get() == rolling.get()
    copy.update(False, False)
    rolling.update(False, False)
    assert copy.get() == rolling.get()
    assert copy.history == rolling.history


def test_rolling_metrics_accept_numpy_booleans() -> None:
    rolling = RollingMetrics(window_size=5)
    rolling.update(np.bool_(True), np.bool_(True))  # type: ignore[arg-type]
    assert rolling.get()["recall"] == 1.0


@pytest.mark.parametrize(("window_size", "every"), [(0, 1), (5, 0)])
def test_rolling_metrics_reject_bad_sizes(window_size: int, every: int) -> None:
    with pytest.raises(ValueError, match="at least 1"):
        RollingMetrics(window_size=window_size, every=every)


# --- binary_report ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(8))
def test_binary_report_matches_brute_force(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 300))
    truth = (rng.random(n) < rng.uniform(0.05, 0.6)).tolist()
    prob = rng.random(n)
    if seed % 2:
        prob = np.round(prob, 1)  # many ties: tied scores are one step of the PR curve
    threshold = float(rng.uniform(0.2, 0.8))
    report = binary_report(truth, prob, threshold)
    assert report.as_dict() == pytest.approx(_oracle_report(truth, prob.tolist(), threshold), abs=1e-12)


def test_average_precision_documented_example() -> None:
    # scikit-learn's own example for average_precision_score.
    assert average_precision([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == pytest.approx(0.8333333333333333)


def test_binary_report_without_positives() -> None:
    report = binary_report([False, False, False], [0.9, 0.2, 0.1], 0.5)
    assert (report.positives, report.negatives, report.support) == (0, 3, 3)
    assert report.accuracy == pytest.approx(2 / 3)
    assert (report.precision, report.recall, report.f1, report.mcc, report.pr_auc) == (0.0, 0.0, 0.0, 0.0, 0.0)
    assert report.brier == pytest.approx((0.81 + 0.04 + 0.01) / 3)


def test_binary_report_with_only_positives() -> None:
    report = binary_report([1, 1, 1, 1], [0.9, 0.7, 0.3, 0.6], 0.5)
    assert (report.positives, report.negatives) == (4, 0)
    assert report.accuracy == report.recall == pytest.approx(0.75)
    assert report.precision == 1.0
    assert report.f1 == pytest.approx(2 * 0.75 / 1.75)
    assert report.mcc == 0.0  # no negatives: an empty margin
    assert report.pr_auc == 1.0


def test_binary_report_without_predicted_positives() -> None:
    report = binary_report([True, False, True, False, False], [0.4, 0.1, 0.3, 0.2, 0.0], 0.5)
    assert report.accuracy == pytest.approx(0.6)
    assert (report.precision, report.recall, report.f1, report.mcc) == (0.0, 0.0, 0.0, 0.0)
    assert report.pr_auc == 1.0  # the ranking is still perfect


def test_binary_report_perfect_and_threshold_inclusive() -> None:
    report = binary_report([True, False], [0.5, 0.49], 0.5)
    assert (report.accuracy, report.precision, report.recall, report.f1, report.mcc) == (1.0, 1.0, 1.0, 1.0, 1.0)
    assert isinstance(report, BinaryReport)
    assert report.as_dict()["threshold"] == 0.5


@pytest.mark.parametrize(
    ("truth", "prob", "message"),
    [
        ([], [], "empty"),
        ([True, False], [0.5], "differ in length"),
        ([True, False], [0.5, 1.5], "0..1"),
        ([True, False], [0.5, float("nan")], "0..1"),
        ([0, 2], [0.5, 0.5], "0/1"),
    ],
)
def test_binary_report_rejects_bad_input(truth: list[int], prob: list[float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        binary_report(truth, prob, 0.5)


# --- recall_by_group ---------------------------------------------------------------------------------------


def test_recall_by_group() -> None:
    truth = [1, 1, 1, 1, 0, 0, 1, 0]
    pred = [1, 0, 1, 1, 1, 0, 0, 1]
    groups = ["battery", "battery", "radio", "radio", "stuck", "stuck", "battery", "radio"]
    assert recall_by_group(truth, pred, groups) == {"battery": pytest.approx(1 / 3), "radio": 1.0}


def test_recall_by_group_without_positives_is_empty() -> None:
    assert recall_by_group([0, 0], [1, 0], ["a", "b"]) == {}
