"""The live daemon end to end through a real mosquitto: throughput, latency and memory, in one run.

    .venv/bin/python bench/bench_live.py [--events 20000] [--devices 200] [--repeat 3] [--model-dir DIR]

Everything runs on 127.0.0.1 against a private mosquitto (``max_queued_messages 0``: a persistent session may
queue the whole backlog; other limits are mosquitto's defaults, among them 20 QoS 1 messages in flight per
client). The snapshot is a toy bootstrap made for the run (about 5 s), or a copy of ``--model-dir``; the
daemon (``python -m devintel.daemon.service``) runs with Home Assistant discovery on, the HTTP API off,
``live.publish_interval_s`` 0 (one prediction per event) and a processing queue of 200,000. Measures:

1. **Backlog drain, events/s**: the consumer's persistent session is registered (a bare aiomqtt subscriber
   connects once with ``clean_session`` False, subscribes QoS 1 and leaves; the daemon starts, reaches a
   retained ``online`` and is stopped with SIGTERM), N events (QoS 1) are published while it is away, then the
   consumer starts and is timed from the moment it has subscribed to its N-th message. For the bare subscriber (a
   fresh process) the messages are the events, timed from its subscribe's acknowledgement; for the daemon they are
   its predictions, counted by an observer subscription in this process from the daemon's retained ``online``
   (which it publishes once subscribed) to its last prediction, and its retained health must then say
   ``events == N`` and ``shed_events == 0``. (Not from the daemon's first prediction, which would leave out the
   time before it; while catching up, a device's prediction is published at most every
   ``live.backlog_publish_interval_s``.) Best of ``--repeat`` each; target: the daemon at least 0.5x the bare
   subscriber (aim 0.8x).
   A third consumer, the bare subscriber publishing one retained QoS 1 message per event as the daemon's sender
   does (``child_bare --echo``), measures the MQTT work alone of a prediction per event: the ceiling of any
   daemon that publishes every event through aiomqtt, whatever its handler costs.
2. **Event-to-prediction latency**, p50 and p99 at 200 and at 1,000 events/s: a paced publisher (a separate
   process, QoS 1) sends events stamped with the wall-clock send time; the observer takes receive time minus
   the prediction's ``ts``. Whether the publisher kept the pace is reported.
3. **Resident memory** of the daemon (``VmRSS`` and ``VmHWM`` of ``/proc/<pid>/status``) right after start
   and with 5,000 devices (10 events each, 4 minutes apart in event time, paced below the measured drain
   rate so that no backlog inflates it); target: under 250 MB.

Prints a Markdown table and writes ``bench/results/live.md`` and ``live.json``. Takes about 2-4 minutes.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the harness tests/ and bench/ share
from bench_core import export_revision
from harness.broker import Broker, find_mosquitto
from harness.daemon_env import daemon_env

RESULTS = Path(__file__).resolve().parent / "results"
HOST = Broker.host
QUEUE_SIZE = 200_000
RSS_TARGET_MB = 250.0
RATIO_TARGET = 0.8
#: Bytes of each message the echoing bare subscriber publishes (about a prediction's: ``prediction_message``).
ECHO_BYTES = 300
MEMORY_DEVICES = 5_000
#: (events/s, events) of the latency runs.
LATENCY_RATES = ((200, 1_000), (1_000, 3_000))
#: The shipped ``live.publish_interval_s`` (stream seconds; the bench's devices report an hour apart).
SHIPPED_PUBLISH_INTERVAL_S = 300.0
#: Stream seconds between a device's events in the drains: an hour (each event then outlasts the shipped publish
#: interval, so every event publishes), and a minute in one more drain of this tree at the shipped interval (a device
#: that reports every minute, as a plug or a chatty sensor does: at least one event in five publishes).
HOURLY_S, MINUTELY_S = 3600.0, 60.0


@dataclass(frozen=True)
class Variant:
    """One way of running the daemon in the drain: this tree or the baseline, a publish interval, and how far
    apart in stream time a device's events are."""

    key: str
    label: str
    publish_interval_s: float
    baseline: bool = False
    event_interval_s: float = HOURLY_S


def variants(baseline: str | None) -> list[Variant]:
    """The daemon's drain variants: the shipped publish interval and publishing every event, for this tree and,
    with ``--baseline``, for that revision (a device's events an hour apart); and this tree at the shipped interval
    with a device's events a minute apart."""
    out = []
    for prefix, is_baseline in (("current", False), ("baseline", True)):
        if is_baseline and baseline is None:
            continue
        name = f"{baseline} (baseline)" if is_baseline else "this tree"
        out += [
            Variant(f"{prefix}-shipped", f"{name}, shipped publish interval ({SHIPPED_PUBLISH_INTERVAL_S:.0f} s)",
                    SHIPPED_PUBLISH_INTERVAL_S, is_baseline),
            Variant(f"{prefix}-every", f"{name}, every event's prediction due (publish interval 0)", 0.0,
                    is_baseline),
        ]  # fmt: skip
    out.append(
        Variant("current-shipped-minutely", f"this tree, shipped publish interval ({SHIPPED_PUBLISH_INTERVAL_S:.0f} "
                "s), a device's events a minute apart", SHIPPED_PUBLISH_INTERVAL_S, event_interval_s=MINUTELY_S)
    )  # fmt: skip
    return out


#: Synthetic events (``devintel.generators.generate``) the bench's events are made of, and rows kept per device.
SYNTHETIC_EVENTS = 100_000
ROWS_PER_DEVICE = 120


# -- helpers ----------------------------------------------------------------------------------------------------


