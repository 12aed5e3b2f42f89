"""The bootstrap's warm start in batches: the examples :class:`~devintel.models.online.ExampleCollector` gives for a
generated stream, with the features computed a batch at a time (:class:`~devintel.models.batch_features.BatchExtractor`)
instead of an extractor call per event, and kept as rows of a float32 matrix of model inputs instead of dicts.

:func:`collect_example_rows` first delivers each failing device's failure when the stream clock reaches it (as
:func:`~devintel.models.online.warm_start_batches` does; a device whose failure is delivered is forgotten, so its later
events start afresh in a new slot), then computes the batch's features and model inputs, then resolves the delayed
labels a batch at a time (:class:`~devintel.models.warm_labels.OrderedLabels`; event by event from the first batch out
of time order on) and samples the examples learned on resolution — all with arrays, no step per event in Python.
With every negative kept, the rows are the event-by-event collector's examples, in the same order
(``tests/test_bootstrap_fast.py``; the features themselves are the event-by-event path's bit for bit,
``tests/test_batch_features.py``); the negatives are sampled by a seeded draw per event, so a stream collected in
groups of homes (:class:`HomeSplit`, one per process) joins to the whole stream's examples.
"""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TypeVar, cast

import numpy as np
import numpy.typing as npt
import pandas as pd

