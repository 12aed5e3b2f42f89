"""The long soak: an accelerated stretch of a ~200-device home through a real mosquitto and the live daemon.

    .venv/bin/python bench/soak.py [--days 60] [--events-per-day 1000] [--seed 31] [--model-dir DIR]

The stream is ``devintel.generators.generate(samples=days x events_per_day, days=days)`` (1,000 events a day is
about 200 devices of 5 homes; failing devices fall silent and most are replaced under new ids), shifted to end an
hour ago and published with QoS 1 as canonical events (``<ns>/events/<device_id>``), never more than
``--max-lag`` messages ahead of what the daemon's health report says it has handled (so the broker and the
daemon's queue hold no backlog: the memory measured is the daemon's state). The daemon (``python -m
devintel.daemon.service``, the private mosquitto and the daemon set-up of ``bench_live.py``) runs with a
retention of 7 days, so devices that failed are evicted within the run. ``VmRSS`` is sampled every 0.2 s and
tagged with the stream day being published; the health report gives the devices and the waiting labels.

Prints a Markdown table (per stream day: events handled, devices, labels waiting, RSS median) and the verdict:
RSS median over days 10-12 (after warm-up: a full 7-day horizon of labels) against the median over the last 5
days and an idle second: growth under 5 %. Writes ``bench/results/soak.md`` and ``soak.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from bench_live import (
    HOST,
    RESULTS,
    Daemon,
    mosquitto_version,
    prepare_models,
    private_broker,
    proc_memory_mb,
    run_in_workdir,
)

DAY = 86_400.0
WARMUP_DAY = 10
GROWTH_TARGET = 0.05
BATCH = 10


def stream(days: int, per_day: int, seed: int, prefix: str) -> tuple[list[list[tuple[str, bytes]]], int]:
    """Per stream day, the (topic, payload) of its events, shifted to end an hour ago; and the device count."""
    import orjson

    from devintel.generators import generate
    from devintel.models.online import events

    frame = generate(samples=days * per_day, days=days, seed=seed)
    devices = int(frame["device_id"].nunique())
    start, shift = float(frame["ts"].min()), time.time() - 3600.0 - float(frame["ts"].max())
    out: list[list[tuple[str, bytes]]] = [[] for _ in range(days + 1)]
    for event in events(frame):
        ts = float(event["ts"])  # type: ignore[arg-type]
        event["ts"] = round(ts + shift, 3)
        out[min(int((ts - start) // DAY), days)].append((f"{prefix}/events/{event['device_id']}", orjson.dumps(event)))
    return out, devices


async def soak(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    """Run the soak; the record of what it measured."""
    import aiomqtt
    import orjson

    broker = private_broker(workdir, [])
    broker.start()
    ns = f"soak{os.getpid()}"
    models = prepare_models(argparse.Namespace(model_dir=args.model_dir), workdir)
    days, devices = stream(args.days, args.events_per_day, args.seed, ns)
    total = sum(len(d) for d in days)
    daemon = Daemon(
        models,
        workdir,
        broker.port,
        ns,
        extra={
            "DEVINTEL_LIVE__HEALTH_INTERVAL_S": "0.2",
            "DEVINTEL_LIVE__RETENTION_DAYS": "7",
            "DEVINTEL_SNAPSHOT__INTERVAL_S": "1000000",
        },
    )
    health: dict[str, Any] = {}
    samples: list[tuple[int, float]] = []  # (day, RSS in MB)
    per_day: dict[int, dict[str, Any]] = {}
    current = [0]
    try:
        daemon.start()
        async with aiomqtt.Client(HOST, broker.port, identifier=f"soak-pub-{ns}") as client:
            await client.subscribe(f"{ns}/health", qos=0)

            async def listen() -> None:
                async for message in client.messages:
                    if isinstance(message.payload, bytes) and message.payload:
                        health.update(orjson.loads(message.payload))

            async def sample() -> None:
                while True:
                    samples.append((current[0], proc_memory_mb(daemon.pid)["VmRSS"]))
                    await asyncio.sleep(0.2)

            def handled() -> int:
                return int(health.get("counters", {}).get("messages", 0))

            listener = asyncio.create_task(listen())
            deadline = time.monotonic() + 60
            while not health.get("mqtt", {}).get("connected"):  # subscribed: health comes after SUBACK
                if time.monotonic() > deadline or daemon.process is None or daemon.process.poll() is not None:
                    raise RuntimeError(f"the daemon did not connect; log:\n{daemon.log_tail()}")
                await asyncio.sleep(0.05)
            rss_start = proc_memory_mb(daemon.pid)["VmRSS"]
            sampler = asyncio.create_task(sample())
            started = time.perf_counter()
            sent = 0
            try:
                for day, messages in enumerate(days, start=1):
                    current[0] = day
                    for i in range(0, len(messages), BATCH):
                        while sent - handled() > args.max_lag:
                            await asyncio.sleep(0.02)
                        batch = messages[i : i + BATCH]
                        await asyncio.gather(*(client.publish(t, p, qos=1) for t, p in batch))
                        sent += len(batch)
                    per_day[day] = {
                        "handled": handled(),
                        "devices": health.get("devices"),
                        "labels_waiting": health.get("labels", {}).get("waiting"),
                    }
                deadline = time.monotonic() + 120
                while handled() < total and time.monotonic() < deadline:
                    await asyncio.sleep(0.05)
                seconds = time.perf_counter() - started
                current[0] = args.days + 2
                await asyncio.sleep(1.0)
            finally:
                for task in (sampler, listener):
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
        code, _ = daemon.stop()
    finally:
        daemon.kill()
        broker.stop()
    rss_by_day = {
        day: statistics.median([r for d, r in samples if d == day]) for day in sorted({d for d, _ in samples})
    }
    warm = [r for d, r in samples if WARMUP_DAY <= d < WARMUP_DAY + 3]
    end = [r for d, r in samples if d > args.days - 5]
    return {
        "days": args.days,
        "events_per_day": args.events_per_day,
        "seed": args.seed,
        "devices": devices,
        "messages": total,
        "handled": handled_total(health),
        "seconds": seconds,
        "exit_code": code,
        "counters": health.get("counters", {}),
        "labels": health.get("labels", {}),
        "final_devices": health.get("devices"),
        "rss_start_mb": rss_start,
        "rss_warm_mb": statistics.median(warm),
        "rss_end_mb": statistics.median(end),
        "rss_max_mb": max(r for _, r in samples),
        "samples": len(samples),
        "growth": statistics.median(end) / statistics.median(warm) - 1.0,
        "per_day": {str(d): {**v, "rss_mb": rss_by_day.get(d)} for d, v in per_day.items()},
    }


def handled_total(health: dict[str, Any]) -> int:
    """Messages the daemon handled, by its last health report."""
    return int(health.get("counters", {}).get("messages", 0))


def report(record: dict[str, Any]) -> str:
    """The Markdown table and verdict."""
    rows = [
        "| stream day | messages handled | devices | labels waiting | RSS median (MB) |",
        "| ---: | ---: | ---: | ---: | ---: |",
    ]
    days = record["days"]
    for day in sorted({1, *range(5, days + 1, 5), days, days + 1}):
        entry = record["per_day"].get(str(day))
        if entry is None:
            continue
        rss = f"{entry['rss_mb']:.1f}" if entry["rss_mb"] is not None else ""
        rows.append(f"| {day} | {entry['handled']:,} | {entry['devices']} | {entry['labels_waiting']} | {rss} |")
    counters = record["counters"]
    verdict = "PASS" if record["growth"] < GROWTH_TARGET else "FAIL"
    lines = [
        *rows,
        "",
        f"{record['messages']:,} messages ({days} days, {record['devices']} devices over the run, "
        f"seed {record['seed']}) through mosquitto in {record['seconds']:.1f} s "
        f"({record['messages'] / record['seconds']:,.0f}/s); handled {record['handled']:,}, "
        f"events {counters.get('events', 0):,}, rejected {counters.get('rejected', {})}, "
        f"skipped {counters.get('skipped', {})}, shed {counters.get('shed_events', 0)}, "
        f"evicted {counters.get('evicted', 0)}; labels at the end {record['labels']}; "
        f"daemon exit code {record['exit_code']}.",
        "",
        f"RSS: {record['rss_start_mb']:.1f} MB after start, median {record['rss_warm_mb']:.1f} MB over days "
        f"{WARMUP_DAY}-{WARMUP_DAY + 2}, median {record['rss_end_mb']:.1f} MB over the last 5 days and an idle "
        f"second, max {record['rss_max_mb']:.1f} MB ({record['samples']} samples): growth after warm-up "
        f"**{record['growth']:+.2%}** (target under {GROWTH_TARGET:.0%}): {verdict}.",
        "",
        f"Python {platform.python_version()}, {platform.machine()}, {os.cpu_count()} cores, mosquitto "
        f"{mosquitto_version()}, load average {record['load_before']} before the run.",
    ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--days", type=int, default=60, help="stream days")
    parser.add_argument("--events-per-day", type=int, default=1_000, help="events a day (1,000: ~200 devices)")
    parser.add_argument("--seed", type=int, default=31)
    parser.add_argument("--max-lag", type=int, default=3_000, help="messages published ahead of those handled")
    parser.add_argument("--model-dir", type=Path, default=None, help="use (a copy of) this snapshot directory")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs)")
    args = parser.parse_args()
    if args.days < WARMUP_DAY + 8:
        parser.error(f"--days must be at least {WARMUP_DAY + 8} (warm-up, then a week)")
    record = run_in_workdir("bench-soak-", args.keep, lambda workdir: soak(args, workdir))
    record["date"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    table = report(record)
    print(table)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "soak.md").write_text(table + "\n", encoding="utf-8")
    (RESULTS / "soak.json").write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    return 0 if record["growth"] < GROWTH_TARGET else 1


if __name__ == "__main__":
    sys.exit(main())
