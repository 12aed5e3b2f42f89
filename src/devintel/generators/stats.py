"""Summary statistics of a generated dataset: what the README documents and a test checks.

``VALID_RANGES`` (the canonical ranges) lives in :mod:`devintel.generators.templates` and is re-exported here.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from devintel.generators.templates import DEVICE_TYPES, FAILURE_MODES, METRIC_FIELDS, VALID_RANGES

#: Resolution of the severity histogram behind :attr:`DatasetStats.severity_f1`.
SEVERITY_BINS = 1000


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
    severity_f1: float
    """Best F1 of a threshold on the hidden precursor severity (to 0.001): about the best any model that
    reads the signals perfectly can do on the label."""
    missing_share: float
    """Share of field values missing among the fields each device type reports."""
    out_of_range: int
    """Count of field values outside :data:`VALID_RANGES`."""

    def as_dict(self) -> dict[str, object]:
        """A JSON-ready dict."""
        return asdict(self)


class StatsAccumulator:
    """Builds :class:`DatasetStats` batch by batch, so a streamed dataset never has to be held whole."""

    def __init__(self) -> None:
        self.rows = 0
        self.positives = 0
        self.undetectable = 0
        # Positive and negative counts per thousandth of precursor severity, for severity_f1.
        self._severity_pos = np.zeros(SEVERITY_BINS + 1, dtype=np.int64)
        self._severity_neg = np.zeros(SEVERITY_BINS + 1, dtype=np.int64)
        self.reported_cells = 0
        self.missing_cells = 0
        self.out_of_range = 0
        self.ts_min = np.inf
        self.ts_max = -np.inf
        self.devices: set[str] = set()
        self.home_type_of: dict[str, str] = {}
        self.device_type_rows: dict[str, int] = {}
        self.failure_of: dict[str, str] = {}
        self._reports = {d: np.array([f in DEVICE_TYPES[d].fields for f in METRIC_FIELDS]) for d in DEVICE_TYPES}
        self._lo = np.array([VALID_RANGES[f][0] for f in METRIC_FIELDS])
        self._hi = np.array([VALID_RANGES[f][1] for f in METRIC_FIELDS])

    def update(self, df: pd.DataFrame) -> StatsAccumulator:
        """Add one batch of events (a frame with the generator's columns)."""
        if df.empty:
            return self
        positive = df["fails_within_horizon"].to_numpy(dtype=bool)
        ts = df["ts"].to_numpy()
        self.rows += len(df)
        self.positives += int(positive.sum())
        precursor = df["precursor"].to_numpy()
        self.undetectable += int((precursor[positive] == 0).sum())
        bins = np.clip(np.floor(precursor * SEVERITY_BINS), 0, SEVERITY_BINS).astype(np.int64)
        self._severity_pos += np.bincount(bins[positive], minlength=SEVERITY_BINS + 1)
        self._severity_neg += np.bincount(bins[~positive], minlength=SEVERITY_BINS + 1)
        self.ts_min = min(self.ts_min, float(ts.min()))
        self.ts_max = max(self.ts_max, float(ts.max()))
        self.devices.update(str(d) for d in df["device_id"].unique())
        homes = df[["home_id", "home_type"]].drop_duplicates("home_id").astype(str)
        self.home_type_of.update(zip(homes["home_id"], homes["home_type"], strict=True))
        for name, count in df["device_type"].value_counts().items():
            self.device_type_rows[str(name)] = self.device_type_rows.get(str(name), 0) + int(count)
        failing = df.loc[positive, ["device_id", "failure_mode"]].drop_duplicates("device_id").astype(str)
        self.failure_of.update(zip(failing["device_id"], failing["failure_mode"], strict=True))
        metrics = df[list(METRIC_FIELDS)].to_numpy(dtype=np.float64)
        device_types = df["device_type"].astype("category")
        by_code = np.stack([self._reports[str(d)] for d in device_types.cat.categories])
        reported = by_code[device_types.cat.codes.to_numpy()]
        self.reported_cells += int(reported.sum())
        self.missing_cells += int((np.isnan(metrics) & reported).sum())
        with np.errstate(invalid="ignore"):
            self.out_of_range += int(((metrics < self._lo) | (metrics > self._hi)).sum())
        return self

    def result(self) -> DatasetStats:
        """The statistics of everything added so far."""
        home_counts: dict[str, int] = {}
        for home_type in self.home_type_of.values():
            home_counts[home_type] = home_counts.get(home_type, 0) + 1
        modes = list(self.failure_of.values())
        return DatasetStats(
            rows=self.rows,
            devices=len(self.devices),
            homes=len(self.home_type_of),
            span_days=(self.ts_max - self.ts_min) / 86_400.0 if self.rows else 0.0,
            homes_per_type=dict(sorted(home_counts.items(), key=lambda kv: -kv[1])),
            rows_per_device_type=dict(sorted(self.device_type_rows.items(), key=lambda kv: -kv[1])),
            positive_rate=self.positives / self.rows if self.rows else 0.0,
            failures_per_mode={m: modes.count(m) for m in FAILURE_MODES},
            undetectable_share=self.undetectable / self.positives if self.positives else 0.0,
            severity_f1=self._severity_f1(),
            missing_share=self.missing_cells / self.reported_cells if self.reported_cells else 0.0,
            out_of_range=self.out_of_range,
        )

    def _severity_f1(self) -> float:
        # Predict positive at or above each bin (from the top): F1 = 2 TP / (predicted + positives).
        true_pos = np.cumsum(self._severity_pos[::-1])
        predicted = true_pos + np.cumsum(self._severity_neg[::-1])
        total = int(self._severity_pos.sum())
        return float((2.0 * true_pos / (predicted + total)).max()) if total else 0.0


def summarize(df: pd.DataFrame) -> DatasetStats:
    """Compute :class:`DatasetStats` for a frame made by :func:`devintel.generators.generate`."""
    return StatsAccumulator().update(df).result()
