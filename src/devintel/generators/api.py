"""The generator's public API: :func:`generate` (one DataFrame) and :func:`iter_batches` (a stream).

A *sample* is one telemetry event, one row. The generator draws homes in proportion to the home-type
shares (see :mod:`devintel.generators.fleet`), observes every device of each home over ``days`` at the
device's own report interval, and stops adding homes when the expected number of events reaches
``samples``; the stream is then cut at exactly ``samples`` events in event-time order. Small datasets
therefore hold few homes (10,000 events is part of one house); mixing all 8 home types in proportion
takes about 50 homes, roughly 1.5 million events at the default 180 days.

Same arguments, same bytes: every random generator is made from ``seed`` inside the call.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import pandas as pd

from devintel.generators.fleet import Fleet, build_fleet
from devintel.generators.stream import CODE_COLUMNS, FLOAT_COLUMNS, EventBatch, iter_event_batches
from devintel.generators.templates import DEVICE_TYPES, FAILURE_MODES, HOME_TYPES, METRIC_FIELDS
from devintel.generators.variants import check_variants

#: The default start of the synthetic span: 2025-01-01T00:00:00Z (the span covers winter to summer).
DEFAULT_START = datetime(2025, 1, 1, tzinfo=UTC).timestamp()

#: Default size: about 45 homes, enough for every home type in its population share.
DEFAULT_SAMPLES = 1_500_000
DEFAULT_DAYS = 180.0
DEFAULT_FAILURE_RATE = 0.45
DEFAULT_HORIZON_DAYS = 7.0

#: Columns of the generated frame, in order: identity, the home's world-variant family, canonical metrics,
#: then ground truth.
COLUMNS: tuple[str, ...] = (
    "ts",
    "device_id",
    "home_id",
    "home_type",
    "device_type",
    "power_source",
    "variant",
    *METRIC_FIELDS,
    "failure_mode",
    "time_to_failure_h",
    "fails_within_horizon",
    "precursor",
)

#: Ground-truth columns: never features. ``precursor`` is the simulated precursor severity (0..1);
#: ``variant`` is the world-variant family the event's home was drawn from (what a model must not know).
TRUTH_COLUMNS: tuple[str, ...] = (
    "variant",
    "failure_mode",
    "time_to_failure_h",
    "fails_within_horizon",
    "precursor",
)


@dataclass(frozen=True, slots=True)
class GeneratorConfig:
    """Validated arguments of one generation run."""

    samples: int
    days: float
    seed: int
    home_types: tuple[str, ...]
    device_types: tuple[str, ...]
    failure_rate: float
    horizon_days: float
    start: float
    variants: tuple[str, ...] = ("reference",)

    @classmethod
    def from_arguments(
        cls,
        *,
        samples: int = DEFAULT_SAMPLES,
        days: float = DEFAULT_DAYS,
        seed: int = 0,
        home_types: Iterable[str] | None = None,
        device_types: Iterable[str] | None = None,
        failure_rate: float = DEFAULT_FAILURE_RATE,
        horizon_days: float = DEFAULT_HORIZON_DAYS,
        start: float | None = None,
        variants: Sequence[str] | None = None,
    ) -> GeneratorConfig:
        """Check every argument (defaults as in :func:`generate`) and say clearly what is wrong."""
        homes = tuple(home_types) if home_types is not None else tuple(HOME_TYPES)
        devices = tuple(device_types) if device_types is not None else tuple(DEVICE_TYPES)
        problems = []
        if samples < 1:
            problems.append(f"samples must be at least 1, not {samples}")
        if not 0 < days <= 3650:
            problems.append(f"days must be in (0, 3650], not {days}")
        if seed < 0:
            problems.append(f"seed must be non-negative, not {seed}")
        if not 0 <= failure_rate <= 1:
            problems.append(f"failure_rate must be in [0, 1], not {failure_rate}")
        if not 0 < horizon_days <= 365:
            problems.append(f"horizon_days must be in (0, 365], not {horizon_days}")
        unknown_homes = sorted(set(homes) - set(HOME_TYPES))
        if unknown_homes or not homes:
            problems.append(f"home_types must be a non-empty subset of {list(HOME_TYPES)}, got {unknown_homes or []}")
        unknown_devices = sorted(set(devices) - set(DEVICE_TYPES))
        if unknown_devices or not devices:
            problems.append(f"device_types must be a non-empty subset of {list(DEVICE_TYPES)}, got {unknown_devices}")
        if start is not None and not 0 <= start <= 4e9 - days * 86_400:
            problems.append(f"start must be epoch seconds between 1970 and 2096, not {start}")
        try:
            names = check_variants(variants)
        except ValueError as error:
            problems.append(str(error))
        if problems:
            raise ValueError("; ".join(problems))
        # Keep the template order whatever order the caller used, so the same set gives the same data.
        return cls(
            samples=int(samples),
            days=float(days),
            seed=int(seed),
            home_types=tuple(h for h in HOME_TYPES if h in homes),
            device_types=tuple(d for d in DEVICE_TYPES if d in devices),
            failure_rate=float(failure_rate),
            horizon_days=float(horizon_days),
            start=DEFAULT_START if start is None else float(start),
            variants=names,
        )

    def fleet(self) -> Fleet:
        """Draw the homes and devices this configuration observes."""
        return build_fleet(
            samples=self.samples,
            start=self.start,
            days=self.days,
            seed=self.seed,
            home_types=list(self.home_types),
            device_types=list(self.device_types),
            failure_rate=self.failure_rate,
            variants=self.variants,
        )

    def batches(self) -> Iterator[pd.DataFrame]:
        """The events as event-time-ordered DataFrames of about two days each (see :func:`iter_batches`)."""
        fleet = self.fleet()
        dtypes = _dtypes(fleet)
        for batch in iter_event_batches(fleet, seed=self.seed, samples=self.samples, horizon_days=self.horizon_days):
            yield _frame(batch, dtypes)

    def frame(self) -> pd.DataFrame:
        """All events in one DataFrame (see :func:`generate`)."""
        fleet = self.fleet()
        floats = np.empty((len(FLOAT_COLUMNS), self.samples))
        codes = np.empty((len(CODE_COLUMNS), self.samples), dtype=np.int64)
        positive = np.empty(self.samples, dtype=bool)
        filled = 0
        for batch in iter_event_batches(fleet, seed=self.seed, samples=self.samples, horizon_days=self.horizon_days):
            end = filled + batch.size
            floats[:, filled:end], codes[:, filled:end], positive[filled:end] = (
                batch.floats,
                batch.codes,
                batch.positive,
            )
            filled = end
        return _frame(EventBatch(floats, codes, positive).take(slice(0, filled)), _dtypes(fleet))


def _dtypes(fleet: Fleet) -> dict[str, pd.CategoricalDtype]:
    """The categorical type of each code column: built once per fleet, shared by every batch's frame."""
    names: dict[str, Sequence[str]] = {
        "device_id": fleet.device_ids,
        "home_id": fleet.home_ids,
        "home_type": fleet.home_type_names,
        "device_type": fleet.device_type_names,
        "power_source": ("battery", "mains"),
        "failure_mode": (*FAILURE_MODES, "none"),
        "variant": fleet.variant_names,
    }
    return {column: pd.CategoricalDtype(pd.Index(list(names[column]))) for column in CODE_COLUMNS}


