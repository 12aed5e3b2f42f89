"""The snapshot store: atomic writes, pruning, set-aside, the current pointer, input checking, crash safety.

Every test works on real files under ``tmp_path``; the crash test kills a real child process with SIGKILL. Verified
loads with fallback and signing: ``test_models_snapshots_verify.py``; shared helpers: ``snapshot_store_helpers.py``.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import platform
import random
import selectors
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from river.__version__ import __version__ as river_version

import devintel.models.snapshots as snapshots
from devintel.models.snapshots import (
    LoadedSnapshot,
    NoValidSnapshot,
    SnapshotStore,
    canonical_json,
    is_version,
)
from snapshot_store_helpers import (
    APARTMENT,
    GLOBAL,
    LOGGER,
    flip_byte,
    model_files,
    read_manifest,
    refusal_messages,
    tmp_entries,
    write,
)

# ------------------------------------------------------------------------------------------- round trip


def test_round_trip_files_and_manifest(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path / "models")
    before = datetime.now(UTC)
    version = store.write(
        model_files("a"),
        {"threshold": 0.42, "training": {"seed": 7, "samples": 10_000}, "version": "caller's, overridden"},
    )
    after = datetime.now(UTC)

    assert is_version(version)
    assert store.versions() == [version]
    assert store.current_version() == version
    assert (tmp_path / "models" / "current").read_text().strip() == version

    loaded = store.load()
    assert isinstance(loaded, LoadedSnapshot)
    assert loaded.version == version
    assert loaded.path == tmp_path / "models" / version
    assert loaded.files == model_files("a")
    assert (loaded.path / APARTMENT).read_bytes() == model_files("a")[APARTMENT]

    manifest = loaded.manifest
    assert manifest == read_manifest(tmp_path / "models", version)
    assert manifest["version"] == version
    assert manifest["threshold"] == 0.42
    assert manifest["training"] == {"seed": 7, "samples": 10_000}
    assert manifest["river_version"] == river_version
    assert manifest["python_version"] == platform.python_version()
    created = datetime.fromisoformat(manifest["created"])
    assert created.utcoffset() == timedelta(0)
    assert before - timedelta(seconds=1) <= created <= after + timedelta(seconds=1)
    assert manifest["files"] == {
        name: {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
        for name, data in model_files("a").items()
    }
    assert "signature" not in manifest
    assert store.load(version) == loaded


def test_versions_increase_and_current_always_loadable(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path, keep=10)
    written = []
    for i in range(6):
        version = write(store, str(i))
        written.append(version)
        assert store.current_version() == version
        loaded = store.load()
        assert loaded.version == version
        assert loaded.manifest["tag"] == str(i)
    assert written == sorted(written)
    assert len(set(written)) == len(written)
    assert store.versions() == written


def test_versions_unique_within_one_second_and_when_clock_steps_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = SnapshotStore(tmp_path, keep=10)
    clock = [datetime(2026, 11, 22, 2, 15, 0, 250_000, tzinfo=UTC)]
    monkeypatch.setattr(snapshots, "_utcnow", lambda: clock[0])

    same_second = [write(store, str(i)) for i in range(3)]
    assert same_second == ["20261122T021500Z-0001", "20261122T021500Z-0002", "20261122T021500Z-0003"]

    clock[0] -= timedelta(hours=1)  # NTP step backwards
    assert write(store, "back") == "20261122T021500Z-0004"

    clock[0] += timedelta(hours=2)
    assert write(store, "later") == "20261122T031500Z-0001"

    # A full counter moves on to the next second rather than breaking the order.
    (tmp_path / "20261122T031500Z-9999").mkdir()
    assert write(store, "overflow") == "20261122T031501Z-0001"
    assert store.versions() == sorted(store.versions())
    assert store.load().manifest["tag"] == "overflow"


# ---------------------------------------------------------------------------------------------- pruning


def test_keep_prunes_the_oldest(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path, keep=3)
    written = [write(store, str(i)) for i in range(6)]
    assert store.versions() == written[-3:]
    assert sorted(p.name for p in tmp_path.iterdir() if is_version(p.name)) == written[-3:]
    for version in written[-3:]:
        assert store.load(version).version == version
    assert tmp_entries(tmp_path) == []


def test_prune_never_removes_the_current_version(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = SnapshotStore(tmp_path, keep=1)
    first = write(store, "first")
    # A crash between the rename and the pointer update: the new version exists, `current` still names the old.
    monkeypatch.setattr(store, "_set_current", lambda version: None)
    second = write(store, "second")
    assert store.current_version() == first
    assert store.versions() == [first, second]
    assert store.load().version == first  # `current` wins over the newer one


def test_invalid_versions_do_not_count_towards_keep(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path, keep=2)
    v1, v2, v3 = (write(store, str(i)) for i in range(3))
    flip_byte(tmp_path / v3 / GLOBAL)
    v4 = write(store, "4")
    # The two newest valid ones (v4, v2) are kept, and v3, newer than them, stays as evidence; v1 goes.
    assert store.versions() == [v2, v3, v4]
    assert not (tmp_path / v1).exists()


def test_stale_tmp_entries_removed_by_next_write(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path)
    write(store, "a")
    (tmp_path / ".tmp-deadbeef" / "models").mkdir(parents=True)
    (tmp_path / ".tmp-deadbeef" / "models" / "global.pkl").write_bytes(b"half")
    (tmp_path / ".tmp-current-0123").write_text("garbage")
    assert store.load().manifest["tag"] == "a"  # readers ignore them
    write(store, "b")
    assert tmp_entries(tmp_path) == []


def test_failed_write_leaves_previous_snapshot_intact(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = SnapshotStore(tmp_path)
    good = write(store, "good")
    real_write_file = snapshots._write_file
    calls = [0]

    def disk_full_on_second_file(path: Path, data: bytes) -> None:
        calls[0] += 1
        if calls[0] == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        real_write_file(path, data)

    monkeypatch.setattr(snapshots, "_write_file", disk_full_on_second_file)
    with pytest.raises(OSError, match="No space left"):
        write(store, "bad")
    assert store.versions() == [good]
    assert store.current_version() == good
    assert tmp_entries(tmp_path) == []
    assert store.load().version == good


# ------------------------------------------------------------------------------------------- set aside


def test_set_aside_moves_versions_and_current_keeping_every_byte(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = tmp_path / "models"
    store = SnapshotStore(root)
    first = write(store, "first")
    second = write(store, "second")  # `current` names it

    def contents(directory: Path) -> dict[str, bytes]:
        return {p.relative_to(directory).as_posix(): p.read_bytes() for p in directory.rglob("*") if p.is_file()}

    before = contents(root / first)
    caplog.set_level(logging.WARNING, logger=LOGGER)
    aside = store.set_aside({first: "written by River 0.1.0", "not-a-version": "ignored", "20990101T000000Z-0001": "x"})
    assert aside is not None
    assert aside.parent == root / snapshots.REFUSED_DIR
    assert sorted(p.name for p in aside.iterdir()) == sorted(["REASON", first])  # `current` names another: it stays
    assert contents(aside / first) == before
    assert f"{first}: written by River 0.1.0" in (aside / "REASON").read_text(encoding="utf-8")
    assert not (root / first).exists()
    assert store.versions() == [second]
    assert store.load().version == second
    assert any("set aside 1 snapshot(s)" in m and str(aside) in m for m in refusal_messages(caplog))

    # the one `current` names: the pointer goes with it
    aside2 = store.set_aside({second: "cannot be unpickled"})
    assert aside2 is not None
    assert aside2 != aside
    assert sorted(p.name for p in aside2.iterdir()) == sorted(["REASON", "current", second])
    assert (aside2 / "current").read_text(encoding="utf-8").strip() == second
    assert f"current: named {second}" in (aside2 / "REASON").read_text(encoding="utf-8")
    assert not (root / "current").exists()
    assert store.versions() == []
    with pytest.raises(NoValidSnapshot):
        store.load()

    # a write after a set-aside is an ordinary snapshot; the ones set aside are left alone
    third = write(store, "third")
    assert store.load().version == third
    assert contents(aside / first) == before
    assert (aside2 / second / "manifest.json").is_file()


def test_set_aside_with_nothing_to_move(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path)
    version = write(store, "x")
    assert store.set_aside({}) is None
    assert store.set_aside({"20990101T000000Z-0001": "absent"}) is None
    assert not (tmp_path / snapshots.REFUSED_DIR).exists()
    assert store.load().version == version


# -------------------------------------------------------------------------------------- current pointer


def test_current_naming_a_missing_version_falls_back_to_newest_valid(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = SnapshotStore(tmp_path)
    older = write(store, "older")
    newest = write(store, "newest")
    (tmp_path / "current").write_text("20991231T235959Z-0001\n")
    caplog.set_level(logging.WARNING, logger=LOGGER)
    assert store.load().version == newest
    assert any("20991231T235959Z-0001" in m and "does not exist" in m for m in refusal_messages(caplog))
    assert store.versions() == [older, newest]


def test_current_naming_a_deleted_version_falls_back(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path)
    older = write(store, "older")
    newest = write(store, "newest")
    shutil.rmtree(tmp_path / newest)
    assert store.current_version() == newest
    assert store.load().version == older


@pytest.mark.parametrize("pointer", [None, "", "garbage\n", "../../etc\n"])
def test_missing_or_garbled_current_uses_newest_valid(tmp_path: Path, pointer: str | None) -> None:
    store = SnapshotStore(tmp_path)
    write(store, "older")
    newest = write(store, "newest")
    if pointer is None:
        (tmp_path / "current").unlink()
    else:
        (tmp_path / "current").write_text(pointer)
    assert store.current_version() is None
    assert store.load().version == newest
    # The next write repairs the pointer.
    assert store.current_version() is None
    repaired = write(store, "next")
    assert store.current_version() == repaired


# ---------------------------------------------------------------------------------------- no snapshot


def test_no_snapshot_at_all(tmp_path: Path) -> None:
    with pytest.raises(NoValidSnapshot, match="does not exist") as missing:
        SnapshotStore(tmp_path / "never-created").load()
    assert "no valid snapshot" in str(missing.value)

    (tmp_path / "models").mkdir()
    with pytest.raises(NoValidSnapshot, match="is empty") as empty:
        SnapshotStore(tmp_path / "models").load()
    assert "no snapshot has been written" in str(empty.value)
    assert SnapshotStore(tmp_path / "models").versions() == []
    assert SnapshotStore(tmp_path / "models").current_version() is None


def test_load_of_a_named_version(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path)
    first = write(store, "first")
    write(store, "second")
    assert store.load(first).manifest["tag"] == "first"
    with pytest.raises(NoValidSnapshot, match="does not exist"):
        store.load("20000101T000000Z-0001")
    with pytest.raises(ValueError, match="not a snapshot version"):
        store.load("../etc")


# ------------------------------------------------------------------------------------- input checking


@pytest.mark.parametrize(
    "name",
    [
        "",
        "/etc/passwd",
        "/abs.pkl",
        "..",
        "../escape.pkl",
        "models/../../escape.pkl",
        "manifest.json",
        "models//global.pkl",
        "./global.pkl",
        "models/",
        "nul\x00.pkl",
        "windows\\path.pkl",
    ],
)
def test_bad_file_names_rejected(tmp_path: Path, name: str) -> None:
    store = SnapshotStore(tmp_path)
    with pytest.raises(ValueError, match=r"file name|reserved"):
        store.write({name: b"x", GLOBAL: b"y"}, {})
    assert store.versions() == []
    assert not (tmp_path.parent / "escape.pkl").exists()


def test_file_and_directory_with_same_name_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="also a directory"):
        SnapshotStore(tmp_path).write({"models": b"x", "models/global.pkl": b"y"}, {})


def test_nested_manifest_name_is_allowed(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path)
    store.write({"reports/manifest.json": b"{}"}, {})
    assert store.load().files == {"reports/manifest.json": b"{}"}


def test_bad_inputs_rejected(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path)
    with pytest.raises(TypeError, match="expected bytes"):
        store.write({GLOBAL: "text"}, {})  # type: ignore[dict-item]
    with pytest.raises(ValueError, match="JSON"):
        store.write({GLOBAL: b"x"}, {"metric": float("nan")})
    with pytest.raises(ValueError, match="JSON"):
        store.write({GLOBAL: b"x"}, {"modes": {"battery"}})
    with pytest.raises(ValueError, match="keep"):
        SnapshotStore(tmp_path, keep=0)
    assert store.versions() == []


def test_canonical_json() -> None:
    assert canonical_json({"b": 1, "a": [1, 2.5, None], "c": {"z": "é", "y": True}}) == (
        '{"a":[1,2.5,null],"b":1,"c":{"y":true,"z":"é"}}'.encode()
    )
    with pytest.raises(ValueError, match="JSON compliant"):
        canonical_json({"x": float("inf")})


# ---------------------------------------------------------------------------------------- crash safety

CHILD = textwrap.dedent(
    """
    import sys
    from pathlib import Path

    from devintel.models.snapshots import SnapshotStore

    store = SnapshotStore(Path(sys.argv[1]), keep=3)
    start = int(sys.argv[2])
    blob = bytes(range(256)) * (20 * 1024 * 1024 // 256)  # 20 MB
    print("ready", flush=True)
    seq = start
    while True:
        tag = seq.to_bytes(8, "big")
        version = store.write(
            {"models/global.pkl": blob + tag, "home_type/apartment.pkl": tag * 1000}, {"seq": seq}
        )
        print(version, seq, flush=True)
        seq += 1
    """
)


def test_sigkill_while_writing_leaves_a_valid_snapshot(tmp_path: Path) -> None:
    root = tmp_path / "models"
    seed = int.from_bytes(os.urandom(4), "big")
    rng = random.Random(seed)
    kills = 10
    deadline = time.monotonic() + 20.0
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(snapshots.__file__).parents[2]), *sys.path])}

    # One good snapshot before the first kill.
    last_done = SnapshotStore(root, keep=3).write({"models/global.pkl": b"seed", "home_type/apartment.pkl": b"s"}, {})
    seq = 1
    killed = 0
    interrupted = 0  # kills that left a write or a deletion half done
    # At least `kills` kills, and more (within the deadline) until one has landed inside a write.
    while (killed < kills or not interrupted) and time.monotonic() < deadline:
        child = subprocess.Popen(
            [sys.executable, "-c", CHILD, str(root), str(seq)], stdout=subprocess.PIPE, env=env, text=True
        )
        assert child.stdout is not None
        try:
            with selectors.DefaultSelector() as selector:
                selector.register(child.stdout, selectors.EVENT_READ)
                assert selector.select(timeout=15), f"child did not start (seed {seed})"
            assert child.stdout.readline().strip() == "ready"
            time.sleep(rng.uniform(0.0, 0.6))
            child.send_signal(signal.SIGKILL)
            assert child.wait(timeout=10) == -signal.SIGKILL
            completed = [line.split() for line in child.stdout.read().splitlines()]
        finally:
            if child.poll() is None:  # a failed assertion above: never leave the writer running
                child.kill()
                child.wait()
            child.stdout.close()
        killed += 1
        if completed:
            last_done, last_seq = completed[-1][0], int(completed[-1][1])
            seq = last_seq + 1
        interrupted += bool(tmp_entries(root))

        fresh = SnapshotStore(root, keep=3)
        loaded = fresh.load()
        # `current` is only ever switched to a complete version, so it is what loads, and it is the last
        # completed write or one newer (killed after the switch, before the child could say so).
        assert loaded.version == fresh.current_version(), f"seed {seed}"
        assert snapshots._version_key(loaded.version) >= snapshots._version_key(last_done), f"seed {seed}"
        if "seq" in loaded.manifest:
            tag = int(loaded.manifest["seq"]).to_bytes(8, "big")
            assert loaded.files["models/global.pkl"].endswith(tag), f"seed {seed}"
            assert loaded.files["home_type/apartment.pkl"] == tag * 1000, f"seed {seed}"
        # Every version left in place is complete: none half-written under a version name.
        for version in fresh.versions():
            fresh.load(version)

    assert killed >= 5, f"only {killed} kills in the time allowed (seed {seed})"
    assert interrupted, f"no kill landed inside a write in {killed} tries (seed {seed})"
    final = SnapshotStore(root, keep=3)
    version = final.write({"models/global.pkl": b"after", "home_type/apartment.pkl": b"a"}, {})
    assert tmp_entries(root) == []
    assert final.load().version == version
    assert len(final.versions()) == 3
    print(f"crash test: {killed} kills, {interrupted} mid-write, seed {seed}")
