"""The live daemon end to end: ``devintel-daemon`` as a real subprocess against a real broker (mosquitto when
installed, as in CI), one topic namespace per test.

Events in, predictions and Home Assistant discovery out; bad input counted; the HTTP API; ``online`` status and a
retained ``offline`` after kill -9; SIGTERM writes the final snapshot and publishes ``stopped``; the broker
restarted mid-stream loses no QoS 1 message; replay and live give the same predictions; the README's main
command (embedded broker and simulated home) and systemd notifications.
"""

from __future__ import annotations

import contextlib
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import aiomqtt
import httpx
import orjson
import pytest

from devintel.models.snapshots import SnapshotStore
from harness.broker import Broker, free_port
from harness.collector import WAIT_S, collect, leak_event
from harness.daemon_env import daemon_env


@contextlib.contextmanager
def _daemon(env: dict[str, str], *args: str) -> Iterator[subprocess.Popen[str]]:
    """The daemon as a subprocess, killed at the end if the test left it running."""
    process = subprocess.Popen(
        [sys.executable, "-m", "devintel.daemon.service", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()


def _stop(process: subprocess.Popen[str], sig: int = signal.SIGTERM) -> tuple[int, str]:
    if process.poll() is None:
        process.send_signal(sig)
    try:
        _, err = process.communicate(timeout=WAIT_S)
    except subprocess.TimeoutExpired:
        process.kill()
        _, err = process.communicate()
        raise AssertionError(f"the daemon did not stop within {WAIT_S} s:\n{err[-3000:]}") from None
    return process.returncode, err


def _watcher(broker: Broker) -> aiomqtt.Client:
    return aiomqtt.Client(broker.host, broker.port, identifier=f"test-{time.monotonic_ns()}")


async def test_events_in_predictions_and_discovery_out_then_sigterm(
    mqtt_broker: Broker, topic_namespace: str, small_snapshot: Path
) -> None:
    ns = topic_namespace
    http_port = free_port()
    with _daemon(daemon_env(small_snapshot, ns, mqtt_broker, DEVINTEL_HTTP__PORT=str(http_port))) as daemon:
        async with collect(_watcher(mqtt_broker), f"{ns}/#", f"{ns}-ha/#") as seen:
            await seen.wait_for(lambda: seen.latest.get(f"{ns}/status") == b"online", "status online")
            now = time.time() - 3600
            async with aiomqtt.Client(mqtt_broker.host, mqtt_broker.port, identifier=f"pub-{ns}") as pub:
                for i in range(10):
                    for device in ("leak.kitchen", "leak.bath"):
                        await pub.publish(f"{ns}/events/{device}", leak_event(now + i * 60, i), qos=1)
                await pub.publish(f"{ns}/events/bad", b"{nope", qos=1)
                late = orjson.dumps({"ts": now + 600, "battery_level": 300, "linkquality": 90})
                await pub.publish(f"{ns}/events/leak.kitchen", late, qos=1)  # a bad value: dropped alone
            await seen.wait_for(
                lambda: seen.counters(ns).get("events") == 21,
                "21 events handled",
            )
            predictions = seen.predictions(ns)
            assert {p["device_id"] for p in predictions} == {"leak.kitchen", "leak.bath"}
            assert all(0.0 <= float(p["failure_probability"]) <= 1.0 for p in predictions)
            configs = {t for t, p, _ in seen.messages if t.startswith(f"{ns}-ha/") and t.endswith("/config") and p}
            assert f"{ns}-ha/sensor/{ns}/leak_kitchen_failure_probability/config" in configs
            assert f"{ns}-ha/binary_sensor/{ns}/leak_bath_needs_attention/config" in configs
            health = seen.health(ns)
            assert health["counters"]["rejected"] == {"malformed_json": 1}
            assert health["counters"]["dropped_values"] == {"out_of_range": 1}
            assert health["mqtt"]["connected"] is True

            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{http_port}") as http:
                assert (await http.get("/health")).status_code == 200
                assert len((await http.get("/predictions")).json()) == 2
                assert (await http.get("/predictions/leak.bath")).json()["device_id"] == "leak.bath"
                assert (await http.get("/predictions/nobody")).status_code == 404
                metrics = (await http.get("/metrics")).text
                assert "devintel_events_total 21" in metrics
                assert 'devintel_dropped_values_total{reason="out_of_range"} 1' in metrics

            versions_before = SnapshotStore(small_snapshot).versions()
            code, err = _stop(daemon)
            assert code == 0, err[-3000:]
            await seen.wait_for(lambda: seen.latest.get(f"{ns}/status") == b"stopped", "status stopped")
        assert len(SnapshotStore(small_snapshot).versions()) == len(versions_before) + 1  # the final snapshot
        assert "snapshot" in err


async def test_kill_9_leaves_a_retained_offline(
    mqtt_broker: Broker, topic_namespace: str, small_snapshot: Path
) -> None:
    ns = topic_namespace
    with _daemon(daemon_env(small_snapshot, ns, mqtt_broker)) as daemon:
        async with collect(_watcher(mqtt_broker), f"{ns}/status") as seen:
            await seen.wait_for(lambda: seen.latest.get(f"{ns}/status") == b"online", "status online")
            daemon.kill()
            daemon.communicate(timeout=WAIT_S)
            await seen.wait_for(lambda: seen.latest.get(f"{ns}/status") == b"offline", "the last will")
        async with collect(_watcher(mqtt_broker), f"{ns}/status") as fresh:  # a newcomer sees it retained
            await fresh.wait_for(lambda: fresh.latest.get(f"{ns}/status") == b"offline", "retained offline")


async def test_broker_restart_mid_stream_loses_no_qos1_message(
    mqtt_broker: Broker, topic_namespace: str, small_snapshot: Path
) -> None:
    if mqtt_broker.kind != "mosquitto":
        pytest.skip("needs a broker that keeps persistent sessions across a restart (mosquitto)")
    ns = topic_namespace
    now = time.time() - 7200
    with _daemon(daemon_env(small_snapshot, ns, mqtt_broker)) as daemon:
        async with collect(_watcher(mqtt_broker), f"{ns}/status") as seen:
            await seen.wait_for(lambda: seen.latest.get(f"{ns}/status") == b"online", "status online")
        async with aiomqtt.Client(mqtt_broker.host, mqtt_broker.port, identifier=f"pub1-{ns}") as pub:
            for i in range(50):
                await pub.publish(f"{ns}/events/dev{i % 5}", leak_event(now + i, i), qos=1)
        mqtt_broker.restart()
        async with aiomqtt.Client(mqtt_broker.host, mqtt_broker.port, identifier=f"pub2-{ns}") as pub:
            for i in range(50, 100):  # published at once: the daemon may not be back yet; its session queues them
                await pub.publish(f"{ns}/events/dev{i % 5}", leak_event(now + i, i), qos=1)
        async with collect(_watcher(mqtt_broker), f"{ns}/health") as seen:
            await seen.wait_for(
                lambda: seen.counters(ns).get("events") == 100,
                "all 100 events handled after the restart",
            )
            assert seen.health(ns)["mqtt"]["connections"] >= 2
        code, err = _stop(daemon)
        assert code == 0, err[-3000:]


async def test_a_backlog_publishes_each_devices_latest_prediction_not_every_stale_one(
    mqtt_broker: Broker, topic_namespace: str, small_snapshot: Path
) -> None:
    """Events queued at the broker while the daemon was away: it catches up, and Home Assistant gets each device's
    latest prediction, not one per queued event (``live.backlog_publish_interval_s``, here so long that after each
    device's first prediction nothing more is published before the backlog is handled: so the release at its end
    is what publishes the latest)."""
    ns = topic_namespace
    env = daemon_env(
        small_snapshot,
        ns,
        mqtt_broker,
        DEVINTEL_LIVE__PUBLISH_INTERVAL_S="0",
        DEVINTEL_LIVE__BACKLOG_PUBLISH_INTERVAL_S="60",
    )
    devices, per_device = ("a", "b", "c", "d"), 250
    n = len(devices) * per_device
    start = time.time() - 86_400
    last_ts = {device: start + (per_device - 1) * 60 + k for k, device in enumerate(devices)}
    with _daemon(env) as daemon:  # the first run makes the daemon's persistent session
        async with collect(_watcher(mqtt_broker), f"{ns}/status") as seen:
            await seen.wait_for(lambda: seen.latest.get(f"{ns}/status") == b"online", "status online")
            code, err = _stop(daemon)
            assert code == 0, err[-3000:]
            await seen.wait_for(lambda: seen.latest.get(f"{ns}/status") == b"stopped", "status stopped")
    async with aiomqtt.Client(mqtt_broker.host, mqtt_broker.port, identifier=f"pub-{ns}") as pub:
        for i in range(per_device):
            for k, device in enumerate(devices):
                await pub.publish(f"{ns}/events/{device}", leak_event(start + i * 60 + k, i), qos=1)
    with _daemon(env) as daemon:
        async with collect(_watcher(mqtt_broker), f"{ns}/#") as seen:
            await seen.wait_for(lambda: seen.counters(ns).get("events") == n, f"{n} events handled")

            def latest() -> dict[str, float]:
                return {p["device_id"]: p["ts"] for p in seen.predictions(ns)}

            await seen.wait_for(lambda: latest() == last_ts, "each device's latest prediction")
            published = seen.predictions(ns)
            assert len(published) < n / 2, f"{len(published)} predictions for {n} events: the backlog was not merged"
            assert seen.counters(ns)["held_publish"] >= n - len(published)
        code, err = _stop(daemon)
        assert code == 0, err[-3000:]


async def test_replay_and_live_give_the_same_predictions(
    mqtt_broker: Broker, topic_namespace: str, small_snapshot: Path, tmp_path: Path
) -> None:
    ns = topic_namespace
    now = time.time() - 86_400
    capture = tmp_path / "capture.jsonl"
    lines = []
    for i in range(40):
        for device in ("a", "b", "c"):
            payload = orjson.loads(leak_event(now + i * 600, i))
            lines.append(orjson.dumps({"ts": now + i * 600, "topic": f"{ns}/events/{device}", "payload": payload}))
    capture.write_bytes(b"\n".join(lines) + b"\n")
    replay_dir = tmp_path / "replay-models"
    replay_dir.mkdir()
    for child in small_snapshot.iterdir():  # the same snapshot for both
        target = replay_dir / child.name
        if child.is_dir():
            subprocess.run(["cp", "-a", str(child), str(target)], check=True)
        else:
            target.write_bytes(child.read_bytes())

    # Every prediction is compared, so none may be held while the daemon catches up.
    with _daemon(daemon_env(small_snapshot, ns, mqtt_broker, DEVINTEL_LIVE__BACKLOG_PUBLISH_INTERVAL_S="0")) as daemon:
        async with collect(_watcher(mqtt_broker), f"{ns}/#") as seen:
            await seen.wait_for(lambda: seen.latest.get(f"{ns}/status") == b"online", "status online")
            async with aiomqtt.Client(mqtt_broker.host, mqtt_broker.port, identifier=f"pub-{ns}") as pub:
                for line in lines:
                    record = orjson.loads(line)
                    await pub.publish(record["topic"], orjson.dumps(record["payload"]), qos=1)
            await seen.wait_for(
                lambda: seen.counters(ns).get("events") == 120,
                "120 events handled",
            )
            live = seen.predictions(ns)
        code, err = _stop(daemon)
        assert code == 0, err[-3000:]
        assert "pending publish calls" not in err  # aiomqtt's warning when more calls wait than it expects

    out = tmp_path / "predictions.jsonl"
    run = subprocess.run(
        [sys.executable, "-m", "devintel.daemon.cli", "replay", str(capture), "--out", str(out)],
        env=daemon_env(replay_dir, ns, None),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    replayed = [
        r["payload"]
        for r in map(orjson.loads, out.read_bytes().splitlines())
        if r["topic"].startswith(f"{ns}/predictions/") and r["payload"]
    ]
    assert len(live) > 3
    assert replayed == live


def test_main_command_embedded_broker_and_simulated_home(tmp_path: Path, small_snapshot: Path) -> None:
    """The README's main command, at a small size: an embedded broker, a simulated home, predictions, a clean
    stop; and systemd's notifications on a real socket."""
    notify = tmp_path / "notify.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(str(notify))
    listener.settimeout(0.2)
    env = daemon_env(
        small_snapshot,
        "devintel",
        DEVINTEL_MQTT__HOST="127.0.0.1",
        DEVINTEL_MQTT__PORT=str(free_port()),
        DEVINTEL_SIMULATE__SAMPLES="1500",
        DEVINTEL_SIMULATE__DAYS="20",
        DEVINTEL_SIMULATE__RATE="3000",
        NOTIFY_SOCKET=str(notify),
    )
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "devintel.daemon.service",
            "--embedded-broker",
            "--simulate",
            "--exit-after-simulation",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    notes = []
    while True:
        try:
            notes.append(listener.recv(4096).decode())
        except TimeoutError:
            break
    listener.close()
    assert run.returncode == 0, run.stderr[-3000:]
    assert "simulation done: 1500 events published" in run.stderr
    assert "stopped" in run.stderr
    health_lines = [line for line in run.stderr.splitlines() if "health:" in line]
    assert health_lines, run.stderr[-3000:]
    assert any(n.startswith("READY=1") or "\nREADY=1" in n for n in notes), notes
    assert any("STOPPING=1" in n for n in notes), notes