def _frame(batch: EventBatch, dtypes: dict[str, pd.CategoricalDtype]) -> pd.DataFrame:
    """The documented DataFrame of a batch: categoricals for names, floats sharing the batch's block."""
    frame = pd.DataFrame(batch.floats.T, columns=list(FLOAT_COLUMNS), copy=False)
    for row, column in enumerate(CODE_COLUMNS):
        frame[column] = pd.Categorical.from_codes(batch.codes[row], dtype=dtypes[column])
    frame["fails_within_horizon"] = batch.positive
    return frame[list(COLUMNS)]


def iter_batches(
    *,
    samples: int = DEFAULT_SAMPLES,
    days: float = DEFAULT_DAYS,
    seed: int = 0,
    home_types: Iterable[str] | None = None,
    device_types: Iterable[str] | None = None,
    failure_rate: float = DEFAULT_FAILURE_RATE,
    horizon_days: float = DEFAULT_HORIZON_DAYS,
    start: float | None = None,
    variants: Sequence[str] | None = None,
) -> Iterator[pd.DataFrame]:
    """The same events as :func:`generate`, as event-time-ordered DataFrames of about two days each.

    Arguments are checked at the call (a ``ValueError`` before any batch). Memory stays flat however
    large ``samples`` is: only the fleet's parameters and a few days of events are held at a time.
    Concatenating the batches gives exactly ``generate(...)``.
    """
    return GeneratorConfig.from_arguments(
        samples=samples,
        days=days,
        seed=seed,
        home_types=home_types,
        device_types=device_types,
        failure_rate=failure_rate,
        horizon_days=horizon_days,
        start=start,
        variants=variants,
    ).batches()


def generate(
    *,
    samples: int = DEFAULT_SAMPLES,
    days: float = DEFAULT_DAYS,
    seed: int = 0,
    home_types: Iterable[str] | None = None,
    device_types: Iterable[str] | None = None,
    failure_rate: float = DEFAULT_FAILURE_RATE,
    horizon_days: float = DEFAULT_HORIZON_DAYS,
    start: float | None = None,
    variants: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Generate ``samples`` synthetic telemetry events, one row each, ordered by event time.

    Args:
        samples: number of events (rows) to return.
        days: length of the observed span, in days.
        seed: the dataset's seed; the same arguments always give the same bytes.
        home_types: home types to draw homes from (default: all 8, in their population shares).
        device_types: device types a home may contain (default: all).
        failure_rate: mean probability that a device fails within the span (older devices more often).
        horizon_days: the label horizon: ``fails_within_horizon`` is true when the device fails within it.
        start: epoch seconds of the start of the span (default 2025-01-01T00:00Z).
        variants: names of world-variant families (:data:`VARIANT_FAMILIES`; default ``("reference",)``,
            today's world). Home ``i`` belongs to ``variants[i % len(variants)]``, so every listed family
            gets homes from the first ones on; each home and device draws its knobs within its family's
            ranges from a generator of its own. The homes, devices and failures are the same whatever the
            families: only how they are observed changes (see docs/synthetic-data.md, "World variants").

    Returns:
        A DataFrame with the columns :data:`COLUMNS`: ``ts`` (epoch s), identity columns and ``variant``
        (the home's family) as categoricals, the canonical metric fields as floats (NaN when not
        reported), and the ground truth :data:`TRUTH_COLUMNS` (``variant`` is one of them).
    """
    return GeneratorConfig.from_arguments(
        samples=samples,
        days=days,
        seed=seed,
        home_types=home_types,
        device_types=device_types,
        failure_rate=failure_rate,
        horizon_days=horizon_days,
        start=start,
        variants=variants,
    ).frame()
