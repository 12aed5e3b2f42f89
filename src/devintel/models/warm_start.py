"""The bootstrap's warm start in batches: the examples :class:`~devintel.models.online.ExampleCollector` gives for a
generated stream, with the features computed a batch at a time (:class:`~devintel.models.batch_features.BatchExtractor`)
instead of an extractor call per event.

The same examples come out, in the same order, with the same feature values bit for bit
(``tests/test_batch_features.py``): each batch is walked twice in stream order, first to deliver each failing
device's failure when the stream clock reaches it (as :func:`~devintel.models.online.warm_start_batches` does; a
device whose failure is delivered is forgotten, so its later events start afresh in a new slot), then, once the
batch's features are computed, to run the delayed-label buffer (the events wait with a reference to their row) and
the seeded sampling of the examples learned on resolution. A feature vector is made a dict only for an example
learned (about one event in five), in the key order of the event-by-event path.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from devintel.contract import VALID_RANGES
from devintel.models.batch_features import BatchExtractor
from devintel.models.features import FEATURE_NAMES, Features
from devintel.models.labels import DelayedLabels, Resolved
from devintel.models.online import failure_times

if TYPE_CHECKING:
    import pandas as pd

#: A waiting event's features: (its batch's feature names and their values, one row per event; its row).
Row = tuple[tuple[list[str], npt.NDArray[np.float64]], int]


@dataclass(slots=True)
class Collected:
    """What a batched warm start saw."""

    learned: int = 0
    """Examples handed on (every positive, a share of the negatives)."""
    resolved: int = 0
    """Events whose label resolved."""
    events: int = 0


def collect_examples(
    batches: Iterable[pd.DataFrame],
    on_example: Callable[[str, Features, bool], None],
    horizon_s: float,
    negative_rate: float = 0.2,
    seed: int = 0,
    only: frozenset[str] | None = None,
    on_batch: Callable[[pd.DataFrame], None] | None = None,
    on_event: Callable[[int], None] | None = None,
) -> Collected:
    """Feed a generated stream's ``batches`` (``devintel.generators.iter_batches``) through features and delayed
    labels, calling ``on_example`` (device id, features, label) for each example learned: what
    ``warm_start_batches(ExampleCollector(on_example, horizon_s, negative_rate, seed, FeatureExtractor(only)),
    batches, on_batch, on_event)`` calls it with (``on_event`` is called once per batch here, with the index of the
    batch's last event)."""
    extractor = BatchExtractor()
    labels: DelayedLabels[Row] = DelayedLabels(horizon_s)
    rng = random.Random(seed)
    draw = rng.random
    collected = Collected()
    pending: list[tuple[float, str]] = []
    known: set[str] = set()
    slot_of: dict[str, int] = {}
    names_in_order = [name for name in FEATURE_NAMES if only is None or name in only]

    def resolve(resolved: list[Resolved[Row]]) -> None:
        for item in resolved:
            collected.resolved += 1
            if item.label or draw() < negative_rate:
                collected.learned += 1
                (names, matrix), row = item.payload
                values = matrix[row].tolist()
                features = {name: v for name, v in zip(names, values, strict=True) if v == v}  # NaN: absent
                on_example(item.device_id, features, item.label)

    last = -np.inf
    for batch in batches:
        if on_batch is not None:
            on_batch(batch)
        for device, t_fail in failure_times(batch).items():
            if device not in known:
                known.add(device)
                heapq.heappush(pending, (t_fail, device))
        devices = batch["device_id"].astype(str).tolist()
        ts = batch["ts"].to_numpy(dtype=np.float64)
        times = ts.tolist()
        # First walk: the failures delivered before each event, and each event's device slot.
        delivered: list[list[tuple[float, str]]] = []
        slots = np.empty(len(devices), dtype=np.intp)
        for i, (device, t) in enumerate(zip(devices, times, strict=True)):
            now: list[tuple[float, str]] = []
            while pending and pending[0][0] <= t:
                delivery = heapq.heappop(pending)
                now.append(delivery)
                slot_of.pop(delivery[1], None)  # forgotten: its next event starts afresh
            delivered.append(now)
            slot = slot_of.get(device)
            if slot is None:
                slot = slot_of[device] = extractor.slots_used
                extractor.slots_used += 1
            slots[i] = slot
        columns = extractor.columns(
            slots,
            ts,
            {name: batch[name].to_numpy(dtype=np.float64) for name in VALID_RANGES if name in batch},
            (batch["power_source"].astype(str) == "battery").to_numpy(),
            batch["device_type"].astype(str).to_numpy(dtype=object),
            only,
        )
        names = [name for name in names_in_order if name in columns]
        table = (names, np.column_stack([columns[name] for name in names]) if names else np.empty((len(devices), 0)))
        del columns
        # Second walk: the delayed labels, as the event-by-event collector runs them.
        for i, (device, t) in enumerate(zip(devices, times, strict=True)):
            for t_fail, failed in delivered[i]:
                resolve(labels.failure(failed, t_fail))
            resolve(labels.advance(t))
            labels.add(device, t, (table, i))
            last = t
        collected.events += len(devices)
        if on_event is not None and devices:
            on_event(collected.events - 1)
    while pending and pending[0][0] <= last:
        t_fail, failed = heapq.heappop(pending)
        resolve(labels.failure(failed, t_fail))
    resolve(labels.advance(last))
    return collected