from devintel.contract import VALID_RANGES
from devintel.models.batch_features import BatchExtractor, model_input_matrix, names_of
from devintel.models.labels import DelayedLabels, ListRows, Resolved
from devintel.models.online import failure_times
from devintel.models.warm_labels import Delivery, OrderedLabels, Resolutions

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
    max_pending: int = 1024,
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

    def emit(tables: dict[int, InputTable], resolved: Resolutions) -> None:
        nonlocal store
        numbers, rows = resolved.refs >> _ROW_BITS, resolved.refs & ((1 << _ROW_BITS) - 1)
        present = np.unique(numbers).tolist()
        draws = np.empty(len(rows))
        for number in present:
            mine = numbers == number
            draws[mine] = tables[number][3][rows[mine]]
        kept = np.flatnonzero(resolved.labels | (draws < negative_rate))
        k, m = len(labels), len(kept)
        if len(index) > store.shape[1]:  # new inputs (early in the stream): a wider store
            wider = np.empty((len(store), len(index)), dtype=np.float32)
            wider[:k, : store.shape[1]] = store[:k]
            wider[:k, store.shape[1] :] = np.nan
            store = wider
        size = len(store)
        while k + m > size:
            size *= 2
        if size > len(store):
            store.resize((size, store.shape[1]), refcheck=False)
        store[k : k + m] = np.nan
        home_types = np.empty(m, dtype=object)
        numbers, rows = numbers[kept], rows[kept]
        for number in present:
            where, matrix, types, _ = tables[number]
            mine = np.flatnonzero(numbers == number)
            store[np.ix_(k + mine, where)] = matrix[rows[mine]]
            home_types[mine] = types[rows[mine]]
        labels.extend(resolved.labels[kept].tobytes())
        groups.extend(home_types.tolist())

    collected = _collect(batches, tabulate, emit, horizon_s, only, on_event, select, max_pending)
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
    emit: Callable[[dict[int, T], Resolutions], None],
    horizon_s: float,
    only: frozenset[str] | None,
    on_event: Callable[[int], None] | None,
    select: Callable[[pd.DataFrame], npt.NDArray[np.bool_]] | None = None,
    max_pending: int = 1024,
) -> Collected:
    """The walk of :func:`collect_example_rows`: the events of each batch (those ``select`` picks, all if None) through
    the features, made a table by ``tabulate`` (batch, feature columns, the batch's number, its size before
    ``select``), then through the delayed labels: ``emit`` gets the tables whose events may still resolve and the
    events a batch resolves, in the order they resolve (references: the table's number times 2**32 plus the row;
    ``emit`` samples; :attr:`Collected.learned` is left 0).

    The labels of a time-ordered stream are resolved a batch at a time (:class:`OrderedLabels`); from the first batch
    out of order on, event by event (:class:`~devintel.models.labels.DelayedLabels`, every event moving the clock).
    The same events resolve, in the same order, either way."""
    extractor = BatchExtractor()
    in_order: OrderedLabels | None = OrderedLabels(horizon_s, max_pending)
    one_by_one: DelayedLabels[int] | None = None
    tables: dict[int, T] = {}
    collected = Collected()
    pending: list[tuple[float, str]] = []
    known: set[str] = set()
    slot_of: dict[str, int] = {}
    last = -np.inf
    previous = -np.inf  # the last event time walked
    for number, whole in enumerate(batches):
        batch = whole if select is None else whole[select(whole)]
        collected.homes.update(set(names_of(batch["home_id"]).tolist()))
        for device, t_fail in failure_times(batch).items():
            if device not in known:
                known.add(device)
                heapq.heappush(pending, (t_fail, device))
        ts = batch["ts"].to_numpy(dtype=np.float64)
        devices = names_of(batch["device_id"])
        deliveries, slots = _deliver(devices, ts, pending, slot_of, extractor)
        columns = extractor.columns(
            slots,
            ts,
            {name: batch[name].to_numpy(dtype=np.float64) for name in VALID_RANGES if name in batch},
            names_of(batch["power_source"]) == "battery",
            names_of(batch["device_type"]),
            only,
        )
        tables[number] = tabulate(batch, columns, number, len(whole))
        del columns
        refs = (number << _ROW_BITS) + np.arange(len(ts), dtype=np.int64)
        if in_order is not None and len(ts) and (ts[0] < previous or (ts[1:] < ts[:-1]).any()):
            one_by_one = _one_by_one(in_order, horizon_s, max_pending)
            in_order = None
        if in_order is not None:
            resolutions = in_order.batch(ts, slots, refs, deliveries)
            previous = float(ts[-1]) if len(ts) else previous
            alive = set((in_order.waiting()[2] >> _ROW_BITS).tolist())
        else:
            assert one_by_one is not None
            resolutions = _walk(one_by_one, ts, slots, refs, deliveries)
            alive = set(cast(_CountedRows, one_by_one.rows).alive)
        emit(tables, resolutions)
        collected.resolved += len(resolutions)
        for old in [n for n in tables if n not in alive]:
            del tables[old]  # every event of it resolved
        collected.events += len(ts)
        if len(whole):
            last = max(last, float(whole["ts"].iloc[-1]))  # the whole stream's clock: a part ends where it ends
        if on_event is not None and len(ts):
            on_event(collected.events - 1)
    at_end = []
    while pending and pending[0][0] <= last:
        t_fail, failed = heapq.heappop(pending)
        at_end.append((t_fail, slot_of.pop(failed, None)))
    if in_order is not None:
        resolutions = in_order.finish(last, at_end)
    else:
        assert one_by_one is not None
        resolved = [r for t_fail, slot in at_end if slot is not None for r in one_by_one.failure(str(slot), t_fail)]
        resolutions = _resolutions(resolved + one_by_one.advance(last))
    emit(tables, resolutions)
    collected.resolved += len(resolutions)
    return collected


#: Bits of a row's number in an event's reference (its table's number above them).
_ROW_BITS = 32


