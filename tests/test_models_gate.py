"""The quality gate: pass, fail on each metric, equality at the boundary, thresholds checked, the table."""

from __future__ import annotations

import math
import pickle

import pytest

from devintel.models.gate import GateFailed, GateResult, QualityThresholds, evaluate_gate
from devintel.models.metrics import BinaryReport, binary_report

METRICS = ("accuracy", "precision", "recall", "f1", "false_alarms_per_100_device_days", "catch_rate")
GOOD = {
    "accuracy": 0.93,
    "precision": 0.88,
    "recall": 0.86,
    "f1": 0.87,
    "false_alarms_per_100_device_days": 0.3,
    "catch_rate": 0.9,
}


def test_default_thresholds_are_the_documented_ones() -> None:
    assert QualityThresholds().as_dict() == {
        "accuracy": 0.85,
        "precision": 0.80,
        "recall": 0.80,
        "f1": 0.80,
        "false_alarms_per_100_device_days": 0.5,
        "catch_rate": 0.85,
    }
    assert QualityThresholds().maxima() == {"false_alarms_per_100_device_days"}


def test_good_report_passes() -> None:
    result = evaluate_gate(GOOD, QualityThresholds())
    assert result.passed
    assert result.failures() == ()
    assert [row.metric for row in result.rows] == list(METRICS)
    assert all(row.passed for row in result.rows)
    assert "all 6 metrics met their thresholds" in result.table()
    assert "FAIL" not in result.table()


def test_binary_report_is_accepted() -> None:
    report = binary_report([True, True, False, False, True], [0.9, 0.8, 0.2, 0.1, 0.7], 0.5)
    assert isinstance(report, BinaryReport)
    result = evaluate_gate(report, household=False)
    assert result.passed
    assert [row.metric for row in result.rows] == ["accuracy", "precision", "recall", "f1"]
    assert result == evaluate_gate(report.as_dict(), household=False)
    with pytest.raises(ValueError, match="lacks false_alarms_per_100_device_days, catch_rate"):
        evaluate_gate(report)


@pytest.mark.parametrize("metric", METRICS)
def test_each_metric_can_fail_the_gate(metric: str) -> None:
    thresholds = QualityThresholds()
    worse = 0.01 if metric in thresholds.maxima() else -0.01
    values = {**GOOD, metric: thresholds.as_dict()[metric] + worse}
    result = evaluate_gate(values, thresholds)
    assert not result.passed
    assert [row.metric for row in result.failures()] == [metric]
    table = result.table()
    row_lines = {line.split()[0]: line for line in table.splitlines()[1:-1]}
    assert row_lines[metric].endswith("FAIL")
    assert all(row_lines[other].endswith("PASS") for other in METRICS if other != metric)
    last = table.splitlines()[-1]
    assert "FAILED" in last
    assert metric in last
    assert all(other not in last for other in METRICS if other != metric)


def test_several_failures_are_all_named() -> None:
    result = evaluate_gate({**GOOD, "precision": 0.5, "f1": 0.6})
    last = result.table().splitlines()[-1]
    assert "precision (0.5000 < 0.8000)" in last
    assert "f1 (0.6000 < 0.8000)" in last
    assert "recall" not in last
    alarms = evaluate_gate({**GOOD, "false_alarms_per_100_device_days": 9.0}).table().splitlines()[-1]
    assert "false_alarms_per_100_device_days (9.0000 > 0.5000)" in alarms


def test_equal_to_the_threshold_passes() -> None:
    thresholds = QualityThresholds(min_accuracy=0.9, min_precision=0.75, min_recall=0.7, min_f1=0.725)
    assert evaluate_gate(thresholds.as_dict(), thresholds).passed
    assert evaluate_gate(dict.fromkeys(METRICS, 1.0), QualityThresholds(1, 1, 1, 1, 1, 1)).passed
    assert evaluate_gate(dict.fromkeys(METRICS, 0.0), QualityThresholds(0, 0, 0, 0, 0, 0)).passed
    assert not evaluate_gate(dict.fromkeys(METRICS, 1.0), QualityThresholds(1, 1, 1, 1, 0.99, 1)).passed


def test_missing_or_nan_metric() -> None:
    with pytest.raises(ValueError, match="lacks recall, f1"):
        evaluate_gate({"accuracy": 0.9, "precision": 0.9})
    result = evaluate_gate({**GOOD, "recall": math.nan})
    assert not result.passed
    assert [row.metric for row in result.failures()] == ["recall"]


@pytest.mark.parametrize("bad", [-0.01, 1.01, math.nan, math.inf, True, "0.8", None])
@pytest.mark.parametrize("name", ["min_accuracy", "min_precision", "min_recall", "min_f1", "min_catch_rate"])
def test_invalid_thresholds_are_rejected(name: str, bad: object) -> None:
    with pytest.raises(ValueError, match=name):
        QualityThresholds(**{name: bad})  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", [-0.01, math.nan, True, "0.8", None])
def test_invalid_false_alarm_budgets_are_rejected(bad: object) -> None:
    with pytest.raises(ValueError, match="max_false_alarms_per_100_device_days"):
        QualityThresholds(max_false_alarms_per_100_device_days=bad)  # type: ignore[arg-type]
    assert (
        QualityThresholds(max_false_alarms_per_100_device_days=3.0).as_dict()["false_alarms_per_100_device_days"] == 3
    )


def test_table_is_fixed_width() -> None:
    table = evaluate_gate({**GOOD, "recall": 0.5}).table()
    lines = table.splitlines()
    assert lines[0].split() == ["metric", "value", "threshold", "result"]
    assert len(lines) == 1 + len(METRICS) + 1
    rows = lines[1:-1]
    assert len({len(line) for line in rows}) == 1  # columns line up
    assert rows[2].split() == ["recall", "0.5000", "0.8000", "FAIL"]
    value_end = lines[0].index("value") + len("value")
    assert all(
        line[value_end - 6 : value_end] in {"0.9300", "0.8800", "0.5000", "0.8700", "0.3000", "0.9000"} for line in rows
    )


def test_gate_failed_carries_the_result() -> None:
    result = evaluate_gate({**GOOD, "accuracy": 0.5})
    error = GateFailed(result)
    assert error.result is result
    assert str(error) == result.table()
    copy = pickle.loads(pickle.dumps(error))
    assert isinstance(copy, GateFailed)
    assert copy.result == result
    assert str(copy) == str(error)
    with pytest.raises(GateFailed, match="accuracy"):
        raise error


def test_result_as_dict() -> None:
    result = evaluate_gate(GOOD)
    assert isinstance(result, GateResult)
    data = result.as_dict()
    assert data["passed"] is True
    assert data["rows"] == [
        {
            "metric": m,
            "value": GOOD[m],
            "threshold": QualityThresholds().as_dict()[m],
            "passed": True,
            "at_most": m == "false_alarms_per_100_device_days",
        }
        for m in METRICS
    ]
