"""Fault tests, the disk's part: a full or read-only disk and a damaged snapshot must not lose model state.

3. disk full and a read-only model directory (injected faults, and a real tmpfs when mounting is allowed): the
   snapshot fails loudly, the daemon keeps predicting, the last good snapshot stays intact, no residue.
4. a corrupted or swapped model file in the newest snapshot: refused, the previous good one served.

(1. and 2., kill -9 while snapshots are written and the broker restarted: ``test_reliability_faults.py``.)
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import orjson
import pytest

import devintel.models.snapshots as snapshots
from devintel.daemon.from_settings import build_handler
from devintel.daemon.mqtt import Received
from devintel.daemon.runtime import Runtime
from devintel.daemon.settings import Settings
from devintel.models.live import snapshot_contents
from devintel.models.snapshots import TMP_PREFIX, SnapshotStore
from fault_helpers import WAIT_S, _check_store, _daemon, _tmp_entries, _wait_for_log, health_of
from harness.broker import Broker
from harness.daemon_env import daemon_env

# ---------------------------------------------------------------- 3. disk full, read-only directory

T0 = time.time() - 86_400


def _received(topic: str, body: dict[str, object], ts: float) -> Received:
    return Received(topic, orjson.dumps(body), ts)


async def _feed(runtime: Runtime, device: str, start: float, count: int, feedback: bool = False) -> None:
    """Events of one device (and a failure feedback after them), handled by the runtime's worker."""
    for i in range(count):
        ts = start + i * 600
        runtime.inbox.put_nowait(_received(f"devintel/events/{device}", {"ts": ts, "battery_level": 60.0 - i}, ts))
    if feedback:
        end = start + count * 600
        runtime.inbox.put_nowait(_received(f"devintel/feedback/{device}", {"event": "failure", "ts": end}, end))
    worker = asyncio.create_task(runtime._work())
    try:
        await asyncio.wait_for(runtime.inbox.join(), WAIT_S)
    finally:
        worker.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await worker


def _predictions_queued(runtime: Runtime) -> int:
    count = 0
    while not runtime.outbox.empty():
        count += runtime.outbox.get_nowait().topic.startswith("devintel/predictions/")
        runtime.outbox.task_done()
    return count


async def _fail_then_recover(
    runtime: Runtime, root: Path, expect: str, caplog: pytest.LogCaptureFixture, undo: Callable[[], object]
) -> None:
    """The snapshot fails with ``expect`` in its error (the fault is in place); then ``undo()`` and it works."""
    store = SnapshotStore(root)
    good = store.load().version
    versions = store.versions()
    with pytest.raises(OSError, match=expect):
        await runtime.models_service.snapshot()
    report = runtime.health()["snapshot"]
    assert expect in (report["last_error"] or ""), report  # says what failed
    assert report["last"] == good
    runtime.status = "ok"  # as when running: a failed snapshot makes the service degraded, not down
    assert runtime.health()["status"] == "degraded"
    # The periodic path logs the failure and carries on (the daemon does not stop over a full disk).
    await _feed(runtime, "learner", T0 + 40_000, 5, feedback=True)
    assert runtime.handler.live.learner.learned > 0
    caplog.clear()
    await runtime.models_service.periodic_snapshot()
    assert "periodic snapshot failed, still serving" in caplog.text
    assert expect in caplog.text
    # Predictions keep coming for new events.
    events = runtime.handler.counters.events
    _predictions_queued(runtime)
    await _feed(runtime, "fresh", T0 + 50_000, 5)
    assert runtime.handler.counters.events == events + 5
    assert _predictions_queued(runtime) >= 1
    # The last good snapshot is intact and is what a restart loads; nothing half-written stays behind.
    assert _check_store(root, good, expect) == good
    # (When only the switch of ``current`` failed, the new versions are complete under their names, checked
    # above, and simply not current: a restart still loads the last good one.)
    assert set(versions) <= set(store.versions())
    assert _tmp_entries(root) == [], "a failed write left temporary entries"
    undo()
    version = await runtime.models_service.snapshot()
    snapshot = runtime.health()["snapshot"]
    assert snapshot == {"last": version, "written_at": snapshot["written_at"], "last_error": None}
    assert snapshot["written_at"] is not None  # what Home Assistant's "Last snapshot" shows
    runtime.session.state.connected = True  # (no broker in this test) only the snapshot's part of the status
    assert runtime.health()["status"] == "ok"
    assert _check_store(root, version, "after recovery") == version
    assert _tmp_entries(root) == []


def _runtime(root: Path) -> Runtime:
    settings = Settings(model_dir=root, live={"label_interval_s": 0})
    store = SnapshotStore(root)
    return Runtime(settings, store, store.load())


