"""Soak: an accelerated 30 days of a ~200-device home, through replay and through the broker.

(a) **Replay, in process.** 30 days of synthetic telemetry (``generate(samples=30_000, days=30)``: 215 devices in 5
homes of 5 types, failing devices falling silent and replaced under new ids) go through the replay path
(:func:`devintel.daemon.replay.replay`, a capture built in memory) one stream day at a time. After every day the size
of every buffer the daemon keeps is sampled, and the memory that is still allocated (``tracemalloc``, started after
the capture was built, so it counts the handler, its models and whatever they allocate, not the test's data). Every
buffer stays within its bound (:func:`bounds`) on every day, none grows between the warm-up (day 10: every device
has a full 7-day horizon of waiting labels) and the end beyond what the churn of devices explains, and the memory
still allocated grows by less than 5 % from the warm-up to the end. Memory is counted as the interpreter's allocated
blocks (``sys.getallocatedblocks()``: every live object and buffer, at no cost); with
``RELIABILITY_SOAK_TRACEMALLOC=1`` it is ``tracemalloc``'s traced bytes instead (exact, but the replay then takes
about 40 s instead of 5: tracing every allocation is slow).

(b) **The broker.** ``devintel-daemon`` as a subprocess against a real broker; the same kind of stream, 21 days of
it (another seed, shifted to end an hour ago; 21 rather than 30 days for time: about 1,000 events/s get through)
is published with QoS 1, paced by the daemon's own health counters so that no backlog builds up (a backlog would
be memory of the queue, not of the daemon's state). ``VmRSS`` of the daemon is sampled every 0.2 s; the median
over the stream days 10-12 (after warm-up) and the median over days 17-21 plus the idle second after the last
event are compared: under 5 % growth. Medians, because a single RSS sample catches whatever transient the worker
is in the middle of (a batch of messages, a health report).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import io
import logging
import os
import signal
import statistics
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import aiomqtt
import orjson
import pandas as pd
import pytest

from devintel.daemon.from_settings import build_handler
from devintel.daemon.replay import replay
from devintel.daemon.settings import Settings
from devintel.generators import generate
from devintel.ingest.adapters import Zigbee2MqttAdapter
from devintel.ingest.handler import RECENT_EVENTS, Handler
from devintel.models.live import LIVE_HISTORY_KEPT, LIVE_OUTCOMES_KEPT
from devintel.models.online import events
from devintel.models.snapshots import SnapshotStore
from harness.broker import Broker
from harness.daemon_env import daemon_env

#: Weeks of events (about 40 s in all): scripts/check-long runs these, as their own CI step; scripts/test deselects
#: them.
pytestmark = pytest.mark.soak

DAY = 86_400.0
SOAK_DAYS = 30
#: Events of the 30 days: generate() adds homes until it has them, 215 devices at seed 21 (1,000 a day).
SOAK_SAMPLES = 30_000
SOAK_SEED = 21
WARMUP_DAY = 10
#: Devices silent this long are evicted; shorter than the default 30 days so that eviction happens in the soak.
RETENTION_DAYS = 7.0
MEMORY_GROWTH_LIMIT = 0.05


def _frame(seed: int, days: int = SOAK_DAYS) -> pd.DataFrame:
    return generate(samples=SOAK_SAMPLES * days // SOAK_DAYS, days=days, seed=seed)


def _capture_days(
    frame: pd.DataFrame, prefix: str, shift: float = 0.0, span: int = SOAK_DAYS
) -> list[list[tuple[str, bytes]]]:
    """Per stream day, the (topic, payload) of each event, in order (``ts`` moved by ``shift`` seconds)."""
    start = float(frame["ts"].min())
    days: list[list[tuple[str, bytes]]] = [[] for _ in range(span + 1)]
    for event in events(frame):
        ts = float(event["ts"]) + shift  # type: ignore[arg-type]
        event["ts"] = round(ts, 3)
        day = min(int((ts - shift - start) // DAY), span)
        days[day].append((f"{prefix}/events/{event['device_id']}", orjson.dumps(event)))
    return days


class _Discard(io.BytesIO):
    """A sink for replay's output that keeps nothing (only counts bytes)."""

    def __init__(self) -> None:
        super().__init__()
        self.bytes = 0

    def write(self, data: bytes) -> int:  # type: ignore[override]
        self.bytes += len(data)
        return len(data)


