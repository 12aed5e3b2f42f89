"""Fault tests: the daemon runs for months, so it must survive power cuts, broker restarts, full or read-only
disks, damaged snapshots and junk on the bus without losing model state.

1. kill -9 at random moments while snapshots are written (50 kills: 10 of the real daemon, 40 of a forked writer
   that runs the daemon's snapshot path): every restart loads a valid, complete snapshot.
2. the broker killed and restarted during a stream: the daemon is back (retained ``online``) within 5 s of the
   broker's return, and with persistent sessions and QoS 1 no event is lost (SIGTERM restarts; a SIGKILL variant
   checks reconnection only).
3. disk full and a read-only model directory (injected faults, and a real tmpfs when mounting is allowed): the
   snapshot fails loudly, the daemon keeps predicting, the last good snapshot stays intact, no residue.
4. a corrupted or swapped model file in the newest snapshot: refused, the previous good one served.
5. out-of-order, duplicated and far-future events, and a receipt clock that jumps: ``test_reliability_time.py``.

The random moments come from a fixed seed (``DEVINTEL_FAULT_SEED`` overrides it); every assertion names it.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import aiomqtt
import orjson
import pytest

import devintel.models.snapshots as snapshots
from devintel.daemon.from_settings import build_handler, live_models
from devintel.daemon.mqtt import Received
from devintel.daemon.runtime import Runtime
from devintel.daemon.settings import Settings
from devintel.models.live import snapshot_contents
from devintel.models.snapshots import TMP_PREFIX, SnapshotStore
from fault_helpers import (
    RECONNECT_BOUND_S,
    SEED,
    SRC,
    WAIT_S,
    _check_store,
    _daemon,
    _event,
    _tmp_entries,
    _wait_for_log,
)
from harness.broker import Broker
from harness.daemon_env import daemon_env

# ------------------------------------------------------------- 1. kill -9 while snapshots are written

DAEMON_KILLS = 10
WRITER_KILLS = 40


async def test_kill_9_of_the_daemon_while_it_writes_snapshots(
    mqtt_broker: Broker, topic_namespace: str, small_snapshot: Path, tmp_path: Path
) -> None:
    """10 of the 50 kills: the real daemon, made to write snapshots back to back (``<prefix>/cmd/snapshot``
    messages in a loop, plus a periodic snapshot every 0.05 s), SIGKILLed at a random moment after its first
    write; the next start must load a valid snapshot and serve it."""
    ns, root = topic_namespace, small_snapshot
    rng = random.Random(SEED)
    env = daemon_env(root, ns, mqtt_broker, DEVINTEL_SNAPSHOT__INTERVAL_S="0.05", DEVINTEL_SNAPSHOT__KEEP="3")
    expected = _check_store(root, None, "the fixture")
    mid_write = 0
    async with aiomqtt.Client(mqtt_broker.host, mqtt_broker.port, identifier=f"cmd-{ns}") as cmd:
        for kill in range(DAEMON_KILLS + 1):
            why = f"daemon kill {kill}, seed {SEED}"
            log = tmp_path / f"daemon-{kill}.log"
            with _daemon(env, log) as daemon:
                serving = await _wait_for_log(log, r"serving snapshot (\S+);", daemon)
                assert serving == expected, why  # the restart loaded the snapshot the check found valid
                await _wait_for_log(log, r"MQTT connected", daemon)
                if kill == DAEMON_KILLS:  # the last start only checks that it serves, then stops cleanly
                    daemon.send_signal(signal.SIGTERM)
                    assert daemon.wait(WAIT_S) == 0, log.read_text()[-3000:]
                    break
                first = SnapshotStore(root).current_version()
                deadline = time.monotonic() + WAIT_S
                while SnapshotStore(root).current_version() == first:  # the daemon is writing now
                    await cmd.publish(f"{ns}/cmd/snapshot", b"", qos=0)
                    assert time.monotonic() < deadline, f"no snapshot written ({why}):\n{log.read_text()[-3000:]}"
                    await asyncio.sleep(0.01)
                moment = time.monotonic() + rng.uniform(0.0, 0.4)
                while time.monotonic() < moment:  # keep it writing until the kill
                    await cmd.publish(f"{ns}/cmd/snapshot", b"", qos=0)
                    await asyncio.sleep(0.005)
                daemon.send_signal(signal.SIGKILL)
                assert daemon.wait(WAIT_S) == -signal.SIGKILL, why
            mid_write += bool(_tmp_entries(root))
            written = re.findall(r"snapshot (\S+) written", log.read_text(errors="replace"))
            expected = _check_store(root, written[-1] if written else None, why)
    print(f"daemon kills: {DAEMON_KILLS}, {mid_write} left a write or deletion half done (seed {SEED})")
    # The window is wide (the daemon writes back to back), yet not every kill must land in it.
    assert mid_write >= 1, f"no daemon kill landed inside a write in {DAEMON_KILLS} (seed {SEED})"


#: A process that has imported and loaded everything once, and forks writers on demand: a fresh Python per kill
#: would cost about a second of imports each. Each forked writer is a restart: it loads the newest valid
#: snapshot from disk, builds the live models from it, and writes snapshots in a loop through the daemon's own
#: path (``snapshot_contents`` + ``SnapshotStore.write``, as ``Runtime.snapshot`` does), logging each.
ZYGOTE = textwrap.dedent(
    """
    import os, sys
    from pathlib import Path
    from devintel.daemon.from_settings import live_models
    from devintel.daemon.settings import Settings
    from devintel.models.live import snapshot_contents
    from devintel.models.snapshots import SnapshotStore

    root = Path(sys.argv[1])
    settings = Settings(model_dir=root)
    print("ready", flush=True)
    for line in sys.stdin:
        command, argument = line.split()
        if command == "fork":
            pid = os.fork()
            if pid == 0:
                try:
                    fd = os.open(argument, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
                    store = SnapshotStore(root, keep=3)
                    base = store.load()
                    live = live_models(settings, base)
                    os.write(fd, f"loaded {base.version}\\n".encode())
                    while True:
                        files, manifest = snapshot_contents(live, base.files, base.manifest)
                        live.version = store.write(files, manifest)
                        os.write(fd, f"wrote {live.version}\\n".encode())
                finally:
                    os._exit(3)
            print(pid, flush=True)
        elif command == "reap":
            _, status = os.waitpid(int(argument), 0)
            print(os.waitstatus_to_exitcode(status), flush=True)
    """
)


def test_kill_9_of_a_snapshot_writer_at_random_moments(small_snapshot: Path, tmp_path: Path) -> None:
    """40 of the 50 kills: a writer running the daemon's snapshot path, SIGKILLed at a random moment."""
    root = small_snapshot
    rng = random.Random(SEED + 1)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([SRC, *sys.path])}
    zygote = subprocess.Popen(
        [sys.executable, "-c", ZYGOTE, str(root)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, text=True
    )
    assert zygote.stdin is not None
    assert zygote.stdout is not None
    expected = _check_store(root, None, "the fixture")
    mid_write = writes = 0
    try:
        assert zygote.stdout.readline().strip() == "ready"
        for kill in range(WRITER_KILLS):
            why = f"writer kill {kill}, seed {SEED}"
            log = tmp_path / f"writer-{kill}.log"
            zygote.stdin.write(f"fork {log}\n")
            zygote.stdin.flush()
            pid = int(zygote.stdout.readline())
            deadline = time.monotonic() + WAIT_S
            while not log.exists() or not log.read_text().startswith("loaded"):
                assert time.monotonic() < deadline, f"the writer did not start ({why})"
                time.sleep(0.002)
            time.sleep(rng.uniform(0.0, 0.25))
            os.kill(pid, signal.SIGKILL)
            zygote.stdin.write(f"reap {pid}\n")
            zygote.stdin.flush()
            assert int(zygote.stdout.readline()) == -signal.SIGKILL, why
            lines = log.read_text().split()
            assert lines[1] == expected, why  # the restart loaded what the previous check found valid
            done = lines[3::2]
            writes += len(done)
            mid_write += bool(_tmp_entries(root))
            expected = _check_store(root, done[-1] if done else None, why)
    finally:
        zygote.stdin.close()
        zygote.wait(timeout=WAIT_S)
        zygote.stdout.close()
    # A write after the kills clears what they left: no residue, and the newest snapshot still loads.
    store = SnapshotStore(root, keep=3)
    loaded = store.load()
    version = store.write(
        *snapshot_contents(live_models(Settings(model_dir=root), loaded), loaded.files, loaded.manifest)
    )
    assert _tmp_entries(root) == []
    assert store.load().version == version
    print(f"writer kills: {WRITER_KILLS}, {mid_write} mid-write, {writes} writes completed (seed {SEED})")
    assert mid_write >= WRITER_KILLS // 10, f"only {mid_write} of {WRITER_KILLS} kills landed in a write (seed {SEED})"


# ------------------------------------------------------------------------ 2. the broker restarted


#: Devices of the stream: the daemon recognises a redelivery among a device's 16 latest events, and a broker
#: restored from a stale autosave (up to ~2 s of events at <= 100 events/s) must stay within that window.
STREAM_DEVICES = 40


class Streamer:
    """Publishes events (QoS 1, its own persistent session) as fast as acknowledgements allow, at most one every
    ``pause_s``; an event whose publish fails is sent again (same bytes) once reconnected, so ``acked`` events
    (0 .. acked-1) each reached the broker at least once; repeats are the daemon's to drop as duplicates."""

    def __init__(self, broker: Broker, namespace: str, pause_s: float = 0.01) -> None:
        self.broker, self.ns, self.pause_s = broker, namespace, pause_s
        self.base = time.time() - 7200
        self.acked = 0
        self.failures = 0
        self.stop = asyncio.Event()

    async def run(self) -> None:
        while not self.stop.is_set():
            try:
                async with aiomqtt.Client(
                    self.broker.host, self.broker.port, identifier=f"pub-{self.ns}", clean_session=False, timeout=2.0
                ) as client:
                    while not self.stop.is_set():
                        device, payload = _event(self.acked, self.base, devices=STREAM_DEVICES)
                        async with asyncio.timeout(3.0):
                            await client.publish(f"{self.ns}/events/{device}", payload, qos=1)
                        self.acked += 1
                        await asyncio.sleep(self.pause_s)
            except (aiomqtt.MqttError, TimeoutError, OSError):
                self.failures += 1
                await asyncio.sleep(0.05)


async def _await_online(broker: Broker, ns: str, limit: float) -> float:
    """Seconds until ``<ns>/status`` says ``online`` (its retained value held a marker until the daemon's
    publish), measured from now; ``limit`` when it does not within that."""
    start = time.monotonic()
    while time.monotonic() - start < limit:
        try:
            async with aiomqtt.Client(broker.host, broker.port, identifier=f"obs-{ns}-{time.monotonic_ns()}") as c:
                await c.subscribe(f"{ns}/status", qos=1)
                async with asyncio.timeout(max(limit - (time.monotonic() - start), 0.01)):
                    async for message in c.messages:
                        if message.payload == b"online":
                            return time.monotonic() - start
        except (aiomqtt.MqttError, OSError):
            await asyncio.sleep(0.02)
        except TimeoutError:
            break
    return limit


async def _mark_status(broker: Broker, ns: str, mark: str) -> None:
    """Replace the retained status by a marker, so that the daemon's next ``online`` is told from the last one
    (mosquitto keeps retained messages across a restart)."""
    async with aiomqtt.Client(broker.host, broker.port, identifier=f"mark-{ns}-{time.monotonic_ns()}") as c:
        await c.publish(f"{ns}/status", mark.encode(), qos=1, retain=True)


@contextlib.asynccontextmanager
async def _health(broker: Broker, ns: str) -> AsyncIterator[dict[str, dict[str, object]]]:
    latest: dict[str, dict[str, object]] = {"health": {}}
    async with aiomqtt.Client(broker.host, broker.port, identifier=f"health-{ns}-{time.monotonic_ns()}") as c:
        await c.subscribe(f"{ns}/health", qos=1)

        async def collect() -> None:
            async for message in c.messages:
                if isinstance(message.payload, bytes) and message.payload:
                    latest["health"] = orjson.loads(message.payload)

        task = asyncio.create_task(collect())
        try:
            yield latest
        finally:
            task.cancel()


def _events_counted(health: dict[str, object]) -> int:
    counters = health.get("counters")
    return int(counters.get("events", -1)) if isinstance(counters, dict) else -1


@pytest.mark.parametrize("how", ["sigterm", "sigkill"])
async def test_broker_restarts_during_a_stream(
    how: str, mqtt_broker: Broker, topic_namespace: str, small_snapshot: Path, tmp_path: Path
) -> None:
    """SIGTERM (10 restarts): mosquitto saves its database, so sessions and queued QoS 1 messages survive and no
    event may be lost. SIGKILL (3 restarts, a crash): only the autosave (every 1 s) survives, so messages can be
    lost at the broker; only reconnection is asserted there."""
    if not mqtt_broker.persistent:
        pytest.skip("needs a broker that keeps persistent sessions across a restart (mosquitto, not amqtt)")
    ns = topic_namespace
    restarts = 10 if how == "sigterm" else 3
    rng = random.Random(SEED + (2 if how == "sigterm" else 3))
    log = tmp_path / "daemon.log"
    with _daemon(daemon_env(small_snapshot, ns, mqtt_broker), log) as daemon:
        await _wait_for_log(log, r"MQTT connected", daemon)
        streamer = Streamer(mqtt_broker, ns)
        stream = asyncio.create_task(streamer.run())
        times: list[float] = []
        try:
            for restart in range(restarts):
                await asyncio.sleep(rng.uniform(0.2, 0.5))  # stream a while
                await _mark_status(mqtt_broker, ns, f"marker-{restart}")
                if how == "sigterm":
                    await asyncio.to_thread(mqtt_broker.stop)
                else:
                    await asyncio.sleep(1.2)  # let the autosave keep the marker
                    await asyncio.to_thread(mqtt_broker.kill)
                await asyncio.sleep(rng.uniform(0.1, 0.6))  # the broker is away
                await asyncio.to_thread(mqtt_broker.start)  # returns once it accepts connections
                times.append(await _await_online(mqtt_broker, ns, limit=3 * RECONNECT_BOUND_S))
            await asyncio.sleep(0.3)
        finally:
            streamer.stop.set()
            await asyncio.wait_for(stream, WAIT_S)
        published = streamer.acked
        ordered = sorted(times)
        summary = (
            f"{how}: reconnect times {[round(t, 2) for t in times]} s (max {ordered[-1]:.2f}, median "
            f"{ordered[len(ordered) // 2]:.2f}); {published} events published, {streamer.failures} publisher "
            f"reconnections (seed {SEED})"
        )
        assert max(times) <= RECONNECT_BOUND_S, summary
        async with _health(mqtt_broker, ns) as seen:
            deadline = time.monotonic() + WAIT_S
            while _events_counted(seen["health"]) < published and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            await asyncio.sleep(1.0)  # late duplicates, if any, would show by now
            health = seen["health"]
        counters = health.get("counters", {})
        assert isinstance(counters, dict)
        duplicates = counters.get("skipped", {}).get("duplicate", 0)
        summary += f"; daemon counted {counters.get('events')} events, dropped {duplicates} duplicates"
        print(summary)
        assert health["mqtt"]["connections"] >= restarts + 1, summary  # type: ignore[index]
        if how == "sigterm":
            assert counters.get("events") == published, summary  # none lost, none counted twice
        else:
            assert 0 < int(counters.get("events", 0)) <= published, summary  # never more than were sent
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(WAIT_S) == 0, log.read_text()[-3000:]


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
        async with _health(mqtt_broker, ns) as seen:
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
