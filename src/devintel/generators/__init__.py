"""Template-based synthetic device telemetry (pure numpy and pandas; no I/O).

>>> from devintel.generators import generate
>>> df = generate(samples=5_000, days=30, seed=1)
>>> len(df)
5000
"""

from devintel.generators.api import COLUMNS, DEFAULT_START, TRUTH_COLUMNS, generate, iter_batches
from devintel.generators.stats import DatasetStats, summarize
from devintel.generators.templates import DEVICE_TYPES, FAILURE_MODES, HOME_TYPES, METRIC_FIELDS

__all__ = [
    "COLUMNS",
    "DEFAULT_START",
    "DEVICE_TYPES",
    "FAILURE_MODES",
    "HOME_TYPES",
    "METRIC_FIELDS",
    "TRUTH_COLUMNS",
    "DatasetStats",
    "generate",
    "iter_batches",
    "summarize",
]
