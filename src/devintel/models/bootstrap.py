"""Bootstrap: generate, warm-start, validate, gate, snapshot.

1. **Generate** a training stream (``seed``, homes of the training world variants) and two streams of other
   homes: validation (``seed + 1000``, the training variants) and held-out test (``seed + 2000``, world variants
   the models never saw: leave-variant-out). A different seed draws different homes.
2. **Warm-start** a global model and one model per home type on the training stream, through the online path's
   features and delayed labels (the synthetic failure times as evidence): for models of the shipped shape the
   examples are collected a batch at a time as rows of model inputs
   (:func:`~devintel.models.warm_start.collect_example_rows`: no prediction, no dict per event; every positive and a
   share of the negatives, each drawn per event so the stream can be collected in two groups of homes, one per
   core), then every model learns its examples through River's ``learn_many``
   (:func:`~devintel.models.consolidate.learn_examples`: the scaler's statistics, then shuffled mini-batch passes of
   the regression); any other learner learns event by event with ``learn_one``. Nothing predicts during the warm
   start, so the report's rolling (prequential) metrics and ADWIN drift count are those of the routed decisions
   over the test homes' stream.
3. **Calibrate and route** on the validation homes: each model's decision threshold is tuned there
   (:func:`tune_threshold`: where the lower of precision and recall is highest); a home type keeps its
   own model only where it beats the global model's F1 on that type, otherwise the global model serves
   it. Validation homes, not the tail of the warm start, calibrate the thresholds because they are what a
   deployment is: homes the models never saw.
   The alarm decision (:mod:`~devintel.models.decision`: persistence and hysteresis) is tuned on the validation
   homes too (:func:`~devintel.models.tuning.tune_decision`): the best catch rate within the false-alarm budget.
4. **Gate** the routed predictions on the held-out test homes against the quality thresholds: the seed's
   event-level measures on the probabilities, and what a household lives with (false-alarm episodes per 100
   device-days, failures caught 12 h ahead) on the decision's flags, computed event by event as live. A failed
   gate raises :class:`~devintel.models.gate.GateFailed` (nothing is written) unless
   ``allow_low_quality``, which writes the snapshot and records the failure in its manifest.
5. **Snapshot** the pickled models with a manifest (descriptor, thresholds, router, decision, metrics, gate) and
   a report (Markdown, JSON, and PNG plots where matplotlib is installed; :mod:`~devintel.models.report`) through
   the atomic :class:`~devintel.models.snapshots.SnapshotStore`.

The held-out streams are scored a batch at a time (:mod:`~devintel.models.heldout`): neither is ever held whole.

Why one module of over 400 lines: the five steps share one configuration, one worker protocol (the second process
that collects half the training homes, learns the home-type models and scores the test homes) and the scored streams
they hand on; the worker is the part that could move to a module of its own.
"""

from __future__ import annotations

import contextlib
import json
import logging
import multiprocessing
import pickle
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from multiprocessing.connection import Connection
from typing import Any, Final

import numpy as np
import pandas as pd
from river import compose, drift

from devintel.generators import HOME_TYPES, generate, iter_batches
from devintel.models.batch_features import computes, frame_columns, model_input_matrix, names_of
from devintel.models.consolidate import EPOCHS, learn_examples
from devintel.models.decision import AlarmState, DecisionParams, decide, step
from devintel.models.dense import DenseView, features_needed, probabilities, supports
from devintel.models.dense import probability as probability_of
from devintel.models.dense import view as dense_view
from devintel.models.features import FeatureExtractor, Features
from devintel.models.gate import GateFailed, GateResult, QualityThresholds, evaluate_gate
from devintel.models.heldout import ScoredStream, StreamTruth, score_batches
from devintel.models.household import household_by_group, household_report
from devintel.models.learners import default_model, model_inputs
from devintel.models.live import GLOBAL, MODELS_DIR
from devintel.models.memory import map_large_blocks, release
from devintel.models.metrics import BinaryReport, binary_report, recall_by_group, rolling_history
from devintel.models.online import Classifier, ExampleCollector, events, warm_start_batches
from devintel.models.report import markdown_report, plots
from devintel.models.snapshots import SnapshotStore
from devintel.models.tuning import tune_decision
from devintel.models.warm_start import Collected, ExampleRows, HomeSplit, collect_example_rows

logger = logging.getLogger(__name__)

VALIDATION_SEED_OFFSET: Final = 1000
TEST_SEED_OFFSET: Final = 2000
#: World variant families the default bootstrap trains and validates on, and those it is judged on, which no model
#: saw (leave-variant-out; :data:`devintel.generators.VARIANT_FAMILIES` describes each).
TRAIN_VARIANTS: Final = ("reference", "noisy", "sparse", "battery_cliff")
TEST_VARIANTS: Final = ("on_change", "load_heated")
#: Seconds (wall time) between two progress lines of the warm start and the held-out scoring.
PROGRESS_S: Final = 5.0
#: Held-out events from which a worker process scores the test homes (below, starting one costs more than it saves).
MIN_WORKER_SAMPLES: Final = 50_000