def _deliver(
    devices: npt.NDArray[np.object_],
    ts: Floats,
    pending: list[tuple[float, str]],
    slot_of: dict[str, int],
    extractor: BatchExtractor,
) -> tuple[list[Delivery], npt.NDArray[np.int64]]:
    """The failures of ``pending`` (a heap of (failure time, device)) delivered during a batch, each before the first
    event whose time has reached it, and each event's slot: a device keeps its slot until its failure is delivered
    (then its next event takes a new one); new slots are numbered in the order of the events that take them, as
    walking the events one by one does."""
    reached = np.maximum.accumulate(ts) if len(ts) else ts
    deliveries: list[Delivery] = []
    after = np.zeros(len(ts), np.bool_)  # the event comes after its device's failure was delivered in this batch
    delivered: list[str] = []
    while len(ts) and pending and pending[0][0] <= reached[-1]:
        t_fail, device = heapq.heappop(pending)
        position = int(np.searchsorted(reached, t_fail, side="left"))
        after[position:] |= devices[position:] == device
        deliveries.append(Delivery(position, t_fail, None))
        delivered.append(device)
    codes, keys = pd.factorize(2 * pd.factorize(devices)[0] + after)  # keys in the order events first take them
    slot_of_key = np.empty(len(keys), np.int64)
    firsts = np.unique(codes, return_index=True)[1]
    fresh: dict[str, int] = {}
    for key, first in enumerate(firsts.tolist()):
        device = devices[first]
        slot = None if keys[key] & 1 else slot_of.get(device)
        if slot is None:
            slot = extractor.slots_used
            extractor.slots_used += 1
            if keys[key] & 1:
                fresh[device] = slot
            else:
                slot_of[device] = slot
        slot_of_key[key] = slot
    for i, device in enumerate(delivered):  # the slot the failure ends: the device's before its new one
        deliveries[i] = deliveries[i]._replace(slot=slot_of.pop(device, None))
        if device in fresh:
            slot_of[device] = fresh[device]
    return deliveries, slot_of_key[codes]


class _CountedRows(ListRows[int]):
    """The event-by-event buffer's rows (event references), counted per table: a table no waiting event refers to
    may be freed."""

    def __init__(self) -> None:
        self.alive: Counter[int] = Counter()

    def append(self, block: list[int], payload: int) -> None:
        block.append(payload)
        self.alive[payload >> _ROW_BITS] += 1

    def pop(self, block: list[int], index: int) -> int:
        payload = block.pop(index)
        self._gone(payload)
        return payload

    def payloads(self, block: list[int]) -> list[int]:
        for payload in block:
            self._gone(payload)
        return block

    def _gone(self, payload: int) -> None:
        table = payload >> _ROW_BITS
        self.alive[table] -= 1
        if not self.alive[table]:
            del self.alive[table]


def _one_by_one(in_order: OrderedLabels, horizon_s: float, max_pending: int) -> DelayedLabels[int]:
    """The event-by-event buffer holding ``in_order``'s waiting events (in arrival order: the same resolution
    order, no drops, as each slot holds at most ``max_pending``)."""
    labels: DelayedLabels[int] = DelayedLabels(horizon_s, max_pending, rows=_CountedRows())
    for t, slot, ref in zip(*(a.tolist() for a in in_order.waiting()), strict=True):
        labels.add(str(slot), t, ref)
    return labels


def _walk(
    labels: DelayedLabels[int],
    ts: Floats,
    slots: npt.NDArray[np.int64],
    refs: npt.NDArray[np.int64],
    deliveries: list[Delivery],
) -> Resolutions:
    """A batch through the event-by-event buffer: at each event, the failures delivered before it, the clock moved to
    its time, the event added."""
    resolved: list[Resolved[int]] = []
    due = iter(deliveries)
    delivery = next(due, None)
    for i, (t, slot, ref) in enumerate(zip(ts.tolist(), slots.tolist(), refs.tolist(), strict=True)):
        while delivery is not None and delivery.position <= i:
            if delivery.slot is not None:
                resolved += labels.failure(str(delivery.slot), delivery.failure_ts)
            delivery = next(due, None)
        resolved += labels.advance(t)
        labels.add(str(slot), t, ref)
    return _resolutions(resolved)


def _resolutions(resolved: list[Resolved[int]]) -> Resolutions:
    return Resolutions(
        np.array([r.payload for r in resolved], np.int64), np.array([r.label for r in resolved], np.bool_)
    )


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
