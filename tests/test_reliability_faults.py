"""Fault tests: the daemon runs for months, so it must survive power cuts, broker restarts, full or read-only
disks, damaged snapshots and junk on the bus without losing model state.

1. kill -9 at random moments while snapshots are written (50 kills: 10 of the real daemon, 40 of a forked writer
   that runs the daemon's snapshot path): every restart loads a valid, complete snapshot.
2. the broker killed and restarted during a stream: the daemon is back (retained ``online``) within 5 s of the
   broker's return, and with persistent sessions and QoS 1 no event is lost (SIGTERM restarts; a SIGKILL variant
   checks reconnection only).
3. and 4., a full or read-only disk and a damaged snapshot: ``test_reliability_disk.py``.
5. out-of-order, duplicated and far-future events, and a receipt clock that jumps: ``test_reliability_time.py``.

The random moments come from a fixed seed (``DEVINTEL_FAULT_SEED`` overrides it); every assertion names it.
"""

from __future__ import annotations

import asyncio
import os
import random
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import aiomqtt
import pytest

from devintel.daemon.from_settings import live_models
from devintel.daemon.settings import Settings
from devintel.models.live import snapshot_contents
from devintel.models.snapshots import SnapshotStore
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
    health_of,
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
    (0 .. acked-1) each reached the broker at least once; repeats are the daemon's to drop as duplicates. ``sent``
    counts the events whose publish was started: one more than ``acked`` when the last one's acknowledgement never
    came (a broker killed after passing it on), so the daemon may count up to ``sent``, never more."""

    def __init__(self, broker: Broker, namespace: str, pause_s: float = 0.01) -> None:
        self.broker, self.ns, self.pause_s = broker, namespace, pause_s
        self.base = time.time() - 7200
        self.acked = 0
        self.sent = 0
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
                        self.sent = self.acked + 1
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
            f"{ordered[len(ordered) // 2]:.2f}); {published} events published ({streamer.sent} sent), "
            f"{streamer.failures} publisher reconnections (seed {SEED})"
        )
        mqtt_lines = [line for line in log.read_text(errors="replace").splitlines() if "MQTT" in line]
        assert max(times) <= RECONNECT_BOUND_S, summary + "\n" + "\n".join(mqtt_lines[-20:])
        async with health_of(mqtt_broker, ns) as seen:
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
            # Never more than were sent: the last event may have reached the daemon without its acknowledgement.
            assert 0 < int(counters.get("events", 0)) <= streamer.sent, summary
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(WAIT_S) == 0, log.read_text()[-3000:]