@dataclass(frozen=True, slots=True)
class BootstrapConfig:
    """What a bootstrap trains on and how it is judged."""

    samples: int = 1_000_000
    days: float = 180.0
    seed: int = 0
    holdout_samples: int = 300_000
    horizon_days: float = 7.0
    failure_rate: float = 0.45
    negative_rate: float = 0.2
    thresholds: QualityThresholds = field(default_factory=QualityThresholds)
    allow_low_quality: bool = False
    train_variants: tuple[str, ...] = TRAIN_VARIANTS
    """World variant families of the training and validation homes."""
    test_variants: tuple[str, ...] = TEST_VARIANTS
    """World variant families of the held-out test homes (none of the training ones, for an honest figure)."""
    workers: int = 0
    """Processes besides this one (the command line and the daemon use 1): with 1, a worker process collects the
    examples of half the training homes while this one collects the other half, learns most home-type models while
    this one learns the global model (and the lightest home types'), then generates and scores the held-out test
    homes while this one scores the validation homes and tunes the decision (the results are the same); 0 does all
    of it here, as does a bootstrap whose held-out streams are under :data:`MIN_WORKER_SAMPLES` events (a fresh
    interpreter costs more than it saves). 0 by default because in a threaded process a worker is a fresh
    interpreter (``spawn``) that imports the caller's main module: a script that calls :func:`bootstrap` with a
    worker from a threaded process needs an ``if __name__ == "__main__"`` guard (:func:`start_method`)."""


@dataclass(frozen=True, slots=True)
class BootstrapResult:
    """What a bootstrap produced."""

    version: str | None
    gate: GateResult
    test: BinaryReport
    router: dict[str, str]
    report: dict[str, object]
    decision: DecisionParams


def _stream_arguments(config: BootstrapConfig, samples: int, seed: int, variants: tuple[str, ...]) -> dict[str, Any]:
    """The generator's arguments for a stream shaped by the bootstrap's settings (a different seed draws different
    homes)."""
    return {
        "samples": samples,
        "days": config.days,
        "seed": seed,
        "horizon_days": config.horizon_days,
        "failure_rate": config.failure_rate,
        "variants": variants,
    }


def _synthetic(config: BootstrapConfig, samples: int, seed: int, variants: tuple[str, ...]) -> pd.DataFrame:
    """A synthetic stream shaped by the bootstrap's settings, as one frame."""
    return generate(**_stream_arguments(config, samples, seed, variants))


def _synthetic_batches(
    config: BootstrapConfig, samples: int, seed: int, variants: tuple[str, ...]
) -> Iterator[pd.DataFrame]:
    """The events of :func:`_synthetic`, in batches of about two days (memory stays flat)."""
    return iter_batches(**_stream_arguments(config, samples, seed, variants))


def tune_threshold(truth: np.ndarray, probability: np.ndarray) -> float:
    """The decision threshold at which the lower of precision and recall on (truth, probability) is highest
    (their break-even point): the quality gate asks for both, and the plain best F1 buys precision with
    recall. 0.5 when there is no positive example."""
    y = np.asarray(truth, dtype=bool)
    p = np.asarray(probability, dtype=np.float64)
    if not y.any():
        return 0.5
    order = np.argsort(-p, kind="stable")
    ranked = p[order]
    # Flag the top k for every k that ends a run of tied probabilities (a threshold cannot split a tie).
    ends = np.flatnonzero(np.append(ranked[1:] != ranked[:-1], True))
    true_positive = np.cumsum(y[order])[ends]
    flagged = ends + 1
    precision = true_positive / flagged
    recall = true_positive / y.sum()
    score = np.minimum(precision, recall)
    return float(ranked[ends[int(np.argmax(score))]])


