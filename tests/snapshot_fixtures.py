"""A small real snapshot, bootstrapped once per test session, for the live daemon's tests.

It is a real bootstrap (generate, warm-start, tune, gate, snapshot) at a toy size with no gate, so tests of the
live path serve real River models from a real, verified snapshot. Tests copy it before writing to it.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from devintel.models.bootstrap import BootstrapConfig, bootstrap
from devintel.models.gate import QualityThresholds
from devintel.models.snapshots import SnapshotStore

#: The toy bootstrap behind ``small_snapshot`` (seconds, not minutes).
SMALL_BOOTSTRAP = BootstrapConfig(
    samples=20_000,
    holdout_samples=8_000,
    days=40.0,
    seed=3,
    thresholds=QualityThresholds(0.0, 0.0, 0.0, 0.0, 1e9, 0.0),
)


@pytest.fixture(scope="session")
def small_snapshot_master(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model directory holding one snapshot of :data:`SMALL_BOOTSTRAP` (shared: never write to it)."""
    root = tmp_path_factory.mktemp("small-snapshot") / "models"
    bootstrap(SMALL_BOOTSTRAP, SnapshotStore(root))
    return root


@pytest.fixture
def small_snapshot(small_snapshot_master: Path, tmp_path: Path) -> Path:
    """A copy of the small snapshot's model directory for one test."""
    target = tmp_path / "models"
    shutil.copytree(small_snapshot_master, target)
    return target
