"""The snapshot store: atomic writes, verified loads with fallback, pruning, signing, crash safety.

Every test works on real files under ``tmp_path``; the crash test kills a real child process with SIGKILL.
"""

from __future__ import annotations

import errno
import hashlib
import hmac
import json
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

LOGGER = "devintel.models.snapshots"
GLOBAL = "models/global.pkl"
APARTMENT = "home_type/apartment.pkl"


def model_files(tag: str) -> dict[str, bytes]:
    """A small set of model files whose bytes differ with ``tag``."""
    return {
        GLOBAL: f"global-{tag}".encode() * 100,
        APARTMENT: f"apartment-{tag}".encode() * 50,
        "router.json": json.dumps({"apartment": "home_type"}).encode(),
    }


def write(store: SnapshotStore, tag: str, **extra: object) -> str:
    return store.write(model_files(tag), {"tag": tag, "threshold": 0.42, **extra})


def manifest_path(root: Path, version: str) -> Path:
    return root / version / "manifest.json"


def read_manifest(root: Path, version: str) -> dict[str, object]:
    loaded: dict[str, object] = json.loads(manifest_path(root, version).read_text())
    return loaded


def rewrite_manifest(root: Path, version: str, manifest: dict[str, object]) -> None:
    manifest_path(root, version).write_text(json.dumps(manifest, indent=2))


def flip_byte(path: Path, offset: int = 10) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


def tmp_entries(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir() if p.name.startswith(".tmp-"))


def refusal_messages(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == LOGGER and r.levelno >= logging.WARNING]


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


# ------------------------------------------------------------------------------------ refusal, fallback