def private_broker(workdir: Path, extra: list[str]) -> Broker:
    """The bench's mosquitto (the harness's :class:`Broker`): in-memory sessions, no limit on a session's queue,
    ``extra`` configuration lines."""
    return Broker(workdir / "broker", "mosquitto", persistence=False, extra_config=["max_queued_messages 0", *extra])


def at_least(items: list[Any], n: int) -> Callable[[], bool]:
    """Whether ``items`` holds ``n`` or more (a predicate to poll)."""
    return lambda: len(items) >= n


def percentile(values: list[float], q: float) -> float:
    """The ``q`` quantile (0-1) of ``values``, nearest rank; NaN when empty."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def run_in_workdir(
    prefix: str, keep: bool, main: Callable[[Path], Coroutine[Any, Any, dict[str, Any]]]
) -> dict[str, Any]:
    """``main(workdir)`` in a fresh temporary directory, removed afterwards unless ``keep``; its record gains the
    load average from before the run."""
    workdir = Path(tempfile.mkdtemp(prefix=prefix))
    load_before = " ".join(f"{x:.2f}" for x in os.getloadavg())
    try:
        record = asyncio.run(main(workdir))
    finally:
        if keep:
            print(f"work directory kept: {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    record["load_before"] = load_before
    return record


def proc_memory_mb(pid: int) -> dict[str, float]:
    """``VmRSS`` and ``VmHWM`` of a process, in MB."""
    out: dict[str, float] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(rest.split()[0]) / 1024
    return out


def device_rows(seed: int) -> list[list[dict[str, object]]]:
    """Realistic event bodies, without ``ts``: per synthetic device (about a hundred, of every type), its first
    healthy reports (no failure precursor, no failure within the horizon, none of the generator's deliberately
    out-of-range values, which the daemon would reject). Bench device ``d`` replays the rows
    of synthetic device ``d`` modulo their number, so every bench device reports like one real device."""
    import math

    from devintel.contract import VALID_RANGES
    from devintel.generators import METRIC_FIELDS, generate

    frame = generate(samples=SYNTHETIC_EVENTS, seed=seed)
    healthy = frame[(frame["precursor"] == 0) & ~frame["fails_within_horizon"].astype(bool)]
    devices = []
    for _, rows in healthy.groupby("device_id", observed=True):
        bodies = []
        for row in rows.head(ROWS_PER_DEVICE).to_dict("records"):
            body: dict[str, object] = {k: str(row[k]) for k in ("device_type", "power_source", "home_type")}
            metrics = {m: float(row[m]) for m in METRIC_FIELDS if not math.isnan(row[m])}
            if all(VALID_RANGES[m][0] <= v <= VALID_RANGES[m][1] for m, v in metrics.items()):
                body.update({m: round(v, 4) for m, v in metrics.items()})
                bodies.append(body)
        devices.append(bodies)
    return devices


def handler_alone(model_dir: Path, spec: Path, n: int, devices: int, repeat: int) -> dict[str, Any]:
    """The daemon's handler in this process, with no broker: the same ``n`` events as a drain (validation,
    features, prediction, label buffer, the prediction and discovery messages), best of ``repeat`` fresh
    handlers. It separates the per-event model work from the MQTT path."""
    from devintel.daemon.from_settings import build_handler
    from devintel.daemon.settings import Settings
    from devintel.models.snapshots import SnapshotStore

    synthetic = json.loads(spec.read_text())
    rows = [synthetic[d % len(synthetic)] for d in range(devices)]
    interval, step = HOURLY_S, HOURLY_S / devices
    start_ts = time.time() - 3600.0 - (n // devices + 1) * interval
    messages = [
        (
            f"bench/events/dev{i % devices:05d}",
            event_payload(rows[i % devices], i // devices, start_ts + (i // devices) * interval + (i % devices) * step),
        )
        for i in range(n)
    ]
    settings = Settings(model_dir=model_dir, topic_prefix="bench", live={"publish_interval_s": 0.0})
    snapshot = SnapshotStore(model_dir).load()
    rates, p50s, p99s = [], [], []
    clock = time.perf_counter
    for _ in range(repeat):
        handler = build_handler(settings, snapshot)
        received = time.time()
        took = [0.0] * n
        started = clock()
        for i, (topic, payload) in enumerate(messages):
            began = clock()
            handler.handle(topic, payload, received)
            took[i] = clock() - began
        rates.append(n / (clock() - started))
        took.sort()
        p50s.append(took[n // 2] * 1e3)
        p99s.append(took[min(n - 1, int(n * 0.99))] * 1e3)
        if handler.counters.events != n:
            raise RuntimeError(f"handler alone: {handler.counters.events} of {n} events handled")
    best = rates.index(max(rates))
    return {"rates": rates, "rate": rates[best], "p50_ms": p50s[best], "p99_ms": p99s[best]}


def event_payload(rows: list[dict[str, object]], k: int, ts: float) -> bytes:
    """The ``k``-th event of a device that replays ``rows``, at ``ts``."""
    import orjson

    return orjson.dumps({**rows[k % len(rows)], "ts": round(ts, 3)})


# -- child processes ---------------------------------------------------------------------------------------------


def child_publish(args: argparse.Namespace) -> dict[str, Any]:
    """Publish events (QoS 1) with paho in its own thread: all at once (``--rate 0``), or paced."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    synthetic = json.loads(Path(args.spec).read_text())
    rows = [synthetic[d % len(synthetic)] for d in range(args.devices)]
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-pub-{os.getpid()}", protocol=mqtt.MQTTv311)
    client.max_inflight_messages_set(200)
    client.max_queued_messages_set(0)
    acked = [0]

    def on_publish(*_: object) -> None:
        acked[0] += 1

    client.on_publish = on_publish
    client.connect(args.host, args.port, keepalive=60)
    client.loop_start()
    try:
        deadline = time.monotonic() + 10.0
        while not client.is_connected():
            if time.monotonic() > deadline:
                raise RuntimeError("publisher: no CONNACK within 10 s")
            time.sleep(0.01)
        n, devices = args.n, args.devices
        topics = [f"{args.prefix}/events/dev{d:05d}" for d in range(devices)]
        lateness: list[float] = []
        step = args.interval / devices

        def stream_ts(i: int) -> float:
            """Event ``i`` (devices in turn): a device's events ``interval`` apart, the devices spread between."""
            return float(args.start_ts + (i // devices) * args.interval + (i % devices) * step)

        if args.rate <= 0:  # a backlog: payloads made first, then published as fast as paho goes
            payloads = [event_payload(rows[i % devices], i // devices, stream_ts(i)) for i in range(n)]
            started = time.perf_counter()
            for i, payload in enumerate(payloads):
                client.publish(topics[i % devices], payload, qos=1)
            sent_at = [started, time.perf_counter()]
        else:
            sent_at = []
            t0 = time.perf_counter() + 0.05
            for i in range(n):
                target = t0 + i / args.rate
                now = time.perf_counter()
                if target > now:
                    time.sleep(target - now)
                now = time.perf_counter()
                lateness.append(now - target)
                ts = time.time() if args.ts_mode == "now" else stream_ts(i)
                client.publish(topics[i % devices], event_payload(rows[i % devices], i // devices, ts), qos=1)
                sent_at.append(now)
            sent_at = [sent_at[0], sent_at[-1]]
        sent_s = sent_at[1] - sent_at[0]
        deadline = time.monotonic() + args.timeout
        while acked[0] < n and time.monotonic() < deadline:
            time.sleep(0.01)
        acked_s = time.perf_counter() - sent_at[0]
    finally:
        client.loop_stop()
        client.disconnect()
    return {
        "events": n,
        "acked": acked[0],
        "send_seconds": sent_s,
        "acked_seconds": acked_s,
        "rate_sent": (n - 1) / sent_s if sent_s > 0 else float("inf"),
        "lateness_p99_ms": percentile(lateness, 0.99) * 1000 if lateness else None,
        "lateness_max_ms": max(lateness) * 1000 if lateness else None,
    }


async def child_bare(args: argparse.Namespace) -> dict[str, Any]:
    """A bare aiomqtt subscriber with a persistent session: register it, or drain ``n`` messages. With ``--echo``
    it also publishes, for every message, one retained QoS 1 message of :data:`ECHO_BYTES` bytes to its device's
    topic, at most ``MAX_IN_FLIGHT`` (the daemon's) awaiting their acknowledgement, a task each as the daemon's
    sender does, and is timed to the last acknowledgement: the MQTT work of a daemon that publishes a prediction for
    every event, with no handler at all."""
    import aiomqtt

    from devintel.daemon.mqtt import MAX_IN_FLIGHT

    topic = f"{args.prefix}/events/+"
    started = time.perf_counter()
    body = b"x" * ECHO_BYTES
    async with aiomqtt.Client(args.host, args.port, identifier=args.client_id, clean_session=False) as client:
        await client.subscribe(topic, qos=1)
        if args.n == 0:
            return {"registered": args.client_id}
        subscribed = time.perf_counter()  # the drain's start, as the daemon's retained "online" (after its subscribe)
        count, first, last = 0, 0.0, 0.0
        slots = asyncio.Semaphore(MAX_IN_FLIGHT)
        in_flight: set[asyncio.Task[None]] = set()

        async def echo(name: str) -> None:
            try:
                await client.publish(f"{args.prefix}/echo/{name}", body, qos=1, retain=True)
            finally:
                slots.release()

        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(args.timeout):
                async for message in client.messages:
                    last = time.perf_counter()
                    if count == 0:
                        first = last
                    count += 1
                    if args.echo:
                        await slots.acquire()
                        task = asyncio.create_task(echo(message.topic.value.rsplit("/", 1)[-1]))
                        in_flight.add(task)
                        task.add_done_callback(in_flight.discard)
                    if count >= args.n:
                        break
                if in_flight:
                    await asyncio.gather(*in_flight)
                    last = time.perf_counter()
    seconds = last - subscribed
    return {
        "count": count,
        "seconds": seconds,
        "rate": count / seconds if seconds > 0 else 0.0,
        "connect_to_first_s": first - started if count else None,
    }


async def run_child(kind: str, limit_s: float, **options: object) -> dict[str, Any]:
    """Run ``bench_live.py --child KIND`` in a fresh interpreter; its last stdout line is JSON."""
    command = [sys.executable, __file__, "--child", kind]
    for key, value in options.items():
        command += [f"--{key.replace('_', '-')}", str(value)]
    process = await asyncio.create_subprocess_exec(
        *command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(), limit_s)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    if process.returncode != 0:
        raise RuntimeError(f"child {kind} exited with {process.returncode}: {err.decode()[-2000:]}")
    result: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
    return result


# -- the broker and the daemon -----------------------------------------------------------------------------------


@dataclass
class Daemon:
    """One ``devintel-daemon`` process on its own topic namespace."""

    model_dir: Path
    workdir: Path
    port: int
    namespace: str
    extra: dict[str, str] = field(default_factory=dict)
    source: Path | None = None
    """``src/`` of another revision to run instead of this tree's (``--baseline``)."""
    profile: Path | None = None
    """Write a cProfile of the daemon here (``--profile``)."""
    process: subprocess.Popen[bytes] | None = None
    started: float = 0.0

    def env(self) -> dict[str, str]:
        """The environment: the harness's (nothing of the caller's ``DEVINTEL_*``, the namespace's topics, HTTP
        off, health every 0.5 s), the broker, the bench's queue size and ``extra``."""
        env = daemon_env(
            self.model_dir,
            self.namespace,
            None,
            DEVINTEL_MQTT__HOST=HOST,
            DEVINTEL_MQTT__PORT=str(self.port),
            DEVINTEL_LIVE__QUEUE_SIZE=str(QUEUE_SIZE),
            **self.extra,
        )
        if self.source is not None:
            env["PYTHONPATH"] = str(self.source)
        return env

    def start(self) -> None:
        """Spawn it (its log goes to a file: a full pipe would stall it)."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        with (self.workdir / f"daemon-{self.namespace}.log").open("ab") as log:
            self.started = time.perf_counter()
            profiler = [] if self.profile is None else ["-m", "cProfile", "-o", str(self.profile)]
            self.process = subprocess.Popen(
                [sys.executable, *profiler, "-m", "devintel.daemon.service"],
                env=self.env(),
                cwd=self.workdir,  # no stray .env file
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
            )

    @property
    def pid(self) -> int:
        """The process id."""
        assert self.process is not None
        return self.process.pid

    def stop(self, timeout: float = 30.0) -> tuple[int | None, float]:
        """SIGTERM and wait (SIGKILL after ``timeout``); the exit code and the seconds it took."""
        process = self.process
        if process is None:
            return None, 0.0
        began = time.perf_counter()
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        return process.returncode, time.perf_counter() - began

    def kill(self) -> None:
        """SIGKILL when still running (cleanup)."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def log_tail(self, chars: int = 1500) -> str:
        """The end of its log."""
        path = self.workdir / f"daemon-{self.namespace}.log"
        return path.read_text(errors="replace")[-chars:] if path.exists() else ""


class Observer:
    """Everything the daemon of one namespace publishes: predictions with their receive times, and the latest
    status and health (every health report kept)."""

    def __init__(self, namespace: str) -> None:
        self.ns = namespace
        self.predictions: list[tuple[float, float, bytes]] = []
        """(perf_counter, wall-clock time, payload) of each prediction as received."""
        self.events: list[tuple[float, bytes]] = []
        """(wall-clock time, payload) of each event as received, when subscribed to them."""
        self.status: bytes | None = None
        self.online_at: float | None = None
        """perf_counter of the latest retained ``online`` received (the daemon connected and subscribed)."""
        self.healths: list[bytes] = []

    def depths(self) -> tuple[int, int]:
        """The largest processing queue and outbox depths the health reports showed."""
        import orjson

        queues = [orjson.loads(h)["queue"] for h in self.healths if h]
        return max((q["depth"] for q in queues), default=0), max((q["outbox"] for q in queues), default=0)

    def health(self) -> dict[str, Any]:
        """The latest health report."""
        import orjson

        report: dict[str, Any] = orjson.loads(self.healths[-1]) if self.healths else {}
        return report

    def counter(self, name: str) -> int:
        """A counter of the latest health report (0 when absent)."""
        return int(self.health().get("counters", {}).get(name, 0))

    async def wait_for(self, predicate: Callable[[], bool], what: str, timeout: float, daemon: Daemon) -> None:
        """Poll ``predicate`` until true; raise with the daemon's log after ``timeout`` or when it exits."""
        deadline = time.monotonic() + timeout
        while not predicate():
            if daemon.process is not None and daemon.process.poll() is not None:
                raise RuntimeError(f"the daemon exited ({daemon.process.returncode}) waiting for {what}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}; log:\n{daemon.log_tail()}")
            await asyncio.sleep(0.01)


@contextlib.asynccontextmanager
async def observe(port: int, namespace: str, events: bool = False) -> AsyncIterator[Observer]:
    """An observer subscribed (QoS 0: no in-flight window to slow it) for the block; to the events too when
    ``events`` (what the transport alone costs)."""
    import aiomqtt

    observer = Observer(namespace)
    prediction_prefix = f"{namespace}/predictions/"
    async with aiomqtt.Client(HOST, port, identifier=f"bench-observer-{namespace}-{time.monotonic_ns()}") as client:
        await client.subscribe(f"{namespace}/predictions/+", qos=0)
        await client.subscribe(f"{namespace}/health", qos=0)
        await client.subscribe(f"{namespace}/status", qos=0)
        if events:
            await client.subscribe(f"{namespace}/events/+", qos=0)
        event_prefix = f"{namespace}/events/"

        async def run() -> None:
            async for message in client.messages:
                payload = message.payload if isinstance(message.payload, bytes) else b""
                topic = message.topic.value
                if topic.startswith(prediction_prefix):
                    if payload:
                        observer.predictions.append((time.perf_counter(), time.time(), payload))
                elif topic.startswith(event_prefix):
                    observer.events.append((time.time(), payload))
                elif topic.endswith("/health"):
                    observer.healths.append(payload)
                else:
                    observer.status = payload
                    if payload == b"online":
                        observer.online_at = time.perf_counter()

        task = asyncio.create_task(run())
        try:
            yield observer
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


# -- the measurements --------------------------------------------------------------------------------------------


@dataclass
class Bench:
    """What every measurement shares."""

    args: argparse.Namespace
    broker: Broker
    workdir: Path
    base_models: Path
    spec: Path
    daemons: list[Daemon] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    startups: list[float] = field(default_factory=list)
    stops: list[float] = field(default_factory=list)

    baseline: Path | None = None
    """``src/`` of the ``--baseline`` revision, when given."""

    def daemon(self, namespace: str, source: Path | None = None, **extra: str) -> Daemon:
        """A daemon on a fresh copy of the snapshot (every run starts from the same models)."""
        models = self.workdir / f"models-{namespace}"
        shutil.copytree(self.base_models, models)
        daemon = Daemon(models, self.workdir / "logs", self.broker.port, namespace, extra, source)
        if self.args.profile is not None:
            self.args.profile.mkdir(parents=True, exist_ok=True)
            daemon.profile = self.args.profile.resolve() / f"{namespace}.prof"
        self.daemons.append(daemon)
        return daemon

    async def start_online(self, daemon: Daemon, observer: Observer) -> float:
        """Start the daemon and wait for its retained ``online``; the seconds that took."""
        observer.status = None
        daemon.start()
        await observer.wait_for(lambda: observer.status == b"online", "status online", 60.0, daemon)
        seconds = time.perf_counter() - daemon.started
        self.startups.append(seconds)
        return seconds

    async def stop(self, daemon: Daemon) -> None:
        """SIGTERM; a non-zero exit is a problem worth reporting."""
        code, seconds = await asyncio.to_thread(daemon.stop)
        self.stops.append(seconds)
        if code != 0:
            self.problems.append(
                f"{daemon.namespace}: the daemon exited with {code} on SIGTERM: {daemon.log_tail(600)}"
            )

    async def publish(
        self,
        prefix: str,
        n: int,
        devices: int,
        *,
        rate: float = 0.0,
        ts_mode: str = "stream",
        interval: float = HOURLY_S,
        start_ts: float | None = None,
    ) -> dict[str, Any]:
        """Publish ``n`` events of ``devices`` devices under ``prefix`` (a child process): event times ``now``
        (the send time) or ``stream`` (from ``start_ts``, by default so that the last is an hour ago; a device's
        events ``interval`` apart, by default an hour: about how often a real device reports)."""
        if start_ts is None:
            start_ts = time.time() - 3600.0 - (n // devices + 1) * interval
        timeout = 60.0 + (n / rate if rate > 0 else n / 2_000)
        return await run_child(
            "publish",
            timeout + 30.0,
            host=HOST,
            port=self.broker.port,
            prefix=prefix,
            spec=self.spec,
            n=n,
            devices=devices,
            rate=rate,
            ts_mode=ts_mode,
            interval=interval,
            start_ts=start_ts,
            timeout=timeout,
        )

    async def drain_bare(self, rep: int, echo: bool = False) -> dict[str, Any]:
        """The bare subscriber's drain of a backlog of N events (``echo``: publishing one message for each, see
        :func:`child_bare`)."""
        n, ns = self.args.events, f"bench-bare{'-echo' if echo else ''}{rep}-{os.getpid()}"
        options = {"host": HOST, "port": self.broker.port, "prefix": ns, "client_id": f"bare-{ns}", "echo": int(echo)}
        await run_child("bare", 30.0, n=0, timeout=10.0, **options)
        published = await self.publish(ns, n, self.args.devices)
        result = await run_child("bare", 180.0, n=n, timeout=120.0, **options)
        result["published"] = published
        if result["count"] != n:
            self.problems.append(f"bare subscriber, run {rep}: {result['count']} of {n} messages delivered")
        return result

    async def drain_daemon(self, rep: int, variant: Variant) -> dict[str, Any]:
        """The daemon's drain of a backlog of N events, from its retained ``online`` to its last prediction once its
        health says every event was handled and its outbox is empty (the moment Home Assistant has every device's
        latest state: a prediction superseded while it waited in the outbox is not published)."""
        n, ns = self.args.events, f"bench-{variant.key}{rep}-{os.getpid()}"
        source = self.baseline if variant.baseline else None
        daemon = self.daemon(ns, source, DEVINTEL_LIVE__PUBLISH_INTERVAL_S=str(variant.publish_interval_s))
        async with observe(self.broker.port, ns) as observer:
            startup = await self.start_online(daemon, observer)
            await self.stop(daemon)
        published = await self.publish(ns, n, self.args.devices, interval=variant.event_interval_s)
        async with observe(self.broker.port, ns) as observer:
            daemon.start()

            def caught_up() -> bool:
                outbox = int(observer.health().get("queue", {}).get("outbox", 1))
                return observer.counter("events") >= n and outbox == 0

            await observer.wait_for(caught_up, f"health: {n} events, outbox empty", 180.0, daemon)
            await asyncio.sleep(0.3)  # the last predictions in flight when the health report was made
            first, last = observer.predictions[0][0], observer.predictions[-1][0]
            online = observer.online_at
            if online is None:
                raise RuntimeError(f"{ns}: no retained online received")
            counters = observer.health()["counters"]
            inbox, outbox = observer.depths()
            await self.stop(daemon)
        seconds = last - online
        result = {
            "variant": variant.key,
            "predictions": len(observer.predictions),
            "seconds": seconds,
            "rate": n / seconds if seconds > 0 else 0.0,
            "online_to_first_s": first - online,
            "start_to_first_s": first - daemon.started,
            "startup_to_online_s": startup,
            "events": counters.get("events"),
            "shed_events": counters.get("shed_events"),
            # The worker's seconds in the handler (None for a daemon that does not report them): the rest of the
            # drain is the MQTT client's and asyncio's work.
            "busy_s": observer.health().get("queue", {}).get("busy_s"),
            "shed_publish": counters.get("shed_publish"),
            "superseded_publish": counters.get("superseded_publish", 0),
            "held_publish": counters.get("held_publish", 0),
            "rejected": counters.get("rejected"),
            "max_queue_depth": inbox,
            "max_outbox_depth": outbox,
            "published": published,
        }
        if result["events"] != n or result["shed_events"]:
            self.problems.append(
                f"daemon drain ({variant.label}), run {rep}: events {result['events']} of {n}, "
                f"shed_events {result['shed_events']}"
            )
        return result

    async def latency(self) -> dict[str, Any]:
        """Event-to-prediction latency at each paced rate, after a warm-up of one event per device."""
        import orjson

        ns, devices = f"bench-latency-{os.getpid()}", self.args.devices
        daemon = self.daemon(ns, DEVINTEL_LIVE__PUBLISH_INTERVAL_S="0")
        out: dict[str, Any] = {}
        async with observe(self.broker.port, ns, events=True) as observer:
            await self.start_online(daemon, observer)
            await self.publish(ns, devices, devices, rate=200.0, ts_mode="now")
            await observer.wait_for(lambda: len(observer.predictions) >= devices, "warm-up", 60.0, daemon)
            for rate, n in LATENCY_RATES:
                await asyncio.sleep(0.5)
                observer.predictions.clear()
                observer.events.clear()
                published = await self.publish(ns, n, devices, rate=float(rate), ts_mode="now")
                with contextlib.suppress(TimeoutError):
                    await observer.wait_for(at_least(observer.predictions, n), f"{n} predictions", 30.0, daemon)
                latencies = [wall - float(orjson.loads(p)["ts"]) for _, wall, p in observer.predictions]
                transport = [wall - float(orjson.loads(p)["ts"]) for wall, p in observer.events]
                out[str(rate)] = {
                    "events": n,
                    "predictions": len(latencies),
                    "p50_ms": percentile(latencies, 0.50) * 1000,
                    "p99_ms": percentile(latencies, 0.99) * 1000,
                    "max_ms": max(latencies, default=float("nan")) * 1000,
                    "transport_p50_ms": percentile(transport, 0.50) * 1000,
                    "transport_p99_ms": percentile(transport, 0.99) * 1000,
                    "publisher": published,
                    "kept_pace": published["rate_sent"] >= 0.97 * rate,
                }
                if len(latencies) != n:
                    self.problems.append(f"latency at {rate}/s: {len(latencies)} predictions for {n} events")
            out["shed_events"] = observer.counter("shed_events")
            out["max_queue_depth"], out["max_outbox_depth"] = observer.depths()
            await self.stop(daemon)
        return out

    async def memory(self, rate: float) -> dict[str, Any]:
        """RSS right after start, then with 5,000 devices (product defaults but the queue size)."""
        ns, per_device = f"bench-memory-{os.getpid()}", self.args.memory_events_per_device
        n = MEMORY_DEVICES * per_device
        daemon = self.daemon(ns)
        async with observe(self.broker.port, ns) as observer:
            await self.start_online(daemon, observer)
            await asyncio.sleep(1.0)
            empty = proc_memory_mb(daemon.pid)
            published = await self.publish(ns, n, MEMORY_DEVICES, rate=rate, interval=240.0)
            await observer.wait_for(lambda: observer.counter("events") >= n, f"health: {n} events", 120.0, daemon)
            await observer.wait_for(
                lambda: observer.health()["queue"]["outbox"] == 0, "the outbox to drain", 120.0, daemon
            )
            await asyncio.sleep(1.0)
            full = proc_memory_mb(daemon.pid)
            health = observer.health()
            inbox, outbox = observer.depths()
            await self.stop(daemon)
        return {
            "devices": health.get("devices"),
            "events": health.get("counters", {}).get("events"),
            "shed_events": health.get("counters", {}).get("shed_events"),
            "labels_waiting": health.get("labels", {}).get("waiting"),
            "shed_publish": health.get("counters", {}).get("shed_publish"),
            "max_queue_depth": inbox,
            "max_outbox_depth": outbox,
            "rate": rate,
            "publisher": published,
            "rss_start_mb": empty["VmRSS"],
            "rss_mb": full["VmRSS"],
            "hwm_mb": full["VmHWM"],
            "per_device_kb": (full["VmRSS"] - empty["VmRSS"]) * 1024 / MEMORY_DEVICES,
        }


# -- the run -----------------------------------------------------------------------------------------------------


def prepare_models(args: argparse.Namespace, workdir: Path) -> Path:
    """A snapshot for the run: a copy of ``--model-dir`` (the daemon writes into its directory), or a toy
    bootstrap."""
    target = workdir / "models"
    if args.model_dir is not None:
        shutil.copytree(args.model_dir, target)
        return target
    subprocess.run(
        [
            sys.executable, "-m", "devintel.daemon.cli", "bootstrap", "--samples", "20000",
            "--holdout-samples", "8000", "--days", "40", "--seed", "3", "--model-dir", str(target),
            "--allow-low-quality",
        ],
        check=True, capture_output=True, timeout=300, cwd=workdir,
    )  # fmt: skip
    return target


async def run(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    """Every measurement; the subprocesses are gone when it returns or raises."""
    broker = private_broker(workdir, args.broker_config)
    began = time.perf_counter()
    base_models = await asyncio.to_thread(prepare_models, args, workdir)
    spec = workdir / "devices.json"
    spec.write_text(json.dumps(await asyncio.to_thread(device_rows, args.seed)))
    bench = Bench(args, broker, workdir, base_models, spec)
    broker.start()
    try:
        if args.baseline:
            (workdir / "baseline").mkdir()
            bench.baseline = export_revision(args.baseline, workdir / "baseline")
        bare: list[dict[str, Any]] = []
        daemon: dict[str, list[dict[str, Any]]] = {}
        echo: list[dict[str, Any]] = []
        for rep in range(args.repeat):  # alternating, so that load drifts hit every consumer alike
            kinds: list[Variant | str] = ["bare", "echo", *variants(args.baseline)]
            for variant in kinds if rep % 2 == 0 else kinds[::-1]:
                if isinstance(variant, str):
                    result = await bench.drain_bare(rep, echo=variant == "echo")
                    (echo if variant == "echo" else bare).append(result)
                else:
                    result = await bench.drain_daemon(rep, variant)
                    daemon.setdefault(variant.key, []).append(result)
                name = f"{variant} subscriber" if isinstance(variant, str) else variant.label
                print(f"  run {rep + 1} {name}: {result['rate']:,.0f} events/s", file=sys.stderr)
        alone = await asyncio.to_thread(handler_alone, base_models, spec, args.events, args.devices, args.repeat)
        print(f"  handler alone: {alone['rate']:,.0f} events/s", file=sys.stderr)
        latency = await bench.latency()
        best_daemon = max(r["rate"] for r in daemon["current-shipped"])
        memory_rate = args.memory_rate or min(2_000.0, max(200.0, round(0.6 * best_daemon, -2)))
        memory = await bench.memory(memory_rate)
    finally:
        for process in bench.daemons:
            process.kill()
        broker.stop()
    return {
        "bare": bare,
        "echo": echo,
        "daemon": daemon,
        "handler_alone": alone,
        "latency": latency,
        "memory": memory,
        "startup_to_online_s": bench.startups,
        "sigterm_to_exit_s": bench.stops,
        "problems": bench.problems,
        "seconds": time.perf_counter() - began,
    }


def report(args: argparse.Namespace, record: dict[str, Any]) -> str:
    """The Markdown table and the notes under it."""
    bare = max(r["rate"] for r in record["bare"])
    n = args.events
    runs = [r for results in record["daemon"].values() for r in results]
    clean = all(r["events"] == n and r["shed_events"] == 0 for r in runs)
    handled = ", ".join(f"{r['events']:,}/{r['shed_events']}" for r in runs)
    memory = record["memory"]
    handler = record["handler_alone"]
    alone = handler["rate"]

    def rates(results: list[dict[str, Any]]) -> str:
        return ", ".join(f"{r['rate']:,.0f}" for r in results)

    def depths(results: list[dict[str, Any]]) -> str:
        return ", ".join(f"{r['max_queue_depth']:,} / {r['max_outbox_depth']:,}" for r in results)

    def verdict(ok: bool) -> str:
        return "PASS" if ok else "FAIL"

    rows = [
        (
            f"bare aiomqtt subscriber drains {n:,} queued events (best of {args.repeat})",
            f"{bare:,.0f} events/s",
            "",
            "",
        )
    ]
    echo = max(r["rate"] for r in record["echo"])
    rows.append(
        (
            f"the same subscriber publishing one retained QoS 1 message ({ECHO_BYTES} B) per event, as the daemon's "
            "sender does, with no handler: the MQTT work of a prediction per event (best of "
            f"{args.repeat}) and **its / bare**",
            f"{echo:,.0f} events/s, **{echo / bare:.2f}x**",
            "(the ceiling of a daemon publishing every event)",
            "",
        )
    )
    for variant in variants(args.baseline):
        results = record["daemon"][variant.key]
        best = max(r["rate"] for r in results)
        superseded = statistics.median(r["superseded_publish"] for r in results)
        held = statistics.median(r.get("held_publish", 0) for r in results)
        target = variant.key == "current-shipped"
        busy = [r["busy_s"] / r["seconds"] for r in results if r.get("busy_s") is not None and r["seconds"] > 0]
        share = f"; the handler busy {statistics.median(busy):.0%} of the drain" if busy else ""
        published = statistics.median(r["predictions"] for r in results)
        rows.append(
            (
                f"daemon drains them, {variant.label}: events/s (best of {args.repeat}) and **daemon / bare**",
                f"{best:,.0f} events/s, **{best / bare:.2f}x** (predictions published {published:,.0f}, held while "
                f"catching up {held:,.0f}, superseded unsent {superseded:,.0f}{share})",
                f"≥ 0.5x (aim {RATIO_TARGET}x)" if target else "",
                verdict(best / bare >= 0.5) if target else "",
            )
        )
    rows += [
        (
            f"the daemon's handler alone, in-process, no broker, the same {n:,} events (best of {args.repeat}): "
            "events/s, and each event's time in the handler (message to prediction and messages out)",
            f"{alone:,.0f} events/s; p50 {handler['p50_ms']:.3f} ms, p99 {handler['p99_ms']:.3f} ms",
            "p99 < 1 ms",
            verdict(handler["p99_ms"] < 1.0),
        ),
        ("daemon events handled / shed_events, each run", handled, f"{n:,} / 0", verdict(clean)),
    ]
    for rate, _ in LATENCY_RATES:
        lat = record["latency"][str(rate)]
        pub = lat["publisher"]
        pace = "publisher kept pace" if lat["kept_pace"] else f"publisher fell behind ({pub['rate_sent']:,.0f}/s)"
        rows.append(
            (
                f"event → prediction latency at {rate:,} events/s ({lat['predictions']:,} of {lat['events']:,})",
                f"p50 {lat['p50_ms']:.1f} ms, p99 {lat['p99_ms']:.1f} ms "
                f"(the event alone: p50 {lat['transport_p50_ms']:.1f}, p99 {lat['transport_p99_ms']:.1f})",
                "(reported)",
                pace,
            )
        )
    rows += [
        ("daemon RSS right after start, 0 devices", f"{memory['rss_start_mb']:,.0f} MB", "", ""),
        (
            f"daemon RSS with {memory['devices']:,} devices ({memory['events']:,} events)",
            f"{memory['rss_mb']:,.0f} MB (peak {memory['hwm_mb']:,.0f} MB)",
            f"< {RSS_TARGET_MB:.0f} MB",
            verdict(memory["hwm_mb"] < RSS_TARGET_MB),
        ),
        ("… per device", f"{memory['per_device_kb']:,.1f} KB", "", ""),
        (
            "daemon start → retained `online` (median)",
            f"{statistics.median(record['startup_to_online_s']):.1f} s",
            "",
            "",
        ),
        ("daemon SIGTERM → exit (median)", f"{statistics.median(record['sigterm_to_exit_s']):.1f} s", "", ""),
    ]
    drains = "; ".join(
        f"{key}: {rates(results)} events/s, largest queue / outbox depth {depths(results)}"
        for key, results in record["daemon"].items()
    )
    baseline_note = f" Baseline: `src/` of {args.baseline} (`git archive`), same interpreter." if args.baseline else ""
    lines = [
        "| measurement | value | target | verdict |",
        "| --- | ---: | --- | --- |",
        *(f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows),
        "",
        f"Backlog: {n:,} events of {args.devices} devices (QoS 1, realistic bodies from the synthetic generator, "
        f"an hour apart per device; a minute apart in the drain that says so) queued at mosquitto for the consumer's "
        f"persistent session, then drained: the bare subscriber from its subscription to its last message "
        f"({rates(record['bare'])} events/s), the daemon from its retained `online` (published once it has "
        "subscribed) to its last prediction once its health says "
        "every event was handled and its outbox is empty (while catching up, a device's prediction is published at "
        "most every `live.backlog_publish_interval_s`, 1 s, and its latest at the end; a retained prediction "
        "superseded while it waited in the outbox is not published; with events a minute apart a device publishes "
        "at least every fifth event, so the "
        "events after the last prediction, a few of the last round of one event per device, are not timed: "
        f"{drains}). "
        f"Daemon: Home Assistant discovery on, HTTP off, queue {QUEUE_SIZE:,}; the latency and memory runs have "
        "daemons of their own (latency: publish interval 0; memory: the default)."
        + baseline_note
        + " Latency: the event alone is the observer receiving the event itself "
        f"(publisher → mosquitto → observer, no daemon). Memory: fed at {memory['rate']:,.0f} events/s, "
        f"{args.memory_events_per_device} events per device 4 minutes apart (largest queue / outbox depth "
        f"{depths([memory])}); the peak (VmHWM) is judged against the target. Mosquitto {mosquitto_version()}: "
        f"`max_queued_messages 0`{''.join(f', `{line}`' for line in args.broker_config)}, other settings default "
        "(20 QoS 1 messages in flight per client).",
        "",
        f"Python {platform.python_version()}, {platform.machine()}, {os.cpu_count()} cores, load average "
        f"{record['load_before']} before the run; the whole bench took {record['seconds']:.0f} s.",
    ]
    if record["problems"]:
        lines += ["", "Problems:", *(f"- {p}" for p in record["problems"])]
    return "\n".join(lines)


def mosquitto_version() -> str:
    """``2.0.11`` or the like."""
    executable = find_mosquitto() or "mosquitto"
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run([executable, "-h"], capture_output=True, text=True, timeout=5).stdout
        return out.split("version", 1)[1].split()[0] if "version" in out else "?"
    return "?"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=20_000, help="events of each backlog drain")
    parser.add_argument("--devices", type=int, default=200, help="devices of the drain and latency runs")
    parser.add_argument("--repeat", type=int, default=3, help="drains of each consumer (the best counts)")
    parser.add_argument("--model-dir", type=Path, default=None, help="use (a copy of) this snapshot directory")
    parser.add_argument("--memory-events-per-device", type=int, default=10)
    parser.add_argument("--memory-rate", type=float, default=0.0, help="events/s of the memory feed (0: auto)")
    parser.add_argument("--broker-config", action="append", default=[], help="extra mosquitto.conf line (repeatable)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--baseline", default=None, help="also drain with the daemon of this git revision's src/ (before vs after)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs)")
    parser.add_argument(
        "--profile",
        type=Path,
        default=None,
        help="run every daemon under cProfile, writing DIR/<namespace>.prof (the figures are then not written)",
    )
    child = parser.add_argument_group("child processes (internal)")
    for name in ("--child", "--host", "--prefix", "--spec", "--client-id", "--ts-mode"):
        child.add_argument(name, default=None, help=argparse.SUPPRESS)
    for name in ("--port", "--n", "--echo"):
        child.add_argument(name, type=int, default=0, help=argparse.SUPPRESS)
    for name in ("--rate", "--interval", "--start-ts", "--timeout"):
        child.add_argument(name, type=float, default=0.0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child == "publish":
        print(json.dumps(child_publish(args)))
        return 0
    if args.child == "bare":
        print(json.dumps(asyncio.run(child_bare(args))))
        return 0

    record = run_in_workdir("bench-live-", args.keep, lambda workdir: run(args, workdir))
    table = report(args, record)
    print(table)
    if args.profile is not None:
        print(f"profiles in {args.profile}; figures measured under cProfile are not written", file=sys.stderr)
        return 0
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "live.md").write_text(table + "\n", encoding="utf-8")
    record.update(
        {
            "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "python": platform.python_version(),
            "cores": os.cpu_count(),
            "mosquitto": mosquitto_version(),
            "events": args.events,
            "devices": args.devices,
            "repeat": args.repeat,
            "best_bare_rate": max(r["rate"] for r in record["bare"]),
            "best_daemon_rate": {key: max(r["rate"] for r in runs) for key, runs in record["daemon"].items()},
        }
    )
    record["ratio_daemon_over_bare"] = {
        key: rate / record["best_bare_rate"] for key, rate in record["best_daemon_rate"].items()
    }
    (RESULTS / "live.json").write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