def score_frame(
    models: dict[str, Classifier], frame: pd.DataFrame, on_event: Callable[[int], None] | None = None
) -> dict[str, np.ndarray]:
    """The global model's probability for every event of ``frame``, and each home-type model's for the events
    of its home type (NaN elsewhere); features come from the frame's own history, computed once per event: for
    models of the shipped shape and inputs a chunk of events at a time, with :mod:`~devintel.models.batch_features`
    (equal to the event by event path: ``tests/test_batch_features.py``), otherwise event by event. ``on_event`` is
    called with the events done so far (progress): after each chunk, or with each event's index."""
    views = {name: dense_view(model) for name, model in models.items()}
    if not compose.Pipeline._LEARN_UNSUPERVISED_DURING_PREDICT and all(
        v is not None and v.inputs_function == [model_inputs] for v in views.values()
    ):
        home_types = names_of(frame["home_type"])
        out = {name: np.full(len(frame), np.nan) for name in models}
        for start, end, columns in frame_columns(frame, features_needed(models.values())):
            inputs = model_input_matrix(columns)
            del columns
            for name, v in views.items():
                assert v is not None
                p = v.probabilities_of_columns(inputs, end - start)
                rows = slice(None) if name == GLOBAL else home_types[start:end] == name
                out[name][start:end][rows] = p[rows]
            if on_event is not None:
                on_event(end)
        return out
    return score_events(models, frame, on_event)


def score_events(
    models: dict[str, Classifier], frame: pd.DataFrame, on_event: Callable[[int], None] | None = None
) -> dict[str, np.ndarray]:
    """:func:`score_frame` event by event, through :class:`~devintel.models.features.FeatureExtractor` (any
    learner)."""
    extractor = FeatureExtractor(only=features_needed(models.values()))
    out = {name: np.full(len(frame), np.nan) for name in models}
    home_types = frame["home_type"].astype(str).tolist()
    for i, event in enumerate(events(frame)):
        if on_event is not None:
            on_event(i)
        features = extractor.update(event)
        home_type = home_types[i]
        own = models.get(home_type)
        if own is None:
            out[GLOBAL][i] = probability_of(models[GLOBAL], features)
        else:
            out[GLOBAL][i], out[home_type][i] = probabilities([models[GLOBAL], own], features)
    return out


def routed_scores(
    frame: pd.DataFrame, scores: dict[str, np.ndarray], thresholds: dict[str, float], router: dict[str, str]
) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities and decisions of the routed model for every event of ``frame``."""
    home_types = names_of(frame["home_type"])
    probability = scores[GLOBAL].copy()
    decision = probability >= thresholds[GLOBAL]
    for home_type, model in router.items():
        rows = home_types == home_type
        probability[rows] = scores[model][rows]
        decision[rows] = scores[model][rows] >= thresholds[model]
    return probability, decision


def _progress(
    total: int, what: str, say: Callable[[str], None], unit: str = "events", every: int = 1024
) -> Callable[[int], None]:
    """A callback (called with the count done: every event, every pass) that says how far ``what`` has got, at most
    every :data:`PROGRESS_S` seconds; it looks at the clock only every ``every`` counts."""
    last = time.monotonic()

    def tick(i: int) -> None:
        nonlocal last
        if i % every == 0 and time.monotonic() - last >= PROGRESS_S:
            last = time.monotonic()
            say(f"{what}: {i:,} of {total:,} {unit} ({i / total:.0%})")

    return tick


def alarm_flags(params: DecisionParams, devices: np.ndarray, ts: np.ndarray, probability: np.ndarray) -> np.ndarray:
    """The decision's flag after every event of a time-ordered stream, event by event with
    :func:`~devintel.models.decision.step` (the code the live daemon runs), each device from a fresh state."""
    states: dict[int, AlarmState] = {}
    flags = np.zeros(len(probability), dtype=np.bool_)
    for i, (device, t, p) in enumerate(zip(devices.tolist(), ts.tolist(), probability.tolist(), strict=True)):
        state = states.get(device)
        if state is None:
            state = states[device] = AlarmState()
        flags[i] = step(params, state, t, p)
    return flags


def device_groups(frame: pd.DataFrame) -> dict[str, np.ndarray]:
    """Per event, the groups its device belongs to: home type, world variant, and the failure mode it fails of
    (``none`` for a device that does not fail)."""
    devices = frame["device_id"].astype(str)
    failing = frame["failure_mode"].astype(str) != "none"
    mode_of = dict(zip(devices[failing], frame["failure_mode"].astype(str)[failing], strict=True))
    return {
        "home_type": names_of(frame["home_type"]),
        "variant": names_of(frame["variant"]),
        "failure_mode": devices.map(mode_of).fillna("none").to_numpy(),
    }


def household_measures(
    truth: StreamTruth, flags: np.ndarray, horizon_s: float, groups: dict[str, np.ndarray]
) -> dict[str, object]:
    """The household measures of ``flags`` on a stream: overall and per group."""
    args = (truth.device, truth.ts, flags, truth.failure_at, horizon_s, truth.visible)
    measures = {
        "overall": household_report(*args).as_dict(),
        **{
            f"by_{name}": {key: report.as_dict() for key, report in household_by_group(values, *args).items()}
            for name, values in groups.items()
        },
    }
    release()  # the groups' copies
    return measures


#: Window and spacing of the rolling metrics the report plots over the test homes' stream.
ROLLING_WINDOW: Final = 5_000
ROLLING_EVERY: Final = 1_000


def error_drifts(truth: np.ndarray, decision: np.ndarray) -> int:
    """How many times River's ADWIN detects a change in the error rate of ``decision`` against ``truth`` (in order)."""
    detector = drift.ADWIN()
    detected = 0
    for error in (np.asarray(truth, dtype=bool) != np.asarray(decision, dtype=bool)).tolist():
        detector.update(float(error))
        detected += detector.drift_detected
    return detected


