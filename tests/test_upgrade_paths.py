"""Upgrades never strand a box: devintel-daemon's start-up with snapshots this install cannot load.

Each test runs the real ``devintel-daemon`` as a subprocess on real snapshot directories (the small real snapshot of
``snapshot_fixtures``), as systemd runs it (``--bootstrap-synthetic``, the unit's ExecStart) or as the Docker
entrypoint does (``--seed-from`` the baked models; the entrypoint itself is run in tests/test_docker.py). A snapshot
that cannot be loaded is moved into ``models/refused/`` (never deleted) and replaced; without a way to replace it,
the daemon exits 2 and moves nothing.
"""

from __future__ import annotations

import json
import os
import pickle
import re
import subprocess
import sys
from pathlib import Path

import pytest

from devintel.models.snapshots import REFUSED_DIR, SnapshotStore

REPO = Path(__file__).resolve().parents[1]
UNIT = REPO / "systemd" / "devintel.service"

#: The toy bootstrap of the tests (the gate is judged in the README's full-size run, not here).
SMALL_BOOTSTRAP = {
    "DEVINTEL_BOOTSTRAP__SAMPLES": "20000",
    "DEVINTEL_BOOTSTRAP__HOLDOUT_SAMPLES": "8000",
    "DEVINTEL_BOOTSTRAP__DAYS": "40",
    "DEVINTEL_BOOTSTRAP__SEED": "3",
} | {f"DEVINTEL_QUALITY__MIN_{m}": "0" for m in ("ACCURACY", "PRECISION", "RECALL", "F1", "CATCH_RATE")}
SMALL_BOOTSTRAP["DEVINTEL_QUALITY__MAX_FALSE_ALARMS_PER_100_DEVICE_DAYS"] = "1000"

#: A pickle of a River class that does not exist: what a release that moved or renamed a pickled class leaves.
MOVED_CLASS_PICKLE = b"\x80\x04criver.linear_model\nNoSuchModelAnyMore\n)\x81."