def buffer_sizes(handler: Handler) -> dict[str, int]:
    """The size of every buffer the handler and its live models keep."""
    live, learner = handler.live, handler.live.learner
    z2m = next(a for a in handler.adapters if isinstance(a, Zigbee2MqttAdapter))
    packer = learner.packer
    return {
        "devices": len(handler.devices),
        "infos": len(handler.infos),
        "feature_states": len(learner.features.states),
        "labels_waiting": len(learner.labels),
        "label_devices": len(learner.labels._devices),
        "label_expiry_heap": len(learner.labels._expiry),
        "last_held": len(learner.last_held),
        "home_type_of": len(live.home_type_of),
        "offline_since": len(live.offline_since),
        "outcomes": len(learner.outcomes),
        "rolling_history": len(learner.rolling.history),
        "drifts": len(learner.drifts),
        "recent_max": max((len(r.recent) for r in handler.devices.values()), default=0),
        "packer_layouts": len(packer._layouts) if packer is not None else 0,
        "z2m_memory": sum(
            len(m) for m in (z2m._ieee_by_name, z2m._known, z2m._inferred_type, z2m._battery_seen, z2m._outages)
        ),
        "log_reasons": len(handler._bad_input._last),
    }


def bounds(handler: Handler, heard_in_retention: int, heard_in_horizon: int) -> dict[str, int]:
    """The bound of each buffer, given how many devices were heard in the last retention period and horizon.

    Waiting labels: a device holds at most one event per ``label_interval_s`` (1 h) over the horizon (7 days):
    169 (168 intervals, plus one for the event at the edge); the expiry heap is cleaned lazily, so it also holds
    the entries of devices that failed or were evicted within the last horizon. Per-device maps: at most the
    devices heard within the retention time (older ones are evicted). The rest have fixed caps."""
    live, learner = handler.live, handler.live.learner
    per_device = int(live.horizon_s // live.label_interval_s) + 1
    packer = learner.packer
    return {
        "devices": heard_in_retention,
        "infos": heard_in_retention,
        "feature_states": heard_in_retention,
        "labels_waiting": heard_in_retention * per_device,
        "label_devices": heard_in_retention,
        "label_expiry_heap": heard_in_horizon * per_device,
        "last_held": heard_in_retention,
        "home_type_of": heard_in_retention,
        "offline_since": heard_in_retention,
        "outcomes": LIVE_OUTCOMES_KEPT,
        "rolling_history": LIVE_HISTORY_KEPT,
        "drifts": 1_000,
        "recent_max": RECENT_EVENTS,
        "packer_layouts": packer.max_layouts if packer is not None else 0,
        "z2m_memory": 0,  # no Zigbee2MQTT traffic in this stream
        "log_reasons": 9,  # one per reject reason
    }


def test_30_days_of_200_devices_through_replay_stay_bounded(
    small_snapshot: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """(a) of the module docstring."""
    caplog.set_level(logging.WARNING, logger="devintel")  # restored after the test
    frame = _frame(SOAK_SEED)
    device_count = frame["device_id"].nunique()
    assert 190 <= device_count <= 240
    days = _capture_days(frame, "devintel")
    heard = [(float(ts), str(d)) for ts, d in zip(frame["ts"], frame["device_id"], strict=True)]
    horizon_s = Settings(model_dir=small_snapshot).horizon_days * DAY
    del frame
    lines = [
        [orjson.dumps({"ts": orjson.loads(p)["ts"], "topic": t, "payload": orjson.loads(p)}).decode() for t, p in day]
        for day in days
    ]
    # Devices heard within the retention time and within the horizon before each day's last event (the stream
    # clock then); retention and expiry are checked at the handler's ticks, so a tick interval of slack.
    slack = 300.0
    clocks: list[float] = []
    for day_lines in lines[:SOAK_DAYS]:  # a day may be empty: the clock stays
        clocks.append(max((float(orjson.loads(line)["ts"]) for line in day_lines), default=clocks[-1] if clocks else 0))
    recent = [
        (
            len({d for ts, d in heard if clock - RETENTION_DAYS * DAY - slack <= ts <= clock}),
            len({d for ts, d in heard if clock - horizon_s - slack <= ts <= clock}),
        )
        for clock in clocks
    ]
    del days, heard
    gc.collect()

    traced = os.environ.get("RELIABILITY_SOAK_TRACEMALLOC") == "1"
    if traced:
        tracemalloc.start()

    def memory() -> float:
        """MB traced, or thousands of allocated blocks."""
        return tracemalloc.get_traced_memory()[0] / 1e6 if traced else sys.getallocatedblocks() / 1e3

    unit = "traced MB" if traced else "k blocks"
    settings = Settings(model_dir=small_snapshot, live={"retention_days": RETENTION_DAYS})
    handler = build_handler(settings, SnapshotStore(small_snapshot).load())
    sink = _Discard()
    rows: list[dict[str, float]] = []
    started = time.perf_counter()
    for day, day_lines in enumerate(lines[:SOAK_DAYS], start=1):
        stats = replay(handler, day_lines, sink)
        assert stats.errors == 0
        assert stats.bad_lines == 0
        gc.collect()
        assert handler.live.clock == clocks[day - 1]
        assert handler.options.tick_interval_s == slack
        sizes = buffer_sizes(handler)
        limit = bounds(handler, *recent[day - 1])
        over = {name: (size, limit[name]) for name, size in sizes.items() if size > limit[name]}
        assert not over, f"day {day}: over the bound: {over}"
        rows.append({"day": day, **sizes, "memory": memory()})
    seconds = time.perf_counter() - started
    if traced:
        tracemalloc.stop()

    # Warm-up: every device has a full horizon of waiting labels (day 10) and the outcomes kept for inspection
    # have reached their cap (LIVE_OUTCOMES_KEPT resolved labels; day 19 at this size). Until then, that deque
    # is bounded growth (10,000 x (bool, float), about 0.6 MB of the 10 MB the handler holds).
    warm_day = max(WARMUP_DAY, next(r["day"] for r in rows if r["outcomes"] >= LIVE_OUTCOMES_KEPT) + 1)
    assert warm_day <= SOAK_DAYS - 7, "a week after warm-up at least"
    warm, end = rows[int(warm_day) - 1], rows[-1]
    growth = end["memory"] / warm["memory"] - 1.0
    growth_10 = end["memory"] / rows[WARMUP_DAY - 1]["memory"] - 1.0
    print(f"\n{handler.counters.events:,} events of {device_count} devices, 30 days, replayed in {seconds:.1f} s")
    print(f"{'day':>4} " + " ".join(f"{k[:14]:>14}" for k in rows[0] if k != "day"))
    for row in [*rows[:: max(1, len(rows) // 10)], end]:
        print(f"{row['day']:>4.0f} " + " ".join(f"{v:>14.1f}" for k, v in row.items() if k != "day"))
    print(f"memory ({unit}) day {warm_day:.0f} -> {SOAK_DAYS}: {warm['memory']:.2f} -> {end['memory']:.2f}")
    print(f"(from day {WARMUP_DAY}, the outcomes deque still filling: {growth_10:+.2%})")
    print(f"growth {growth:+.2%}; labels learned {handler.live.learner.learned}, evicted {handler.counters.evicted}")

    assert handler.counters.events > 0.99 * SOAK_SAMPLES - sum(handler.counters.rejected.values())
    assert handler.live.learner.learned > 1_000
    assert handler.counters.evicted > 0, "retention evicted the devices that failed"
    assert growth < MEMORY_GROWTH_LIMIT, f"memory ({unit}) grew {growth:.1%} from day {warm_day} to day {SOAK_DAYS}"
    # Past the warm-up the per-device buffers follow the devices, not the time: the waiting labels per device
    # with state do not grow (a full horizon is already held at day 10).
    after = rows[int(warm_day) - 1 :]
    per_device = [r["labels_waiting"] / max(r["label_devices"], 1) for r in after]
    assert max(per_device) <= 1.15 * per_device[0], per_device


# -- (b) through the broker ------------------------------------------------------------------------------------


def _rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def _env(model_dir: Path, broker: Broker, ns: str) -> dict[str, str]:
    return daemon_env(
        model_dir,
        ns,
        broker,
        DEVINTEL_LIVE__HEALTH_INTERVAL_S="0.2",
        DEVINTEL_LIVE__QUEUE_SIZE="50000",
        DEVINTEL_LIVE__RETENTION_DAYS=str(RETENTION_DAYS),
        DEVINTEL_SNAPSHOT__INTERVAL_S="100000",
    )


@contextlib.contextmanager
def _daemon(env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "devintel.daemon.service"], env=env, stdout=out, stderr=out, cwd=log.parent
        )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


#: Stream days through the broker (fewer than replay's 30, for time: about 1,000 events/s get through).
BROKER_DAYS = 21
#: Messages the publisher may be ahead of what the daemon has handled (its health says), and per batch.
MAX_LAG = 3_000
BATCH = 20  # aiomqtt logs a warning above 10 pending publish calls: harmless here, and faster


async def test_21_days_through_the_broker_rss_stays_flat(
    mqtt_broker: Broker, topic_namespace: str, small_snapshot: Path, tmp_path: Path
) -> None:
    """(b) of the module docstring."""
    ns = topic_namespace
    frame = _frame(SOAK_SEED + 1, BROKER_DAYS)
    shift = time.time() - 3600.0 - float(frame["ts"].max())
    days = _capture_days(frame, ns, shift, BROKER_DAYS)
    total = sum(len(d) for d in days)
    del frame
    health: dict[str, object] = {}
    samples: list[tuple[int, int]] = []  # (stream day being published, VmRSS kB)
    day_now = [0]
    with _daemon(_env(small_snapshot, mqtt_broker, ns), tmp_path / "daemon.log") as daemon:

        def handled() -> int:
            counters = health.get("counters", {})
            return int(counters.get("messages", 0)) if isinstance(counters, dict) else 0

        async with aiomqtt.Client(mqtt_broker.host, mqtt_broker.port, identifier=f"soak-{ns}") as client:
            await client.subscribe(f"{ns}/health", qos=0)
            await client.subscribe(f"{ns}/status", qos=0)
            online = asyncio.Event()

            async def listen() -> None:
                async for message in client.messages:
                    payload = message.payload if isinstance(message.payload, bytes) else b""
                    if message.topic.value.endswith("/status") and payload == b"online":
                        online.set()
                    elif message.topic.value.endswith("/health") and payload:
                        health.update(orjson.loads(payload))

            async def sample() -> None:
                while True:
                    samples.append((day_now[0], _rss_kb(daemon.pid)))
                    await asyncio.sleep(0.2)

            listener = asyncio.create_task(listen())
            await asyncio.wait_for(online.wait(), 60)
            # ``online`` is published before the daemon subscribes (mqtt.py ``_on_connect``): a message sent right
            # after it can be lost on a fresh session. A health report saying "connected" comes after SUBACK.
            deadline = time.monotonic() + 30

            def connected() -> bool:
                mqtt = health.get("mqtt")
                return isinstance(mqtt, dict) and mqtt.get("connected") is True

            while not connected():
                assert time.monotonic() < deadline, "no health report saying connected"
                await asyncio.sleep(0.02)
            sampler = asyncio.create_task(sample())
            started = time.perf_counter()
            sent = 0
            try:
                for day, messages in enumerate(days, start=1):
                    day_now[0] = day
                    for i in range(0, len(messages), BATCH):
                        while sent - handled() > MAX_LAG:
                            assert daemon.poll() is None, (tmp_path / "daemon.log").read_text()[-3000:]
                            await asyncio.sleep(0.02)
                        batch = messages[i : i + BATCH]
                        await asyncio.gather(*(client.publish(t, p, qos=1) for t, p in batch))
                        sent += len(batch)
                deadline = time.monotonic() + 60
                while handled() < total:
                    assert time.monotonic() < deadline, f"{handled()} of {total} handled"
                    await asyncio.sleep(0.05)
                seconds = time.perf_counter() - started
                day_now[0] = BROKER_DAYS + 1
                await asyncio.sleep(1.0)  # idle: what it holds, not what it is busy with
            finally:
                sampler.cancel()
                listener.cancel()
                for task in (sampler, listener):
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(30) == 0, (tmp_path / "daemon.log").read_text()[-3000:]

    counters = health["counters"]
    assert isinstance(counters, dict)
    assert counters["shed_events"] == 0
    assert counters["events"] + sum(counters["rejected"].values()) == total
    warm = [rss for day, rss in samples if WARMUP_DAY <= day < WARMUP_DAY + 3]
    end = [rss for day, rss in samples if day >= BROKER_DAYS - 4]
    assert len(warm) >= 3, samples
    assert len(end) >= 3, samples
    growth = statistics.median(end) / statistics.median(warm) - 1.0
    labels = health["labels"]
    print(
        f"\nbroker soak: {total:,} messages in {seconds:.1f} s ({total / seconds:,.0f}/s), "
        f"devices {health['devices']}, labels {labels}, evicted {counters['evicted']}\n"
        f"RSS median days {WARMUP_DAY}-{WARMUP_DAY + 2}: {statistics.median(warm) / 1024:.1f} MB "
        f"({len(warm)} samples), days {BROKER_DAYS - 4}-{BROKER_DAYS} + idle: {statistics.median(end) / 1024:.1f} MB "
        f"({len(end)} samples): {growth:+.2%}; max {max(r for _, r in samples) / 1024:.1f} MB"
    )
    assert growth < MEMORY_GROWTH_LIMIT