def held_out(
    models: dict[str, Classifier],
    config: BootstrapConfig,
    seed: int,
    variants: tuple[str, ...],
    what: str = "",
    say: Callable[[str], None] | None = None,
) -> ScoredStream:
    """A held-out stream of ``seed``'s homes of ``variants`` scored by ``models``: a batch at a time for models of
    the shipped shape (:func:`~devintel.models.heldout.score_batches`), otherwise as one frame, event by event."""
    tick = _progress(config.holdout_samples, what, say, every=1) if say is not None else None
    if batched(models):
        scored = score_batches(models, _synthetic_batches(config, config.holdout_samples, seed, variants), tick)
        release()  # the batches' features and frames
        return scored
    frame = _synthetic(config, config.holdout_samples, seed, variants)
    return ScoredStream(score_frame(models, frame, tick), StreamTruth.of(frame), device_groups(frame))


#: Groups of homes the training stream is collected in (:class:`~devintel.models.warm_start.HomeSplit`): one per
#: core; with no worker, this process collects both, one after the other, so the examples are the same.
PARTS: Final = 2


def collect_part(
    config: BootstrapConfig, part: int, on_event: Callable[[int], None] | None = None
) -> tuple[ExampleRows, Collected]:
    """The examples of one group of homes of the training stream (:func:`collect_example_rows`); what the walk
    freed goes back to the system (:func:`~devintel.models.memory.release`) before the examples are learned."""
    collected = collect_example_rows(
        _synthetic_batches(config, config.samples, config.seed, config.train_variants),
        horizon_s=config.horizon_days * 86_400.0,
        negative_rate=config.negative_rate,
        seed=config.seed,
        only=features_needed([default_model()]),
        select=HomeSplit(PARTS, part),
        on_event=on_event,
    )
    release()
    return collected


def learn_home_types(
    models: dict[str, Classifier], rows: ExampleRows, seed: int, names: Iterable[str]
) -> dict[str, Classifier]:
    """Each home-type model of ``names`` learned on the examples of its home type (:func:`learn_examples`)."""
    for name in names:
        which = np.flatnonzero(rows.groups == name)  # read in place: no copy of its examples
        learn_examples(models[name], rows.names, rows.inputs, rows.labels[which], seed, rows=which)
    return {name: models[name] for name in names}


#: Share of the examples whose home-type models this process learns beside the global one while the worker learns
#: the others (:func:`lightest_home_types`): the worker's eight models on all the examples took 2.8 s against 2.2 s
#: for the global model on the same examples (per-model costs: the scaler's statistics, the gathers by index).
HERE_SHARE: Final = 0.125


def lightest_home_types(learned: dict[str, int]) -> set[str]:
    """The home types with the fewest examples (``learned``: examples per model, the global one's all of them), as
    many as keep their examples within :data:`HERE_SHARE` of all: the home-type models this process learns."""
    here: set[str] = set()
    taken = 0
    for name in sorted(HOME_TYPES, key=lambda name: (learned[name], name)):
        taken += learned[name]
        if taken > HERE_SHARE * learned[GLOBAL]:
            break
        here.add(name)
    return here


def send_rows(connection: Connection, kind: str, rows: ExampleRows, extra: object) -> None:
    """Send ``rows`` with ``extra`` as a message of ``kind`` (:func:`receive_joined` reads it): the names, labels and
    groups pickled, then the inputs' matrix as its raw bytes, written from where it lies (pickling it would hold a
    second copy in each process while it crosses)."""
    connection.send((kind, (rows.names, rows.inputs.shape, rows.labels, rows.groups, extra)))
    connection.send_bytes(np.ascontiguousarray(rows.inputs).reshape(-1).view(np.uint8).data)


