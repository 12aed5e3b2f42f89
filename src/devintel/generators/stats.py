"""Summary statistics of a generated dataset: what the README documents and a test checks."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from devintel.generators.templates import FAILURE_MODES, METRIC_FIELDS

#: Valid range of each canonical metric field (DESIGN.md); values outside it are glitches.
VALID_RANGES: dict[str, tuple[float, float]] = {
    "battery_level": (0.0, 100.0),
    "battery_voltage": (0.0, 5000.0),
    "signal_strength": (-100.0, -10.0),
    "linkquality": (0.0, 255.0),
    "response_time": (0.0, 60_000.0),
    "error_rate": (0.0, 1.0),
    "connection_drops": (0.0, 10_000.0),
    "restart_count": (0.0, 10_000.0),
    "uptime_hours": (0.0, 1e6),
    "temperature": (-40.0, 125.0),
    "humidity": (0.0, 100.0),
    "usage_frequency": (0.0, 1.0),
    "data_transfer_rate": (0.0, 1e7),
    "value": (-1e9, 1e9),
}


@dataclass(frozen=True, slots=True)
class DatasetStats:
    """What a dataset holds, and how hard its labels are."""

    rows: int
    devices: int
    homes: int
    span_days: float
    homes_per_type: dict[str, int]
    rows_per_device_type: dict[str, int]
    positive_rate: float
    """Share of events labelled ``fails_within_horizon``."""
    failures_per_mode: dict[str, int]
    """Devices whose failure falls within the data (seen through at least one positive event), by mode."""
    undetectable_share: float
    """Share of positive events with no precursor signal at all (sudden failures, or before the
    precursor starts): no model can catch these, so event-level recall cannot exceed 1 minus this."""
    missing_share: float
    """Share of field values missing among the fields each device type reports."""
    out_of_range: int
    """Count of field values outside :data:`VALID_RANGES`."""

    def as_dict(self) -> dict[str, object]:
        """A JSON-ready dict."""
        return asdict(self)


def summarize(df: pd.DataFrame) -> DatasetStats:
    """Compute :class:`DatasetStats` for a frame made by :func:`devintel.generators.generate`."""
    positive = df["fails_within_horizon"].to_numpy(dtype=bool)
    homes = df.drop_duplicates("home_id")["home_type"].value_counts()
    failing = df.loc[positive, ["device_id", "failure_mode"]].drop_duplicates("device_id")
    per_mode = failing["failure_mode"].value_counts()
    metrics = df[list(METRIC_FIELDS)].to_numpy(dtype=np.float64)
    reported = df.groupby("device_type", observed=True)[list(METRIC_FIELDS)].transform(
        lambda c: c.notna().any()
    ).to_numpy(dtype=bool)
    lo = np.array([VALID_RANGES[f][0] for f in METRIC_FIELDS])
    hi = np.array([VALID_RANGES[f][1] for f in METRIC_FIELDS])
    with np.errstate(invalid="ignore"):
        outside = (metrics < lo) | (metrics > hi)
    ts = df["ts"].to_numpy()
    precursor = df["precursor"].to_numpy()
    return DatasetStats(
        rows=len(df),
        devices=int(df["device_id"].nunique()),
        homes=int(df["home_id"].nunique()),
        span_days=float((ts.max() - ts.min()) / 86_400.0) if len(df) else 0.0,
        homes_per_type={str(k): int(v) for k, v in homes.items() if v > 0},
        rows_per_device_type={str(k): int(v) for k, v in df["device_type"].value_counts().items() if v > 0},
        positive_rate=float(positive.mean()) if len(df) else 0.0,
        failures_per_mode={m: int(per_mode.get(m, 0)) for m in FAILURE_MODES},
        undetectable_share=float((precursor[positive] == 0).mean()) if positive.any() else 0.0,
        missing_share=float(np.isnan(metrics)[reported].mean()) if reported.any() else 0.0,
        out_of_range=int(outside.sum()),
    )
