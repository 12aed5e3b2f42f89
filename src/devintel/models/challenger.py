"""Learning live that cannot make things worse: the learning copy of the models is a challenger.

The models that serve predictions and alarms are frozen; a copy of them (the challenger) learns from every resolved
live label. Both are judged on the same recently resolved labels, each with its own alarm decision state: for each
resolved event, whether that model's alarm was on. The product's own measures decide: false alarms (alarm on, no
failure followed within the horizon) and catches (alarm on, a failure followed). The challenger takes over serving
only once it has at least ``min_positives`` failures and ``min_resolved`` labels in the window to be judged on, and
it raises no more false alarms and catches at least as many failures as the serving models, one of them better by a
clear margin (``min_gain`` of the positives or of the serving models' false alarms, and at least ``min_gain_events``
events): a difference of a report or two is noise, and swapping models on noise made a replay of an unseen world
worse than not learning at all. A challenger that learned from misleading labels (a lamp switched off called a
failure, a failure without a visible precursor) raises more false alarms on the next labels and stays where it is.

A challenger that caught fewer of the failures established live (its alarm on at least 12 h before) never takes over,
whatever the events say.

Only *settled* events are compared: those a whole horizon old, whose labels are final. Failures resolve as soon as
the evidence arrives, but "no failure" only once the horizon has passed, so the freshest resolved labels are nearly
all failures; judged on them, a challenger that alarms on everything would look perfect.

:class:`ChallengerScore` is that comparison, pure and bounded (the newest ``window`` resolved labels).
"""

from __future__ import annotations

import heapq
from collections import deque
from dataclasses import dataclass, field
from typing import Final

#: Resolved labels the comparison looks back over (the newest).
WINDOW: Final = 20_000


@dataclass(slots=True)
class ChallengerScore:
    """Serving versus challenger on the newest resolved labels (see the module docstring)."""

    horizon_s: float = 7 * 86_400.0
    window: int = WINDOW
    min_positives: int = 20
    min_resolved: int = 1_000
    min_gain: float = 0.1
    min_gain_events: int = 20
    _outcomes: deque[tuple[bool, bool, bool]] = field(init=False, repr=False)
    """(label, serving alarm on, challenger alarm on) per settled event."""
    _pending: list[tuple[float, int, bool, bool, bool]] = field(init=False, repr=False)
    """Resolved events not yet settled: a heap by event time."""
    _sequence: int = field(default=0, init=False, repr=False)
    _failures: deque[tuple[bool, bool]] = field(init=False, repr=False)
    """Per failure established live: whether each model's alarm was on at least ``min_lead_s`` before it."""
    promotions: int = 0

    def __post_init__(self) -> None:
        self._outcomes = deque(maxlen=self.window)
        self._pending = []
        self._failures = deque(maxlen=self.window)

    def failure(self, serving_caught: bool, challenger_caught: bool) -> None:
        """A failure established live, and whether each model's alarm had been on long enough before it."""
        self._failures.append((serving_caught, challenger_caught))

    def update(self, ts: float, label: bool, serving_alarm: bool, challenger_alarm: bool) -> None:
        """One resolved event (of time ``ts``), with each model's alarm state when it was scored."""
        if len(self._pending) >= self.window:  # bounded: the oldest resolutions wait no longer
            heapq.heappop(self._pending)
        self._sequence += 1
        heapq.heappush(self._pending, (ts, self._sequence, label, serving_alarm, challenger_alarm))

    def settle(self, now: float) -> None:
        """Events a whole horizon older than ``now`` have their final label: they join the comparison."""
        while self._pending and self._pending[0][0] + self.horizon_s < now:
            _, _, label, serving, challenger = heapq.heappop(self._pending)
            self._outcomes.append((label, serving, challenger))

    def counts(self) -> dict[str, int]:
        """Settled labels, failures among them, and each model's false alarms and catches in the window."""
        out = dict.fromkeys(
            ("resolved", "positives", "serving_false", "serving_caught", "challenger_false", "challenger_caught"), 0
        )
        for label, serving, challenger in self._outcomes:
            out["resolved"] += 1
            out["positives"] += label
            out["serving_false" if not label else "serving_caught"] += serving
            out["challenger_false" if not label else "challenger_caught"] += challenger
        out["failures"] = len(self._failures)
        out["serving_failures_caught"] = sum(s for s, _ in self._failures)
        out["challenger_failures_caught"] = sum(c for _, c in self._failures)
        return out

    def verdict(self) -> tuple[bool, str]:
        """Whether the challenger should serve now, and why (or why not), in words for the health message."""
        c = self.counts()
        if c["resolved"] < self.min_resolved or c["positives"] < self.min_positives:
            return False, (
                f"waiting for evidence: {c['resolved']} resolved labels with {c['positives']} failures "
                f"(needs {self.min_resolved} and {self.min_positives})"
            )
        fewer_false = c["challenger_false"] <= c["serving_false"]
        more_caught = c["challenger_caught"] >= c["serving_caught"]
        fewer_by = c["serving_false"] - c["challenger_false"]
        more_by = c["challenger_caught"] - c["serving_caught"]
        strictly = fewer_by >= max(self.min_gain_events, self.min_gain * c["serving_false"]) or more_by >= max(
            self.min_gain_events, self.min_gain * c["positives"]
        )
        summary = (
            f"false alarms {c['challenger_false']} vs {c['serving_false']}, "
            f"caught {c['challenger_caught']} vs {c['serving_caught']} of {c['positives']} (challenger vs serving)"
        )
        if c["challenger_failures_caught"] < c["serving_failures_caught"]:
            return False, f"serving models hold (they caught more failures ahead): {summary}"
        if fewer_false and more_caught and strictly:
            return True, f"challenger beats the serving models: {summary}"
        return False, f"serving models hold (a challenger must be clearly better): {summary}"

    def promoted(self) -> None:
        """The challenger took over: judge the next one afresh."""
        self.promotions += 1
        self._outcomes.clear()
        self._pending.clear()
        self._failures.clear()