def receive_joined(
    connection: Connection, message: tuple[str, Any], mine: list[ExampleRows], own_first: bool
) -> tuple[ExampleRows, Any]:
    """The examples a message of :func:`send_rows` carries (its pickled first part already received: ``message``)
    joined to this process's (``mine``, a list of one, which is emptied: they are copied first and freed, unless the
    caller holds them too), first or second as :meth:`ExampleRows.joined` would join them, and the message's extra.
    When the sender's columns are those of the join (the usual case: both groups of homes meet every input), its
    matrix is read straight into its rows of the joined one: the join holds no third copy."""
    (own,) = mine
    mine.clear()
    names_in, shape, labels_in, groups_in, extra = message[1]
    order = [own.names, names_in] if own_first else [names_in, own.names]
    names = list(dict.fromkeys(name for part in order for name in part))
    n_own, n_in = len(own), int(shape[0])
    inputs = np.empty((n_own + n_in, len(names)), dtype=np.float32)
    rows_own, rows_in = (slice(0, n_own), slice(n_own, None)) if own_first else (slice(n_in, None), slice(0, n_in))
    if own.names == names:
        inputs[rows_own] = own.inputs
    else:
        inputs[rows_own] = np.nan
        inputs[rows_own, [names.index(n) for n in own.names]] = own.inputs
    labels, groups = (own.labels, labels_in), (own.groups, groups_in)
    if not own_first:
        labels, groups = labels[::-1], groups[::-1]
    del own  # freed here (when the caller let go of it): the sender's matrix comes in after
    if names_in == names:
        connection.recv_bytes_into(inputs[rows_in].reshape(-1).view(np.uint8))
    else:
        received = np.empty(shape, dtype=np.float32)
        connection.recv_bytes_into(received.reshape(-1).view(np.uint8))
        inputs[rows_in] = np.nan
        inputs[rows_in, [names.index(n) for n in names_in]] = received
        del received
    return ExampleRows(names, inputs, np.concatenate(labels), np.concatenate(groups)), extra


def _worker(connection: Connection, config: BootstrapConfig, home_types: dict[str, Classifier]) -> None:
    """A worker process's work (:class:`Worker`): collect the second group of homes of the training stream and send
    its examples; receive the first group's, learn the home-type models on all of them and send them back; receive
    the global model, generate the held-out test homes, score them with every model, and send back the
    :class:`ScoredStream` (or the error, at any point)."""
    try:
        mine, collected = collect_part(config, 1)
        send_rows(connection, "rows", mine, collected)
        message = connection.recv()
        if message is None:
            return  # cancelled
        mine_only = [mine]
        del mine
        rows, names = receive_joined(connection, message, mine_only, own_first=False)
        release()
        connection.send(("models", learn_home_types(home_types, rows, config.seed, names)))
        del rows
        release()
        message = connection.recv()
        if message is None:
            return
        _, models = message
        connection.send(("ok", held_out(models, config, config.seed + TEST_SEED_OFFSET, config.test_variants)))
    except BaseException:  # everything goes back to the parent, which raises it
        connection.send(("error", traceback.format_exc()))
    finally:
        connection.close()


def start_method() -> str:
    """How :class:`Worker` starts its process: ``fork`` where the platform has it and this process runs one thread
    (the command line, the daemon before its event loop, the refresh child), else ``spawn``."""
    single = threading.active_count() == 1
    return "fork" if single and "fork" in multiprocessing.get_all_start_methods() else "spawn"


class Worker:
    """A second process for the bootstrap (:attr:`BootstrapConfig.workers`): it collects the second group of homes
    of the training stream while this process collects the first, learns the home-type models but the lightest
    (:func:`lightest_home_types`) while this process learns the global one and those (on the same joined examples:
    the models are those this process would have learned), then scores the held-out test homes while this process
    scores the validation homes.

    Started with ``fork`` when this process runs a single thread (:func:`start_method`: the worker begins at once,
    sharing this process's imported modules instead of importing its own, ~220 MB and 1-2 s), else with ``spawn`` (a
    fresh interpreter: forking a threaded process can copy a lock some other thread holds); :meth:`close` ends it
    however the bootstrap ends."""

    def __init__(self, config: BootstrapConfig, home_types: dict[str, Classifier]) -> None:
        fork = start_method() == "fork"
        context = multiprocessing.get_context("fork") if fork else multiprocessing.get_context("spawn")
        self._connection, child = context.Pipe()
        self._process = context.Process(
            target=_worker, args=(child, config, home_types), name="devintel-bootstrap-worker", daemon=True
        )
        self._process.start()
        child.close()

    def rows(self, first: list[ExampleRows]) -> tuple[ExampleRows, Collected]:
        """The examples of the second group of homes (waits for them) joined after ``first`` (a list of one, emptied:
        see :func:`receive_joined`), and what their walk saw."""
        kind, payload = self._connection.recv()
        if kind != "rows":
            raise RuntimeError(f"the bootstrap's worker process failed:\n{payload}")
        rows: tuple[ExampleRows, Collected] = receive_joined(self._connection, (kind, payload), first, own_first=True)
        return rows

    def learn(self, rows: ExampleRows, names: set[str]) -> None:
        """Have the worker learn the home-type models of ``names`` on ``rows`` (the first group's examples) joined to
        its own."""
        try:
            send_rows(self._connection, "learn", rows, names)
        except OSError:  # the worker is gone: say why, if it said
            self._receive("an answer")
            raise

    def trained(self) -> dict[str, Classifier]:
        """The home-type models learned (waits for them)."""
        models: dict[str, Classifier] = self._receive("models")
        return models

    def score(self, models: dict[str, Classifier]) -> None:
        """Have the worker score the held-out test homes with ``models``."""
        self._send(("score", models))

    def result(self) -> ScoredStream:
        """The scored test homes (waits for them); raises what the worker raised."""
        scored: ScoredStream = self._receive("ok")
        return scored

    def _send(self, message: object) -> None:
        try:
            self._connection.send(message)
        except OSError:  # the worker is gone: say why, if it said
            self._receive("an answer")
            raise

    def _receive(self, expected: str) -> Any:
        kind, payload = self._connection.recv()
        if kind != expected:
            raise RuntimeError(f"the bootstrap's worker process failed:\n{payload}")
        return payload

    def close(self) -> None:
        """End the worker (at once if it is still working)."""
        if self._process.is_alive():
            with contextlib.suppress(OSError):
                self._connection.send(None)
            self._process.join(timeout=1.0)
            if self._process.is_alive():
                self._process.terminate()
                self._process.join()
        self._connection.close()


