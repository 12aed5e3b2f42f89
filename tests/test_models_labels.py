"""Delayed labels: positive when a failure follows within the horizon, negative once it has passed."""

from __future__ import annotations

import numpy as np
import pytest

from devintel.models.labels import DelayedLabels

H = 7 * 86_400.0
DAY = 86_400.0


def test_negative_only_after_the_horizon_has_passed() -> None:
    labels: DelayedLabels[str] = DelayedLabels(H)
    labels.add("a", 0.0, "e0")
    assert labels.advance(H) == []  # exactly at the horizon a failure could still count
    (resolved,) = labels.advance(H + 1)
    assert (resolved.device_id, resolved.ts, resolved.label, resolved.payload) == ("a", 0.0, False, "e0")
    assert len(labels) == 0


def test_failure_labels_events_within_the_horizon_positive() -> None:
    labels: DelayedLabels[int] = DelayedLabels(H)
    for day in range(10):
        labels.add("a", day * DAY, day)
    labels.add("b", 0.0, 99)
    resolved = labels.failure("a", 10 * DAY)
    assert [r.payload for r in resolved] == list(range(10))
    assert [r.label for r in resolved] == [False] * 3 + [True] * 7  # days 3..9 are within 7 days
    assert labels.failure("a", 11 * DAY) == []  # already resolved and forgotten
    assert [r.payload for r in labels.advance(100 * DAY)] == [99]


def test_events_after_the_failure_are_dropped() -> None:
    labels: DelayedLabels[int] = DelayedLabels(H)
    labels.add("a", 5.0, 1)
    labels.add("a", 50.0, 2)  # arrived late, stamped after the failure
    assert [r.payload for r in labels.failure("a", 10.0)] == [1]


def test_out_of_order_events_resolve_by_their_own_time() -> None:
    labels: DelayedLabels[int] = DelayedLabels(H)
    labels.add("a", 3 * DAY, 3)
    labels.add("a", 1 * DAY, 1)
    assert [r.payload for r in labels.advance(H + 2 * DAY)] == [1]
    assert [r.payload for r in labels.advance(H + 4 * DAY)] == [3]


def test_buffer_is_bounded_and_counts_what_it_drops() -> None:
    labels: DelayedLabels[int] = DelayedLabels(H, max_pending=5)
    for i in range(12):
        labels.add("a", float(i), i)
    assert len(labels) == 5
    assert labels.dropped == 7
    assert [r.payload for r in labels.advance(1e9)] == [7, 8, 9, 10, 11]


def test_forget_and_bad_arguments() -> None:
    labels: DelayedLabels[int] = DelayedLabels(H)
    labels.add("a", 0.0, 1)
    assert labels.forget("a") == 1
    assert labels.advance(1e9) == []
    with pytest.raises(ValueError, match="horizon_s"):
        DelayedLabels(0.0)
    with pytest.raises(ValueError, match="max_pending"):
        DelayedLabels(H, max_pending=0)


def test_resolved_labels_agree_with_ground_truth_on_a_random_stream() -> None:
    """Oracle: resolving through the buffer gives exactly the label `failure - ts <= H`."""
    rng = np.random.default_rng(0)
    failures = {f"d{i}": float(rng.uniform(5, 40)) * DAY if rng.random() < 0.5 else np.inf for i in range(30)}
    events = sorted((float(rng.uniform(0, 45)) * DAY, d) for d in failures for _ in range(40))
    labels: DelayedLabels[float] = DelayedLabels(H)
    got: dict[tuple[str, float], bool] = {}
    failed: set[str] = set()
    for ts, device in events:
        for d, t_fail in failures.items():
            if d not in failed and t_fail <= ts:
                failed.add(d)
                got.update({(r.device_id, r.ts): r.label for r in labels.failure(d, t_fail)})
        got.update({(r.device_id, r.ts): r.label for r in labels.advance(ts)})
        if device not in failed:
            labels.add(device, ts, ts)
    got.update({(r.device_id, r.ts): r.label for r in labels.advance(1e12)})
    expected = {(d, ts): failures[d] - ts <= H for ts, d in events if ts < failures[d]}
    assert got == expected