def _daemon(model_dir: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("DEVINTEL_") and k != "CREDENTIALS_DIRECTORY"}
    clean.update({"DEVINTEL_MODEL_DIR": str(model_dir), **(env or {})})
    return subprocess.run(
        [sys.executable, "-m", "devintel.daemon.service", *args, "--exit-after-bootstrap"],
        env=clean,
        cwd=model_dir.parent,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def _only_version(model_dir: Path) -> str:
    (version,) = SnapshotStore(model_dir).versions()
    return version


def _from_other_river_minor(model_dir: Path, version: str) -> None:
    """Make ``version`` look written by River 0.1.0 (as after an upgrade of River's minor release)."""
    path = model_dir / version / "manifest.json"
    manifest = json.loads(path.read_text(encoding="utf-8"))
    manifest["river_version"] = "0.1.0"
    path.write_text(json.dumps(manifest), encoding="utf-8")


def _write_unpicklable(model_dir: Path) -> str:
    """A new snapshot that verifies (hashes, River version) but whose models cannot be unpickled."""
    store = SnapshotStore(model_dir)
    good = store.load()
    files = {name: (MOVED_CLASS_PICKLE if name.endswith(".pkl") else data) for name, data in good.files.items()}
    assert any(name.endswith(".pkl") for name in files)
    return store.write(files, good.manifest)


def _refused(model_dir: Path) -> list[Path]:
    """The set-aside directories, oldest first."""
    root = model_dir / REFUSED_DIR
    return sorted(root.iterdir()) if root.is_dir() else []


def test_unit_replaces_unusable_snapshots_by_bootstrapping() -> None:
    """The systemd unit starts the daemon with --bootstrap-synthetic: the path the next test takes."""
    exec_start = next(line for line in UNIT.read_text(encoding="utf-8").splitlines() if line.startswith("ExecStart="))
    assert "--bootstrap-synthetic" in exec_start.split()


def test_systemd_start_sets_aside_a_snapshot_of_another_river_release_and_bootstraps(small_snapshot: Path) -> None:
    old = _only_version(small_snapshot)
    _from_other_river_minor(small_snapshot, old)
    manifest_before = (small_snapshot / old / "manifest.json").read_bytes()

    run = _daemon(small_snapshot, "--bootstrap-synthetic", env=SMALL_BOOTSTRAP)
    assert run.returncode == 0, run.stderr[-3000:]
    assert re.search(r"no snapshot in .* can be loaded by this install .* moved to .*refused", run.stderr), run.stderr
    assert "replacing them with a fresh bootstrap" in run.stderr
    assert "written by River 0.1.0" in run.stderr

    (aside,) = _refused(small_snapshot)
    assert (aside / old / "manifest.json").read_bytes() == manifest_before  # kept whole, not deleted
    assert (aside / "current").read_text(encoding="utf-8").strip() == old
    assert f"{old}: written by River 0.1.0" in (aside / "REASON").read_text(encoding="utf-8")
    store = SnapshotStore(small_snapshot)
    new = store.load()
    assert new.version != old
    assert store.versions() == [new.version]
    assert new.manifest["training"]["samples"] == 20_000  # a fresh bootstrap

    again = _daemon(small_snapshot, "--bootstrap-synthetic", env=SMALL_BOOTSTRAP)  # the next start just loads it
    assert again.returncode == 0, again.stderr[-3000:]
    assert "bootstrapping" not in again.stderr
    assert "set aside" not in again.stderr
    assert len(_refused(small_snapshot)) == 1


def test_container_start_replaces_an_unloadable_snapshot_by_a_copy_of_the_baked_one(
    small_snapshot: Path, small_snapshot_master: Path
) -> None:
    old = _only_version(small_snapshot)
    _from_other_river_minor(small_snapshot, old)
    baked = _only_version(small_snapshot_master)

    run = _daemon(small_snapshot, "--seed-from", str(small_snapshot_master))
    assert run.returncode == 0, run.stderr[-3000:]
    assert f"a copy of the snapshot in {small_snapshot_master}" in run.stderr
    assert f"a copy of {baked} from {small_snapshot_master}" in run.stderr
    assert "bootstrapping" not in run.stderr  # no training
    (aside,) = _refused(small_snapshot)
    assert (aside / old).is_dir()
    served = SnapshotStore(small_snapshot).load()
    assert served.manifest["seeded_from"] == {"dir": str(small_snapshot_master), "version": baked}
    assert served.files == SnapshotStore(small_snapshot_master).load().files
    assert _only_version(small_snapshot_master) == baked  # the source is only read


def test_unpicklable_snapshot_is_set_aside_and_the_previous_good_one_served(small_snapshot: Path) -> None:
    good = _only_version(small_snapshot)
    broken = _write_unpicklable(small_snapshot)
    assert SnapshotStore(small_snapshot).load().version == broken  # it verifies: only unpickling tells

    run = _daemon(small_snapshot, "--bootstrap-synthetic", env=SMALL_BOOTSTRAP)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "cannot be unpickled" in run.stderr
    assert "NoSuchModelAnyMore" in run.stderr
    assert "bootstrapping" not in run.stderr  # an older usable snapshot was there
    assert f"models ready: snapshot {good}" in run.stderr
    (aside,) = _refused(small_snapshot)
    assert (aside / broken).is_dir()
    assert SnapshotStore(small_snapshot).versions() == [good]


def test_unpicklable_only_snapshot_is_replaced_by_the_seed(small_snapshot: Path, small_snapshot_master: Path) -> None:
    store = SnapshotStore(small_snapshot)
    original = _only_version(small_snapshot)
    broken = _write_unpicklable(small_snapshot)
    store.set_aside({original: "out of the way for this test"})
    assert store.versions() == [broken]

    run = _daemon(small_snapshot, "--seed-from", str(small_snapshot_master))
    assert run.returncode == 0, run.stderr[-3000:]
    assert "cannot be unpickled" in run.stderr
    assert store.load().manifest["seeded_from"]["version"] == _only_version(small_snapshot_master)
    assert any((aside / broken).is_dir() for aside in _refused(small_snapshot))
    for blob in store.load().files.values():
        assert blob != MOVED_CLASS_PICKLE
    with pytest.raises((AttributeError, pickle.UnpicklingError)):
        pickle.loads(MOVED_CLASS_PICKLE)  # the stand-in for a moved class really fails to unpickle


def test_without_a_way_to_replace_it_nothing_moves_and_the_daemon_exits_2(small_snapshot: Path) -> None:
    old = _only_version(small_snapshot)
    _from_other_river_minor(small_snapshot, old)
    run = _daemon(small_snapshot)
    assert run.returncode == 2
    assert "written by River 0.1.0" in run.stderr
    assert "--seed-from" in run.stderr
    assert _refused(small_snapshot) == []
    assert SnapshotStore(small_snapshot).versions() == [old]