def bootstrap(
    config: BootstrapConfig,
    store: SnapshotStore,
    model_factory: Callable[[], Classifier] = default_model,
    progress: Callable[[str], None] | None = None,
) -> BootstrapResult:
    """Run the whole bootstrap (see the module docstring); return what it produced."""
    say = progress or (lambda message: logger.info("%s", message))
    overlap = set(config.train_variants) & set(config.test_variants)
    if overlap:
        logger.warning("test variants %s are also trained on: the held-out figures are not leave-variant-out", overlap)
    models: dict[str, Classifier] = {name: model_factory() for name in [GLOBAL, *HOME_TYPES]}
    use_worker = config.workers > 0 and config.holdout_samples >= MIN_WORKER_SAMPLES and batched(models)
    worker = Worker(config, {name: models[name] for name in HOME_TYPES}) if use_worker else None
    try:
        return _bootstrap(config, store, models, say, worker)
    finally:
        if worker is not None:
            worker.close()
        # What this process does next (the daemon serving) keeps its large arrays off the heap, and starts from a
        # trimmed one (memory.map_large_blocks).
        map_large_blocks()
        release()


def batched(models: dict[str, Classifier]) -> bool:
    """Whether the bootstrap learns ``models`` from example rows computed a batch at a time (models of the shipped
    shape, whose inputs the batch features compute), not event by event."""
    return (
        not compose.Pipeline._LEARN_UNSUPERVISED_DURING_PREDICT
        and computes(features_needed(models.values()))
        and all(supports(model) and DenseView(model).inputs_function == [model_inputs] for model in models.values())
    )


def _learn_batched(
    config: BootstrapConfig, models: dict[str, Classifier], say: Callable[[str], None], worker: Worker | None
) -> tuple[dict[str, int], int]:
    """The warm start of models of the shipped shape: the examples of the training stream's two groups of homes
    (:func:`collect_part`; the second one in the worker when there is one), then every model learned on them
    (:func:`~devintel.models.consolidate.learn_examples`: the global model on all, each home-type model on its
    type's; with a worker, it learns the home-type models but the lightest, :func:`lightest_home_types`, which this
    process learns after the global one). The examples learned per model, and the homes."""
    tick = _progress(config.samples, "warm start", say, every=1)
    first, collected = collect_part(config, 0, tick)
    n_first = len(first)
    if worker is not None:
        only_first = [first]
        del first
        rows, also = worker.rows(only_first)
    else:
        second, also = collect_part(config, 1, tick)
        parts = [first, second]
        del first, second
        rows = ExampleRows.joined(parts)  # frees each part once copied
    release()
    if len(rows) == 0:
        raise ValueError(
            f"no label resolved in {config.samples:,} training events over {config.days:g} days: "
            f"use more samples or days (a label resolves {config.horizon_days:g} days after its event)"
        )
    learned = {GLOBAL: len(rows)} | {name: int((rows.groups == name).sum()) for name in HOME_TYPES}
    names = {name for name in HOME_TYPES if learned[name] > 0}
    here = lightest_home_types(learned) if worker is not None else names
    if worker is not None:
        # The first group's examples, as the joined rows hold them (the worker joins them to its own alike).
        worker.learn(
            ExampleRows(rows.names, rows.inputs[:n_first], rows.labels[:n_first], rows.groups[:n_first]),
            set(HOME_TYPES) - here,
        )
    say(f"learning the models on the {len(rows):,} examples ({EPOCHS} shuffled passes)")
    learn_examples(
        models[GLOBAL],
        rows.names,
        rows.inputs,
        rows.labels,
        config.seed,
        _progress(EPOCHS, "learning", say, "passes", 1),
    )
    learn_home_types(models, rows, config.seed, sorted(here & names))
    if worker is not None:
        models.update(worker.trained())
    homes = collected.homes | also.homes
    return learned, len(homes)


