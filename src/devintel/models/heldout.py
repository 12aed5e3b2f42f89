"""A held-out stream scored a batch at a time: the models' probabilities for every event, and what the gate and the
report need to know of it (:class:`StreamTruth`, the devices' groups), without the stream ever held whole.

The features are :class:`~devintel.models.batch_features.BatchExtractor`'s, a device's state kept across batches in
the slot of its code (the generator's categorical codes, shared by every batch of a stream), so a stream in batches
is scored as the whole frame is by :func:`~devintel.models.bootstrap.score_frame` (``tests/test_bootstrap_fast.py``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd

from devintel.contract import VALID_RANGES
from devintel.models.batch_features import BatchExtractor, model_input_matrix, names_of
from devintel.models.dense import features_needed
from devintel.models.dense import view as dense_view
from devintel.models.live import GLOBAL
from devintel.models.online import Classifier

#: Events whose features are computed at a time: a stream's two-day batches are joined up to this many (a call of
#: the batch features has a fixed cost of its own; 10,000 events of features and model inputs hold about 15 MB).
#: Measured scoring the default bootstrap's 300,000 test events: 10,000 peaked 25 MB below 50,000, in the same time.
CHUNK = 10_000
#: A failure's precursor counts as visible in an event from this hidden severity on (the generator's 0..1 scale).
VISIBLE_PRECURSOR = 0.1


@dataclass(frozen=True, slots=True)
class StreamTruth:
    """What the generator knows about a held-out stream, per event, for scoring (never shown to a model)."""

    device: np.ndarray
    """Device codes (int)."""
    ts: np.ndarray
    failure_at: np.ndarray
    """The device's failure time (NaN: it does not fail)."""
    visible: np.ndarray
    """Whether the device's failure precursor shows in the event."""
    label: np.ndarray

    @classmethod
    def of(cls, frame: pd.DataFrame) -> StreamTruth:
        """The truth of a whole generated frame."""
        devices = frame["device_id"]
        codes = (
            np.asarray(devices.cat.codes.to_numpy(), dtype=np.intp)
            if isinstance(devices.dtype, pd.CategoricalDtype)
            else np.asarray(pd.factorize(devices)[0], dtype=np.intp)
        )
        return _truth([_TruthPart.of(frame, codes)])


@dataclass(frozen=True, slots=True)
class ScoredStream:
    """A held-out stream scored by the models: what the gate and the report need of it (not the stream itself)."""

    scores: dict[str, np.ndarray]
    truth: StreamTruth
    groups: dict[str, np.ndarray]
    """Per event, the groups its device belongs to: home type, world variant, and the failure mode it fails of
    (``none`` for a device that does not fail)."""


@dataclass(frozen=True, slots=True)
class _TruthPart:
    device: npt.NDArray[np.intp]
    ts: npt.NDArray[np.float64]
    visible: npt.NDArray[np.bool_]
    label: npt.NDArray[np.bool_]
    failures: dict[int, float]
    """Failing devices (codes) of the part, with their failure times."""
    modes: dict[int, str]

    @classmethod
    def of(cls, batch: pd.DataFrame, codes: npt.NDArray[np.intp]) -> _TruthPart:
        ts = batch["ts"].to_numpy(dtype=np.float64)
        ttf = batch["time_to_failure_h"].to_numpy(dtype=np.float64)
        known = np.isfinite(ttf)
        failing = names_of(batch["failure_mode"]) != "none"
        return cls(
            device=codes,
            ts=ts,
            visible=np.asarray(batch["precursor"].to_numpy() >= VISIBLE_PRECURSOR, dtype=np.bool_),
            label=np.asarray(batch["fails_within_horizon"].to_numpy(), dtype=np.bool_),
            failures=dict(zip(codes[known].tolist(), (ts[known] + ttf[known] * 3600.0).tolist(), strict=True)),
            modes=dict(zip(codes[failing].tolist(), names_of(batch["failure_mode"])[failing].tolist(), strict=True)),
        )