def test_tampered_file_refused_previous_loaded(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    store = SnapshotStore(tmp_path)
    good = write(store, "good")
    bad = write(store, "bad")
    flip_byte(tmp_path / bad / GLOBAL)

    caplog.set_level(logging.INFO, logger=LOGGER)
    loaded = SnapshotStore(tmp_path).load()
    assert loaded.version == good
    assert loaded.files == model_files("good")

    messages = refusal_messages(caplog)
    refusal = next(m for m in messages if m.startswith(f"snapshot {bad}:"))
    assert GLOBAL in refusal
    assert "sha256 mismatch" in refusal
    assert "trying the previous one" in refusal
    assert any(f"loaded snapshot {good} instead of {bad}" in m for m in messages)

    with pytest.raises(NoValidSnapshot, match="sha256 mismatch") as info:
        store.load(bad)
    assert info.value.refusals[0][0] == bad


def test_same_size_swapped_file_refused(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path)
    good = write(store, "good")
    bad = store.write({GLOBAL: b"A" * 1000}, {})
    (tmp_path / bad / GLOBAL).write_bytes(b"B" * 1000)
    assert store.load().version == good


def test_extra_unlisted_file_refused(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    store = SnapshotStore(tmp_path)
    good = write(store, "good")
    bad = write(store, "bad")
    (tmp_path / bad / "home_type" / "evil.pkl").write_bytes(b"cos\nsystem\n(S'true'\ntR.")
    caplog.set_level(logging.WARNING, logger=LOGGER)
    assert store.load().version == good
    assert any("home_type/evil.pkl" in m and "unlisted" in m for m in refusal_messages(caplog))


def test_missing_file_refused(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    store = SnapshotStore(tmp_path)
    good = write(store, "good")
    bad = write(store, "bad")
    (tmp_path / bad / APARTMENT).unlink()
    caplog.set_level(logging.WARNING, logger=LOGGER)
    assert store.load().version == good
    assert any(APARTMENT in m and "missing" in m for m in refusal_messages(caplog))


@pytest.mark.parametrize("content", [b"{not json", b"", b"\xff\xfe", b"[1, 2]", b'{"a": 1, "a": 2}'])
def test_broken_manifest_refused(tmp_path: Path, caplog: pytest.LogCaptureFixture, content: bytes) -> None:
    store = SnapshotStore(tmp_path)
    good = write(store, "good")
    bad = write(store, "bad")
    manifest_path(tmp_path, bad).write_bytes(content)
    caplog.set_level(logging.WARNING, logger=LOGGER)
    assert store.load().version == good
    assert any(m.startswith(f"snapshot {bad}:") and "manifest.json" in m for m in refusal_messages(caplog))


def test_missing_manifest_refused(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path)
    good = write(store, "good")
    bad = write(store, "bad")
    manifest_path(tmp_path, bad).unlink()
    assert store.load().version == good
    with pytest.raises(NoValidSnapshot, match=r"manifest\.json is missing"):
        store.load(bad)


def test_manifest_listing_a_path_outside_the_snapshot_refused(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path)
    good = write(store, "good")
    bad = write(store, "bad")
    (tmp_path / "outside.pkl").write_bytes(b"x")
    manifest = read_manifest(tmp_path, bad)
    files = manifest["files"]
    assert isinstance(files, dict)
    files["../outside.pkl"] = {"sha256": hashlib.sha256(b"x").hexdigest(), "bytes": 1}
    rewrite_manifest(tmp_path, bad, manifest)
    assert store.load().version == good
    with pytest.raises(NoValidSnapshot, match="bad file name"):
        store.load(bad)


def test_symlinked_file_refused(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path)
    good = write(store, "good")
    bad = write(store, "bad")
    target = tmp_path / "elsewhere.pkl"
    target.write_bytes((tmp_path / bad / GLOBAL).read_bytes())
    (tmp_path / bad / GLOBAL).unlink()
    (tmp_path / bad / GLOBAL).symlink_to(target)
    assert store.load().version == good
    with pytest.raises(NoValidSnapshot, match="not a regular file"):
        store.load(bad)


def test_other_river_version_refused(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    store = SnapshotStore(tmp_path)
    good = write(store, "good")
    bad = write(store, "bad")
    manifest = read_manifest(tmp_path, bad)
    manifest["river_version"] = "0.0.1"
    rewrite_manifest(tmp_path, bad, manifest)

    caplog.set_level(logging.WARNING, logger=LOGGER)
    assert store.load().version == good
    refusal = next(m for m in refusal_messages(caplog) if m.startswith(f"snapshot {bad}:"))
    assert "0.0.1" in refusal
    assert river_version in refusal
    with pytest.raises(NoValidSnapshot, match=rf"River 0\.0\.1, this is River {river_version}"):
        store.load(bad)


def test_river_upgrade_refuses_every_snapshot_with_each_reason(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = SnapshotStore(tmp_path)
    written = [write(store, str(i)) for i in range(3)]
    monkeypatch.setattr(snapshots, "_running_river_version", lambda: "99.0.0")
    with pytest.raises(NoValidSnapshot) as info:
        store.load()
    message = str(info.value)
    assert str(tmp_path) in message
    for version in written:
        assert version in message
    assert message.count("this is River 99.0.0") == 3
    assert [v for v, _ in info.value.refusals] == written[::-1]  # current first, then newest first


@pytest.mark.parametrize(
    ("written_by", "running", "compatible"),
    [
        ("0.26.1", "0.26.1", True),
        ("0.26.0", "0.26.1", True),  # a patch release: bug fixes, same classes
        ("0.26.3", "0.26.1", True),  # a downgrade within the minor release too
        ("0.26.0rc1", "0.26.1", True),
        ("0.25.9", "0.26.1", False),  # minor releases move and re-parameterise estimators
        ("0.27.0", "0.26.1", False),
        ("1.26.1", "0.26.1", False),
        ("0.2.61", "0.26.1", False),
        (None, "0.26.1", False),
        (26, "0.26.1", False),
        ("", "0.26.1", False),
        ("dev", "0.26.1", False),
        ("dev", "dev", True),  # unparsable: only identical
    ],
)
def test_river_compatible(written_by: object, running: str, compatible: bool) -> None:
    assert snapshots.river_compatible(written_by, running) is compatible


def _patch_release(version: str) -> str:
    major, minor, *_ = version.split(".")
    return f"{major}.{minor}.999"


def test_snapshot_of_a_patch_release_of_river_loads(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    store = SnapshotStore(tmp_path)
    older = write(store, "older")
    newest = write(store, "newest")
    manifest = read_manifest(tmp_path, newest)
    other_patch = _patch_release(river_version)
    assert other_patch != river_version
    manifest["river_version"] = other_patch
    rewrite_manifest(tmp_path, newest, manifest)

    caplog.set_level(logging.WARNING, logger=LOGGER)
    loaded = store.load()
    assert loaded.version == newest  # not the older one: nothing was refused
    assert loaded.manifest["river_version"] == other_patch
    assert loaded.files == model_files("newest")
    assert refusal_messages(caplog) == []
    assert store.load(older).version == older


def test_snapshot_of_another_minor_release_of_river_refused(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path)
    version = write(store, "x")
    major, minor, *_ = river_version.split(".")
    manifest = read_manifest(tmp_path, version)
    manifest["river_version"] = f"{major}.{int(minor) + 1}.0"
    rewrite_manifest(tmp_path, version, manifest)
    with pytest.raises(NoValidSnapshot, match=rf"only within one River minor release, {major}\.{minor}\.x"):
        store.load()


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


# ------------------------------------------------------------------------------------------- signatures

KEY = b"k" * 32


def test_signed_snapshot_loads_and_signature_is_hmac_of_canonical_json(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path, signing_key=KEY)
    version = write(store, "signed")
    loaded = store.load()
    assert loaded.version == version
    manifest = dict(loaded.manifest)
    signature = manifest.pop("signature")
    assert signature == hmac.new(KEY, canonical_json(manifest), hashlib.sha256).hexdigest()
    # A store without a key can still read a signed snapshot (it just cannot check the signature).
    assert SnapshotStore(tmp_path).load().version == version


def test_signed_store_refuses_altered_manifest(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    store = SnapshotStore(tmp_path, signing_key=KEY)
    good = write(store, "good")
    bad = write(store, "bad")
    manifest = read_manifest(tmp_path, bad)
    manifest["threshold"] = 0.01
    rewrite_manifest(tmp_path, bad, manifest)
    caplog.set_level(logging.WARNING, logger=LOGGER)
    assert store.load().version == good
    assert any(bad in m and "signature does not match" in m for m in refusal_messages(caplog))


def test_signed_store_refuses_missing_signature(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path, signing_key=KEY)
    good = write(store, "good")
    bad = write(store, "bad")
    manifest = read_manifest(tmp_path, bad)
    del manifest["signature"]
    rewrite_manifest(tmp_path, bad, manifest)
    assert store.load().version == good
    with pytest.raises(NoValidSnapshot, match="not signed"):
        store.load(bad)
    # Unsigned snapshots (written without a key) are refused once a key is configured.
    unsigned = write(SnapshotStore(tmp_path), "unsigned")
    assert store.load().version == good
    with pytest.raises(NoValidSnapshot, match="not signed"):
        store.load(unsigned)


def test_wrong_key_refused(tmp_path: Path) -> None:
    write(SnapshotStore(tmp_path, signing_key=KEY), "a")
    write(SnapshotStore(tmp_path, signing_key=KEY), "b")
    with pytest.raises(NoValidSnapshot, match="signature does not match") as info:
        SnapshotStore(tmp_path, signing_key=b"another key").load()
    assert len(info.value.refusals) == 2


def test_swapped_file_with_rewritten_hashes_caught_only_by_signature(tmp_path: Path) -> None:
    """The threat the key is for: someone who can write the directory replaces a pickle and fixes the manifest."""
    signed = SnapshotStore(tmp_path, signing_key=KEY)
    good = write(signed, "good")
    bad = write(signed, "bad")
    evil = b"cos\nsystem\n(S'echo owned'\ntR."
    (tmp_path / bad / GLOBAL).write_bytes(evil)
    manifest = read_manifest(tmp_path, bad)
    manifest["files"][GLOBAL] = {"sha256": hashlib.sha256(evil).hexdigest(), "bytes": len(evil)}  # type: ignore[index]
    rewrite_manifest(tmp_path, bad, manifest)

    assert SnapshotStore(tmp_path).load().version == bad  # hashes alone cannot tell
    assert signed.load().version == good


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
