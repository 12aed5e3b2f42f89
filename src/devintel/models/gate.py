"""The quality gate: held-out metrics against the limits from settings.

:func:`evaluate_gate` compares the seed's event-level measures (accuracy, precision, recall and F1: minimums) and
what a household lives with (false-alarm episodes per 100 device-days: a maximum; the share of failures with a
precursor caught at least 12 h ahead: a minimum) with their limits; a value equal to its limit passes, a missing or
NaN value fails. The caller decides what a failure means (the
bootstrap exits non-zero by raising :class:`GateFailed`, or warns under ``--allow-low-quality``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Final

from devintel.models.metrics import BinaryReport


@dataclass(frozen=True, slots=True)
class QualityThresholds:
    """Held-out limits: minimum accuracy, precision, recall and F1 (positive class) and catch rate, each in 0..1,
    and the maximum of false-alarm episodes per 100 device-days (>= 0)."""

    min_accuracy: float = 0.85
    min_precision: float = 0.80
    min_recall: float = 0.80
    min_f1: float = 0.80
    max_false_alarms_per_100_device_days: float = 0.5
    min_catch_rate: float = 0.85

    def __post_init__(self) -> None:
        for spec in fields(self):
            value = getattr(self, spec.name)
            upper = float("inf") if spec.name.startswith("max_") else 1.0
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0.0 <= value <= upper:
                raise ValueError(f"{spec.name} must be a number in 0..{upper:g}, not {value!r}")

    def as_dict(self) -> dict[str, float]:
        """Each limit keyed by the metric it applies to (``accuracy``, ..., ``false_alarms_per_100_device_days``,
        ``catch_rate``)."""
        return {_metric(spec.name): float(getattr(self, spec.name)) for spec in fields(self)}

    def maxima(self) -> frozenset[str]:
        """The metrics whose limit is a maximum (lower is better)."""
        return frozenset(_metric(spec.name) for spec in fields(self) if spec.name.startswith("max_"))


def _metric(setting: str) -> str:
    return setting.removeprefix("min_").removeprefix("max_")


@dataclass(frozen=True, slots=True)
class GateRow:
    """One metric against its threshold."""

    metric: str
    value: float
    threshold: float
    passed: bool
    at_most: bool = False
    """The threshold is a maximum (the value must not exceed it)."""


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
            names = ", ".join(
                f"{row.metric} ({row.value:.4f} {'>' if row.at_most else '<'} {row.threshold:.4f})" for row in short
            )
            lines.append(f"Quality gate FAILED: {names} fell short.")
        else:
            lines.append(f"Quality gate passed: all {len(self.rows)} metrics met their thresholds.")
        return "\n".join(lines)

    def as_dict(self) -> dict[str, object]:
        """The verdict and rows as plain JSON-ready values (for the manifest)."""
        return {
            "passed": self.passed,
            "rows": [
                {
                    "metric": r.metric,
                    "value": r.value,
                    "threshold": r.threshold,
                    "passed": r.passed,
                    "at_most": r.at_most,
                }
                for r in self.rows
            ],
        }


#: The seed's event-level metrics (the rest of the gate is what a household lives with).
EVENT_LEVEL: Final = frozenset({"accuracy", "precision", "recall", "f1"})


def evaluate_gate(
    report: BinaryReport | Mapping[str, float | int | None],
    thresholds: QualityThresholds | None = None,
    household: bool = True,
) -> GateResult:
    """Compare ``report``'s accuracy, precision, recall and F1 with ``thresholds`` (defaults when None).

    ``report`` is a :class:`BinaryReport` or a mapping by metric name, such as its ``as_dict()`` merged with a
    :class:`~devintel.models.household.HouseholdReport`'s; a metric missing from it is a ``ValueError``.
    ``value >= threshold`` passes (``value <= threshold`` for a maximum); NaN fails. ``household`` False judges
    the event-level metrics only.
    """
    chosen = thresholds or QualityThresholds()
    limits = chosen.as_dict()
    maxima = chosen.maxima()
    if not household:
        limits = {name: limit for name, limit in limits.items() if name in EVENT_LEVEL}
    values = report.as_dict() if isinstance(report, BinaryReport) else report
    missing = [name for name in limits if name not in values]
    if missing:
        raise ValueError(f"the report lacks {', '.join(missing)}")
    rows = tuple(
        GateRow(
            metric=name,
            value=float(values[name]),  # type: ignore[arg-type]
            threshold=limit,
            passed=bool(values[name] <= limit if name in maxima else values[name] >= limit),  # type: ignore[operator]
            at_most=name in maxima,
        )
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