def _truth(parts: list[_TruthPart]) -> StreamTruth:
    device = np.concatenate([p.device for p in parts]) if parts else np.zeros(0, np.intp)
    failures: dict[int, float] = {}
    for part in parts:
        failures.update(part.failures)
    lookup = np.full(int(device.max()) + 1 if len(device) else 0, np.nan)
    lookup[list(failures)] = list(failures.values())
    # Devices numbered in order of first appearance, as pd.factorize numbers them.
    _, first = np.unique(device, return_index=True)
    order = np.empty(int(device.max()) + 1 if len(device) else 0, dtype=np.intp)
    order[device[np.sort(first)]] = np.arange(len(first))
    return StreamTruth(
        device=order[device],
        ts=np.concatenate([p.ts for p in parts]) if parts else np.zeros(0),
        failure_at=lookup[device],
        visible=np.concatenate([p.visible for p in parts]) if parts else np.zeros(0, np.bool_),
        label=np.concatenate([p.label for p in parts]) if parts else np.zeros(0, np.bool_),
    )


def _joined(batches: Iterable[pd.DataFrame], size: int) -> Iterable[pd.DataFrame]:
    """``batches`` joined in order into frames of at least ``size`` events (the last one may be smaller)."""
    waiting: list[pd.DataFrame] = []
    held = 0
    for batch in batches:
        waiting.append(batch)
        held += len(batch)
        if held >= size:
            yield pd.concat(waiting, ignore_index=True) if len(waiting) > 1 else waiting[0]
            waiting, held = [], 0
    if waiting:
        yield pd.concat(waiting, ignore_index=True) if len(waiting) > 1 else waiting[0]


def score_batches(
    models: dict[str, Classifier],
    batches: Iterable[pd.DataFrame],
    on_event: Callable[[int], None] | None = None,
) -> ScoredStream:
    """A generated stream's ``batches`` (``devintel.generators.iter_batches``) scored by ``models`` of the shipped
    shape: the global model's probability for every event, each home-type model's for the events of its home type
    (NaN elsewhere), with the stream's truth and groups; only those arrays are kept, a batch's features and inputs
    only while it is scored (the batches are joined up to :data:`CHUNK` events first). ``on_event`` is called after
    each chunk with the events done so far."""
    needed = features_needed(models.values())
    views = {name: dense_view(model) for name, model in models.items()}
    extractor = BatchExtractor()
    scores: dict[str, list[npt.NDArray[np.float64]]] = {name: [] for name in models}
    parts: list[_TruthPart] = []
    home_types: list[npt.NDArray[np.object_]] = []
    variants: list[npt.NDArray[np.object_]] = []
    done = 0
    for batch in _joined(batches, CHUNK):
        codes = np.asarray(batch["device_id"].cat.codes.to_numpy(), dtype=np.intp)
        columns = extractor.columns(
            codes,
            batch["ts"].to_numpy(dtype=np.float64),
            {name: batch[name].to_numpy(dtype=np.float64) for name in VALID_RANGES if name in batch},
            names_of(batch["power_source"]) == "battery",
            names_of(batch["device_type"]),
            needed,
        )
        inputs = model_input_matrix(columns)
        del columns
        types = names_of(batch["home_type"])
        for name, v in views.items():
            assert v is not None
            p = v.probabilities_of_columns(inputs, len(batch))
            if name != GLOBAL:
                p[types != name] = np.nan
            scores[name].append(p)
        del inputs
        parts.append(_TruthPart.of(batch, codes))
        home_types.append(types)
        variants.append(names_of(batch["variant"]))
        done += len(batch)
        if on_event is not None:
            on_event(done)
    truth = _truth(parts)
    modes: dict[int, str] = {}
    for part in parts:
        modes.update(part.modes)
    device = np.concatenate([p.device for p in parts]) if parts else np.zeros(0, np.intp)
    mode_of = np.array(["none"] * (int(device.max()) + 1 if len(device) else 0), dtype=object)
    mode_of[list(modes)] = list(modes.values())
    return ScoredStream(
        {name: np.concatenate(chunks) if chunks else np.zeros(0) for name, chunks in scores.items()},
        truth,
        {
            "home_type": np.concatenate(home_types) if home_types else np.zeros(0, object),
            "variant": np.concatenate(variants) if variants else np.zeros(0, object),
            "failure_mode": mode_of[device],
        },
    )
