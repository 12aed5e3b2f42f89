"""The runtime's overload and shutdown paths: learning shed before prediction, a full queue drops and counts,
the shutdown is bounded when the broker is away, and a second signal forces the exit."""

from __future__ import annotations

import asyncio
import random
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import aiomqtt
import orjson
import pytest

from devintel.daemon.mqtt import MqttSession, Received, backoff_delay
from devintel.daemon.outbox import Outbox
from devintel.daemon.runtime import Runtime
from devintel.daemon.settings import MqttSettings, Settings
from devintel.ingest.counters import Counters
from devintel.ingest.outbound import Topics
from devintel.models.snapshots import SnapshotStore
from harness.broker import Broker, free_port
from harness.daemon_env import daemon_env

T0 = time.time() - 86_400


def _received(topic: str, body: dict[str, object], ts: float) -> Received:
    return Received(topic, orjson.dumps(body), ts)


async def test_learning_is_shed_before_prediction_when_the_queue_is_deep(small_snapshot: Path) -> None:
    settings = Settings(
        model_dir=small_snapshot, live={"queue_size": 200, "shed_learning_at": 0.1, "label_interval_s": 0}
    )
    store = SnapshotStore(small_snapshot)
    runtime = Runtime(settings, store, store.load())
    for i in range(10):
        runtime.inbox.put_nowait(_received("devintel/events/a", {"ts": T0 + i * 60, "battery_level": 50.0}, T0))
    runtime.inbox.put_nowait(_received("devintel/feedback/a", {"event": "failure", "ts": T0 + 900}, T0))
    for i in range(90):  # behind the feedback: the queue is deep when its labels resolve
        runtime.inbox.put_nowait(_received("devintel/events/b", {"ts": T0 + 1000 + i, "battery_level": 80.0}, T0))
    worker = asyncio.create_task(runtime._work())
    await asyncio.wait_for(runtime.inbox.join(), 30)
    worker.cancel()
    learner = runtime.handler.live.learner
    assert runtime.handler.counters.events == 100  # every event still got its prediction
    assert learner.shed == 10  # the 10 positives resolved by the feedback were not learned
    assert learner.learned == 0
    assert runtime.handler.report()["labels"]["shed_learning"] == 10  # type: ignore[index]
    assert runtime.busy_s > 0.0  # the worker's time in the handler, reported for saturation
    assert runtime.health()["queue"]["busy_s"] == round(runtime.busy_s, 3)


async def test_a_full_queue_drops_and_counts_without_blocking_the_receive_loop(mqtt_broker: Broker) -> None:
    inbox: asyncio.Queue[Received] = asyncio.Queue(maxsize=5)
    counters = Counters()
    outbox = Outbox(100, counters)
    settings = MqttSettings(host=mqtt_broker.host, port=mqtt_broker.port, client_id="devintel-shed")
    session = MqttSession(settings, Topics("shed"), ["shed/events/+"], inbox, outbox, counters)
    stop = asyncio.Event()
    task = asyncio.create_task(session.run(stop))
    await asyncio.wait_for(session.state.connected_event.wait(), 10)
    async with aiomqtt.Client(mqtt_broker.host, mqtt_broker.port, identifier="shed-pub") as pub:
        for i in range(50):
            await pub.publish(f"shed/events/d{i}", b"{}", qos=1)
    deadline = time.monotonic() + 10
    while inbox.qsize() + counters.shed_events < 50 and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    stop.set()
    await asyncio.wait_for(task, 10)
    assert inbox.qsize() == 5
    assert counters.shed_events == 45


def _daemon_env(model_dir: Path, **extra: str) -> dict[str, str]:
    # nobody listens on that port: the broker is away
    away = {"DEVINTEL_MQTT__HOST": "127.0.0.1", "DEVINTEL_MQTT__PORT": str(free_port())}
    return daemon_env(model_dir, "devintel", **{**away, **extra})


