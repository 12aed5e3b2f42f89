"""The quality gate: held-out metrics against the minimums from settings.

:func:`evaluate_gate` compares accuracy, precision, recall and F1 with their thresholds; a value equal
to its threshold passes, a missing or NaN value fails. The caller decides what a failure means (the
bootstrap exits non-zero by raising :class:`GateFailed`, or warns under ``--allow-low-quality``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields

from devintel.models.metrics import BinaryReport


@dataclass(frozen=True, slots=True)
class QualityThresholds:
    """Minimum held-out accuracy, precision, recall and F1 (positive class), each in 0..1."""

    min_accuracy: float = 0.85
    min_precision: float = 0.80
    min_recall: float = 0.80
    min_f1: float = 0.80

    def __post_init__(self) -> None:
        for spec in fields(self):
            value = getattr(self, spec.name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0.0 <= value <= 1.0:
                raise ValueError(f"{spec.name} must be a number in 0..1, not {value!r}")

    def as_dict(self) -> dict[str, float]:
        """Each threshold keyed by the metric it applies to (``accuracy``, ``precision``, ``recall``, ``f1``)."""
        return {spec.name.removeprefix("min_"): float(getattr(self, spec.name)) for spec in fields(self)}


@dataclass(frozen=True, slots=True)
class GateRow:
    """One metric against its threshold."""

    metric: str
    value: float
    threshold: float
    passed: bool


@dataclass(frozen=True, slots=True)
class GateResult:
    """The gate's verdict: ``passed`` when every row passed."""

    passed: bool
    rows: tuple[GateRow, ...]

    def failures(self) -> tuple[GateRow, ...]:
        """The rows that fell short of their threshold."""
        return tuple(row for row in self.rows if not row.passed)

    def table(self) -> str:
        """A fixed-width table (metric, value, threshold, PASS/FAIL) and a closing verdict line."""
        width = max([len("metric"), *(len(row.metric) for row in self.rows)])
        lines = [f"{'metric':<{width}}  {'value':>9}  {'threshold':>9}  result"]
        for row in self.rows:
            verdict = "PASS" if row.passed else "FAIL"
            lines.append(f"{row.metric:<{width}}  {row.value:>9.4f}  {row.threshold:>9.4f}  {verdict}")
        short = self.failures()
        if short:
            names = ", ".join(f"{row.metric} ({row.value:.4f} < {row.threshold:.4f})" for row in short)
            lines.append(f"Quality gate FAILED: {names} fell short.")
        else:
            lines.append(f"Quality gate passed: all {len(self.rows)} metrics met their thresholds.")
        return "\n".join(lines)

    def as_dict(self) -> dict[str, object]:
        """The verdict and rows as plain JSON-ready values (for the manifest)."""
        return {
            "passed": self.passed,
            "rows": [
                {"metric": r.metric, "value": r.value, "threshold": r.threshold, "passed": r.passed} for r in self.rows
            ],
        }


def evaluate_gate(
    report: BinaryReport | Mapping[str, float], thresholds: QualityThresholds | None = None
) -> GateResult:
    """Compare ``report``'s accuracy, precision, recall and F1 with ``thresholds`` (defaults when None).

    ``report`` is a :class:`BinaryReport` or a mapping by metric name, such as its ``as_dict()``; a
    metric missing from it is a ``ValueError``. ``value >= threshold`` passes; NaN fails.
    """
    limits = (thresholds or QualityThresholds()).as_dict()
    values = report.as_dict() if isinstance(report, BinaryReport) else report
    missing = [name for name in limits if name not in values]
    if missing:
        raise ValueError(f"the report lacks {', '.join(missing)}")
    rows = tuple(
        GateRow(metric=name, value=float(values[name]), threshold=limit, passed=bool(values[name] >= limit))
        for name, limit in limits.items()
    )
    return GateResult(passed=all(row.passed for row in rows), rows=rows)


class GateFailed(Exception):  # noqa: N818 - the name the bootstrap and CLI use
    """Raised by callers when the gate fails; ``result`` holds the verdict, the message is its table."""

    def __init__(self, result: GateResult) -> None:
        super().__init__(result.table())
        self.result = result

    def __reduce__(self) -> tuple[type[GateFailed], tuple[GateResult]]:
        """Pickle by the result, not the message (the default would call ``GateFailed(message)``)."""
        return (GateFailed, (self.result,))
