"""Tuning the alarm decision on validation homes: the best catch rate within the false-alarm budget.

:func:`tune_decision` tries a grid of :class:`~devintel.models.decision.DecisionParams` (on threshold, the off
threshold as a share of it, how long and over how many reports the evidence must hold, how long a recovery must
last) on a scored validation stream, with the vectorised :class:`~devintel.models.decision.Decisions`
(:func:`~devintel.models.decision.decide`, proven equal to the event-by-event rule; the runs of each threshold
computed once) and a :class:`~devintel.models.household.FlaggedStream` (the measures' parts that no flag changes,
computed once), and keeps the set that catches the most failures ahead of time among those whose false-alarm
episodes per 100 device-days stay within ``budget``; ties go to the longer median lead, then to the fewer false
alarms. When no set fits the budget, the one with the fewest false alarms wins (the gate then says
so). The budget used here is a share of the quality gate's (:data:`BUDGET_SHARE`): homes and worlds the models
never saw raise more false alarms than the validation homes, and the margin is for them.
"""

from __future__ import annotations

import itertools
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt

from devintel.models.decision import DecisionParams, Decisions
from devintel.models.household import MIN_LEAD_S, FlaggedStream, HouseholdReport

HOUR_S: Final = 3600.0
#: Share of the gate's false-alarm budget that the tuning aims for on validation homes.
BUDGET_SHARE: Final = 0.5
#: The grid searched (the on thresholds are the fixed ones and multiples of the event-level threshold).
ON_THRESHOLDS: Final = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95)
THRESHOLD_FACTORS: Final = (1.0, 1.25, 1.5)
OFF_SHARES: Final = (0.5, 0.8)
HOLD_ON_S: Final = (0.0, 6 * HOUR_S, 12 * HOUR_S, 24 * HOUR_S)
MIN_EVENTS: Final = (1, 2, 3)
HOLD_OFF_S: Final = (12 * HOUR_S, 48 * HOUR_S)
#: Threads the grid is scored in: numpy lets go of the GIL for the array work, so two threads score the default
#: bootstrap's validation homes in 1.3-1.5 s instead of 1.7-1.8 s on two cores.
THREADS: Final = 2


@dataclass(frozen=True, slots=True)
class TunedDecision:
    """The chosen parameters, their figures on the validation homes, and whether they fit the budget."""

    params: DecisionParams
    validation: HouseholdReport
    within_budget: bool
    budget: float
    candidates: int


def candidate_params(event_threshold: float) -> list[DecisionParams]:
    """The grid :func:`tune_decision` searches, around the event-level decision ``event_threshold``."""
    ons = sorted({*ON_THRESHOLDS, *(min(round(event_threshold * f, 4), 0.99) for f in THRESHOLD_FACTORS)})
    return [
        DecisionParams(on, on * share, hold_on, hold_off, min_events)
        for on, share, hold_on, min_events, hold_off in itertools.product(
            ons, OFF_SHARES, HOLD_ON_S, MIN_EVENTS, HOLD_OFF_S
        )
    ]


def _key(report: HouseholdReport) -> tuple[float, float, float]:
    return (report.catch_rate, report.median_lead_h or 0.0, -report.false_alarms_per_100_device_days)


def tune_decision(
    device: npt.NDArray[np.intp],
    ts: npt.NDArray[np.float64],
    probability: npt.NDArray[np.float64],
    failure_ts: npt.NDArray[np.float64],
    horizon_s: float,
    max_false_alarms_per_100_device_days: float,
    event_threshold: float,
    precursor: npt.NDArray[np.bool_] | None = None,
    min_lead_s: float = MIN_LEAD_S,
    budget_share: float = BUDGET_SHARE,
) -> TunedDecision:
    """The decision parameters for a scored validation stream (see the module docstring); rows in any order."""
    _, codes = np.unique(device, return_inverse=True)
    order = np.lexsort((ts, codes))
    device, ts, probability, failure_ts = codes[order], ts[order], probability[order], failure_ts[order]
    visible = None if precursor is None else precursor[order]
    budget = max_false_alarms_per_100_device_days * budget_share
    best: tuple[DecisionParams, HouseholdReport] | None = None
    cheapest: tuple[DecisionParams, HouseholdReport] | None = None
    grid = candidate_params(event_threshold)
    stream = FlaggedStream(device, ts, failure_ts, horizon_s, visible, min_lead_s, presorted=True)
    for params, report in zip(grid, _reports(grid, Decisions(device, ts, probability), stream), strict=True):
        fa = report.false_alarms_per_100_device_days
        if cheapest is None or (fa, -report.catch_rate) < (
            cheapest[1].false_alarms_per_100_device_days,
            -cheapest[1].catch_rate,
        ):
            cheapest = (params, report)
        if fa <= budget and (best is None or _key(report) > _key(best[1])):
            best = (params, report)
    assert cheapest is not None  # the grid is never empty
    chosen = best or cheapest
    return TunedDecision(chosen[0], chosen[1], best is not None, budget, len(grid))


def _reports(grid: list[DecisionParams], decisions: Decisions, stream: FlaggedStream) -> list[HouseholdReport]:
    """The household report of each parameter set of ``grid``, in its order, scored in :data:`THREADS` threads: the
    on thresholds are dealt to the threads, each with its own :class:`Decisions` (its runs are kept per instance,
    for parameter sets in grid order), so every thread computes each of its thresholds' runs once."""
    ons = sorted({params.on_threshold for params in grid})
    parts = [
        [i for i, params in enumerate(grid) if ons.index(params.on_threshold) % THREADS == k] for k in range(THREADS)
    ]

    def score(part: list[int]) -> list[HouseholdReport]:
        mine = decisions.fresh()
        return [stream.report(mine.flags(grid[i])) for i in part]

    reports: dict[int, HouseholdReport] = {}
    with ThreadPoolExecutor(THREADS, thread_name_prefix="devintel-tuning") as pool:
        for part, scored in zip(parts, pool.map(score, parts), strict=True):
            reports.update(zip(part, scored, strict=True))
    return [reports[i] for i in range(len(grid))]