def _wait_for_line(log: Path, text: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while text not in log.read_text(errors="replace"):
        if time.monotonic() > deadline:
            raise AssertionError(f"{text!r} not logged:\n{log.read_text()[-2000:]}")
        time.sleep(0.05)


def test_shutdown_is_bounded_and_writes_the_snapshot_with_the_broker_away(small_snapshot: Path, tmp_path: Path) -> None:
    log = tmp_path / "daemon.log"
    env = _daemon_env(small_snapshot, DEVINTEL_LIVE__SHUTDOWN_TIMEOUT_S="1")
    with log.open("w") as err:
        daemon = subprocess.Popen([sys.executable, "-m", "devintel.daemon.service"], env=env, stderr=err)
        try:
            _wait_for_line(log, "reconnecting in")
            before = len(SnapshotStore(small_snapshot).versions())
            daemon.send_signal(signal.SIGTERM)
            assert daemon.wait(timeout=30) == 0  # ends, though the broker never returns (each step has 1 s)
        finally:
            if daemon.poll() is None:
                daemon.kill()
                daemon.wait()
    text = log.read_text()
    assert "messages not published" in text  # the outbox could not drain: said, not waited on forever
    assert len(SnapshotStore(small_snapshot).versions()) == before + 1


def test_a_second_signal_forces_the_exit(small_snapshot: Path, tmp_path: Path) -> None:
    log = tmp_path / "daemon.log"
    env = _daemon_env(small_snapshot, DEVINTEL_LIVE__SHUTDOWN_TIMEOUT_S="60")
    with log.open("w") as err:
        daemon = subprocess.Popen([sys.executable, "-m", "devintel.daemon.service"], env=env, stderr=err)
        try:
            _wait_for_line(log, "reconnecting in")
            daemon.send_signal(signal.SIGTERM)
            _wait_for_line(log, "shutting down")
            daemon.send_signal(signal.SIGINT)
            assert daemon.wait(timeout=30) == 1
        finally:
            if daemon.poll() is None:
                daemon.kill()
                daemon.wait()
    assert "second SIGINT: exiting now" in log.read_text()


def test_reconnection_backoff_doubles_is_capped_and_randomised() -> None:
    rng = random.Random(1)
    delays = [backoff_delay(attempt, 10.0, rng) for attempt in range(12)]
    for attempt, delay in enumerate(delays):
        ceiling = min(10.0, 0.5 * 2**attempt)
        assert ceiling / 2 <= delay <= ceiling
    assert len({round(d, 6) for d in delays[6:]}) > 1  # capped, but not in lockstep
    assert backoff_delay(10_000, 10.0, rng) <= 10.0


def test_a_crashed_task_shuts_down_in_order_and_exits_1(small_snapshot: Path, tmp_path: Path) -> None:
    """The HTTP port is taken: the http task fails, the others stop in order, the final snapshot is written."""
    log = tmp_path / "daemon.log"
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = _daemon_env(small_snapshot, DEVINTEL_HTTP__PORT=str(port), DEVINTEL_LIVE__SHUTDOWN_TIMEOUT_S="1")
        before = len(SnapshotStore(small_snapshot).versions())
        with log.open("w") as err:
            daemon = subprocess.Popen([sys.executable, "-m", "devintel.daemon.service"], env=env, stderr=err)
            try:
                assert daemon.wait(timeout=60) == 1
            finally:
                if daemon.poll() is None:
                    daemon.kill()
                    daemon.wait()
    text = log.read_text()
    assert "task http failed" in text
    assert "cannot listen" in text
    assert len(SnapshotStore(small_snapshot).versions()) == before + 1


async def test_refresh_serves_a_passing_bootstrap_and_keeps_serving_after_a_failed_gate(small_snapshot: Path) -> None:
    small = {"samples": 20_000, "holdout_samples": 8_000, "days": 40.0, "seed": 5}
    impossible = {"min_accuracy": 1.0, "min_precision": 1.0, "min_recall": 1.0, "min_f1": 1.0}
    store = SnapshotStore(small_snapshot)
    strict = Settings(model_dir=small_snapshot, bootstrap=small, quality=impossible)
    runtime = Runtime(strict, store, store.load())
    serving, versions = runtime.api.model_version(), store.versions()
    failed = await runtime.api.refresh()
    assert failed["passed"] is False
    assert failed["version"] is None
    assert runtime.api.model_version() == serving
    assert store.versions() == versions  # nothing written
    lenient_gate = {**{k: 0.0 for k in impossible}, "min_catch_rate": 0.0, "max_false_alarms_per_100_device_days": 1e3}
    lenient = Settings(model_dir=small_snapshot, bootstrap=small, quality=lenient_gate)
    runtime = Runtime(lenient, store, store.load())
    passed = await runtime.api.refresh()
    assert passed["passed"] is True
    assert runtime.api.model_version() == passed["version"] == store.current_version() != serving


@pytest.mark.parametrize("broker", ["silent", "hangs up"])
async def test_a_connection_without_a_connack_is_retried_after_the_connect_timeout(broker: str) -> None:
    """A connection the broker accepts but never answers, or closes before its CONNACK (aiomqtt does not report that
    disconnection: the attempt waits out its timeout), costs an attempt ``connect_timeout_s``, not the 10 s
    operation timeout, before the next one."""
    attempts: list[float] = []
    held: list[asyncio.StreamWriter] = []

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        attempts.append(time.monotonic())
        if broker == "silent":
            held.append(writer)  # open and silent: no CONNACK ever comes
        else:
            await reader.read(64)  # the CONNECT, then hang up
            writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    settings = MqttSettings(
        host="127.0.0.1", port=port, client_id="devintel-silent", connect_timeout_s=0.3, reconnect_max_s=0.1
    )
    counters = Counters()
    inbox: asyncio.Queue[Received] = asyncio.Queue()
    session = MqttSession(settings, Topics("silent"), ["silent/events/+"], inbox, Outbox(10, counters), counters)
    stop = asyncio.Event()
    task = asyncio.create_task(session.run(stop))
    try:
        deadline = time.monotonic() + 10.0
        while len(attempts) < 3 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
        for writer in held:
            writer.close()
        server.close()
    assert len(attempts) >= 3, f"{len(attempts)} connection attempts in 10 s"
    assert not session.state.connected
    assert "timed out" in (session.state.last_error or ""), session.state.last_error
