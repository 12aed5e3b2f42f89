"""The fleet trainer's learning, scoring and gate (pure: no I/O).

:class:`FleetLearner` learns every home's examples with River's ``learn_one`` into the global model and into the
example's home-type model where the version has one (as the bootstrap and the live challenger teach), holding out
every ``holdout_every``-th example by stream sequence: the held-out examples, of every home, are what a candidate
is gated on (:func:`gate`): its ROC AUC (:func:`roc_auc`, the routed model's probability as the daemon serves it)
must reach ``min_auc`` and not fall more than ``tolerance`` below the version that serves now.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from devintel.models.dense import probability
from devintel.models.live import GLOBAL
from devintel.models.online import Classifier

#: A learned example: (features, label, home type).
Example = tuple[dict[str, float], bool, str]


def roc_auc(labels: Sequence[bool], scores: Sequence[float]) -> float | None:
    """The area under the ROC curve (ties count a half), None without both classes."""
    positives = sum(1 for label in labels if label)
    negatives = len(labels) - positives
    if positives == 0 or negatives == 0:
        return None
    order = sorted(range(len(scores)), key=lambda i: scores[i])
    rank_sum, i = 0.0, 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and scores[order[j + 1]] == scores[order[i]]:
            j += 1
        mean_rank = (i + j) / 2.0 + 1.0
        rank_sum += mean_rank * sum(1 for k in range(i, j + 1) if labels[order[k]])
        i = j + 1
    return (rank_sum - positives * (positives + 1) / 2.0) / (positives * negatives)


def score(models: Mapping[str, Classifier], router: Mapping[str, str], examples: Sequence[Example]) -> float | None:
    """The ROC AUC of the routed models on ``examples``."""
    labels = [y for _, y, _ in examples]
    scores = [probability(models[router.get(home_type, GLOBAL)], x) for x, _, home_type in examples]
    return roc_auc(labels, scores)


@dataclass(frozen=True, slots=True)
class Verdict:
    """A gate's decision and why."""

    passed: bool
    candidate: float | None
    serving: float | None
    reason: str


def gate(
    candidate: float | None,
    serving: float | None,
    held_out: int,
    positives: int,
    *,
    min_holdout: int,
    min_auc: float,
    tolerance: float,
) -> Verdict:
    """Whether a candidate with held-out ROC AUC ``candidate`` replaces the version scoring ``serving``."""
    if held_out < min_holdout or positives < max(1, min_holdout // 10) or candidate is None:
        return Verdict(False, candidate, serving, f"too few held-out examples ({held_out}, {positives} positive)")
    if candidate < min_auc:
        return Verdict(False, candidate, serving, f"ROC AUC {candidate:.3f} below the minimum {min_auc:.3f}")
    if serving is not None and candidate < serving - tolerance:
        return Verdict(False, candidate, serving, f"ROC AUC {candidate:.3f} below the serving {serving:.3f}")
    return Verdict(True, candidate, serving, f"ROC AUC {candidate:.3f} (serving {serving})")


@dataclass(slots=True)
class FleetLearner:
    """The trainer's models and held-out examples (see the module docstring)."""

    models: dict[str, Classifier]
    router: dict[str, str]
    holdout_every: int = 5
    holdout_kept: int = 20_000
    learned: int = 0
    held: int = 0
    skipped: int = 0
    """Examples that did not read (no features, a non-numeric value)."""
    holdout: deque[Example] = field(default_factory=deque)

    def __post_init__(self) -> None:
        self.holdout = deque(self.holdout, maxlen=self.holdout_kept)

    def add(self, seq: int, x: Mapping[str, object], y: bool, home_type: str) -> None:
        """One example of stream sequence ``seq``: held out, or learned."""
        features = {k: float(v) for k, v in x.items() if isinstance(v, int | float) and math.isfinite(float(v))}
        if not features:
            self.skipped += 1
            return
        if seq % self.holdout_every == 0:
            self.holdout.append((features, y, home_type))
            self.held += 1
            return
        self.models[GLOBAL].learn_one(features, y)
        own = self.models.get(home_type)
        if own is not None and home_type != GLOBAL:
            own.learn_one(features, y)
        self.learned += 1

    def seen(self) -> int:
        """Examples taken (learned, held out or skipped)."""
        return self.learned + self.held + self.skipped
