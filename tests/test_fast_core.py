"""The fast core keeps the semantics: lazy events equal pandas' records, the batch-streamed warm start learns what
the whole-frame one learns."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from devintel.generators import generate, iter_batches
from devintel.generators.api import TRUTH_COLUMNS
from devintel.models.learners import default_model
from devintel.models.online import OnlineLearner, events, failure_times, warm_start, warm_start_batches

H = 7 * 86_400.0
VARIANTS = ("reference", "noisy", "sparse", "battery_cliff")


def records(frame: pd.DataFrame) -> list[dict[str, object]]:
    """The oracle: pandas' records with categoricals as str and NaN fields dropped (``events`` before it was lazy)."""
    columns = [c for c in frame.columns if c not in TRUTH_COLUMNS]
    strings = [c for c in columns if isinstance(frame[c].dtype, pd.CategoricalDtype)]
    view = frame[columns].astype(dict.fromkeys(strings, str))
    return [
        {str(k): v for k, v in record.items() if not (isinstance(v, float) and math.isnan(v))}
        for record in view.to_dict("records")
    ]


def test_events_equal_pandas_records() -> None:
    frame = generate(samples=20_000, days=30, seed=5, variants=VARIANTS)
    mine, oracle = list(events(frame)), records(frame)
    assert mine == oracle
    assert [list(e) for e in mine] == [list(e) for e in oracle]  # the same keys in the same order
    assert all(type(a[k]) is type(b[k]) for a, b in zip(mine, oracle, strict=True) for k in a)
    assert any(len(e) < len(mine[0]) for e in mine)  # some fields were missing and left out


@pytest.mark.slow
def test_batch_streamed_warm_start_learns_what_the_whole_frame_does() -> None:
    arguments = {"samples": 60_000, "days": 60, "seed": 6, "variants": VARIANTS}
    frame = generate(**arguments)  # type: ignore[arg-type]
    whole = OnlineLearner(model=default_model(), horizon_s=H, seed=2)
    warm_start(whole, events(frame), failure_times(frame))
    streamed = OnlineLearner(model=default_model(), horizon_s=H, seed=2)
    seen: list[int] = []
    warm_start_batches(streamed, iter_batches(**arguments), lambda batch: seen.append(len(batch)))  # type: ignore[arg-type]
    assert len(seen) > 10
    assert sum(seen) == len(frame)
    assert whole.learned > 1_000
    assert (streamed.learned, streamed.resolved) == (whole.learned, whole.resolved)
    assert streamed.model["LogisticRegression"].weights == whole.model["LogisticRegression"].weights  # type: ignore[index]
    assert list(streamed.outcomes) == list(whole.outcomes)
