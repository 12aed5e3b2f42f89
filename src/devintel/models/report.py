"""The production-readiness report of a bootstrap: Markdown tables and, with matplotlib, PNG plots.

:func:`markdown_report` writes the gate, the household measures (overall, per world variant, per home type, per
failure mode), the decision's parameters and the event-level measures. :func:`plots` draws the precision-recall
curve, the reliability diagram, the lead-time histogram, false alarms per home type and per variant, and the
catch rate per failure mode, as PNG bytes (nothing is written here; the bootstrap puts them in the snapshot).
matplotlib is an optional extra (``pip install 'devintel[report]'``): without it :func:`plots` returns nothing and
the Markdown says so.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from typing import Any, Final

import numpy as np
import numpy.typing as npt

HOUR_S: Final = 3600.0
_HOUSEHOLD_COLUMNS: Final = (
    ("devices", "devices", "{:,}"),
    ("device_days", "device-days", "{:,.0f}"),
    ("false_alarms_per_100_device_days", "false alarms /100 dd", "{:.2f}"),
    ("catch_rate", "caught >= 12 h", "{:.1%}"),
    ("failures_with_precursor", "failures (precursor)", "{:,}"),
    ("median_lead_h", "median lead h", "{:.0f}"),
    ("p10_lead_h", "p10 lead h", "{:.0f}"),
    ("flag_changes_per_device_day", "flag changes /dd", "{:.3f}"),
    ("time_in_alarm", "time in alarm", "{:.2%}"),
)


def _cell(value: object, fmt: str) -> str:
    return "—" if value is None else fmt.format(value)


def household_table(rows: Mapping[str, Mapping[str, Any]], first: str) -> list[str]:
    """A Markdown table of household reports, one row per key."""
    header = [first, *(title for _, title, _ in _HOUSEHOLD_COLUMNS)]
    lines = ["| " + " | ".join(header) + " |", "| --- |" + " ---: |" * len(_HOUSEHOLD_COLUMNS)]
    for name, report in rows.items():
        cells = [_cell(report.get(key), fmt) for key, _, fmt in _HOUSEHOLD_COLUMNS]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines


def markdown_report(
    manifest: Mapping[str, Any], details: Mapping[str, Any], gate_table: str, figures: Sequence[str]
) -> str:
    """The report's Markdown (see the module docstring)."""
    training = manifest["training"]
    household, validation = details["household"], details["household_validation"]
    decision = details["decision"]
    params = decision["params"]
    test = details["test"]
    variants = {
        **{f"{name} (unseen, test homes)": row for name, row in household["by_variant"].items()},
        **{f"{name} (trained on; validation homes)": row for name, row in validation["by_variant"].items()},
    }
    lines = [
        "# devintel production-readiness report",
        "",
        f"Trained on {training['samples']:,} synthetic events (seed {training['seed']}, {training['days']:g} days, "
        f"{training['homes']} homes of the world variants {', '.join(training['variants'])}). The decision was tuned "
        f"on {training['holdout_samples']:,} events of other homes of those variants (seed "
        f"{training['validation_seed']}); everything judged below comes from {training['holdout_samples']:,} events "
        f"of yet other homes (seed {training['test_seed']}) of world variants no model saw: "
        f"{', '.join(training['test_variants'])} (leave-variant-out).",
        "",
        "## Quality gate (held-out test homes, unseen variants)",
        "",
        "```",
        gate_table,
        "```",
        "",
        "## What a household lives with (the alarm decision's flags)",
        "",
        *household_table({"all test homes": household["overall"]}, "homes"),
        "",
        "### Per world variant",
        "",
        "Variants the models trained on are shown on the validation homes, where the decision was tuned (so they "
        "flatter); the unseen ones are the judged figures.",
        "",
        *household_table(variants, "variant"),
        "",
        "### Per home type (test homes)",
        "",
        *household_table(household["by_home_type"], "home type"),
        "",
        "### Per failure mode (test homes; `none`: devices that do not fail)",
        "",
        *household_table(household["by_failure_mode"], "failure mode"),
        "",
        "## The alarm decision",
        "",
        f"On when the probability stays >= {params['on_threshold']:.3f} over at least {int(params['min_events'])} "
        f"reports spanning {params['hold_on_s'] / HOUR_S:g} h; off once it stays below "
        f"{params['off_threshold']:.3f} for {params['hold_off_s'] / HOUR_S:g} h. Chosen among "
        f"{decision['candidates']} candidates on the validation homes for the best catch rate within "
        f"{decision['tuning_budget']:.2f} false alarms per 100 device-days"
        + ("" if decision["within_budget"] else " (none fitted: the fewest false alarms won)")
        + ".",
        "",
        "## Event-level measures (the model's probability at its threshold)",
        "",
        f"Accuracy {test['accuracy']:.4f}, precision {test['precision']:.4f}, recall {test['recall']:.4f}, "
        f"F1 {test['f1']:.4f}, MCC {test['mcc']:.3f}, PR-AUC {test['pr_auc']:.3f}, Brier {test['brier']:.4f}.",
        "",
        "Recall per failure mode: "
        + ", ".join(f"{mode} {value:.3f}" for mode, value in details["recall_by_failure_mode"].items())
        + ".",
        "",
        "Home types served by their own model: "
        + (", ".join(sorted(manifest["router"])) or "none (the global model serves all)")
        + f". Drift (ADWIN on the decision errors over the test homes' stream): {details['error_drifts_in_test']} "
        "detection(s).",
        "",
        "## Plots",
        "",
    ]
    if figures:
        lines += [f"![{name}]({name})" for name in figures]
    else:
        lines.append("No plots: matplotlib is not installed (`pip install 'devintel[report]'` adds it).")
    return "\n".join(lines) + "\n"