def _learn_event_by_event(
    config: BootstrapConfig, models: dict[str, Classifier], say: Callable[[str], None]
) -> tuple[dict[str, int], int]:
    """The warm start of any other learner: each example learned online (``learn_one``) by the global model and its
    home type's, the features computed event by event. The examples learned per model, and the homes."""
    learned: dict[str, int] = dict.fromkeys(models, 0)
    home_type_of: dict[str, str] = {}
    homes: set[str] = set()

    def note_homes(batch: pd.DataFrame) -> None:
        pairs = batch[["device_id", "home_type", "home_id"]].drop_duplicates("device_id").astype(str)
        home_type_of.update(zip(pairs["device_id"], pairs["home_type"], strict=True))
        homes.update(pairs["home_id"])

    def keep(device_id: str, features: Features, label: bool) -> None:
        home_type = home_type_of[device_id]
        learned[home_type] += 1
        models[GLOBAL].learn_one(features, label)
        models[home_type].learn_one(features, label)

    needed = features_needed(models.values())
    collector = ExampleCollector(
        keep, config.horizon_days * 86_400.0, config.negative_rate, config.seed, FeatureExtractor(only=needed)
    )
    batches = _synthetic_batches(config, config.samples, config.seed, config.train_variants)
    warm_start_batches(collector, batches, note_homes, _progress(config.samples, "warm start", say))
    learned[GLOBAL] = collector.learned
    if collector.learned == 0:
        raise ValueError(
            f"no label resolved in {config.samples:,} training events over {config.days:g} days: "
            f"use more samples or days (a label resolves {config.horizon_days:g} days after its event)"
        )
    return learned, len(homes)


