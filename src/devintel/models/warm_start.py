"""The bootstrap's warm start in batches: the examples :class:`~devintel.models.online.ExampleCollector` gives for a
generated stream, with the features computed a batch at a time (:class:`~devintel.models.batch_features.BatchExtractor`)
instead of an extractor call per event, and kept as rows of a float32 matrix of model inputs instead of dicts.

:func:`collect_example_rows` walks each batch twice in stream order, first to deliver each failing device's failure
when the stream clock reaches it (as :func:`~devintel.models.online.warm_start_batches` does; a device whose failure
is delivered is forgotten, so its later events start afresh in a new slot), then, once the batch's features and
model inputs are computed, to run the delayed-label buffer (the events wait with a reference to their row) and the
sampling of the examples learned on resolution. With every negative kept, the rows are the event-by-event
collector's examples (``tests/test_bootstrap_fast.py``; the features themselves are the event-by-event path's bit
for bit, ``tests/test_batch_features.py``); the negatives are sampled by a seeded draw per event, so a stream
collected in groups of homes (:class:`HomeSplit`, one per process) joins to the whole stream's examples.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypeVar

import numpy as np
import numpy.typing as npt

from devintel.contract import VALID_RANGES
from devintel.models.batch_features import BatchExtractor, model_input_matrix, names_of
from devintel.models.labels import DelayedLabels, Resolved
from devintel.models.online import failure_times

if TYPE_CHECKING:
    import pandas as pd

Floats = npt.NDArray[np.float64]
Floats32 = npt.NDArray[np.float32]
#: A batch's features: their names and their values, one row per event.
Table = tuple[list[str], Floats]
T = TypeVar("T")


@dataclass(slots=True)
class Collected:
    """What a batched warm start saw."""

    learned: int = 0
    """Examples handed on (every positive, a share of the negatives)."""
    resolved: int = 0
    """Events whose label resolved."""
    events: int = 0
    homes: set[str] = field(default_factory=set)
    """The homes whose events were walked."""


@dataclass(slots=True)
class ExampleRows:
    """The examples a batched warm start learned, as a matrix of their model inputs (one row per example, NaN: an
    input the example lacks), their labels and the home type of their device."""

    names: list[str]
    inputs: npt.NDArray[np.float32]
    labels: npt.NDArray[np.bool_]
    groups: npt.NDArray[np.object_]
    """Home type names (objects: one string per home type, shared by its examples)."""

    def __len__(self) -> int:
        return len(self.labels)

    @classmethod
    def joined(cls, parts: list[ExampleRows]) -> ExampleRows:
        """The examples of ``parts``, one after the other (their inputs' columns united). The list is emptied as the
        parts are copied: a part whose caller holds no other reference is freed once copied, so joining holds the
        joined matrix and the parts not yet copied, not every part besides."""
        names = list(dict.fromkeys(name for part in parts for name in part.names))
        labels = np.concatenate([p.labels for p in parts]) if parts else np.zeros(0, np.bool_)
        groups = np.concatenate([p.groups for p in parts]) if parts else np.zeros(0, object)
        # Empty (untouched pages), filled a part at a time: the memory grows as the copy goes.
        inputs = np.empty((len(labels), len(names)), dtype=np.float32)
        start = 0
        while parts:
            part = parts.pop(0)
            rows = slice(start, start + len(part))
            if part.names == names:
                inputs[rows] = part.inputs
            else:
                inputs[rows] = np.nan
                inputs[rows, [names.index(n) for n in part.names]] = part.inputs
            start += len(part)
            del part
        return cls(names, inputs, labels, groups)


#: A batch's model inputs (their columns in the examples' matrix, values), each event's home type and its
#: negative-sampling draw.
InputTable = tuple[npt.NDArray[np.intp], Floats32, npt.NDArray[np.object_], Floats]


def collect_example_rows(
    batches: Iterable[pd.DataFrame],
    horizon_s: float,
    negative_rate: float = 0.2,
    seed: int = 0,
    only: frozenset[str] | None = None,
    select: Callable[[pd.DataFrame], npt.NDArray[np.bool_]] | None = None,
    on_event: Callable[[int], None] | None = None,
) -> tuple[ExampleRows, Collected]:
    """The examples of a generated stream as :class:`ExampleRows`: the features and delayed labels of the
    event-by-event :class:`~devintel.models.online.ExampleCollector` (the same events resolve, with the same labels),
    each event's
    :func:`~devintel.models.learners.model_inputs` computed a batch at a time
    (:func:`~devintel.models.batch_features.model_input_matrix`; no dict per example) and copied into a float32
    matrix when the event is learned.

    Every positive is learned, and a negative when a uniform draw of its own, made per event from ``seed`` and its
    place in the stream (batch, row), is below ``negative_rate``: which events are learned does not depend on the
    order their labels resolve in, so ``select`` (a mask of the events of each batch to take, e.g. some homes'
    devices; None: all) may split a stream into parts collected apart (in two processes) whose examples, joined, are
    the whole stream's. The examples come in the order their labels resolve."""
    index: dict[str, int] = {}
    # Rows are written (NaN first) as examples come; the store grows in place (``resize``: the C library moves a large
    # block's pages, it does not copy them), so growing never holds two stores.
    store = np.empty((4096, 64), dtype=np.float32)
    labels = bytearray()
    groups: list[str] = []

    def tabulate(batch: pd.DataFrame, columns: dict[str, Floats], number: int, size: int) -> InputTable:
        inputs = model_input_matrix(columns)
        names = list(inputs)
        for name in names:
            index.setdefault(name, len(index))
        # float32 as the store keeps them (the same rounding, done once per batch): the tables waiting for their
        # labels hold half as much.
        matrix = (
            np.column_stack([inputs[name] for name in names]).astype(np.float32)
            if names
            else np.empty((len(batch), 0), dtype=np.float32)
        )
        draws = np.random.default_rng([seed, number]).random(size)[batch.index.to_numpy()]
        where = np.array([index[name] for name in names], dtype=np.intp)
        return where, matrix, names_of(batch["home_type"]), draws

    def emit(device_id: str, table: InputTable, row: int, label: bool) -> None:
        nonlocal store
        where, matrix, home_types, draws = table
        if not label and draws[row] >= negative_rate:
            return
        k = len(labels)
        if len(index) > store.shape[1]:  # a new input (early in the stream): a wider store
            wider = np.empty((len(store), len(index)), dtype=np.float32)
            wider[:k, : store.shape[1]] = store[:k]
            wider[:k, store.shape[1] :] = np.nan
            store = wider
        if k == len(store):
            store.resize((2 * len(store), store.shape[1]), refcheck=False)
        store[k] = np.nan
        store[k, where] = matrix[row]
        labels.append(label)
        groups.append(home_types[row])

    collected = _collect(batches, tabulate, emit, horizon_s, only, on_event, select)
    k = len(labels)
    collected.learned = k
    if store.shape[1] == len(index):
        store.resize((k, len(index)), refcheck=False)  # in place: the unused rows go back, no second matrix
        inputs = store
    else:  # the store is wider (fewer inputs than its first width) or narrower (inputs nobody learned)
        inputs = np.full((k, len(index)), np.nan, dtype=np.float32)
        width = min(store.shape[1], len(index))
        inputs[:, :width] = store[:k, :width]
    learned = np.frombuffer(bytes(labels), np.bool_).copy()
    rows = ExampleRows(list(index), inputs, learned, np.array(groups, dtype=object))
    return rows, collected


def _collect(
    batches: Iterable[pd.DataFrame],
    tabulate: Callable[[pd.DataFrame, dict[str, Floats], int, int], T],
    emit: Callable[[str, T, int, bool], None],
    horizon_s: float,
    only: frozenset[str] | None,
    on_event: Callable[[int], None] | None,
    select: Callable[[pd.DataFrame], npt.NDArray[np.bool_]] | None = None,
) -> Collected:
    """The walk of :func:`collect_example_rows`: the events of each batch (those ``select`` picks, all if None) through
    the features, made a table by ``tabulate`` (batch, feature columns, the batch's number, its size before
    ``select``), then through the delayed labels: ``emit`` (device id, table, row, label) is called for each event
    whose label resolves, in the order they resolve (``emit`` samples; :attr:`Collected.learned` is left 0)."""
    extractor = BatchExtractor()
    labels: DelayedLabels[tuple[T, int]] = DelayedLabels(horizon_s)
    collected = Collected()
    pending: list[tuple[float, str]] = []
    known: set[str] = set()
    slot_of: dict[str, int] = {}

    def resolve(resolved: list[Resolved[tuple[T, int]]]) -> None:
        for item in resolved:
            collected.resolved += 1
            table, row = item.payload
            emit(item.device_id, table, row, item.label)

    last = -np.inf
    waiting: deque[float] = deque()  # the times of the events added, oldest first, until their horizon passes
    previous = -np.inf  # the last event time walked (inf: the stream was out of order once, so always advance)
    for number, whole in enumerate(batches):
        batch = whole if select is None else whole[select(whole)]
        collected.homes.update(set(names_of(batch["home_id"]).tolist()))
        for device, t_fail in failure_times(batch).items():
            if device not in known:
                known.add(device)
                heapq.heappush(pending, (t_fail, device))
        devices = names_of(batch["device_id"]).tolist()
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
            names_of(batch["power_source"]) == "battery",
            names_of(batch["device_type"]),
            only,
        )
        table = tabulate(batch, columns, number, len(whole))
        del columns
        # Second walk: the delayed labels, as the event-by-event collector runs them. In a time-ordered stream the
        # buffer's oldest waiting event is the oldest added and not yet past its horizon (``waiting``), so the clock
        # need only move when that one expires: the same labels, resolved at the same events, without a call per
        # event (any disorder: every event moves the clock).
        ordered = bool(len(ts) == 0 or (ts[0] >= previous and (ts[1:] >= ts[:-1]).all()))
        for i, (device, t) in enumerate(zip(devices, times, strict=True)):
            for t_fail, failed in delivered[i]:
                resolve(labels.failure(failed, t_fail))
            if not ordered or (waiting and waiting[0] + horizon_s < t):
                resolve(labels.advance(t))
                while waiting and waiting[0] + horizon_s < t:
                    waiting.popleft()
            labels.add(device, t, (table, i))
            waiting.append(t)
        if len(ts):
            previous = float(ts[-1]) if ordered else np.inf
        collected.events += len(devices)
        if len(whole):
            last = max(last, float(whole["ts"].iloc[-1]))  # the whole stream's clock: a part ends where it ends
        if on_event is not None and devices:
            on_event(collected.events - 1)
    while pending and pending[0][0] <= last:
        t_fail, failed = heapq.heappop(pending)
        resolve(labels.failure(failed, t_fail))
    resolve(labels.advance(last))
    return collected


class HomeSplit:
    """A mask of the events of one of ``parts`` groups of homes (``select`` of :func:`collect_example_rows`): homes
    are dealt to the groups as they first appear, the busiest of a batch first, each to the group with the fewest
    events so far, so the groups carry about the same load. Every part of one stream deals the same way (the rule
    reads only the stream), so the parts are disjoint and cover it."""

    def __init__(self, parts: int, part: int) -> None:
        if not 0 <= part < parts:
            raise ValueError(f"part {part} of {parts}")
        self.parts, self.part = parts, part
        self._group_of: dict[int, int] = {}
        self._load = [0] * parts

    def __call__(self, batch: pd.DataFrame) -> npt.NDArray[np.bool_]:
        homes = np.asarray(batch["home_id"].cat.codes.to_numpy(), dtype=np.intp)
        counts = np.bincount(homes)
        for home in np.argsort(-counts, kind="stable").tolist():
            if counts[home] and home not in self._group_of:
                group = self._load.index(min(self._load))
                self._group_of[home] = group
                self._load[group] += int(counts[home])
        lookup = np.array([self._group_of.get(h, -1) for h in range(len(counts))], dtype=np.intp)
        return np.asarray(lookup[homes] == self.part)
