"""The snapshot store's verified loads: a tampered, incomplete or foreign snapshot (another River release, a
path outside it, a symlink) is refused and the previous good one loaded; signed manifests (HMAC).

Split from ``test_models_snapshots.py`` (writes, pruning, the current pointer, crash safety); shared helpers in
``snapshot_store_helpers.py``.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from pathlib import Path

import pytest
from river.__version__ import __version__ as river_version

import devintel.models.snapshots as snapshots
from devintel.models.snapshots import (
    NoValidSnapshot,
    SnapshotStore,
    canonical_json,
)
from snapshot_store_helpers import (
    APARTMENT,
    GLOBAL,
    LOGGER,
    flip_byte,
    manifest_path,
    model_files,
    read_manifest,
    refusal_messages,
    rewrite_manifest,
    write,
)

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