def _bootstrap(
    config: BootstrapConfig,
    store: SnapshotStore,
    models: dict[str, Classifier],
    say: Callable[[str], None],
    worker: Worker | None,
) -> BootstrapResult:
    horizon_s = config.horizon_days * 86_400.0
    say(f"generating {config.samples:,} training events (seed {config.seed}, {', '.join(config.train_variants)})")
    say(f"warm-starting the global model and {len(HOME_TYPES)} home-type models on {config.samples:,} events")
    if batched(models):
        learned, homes_trained = _learn_batched(config, models, say, worker)
    else:
        learned, homes_trained = _learn_event_by_event(config, models, say)
    release()  # the examples: scoring and tuning need none of it
    models = {name: model for name, model in models.items() if learned[name] > 0}
    if worker is not None:
        worker.score(models)  # it scores the test homes while this process scores the validation homes

    say(f"validating on {config.holdout_samples:,} events of other homes (seed {config.seed + VALIDATION_SEED_OFFSET})")
    validation = held_out(
        models, config, config.seed + VALIDATION_SEED_OFFSET, config.train_variants, "validation", say
    )
    val_scores, val = validation.scores, validation.truth
    val_truth, val_types = val.label, validation.groups["home_type"]
    thresholds = {GLOBAL: tune_threshold(val_truth, val_scores[GLOBAL])}
    router: dict[str, str] = {}
    comparison: dict[str, dict[str, float]] = {}
    for home_type in HOME_TYPES:
        rows = val_types == home_type
        if home_type not in models or not val_truth[rows].any():
            continue
        thresholds[home_type] = tune_threshold(val_truth[rows], val_scores[home_type][rows])
        own = binary_report(val_truth[rows], val_scores[home_type][rows], thresholds[home_type]).f1
        shared = binary_report(val_truth[rows], val_scores[GLOBAL][rows], thresholds[GLOBAL]).f1
        comparison[home_type] = {"home_type_f1": own, "global_f1": shared}
        if own > shared:
            router[home_type] = home_type
    models = {name: model for name, model in models.items() if name in thresholds}
    val_probability, _ = routed_scores(pd.DataFrame({"home_type": val_types}), val_scores, thresholds, router)
    say("tuning the alarm decision on the validation homes")
    tuned = tune_decision(
        val.device,
        val.ts,
        val_probability,
        val.failure_at,
        horizon_s,
        config.thresholds.max_false_alarms_per_100_device_days,
        thresholds[GLOBAL],
        val.visible,
    )
    # The validation homes' flags by the vectorised rule the tuning used (equal to the event-by-event one); the
    # test homes' below come from the code the live daemon runs.
    by_device = np.lexsort((val.ts, val.device))
    val_flags = np.empty(len(by_device), dtype=np.bool_)
    val_flags[by_device] = decide(tuned.params, val.device[by_device], val.ts[by_device], val_probability[by_device])
    val_household = household_measures(val, val_flags, horizon_s, validation.groups)
    del validation, val_scores
    release()

    say(
        f"testing on {config.holdout_samples:,} events of other homes (seed {config.seed + TEST_SEED_OFFSET}) "
        f"of world variants no model saw ({', '.join(config.test_variants)})"
    )
    if worker is None:
        scored = held_out(models, config, config.seed + TEST_SEED_OFFSET, config.test_variants, "test", say)
    else:
        scored = worker.result()
        release()  # what the scored stream crossed in
    # Models the validation homes dropped (no threshold) were scored there too; only the routed ones count.
    test_types = pd.DataFrame({"home_type": scored.groups["home_type"]})
    probability, decision = routed_scores(test_types, scored.scores, thresholds, router)
    truth = scored.truth
    # binary_report thresholds one probability array; routed decisions mix thresholds, so score them
    # as 0/1 "probabilities" at 0.5, and keep the probabilities for the ranking metrics.
    report = binary_report(truth.label, decision.astype(np.float64), 0.5)
    ranking = binary_report(truth.label, probability, 0.5)
    report = BinaryReport(**{**asdict(report), "pr_auc": ranking.pr_auc, "brier": ranking.brier})
    flags = alarm_flags(tuned.params, truth.device, truth.ts, probability)
    groups = scored.groups
    household = household_measures(truth, flags, horizon_s, groups)
    overall = household["overall"]
    assert isinstance(overall, dict)
    gate = evaluate_gate({**report.as_dict(), **overall}, config.thresholds)
    details: dict[str, object] = {
        "test": report.as_dict(),
        "household": household,
        "household_validation": val_household,
        "decision": {
            "params": tuned.params.as_dict(),
            "within_budget": tuned.within_budget,
            "tuning_budget": tuned.budget,
            "candidates": tuned.candidates,
        },
        "variants": {"train": list(config.train_variants), "test": list(config.test_variants)},
        "recall_by_failure_mode": recall_by_group(truth.label, decision, groups["failure_mode"]),
        "recall_by_home_type": recall_by_group(truth.label, decision, groups["home_type"]),
        "recall_by_variant": recall_by_group(truth.label, decision, groups["variant"]),
        "home_type_vs_global": comparison,
        "rolling_test": rolling_history(truth.label, decision, ROLLING_WINDOW, ROLLING_EVERY),
        "error_drifts_in_test": error_drifts(truth.label, decision),
        "gate": gate.as_dict(),
    }
    if not gate.passed and not config.allow_low_quality:
        raise GateFailed(gate)
    if not gate.passed:
        logger.warning("quality gate failed; writing the snapshot anyway (--allow-low-quality):\n%s", gate.table())

    manifest: dict[str, object] = {
        "training": {
            "generator": "devintel.generators",
            "seed": config.seed,
            "samples": config.samples,
            "days": config.days,
            "homes": homes_trained,
            "variants": list(config.train_variants),
            "validation_seed": config.seed + VALIDATION_SEED_OFFSET,
            "test_seed": config.seed + TEST_SEED_OFFSET,
            "test_variants": list(config.test_variants),
            "holdout_samples": config.holdout_samples,
            "threshold_calibration": "validation homes",
        },
        "settings": {
            "horizon_days": config.horizon_days,
            "failure_rate": config.failure_rate,
            "negative_rate": config.negative_rate,
        },
        "models": {name: {"threshold": thresholds[name], "learned": learned[name]} for name in models},
        "router": router,
        "decision": tuned.params.as_dict(),
        "quality_gate": {**gate.as_dict(), "allowed_low_quality": config.allow_low_quality and not gate.passed},
        "metrics": report.as_dict(),
        "household": overall,
        "python": sys.version.split()[0],
    }
    files = {f"{MODELS_DIR}/{name}.pkl": pickle.dumps(model) for name, model in models.items()}
    files["report/report.json"] = json.dumps(details, indent=2, default=float).encode()
    figures = plots(details, truth.label, probability, truth.failure_at, truth.ts, flags, truth.device, horizon_s)
    files.update({f"report/{name}": png for name, png in figures.items()})
    files["report/report.md"] = markdown_report(manifest, details, gate.table(), sorted(figures)).encode()
    version = store.write(files, manifest)
    say(f"snapshot {version} written")
    return BootstrapResult(version, gate, report, router, details, tuned.params)
