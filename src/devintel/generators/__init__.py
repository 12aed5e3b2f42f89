"""Template-based synthetic device telemetry (pure numpy and pandas; no I/O).

>>> from devintel.generators import generate
>>> df = generate(samples=5_000, days=30, seed=1)
>>> len(df)
5000

The templates import eagerly; the generator and the statistics (which need pandas) import on first use, so
that the live daemon, which needs only the templates, does not carry pandas in memory.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from devintel.generators.templates import DEVICE_TYPES, FAILURE_MODES, HOME_TYPES, METRIC_FIELDS

if TYPE_CHECKING:
    from devintel.generators.api import COLUMNS, DEFAULT_START, TRUTH_COLUMNS, generate, iter_batches
    from devintel.generators.stats import DatasetStats, summarize
    from devintel.generators.variants import VARIANT_FAMILIES, VariantFamily

#: Names imported on first use, and their module.
_LAZY = {
    "COLUMNS": "api",
    "DEFAULT_START": "api",
    "TRUTH_COLUMNS": "api",
    "generate": "api",
    "iter_batches": "api",
    "VARIANT_FAMILIES": "variants",
    "VariantFamily": "variants",
    "DatasetStats": "stats",
    "summarize": "stats",
}

__all__ = [
    "COLUMNS",
    "DEFAULT_START",
    "DEVICE_TYPES",
    "FAILURE_MODES",
    "HOME_TYPES",
    "METRIC_FIELDS",
    "TRUTH_COLUMNS",
    "VARIANT_FAMILIES",
    "DatasetStats",
    "VariantFamily",
    "generate",
    "iter_batches",
    "summarize",
]


def __getattr__(name: str) -> object:
    """The generator's and the statistics' names, imported on first use."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"devintel.generators.{module}"), name)