#: Points drawn of the precision-recall curve (see :func:`plots`).
PR_CURVE_POINTS: Final = 2_000


def _png(figure: Any) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90, bbox_inches="tight", metadata={"Software": None})
    return buffer.getvalue()


def failure_leads_h(
    device: npt.NDArray[np.intp],
    ts: npt.NDArray[np.float64],
    flags: npt.NDArray[np.bool_],
    failure_at: npt.NDArray[np.float64],
    horizon_s: float,
) -> npt.NDArray[np.float64]:
    """Per failing device flagged within the horizon before its failure, the lead in hours (as the household
    measures define it)."""
    until = failure_at - ts
    window = np.isfinite(until) & (until > 0) & (until <= horizon_s) & flags
    lead = np.full(int(device.max()) + 1 if device.size else 0, -np.inf)
    np.maximum.at(lead, device[window], until[window])
    leads: npt.NDArray[np.float64] = lead[np.isfinite(lead)] / HOUR_S
    return leads


def plots(
    details: Mapping[str, Any],
    label: npt.NDArray[np.bool_],
    probability: npt.NDArray[np.float64],
    failure_at: npt.NDArray[np.float64],
    ts: npt.NDArray[np.float64],
    flags: npt.NDArray[np.bool_],
    device: npt.NDArray[np.intp],
    horizon_s: float = 7 * 86_400.0,
) -> dict[str, bytes]:
    """The report's PNG plots by file name; empty without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        from matplotlib import pyplot as plt
    except ImportError:
        return {}
    out: dict[str, bytes] = {}
    order = np.argsort(-probability, kind="stable")
    hits = np.cumsum(label[order])
    precision = hits / np.arange(1, hits.size + 1)
    recall = hits / max(int(label.sum()), 1)
    # At most PR_CURVE_POINTS ranks, evenly spaced (the last included): a 450-pixel-wide plot shows no more, and
    # drawing all 300,000 of a held-out stream took 0.3 s.
    shown = np.unique(np.linspace(0, hits.size - 1, min(hits.size, PR_CURVE_POINTS)).astype(np.intp))
    fig, ax = plt.subplots(figsize=(5, 4))
    ax.plot(recall[shown], precision[shown])
    ax.set(xlabel="recall", ylabel="precision", title="Precision-recall (test homes)", xlim=(0, 1), ylim=(0, 1.02))
    out["precision_recall.png"] = _png(fig)
    plt.close(fig)

    bins = np.linspace(0.0, 1.0, 11)
    which = np.clip(np.digitize(probability, bins) - 1, 0, 9)
    counts = np.bincount(which, minlength=10)
    observed = np.bincount(which, weights=label.astype(np.float64), minlength=10) / np.maximum(counts, 1)
    predicted = np.bincount(which, weights=probability, minlength=10) / np.maximum(counts, 1)
    fig, ax = plt.subplots(figsize=(5, 4))
    ax.plot([0, 1], [0, 1], linestyle=":", color="grey")
    ax.plot(predicted[counts > 0], observed[counts > 0], marker="o")
    ax.set(xlabel="predicted probability", ylabel="observed failure rate", title="Reliability (test homes)")
    out["reliability.png"] = _png(fig)
    plt.close(fig)

    leads = failure_leads_h(device, ts, flags, failure_at, horizon_s)
    fig, ax = plt.subplots(figsize=(5, 4))
    ax.hist(leads, bins=np.arange(0, horizon_s / HOUR_S + 12, 12).tolist())
    ax.axvline(12, color="red", linestyle="--", label="12 h")
    ax.set(xlabel="lead before the failure (h)", ylabel="failing devices", title="Alarm lead times (test homes)")
    ax.legend()
    out["lead_times.png"] = _png(fig)
    plt.close(fig)

    household = details["household"]
    groups = {
        "false_alarms_by_home_type.png": (household["by_home_type"], "false_alarms_per_100_device_days", "home type"),
        "false_alarms_by_variant.png": (
            {f"{k} (unseen)": v for k, v in household["by_variant"].items()}
            | {f"{k} (trained)": v for k, v in details["household_validation"]["by_variant"].items()},
            "false_alarms_per_100_device_days",
            "world variant",
        ),
        "catch_rate_by_failure_mode.png": (
            {k: v for k, v in household["by_failure_mode"].items() if k != "none"},
            "catch_rate",
            "failure mode",
        ),
    }
    for name, (rows, key, what) in groups.items():
        fig, ax = plt.subplots(figsize=(6, 4))
        names = list(rows)
        ax.barh(names, [rows[n][key] or 0.0 for n in names])
        ax.set(xlabel=key.replace("_", " "), title=f"{key.replace('_', ' ')} per {what}")
        out[name] = _png(fig)
        plt.close(fig)
    return out