@pytest.mark.parametrize("fault", ["enospc_mid_file", "erofs", "enospc_on_current"])
async def test_injected_disk_faults_keep_the_daemon_predicting(
    fault: str, small_snapshot: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Faults injected into the store's file writes (as root, permissions stop nothing, so a chmod proves
    nothing here): the disk fills half way through a model file, the directory is read-only, or the disk fills
    when ``current`` is being switched (the new version is already complete under its name)."""
    runtime = _runtime(small_snapshot)
    await _feed(runtime, "warm", T0, 6, feedback=True)
    real = snapshots._write_file

    def faulty(path: Path, data: bytes | bytearray | memoryview) -> None:
        if fault == "erofs":
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))
        if fault == "enospc_on_current" and not path.name.startswith(f"{TMP_PREFIX}current"):
            real(path, data)
            return
        half = memoryview(data).cast("B")[: max(len(memoryview(data).cast("B")) // 2, 1)]
        with open(path, "xb") as fh:  # part of it reaches the disk, then the disk is full
            fh.write(half)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(snapshots, "_write_file", faulty)
    expect = "Read-only file system" if fault == "erofs" else "No space left on device"
    await _fail_then_recover(runtime, small_snapshot, expect, caplog, lambda: monkeypatch.undo())


def _can_mount() -> bool:
    return sys.platform == "linux" and os.geteuid() == 0 and shutil.which("mount") is not None


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A small real tmpfs (only when this process may mount: root in a container usually may not)."""
    mountpoint = tmp_path / "tmpfs"
    mountpoint.mkdir()
    if not _can_mount():
        pytest.skip("mounting a tmpfs needs root on Linux")
    run = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mountpoint)], capture_output=True, text=True
    )
    if run.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {run.stderr.strip()}")
    try:
        yield mountpoint
    finally:
        subprocess.run(["umount", "-l", str(mountpoint)], check=False)


@pytest.mark.parametrize("fault", ["disk_full", "read_only"])
async def test_real_full_and_read_only_file_system(
    fault: str, tmpfs: Path, small_snapshot: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The same on a real file system: a tmpfs filled to the last byte, or remounted read-only (which stops
    root too)."""
    root = tmpfs / "models"
    shutil.copytree(small_snapshot, root)
    runtime = _runtime(root)
    await _feed(runtime, "warm", T0, 6, feedback=True)
    filler = tmpfs / "filler"
    if fault == "disk_full":
        with contextlib.suppress(OSError), open(filler, "wb", buffering=0) as fh:
            while True:
                fh.write(b"\0" * 4096)
        with contextlib.suppress(OSError), open(filler, "ab", buffering=0) as fh:
            while True:  # the last partial page
                fh.write(b"\0")

        def undo() -> None:
            filler.unlink()

        expect = "No space left on device"
    else:
        subprocess.run(["mount", "-o", "remount,ro", str(tmpfs)], check=True)

        def undo() -> None:
            subprocess.run(["mount", "-o", "remount,rw", str(tmpfs)], check=True)

        expect = "Read-only file system"
    await _fail_then_recover(runtime, root, expect, caplog, undo)


# ---------------------------------------------------------------- 4. corrupted or swapped snapshot


def _learn_a_second_snapshot(root: Path) -> tuple[str, str]:
    """Teach the models of the fixture's snapshot a little (events, then a failure feedback) and write the result
    as a second snapshot, whose global model differs; return (older, newer)."""
    store = SnapshotStore(root)
    base = store.load()
    handler = build_handler(Settings(model_dir=root, live={"label_interval_s": 0}), base)
    for i in range(12):
        ts = T0 + i * 600
        handler.handle("devintel/events/x", orjson.dumps({"ts": ts, "battery_level": 40.0 - i}), ts)
    handler.handle("devintel/feedback/x", orjson.dumps({"event": "failure", "ts": T0 + 7200}), T0 + 7200)
    assert handler.live.learner.learned > 0
    newer = store.write(*snapshot_contents(handler.live, base.files, base.manifest))
    return base.version, newer


@pytest.mark.parametrize("damage", ["corrupt_byte", "swap_with_older"])
async def test_a_damaged_newest_snapshot_is_refused_and_the_previous_served(
    damage: str, mqtt_broker: Broker, topic_namespace: str, small_snapshot: Path, tmp_path: Path
) -> None:
    ns, root = topic_namespace, small_snapshot
    older, newer = _learn_a_second_snapshot(root)
    model = "models/global.pkl"
    old_bytes, new_bytes = (root / older / model).read_bytes(), (root / newer / model).read_bytes()
    assert old_bytes != new_bytes  # so a swap is a real change
    if damage == "corrupt_byte":
        damaged = bytearray(new_bytes)
        damaged[len(damaged) // 2] ^= 0x01
        (root / newer / model).write_bytes(bytes(damaged))
    else:
        (root / newer / model).write_bytes(old_bytes)
    assert SnapshotStore(root).current_version() == newer
    log = tmp_path / "daemon.log"
    with _daemon(daemon_env(root, ns, mqtt_broker), log) as daemon:
        serving = await _wait_for_log(log, r"serving snapshot (\S+);", daemon)
        async with health_of(mqtt_broker, ns) as seen:
            deadline = time.monotonic() + WAIT_S
            while not seen["health"] and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            assert seen["health"].get("model_version") == older, seen["health"]
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(WAIT_S) == 0
    text = log.read_text()
    assert serving == older
    assert re.search(rf"snapshot {newer}: {re.escape(model)} (sha256 mismatch|is \d+ bytes, the manifest)", text), text
    assert f"loaded snapshot {older} instead of {newer}" in text
    # The refused snapshot stays on disk (for a post-mortem) and still refuses; the final snapshot builds on
    # the good one.
    final = SnapshotStore(root).load()
    assert final.manifest["live"]["base_version"] == older
    with pytest.raises(snapshots.NoValidSnapshot):
        SnapshotStore(root).load(newer)
