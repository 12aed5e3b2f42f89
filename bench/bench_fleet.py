"""The fleet on a real three-node nats-server cluster: events/s with 1, 2 and 3 workers, memory per home, failover.

    .venv/bin/python bench/bench_fleet.py [--homes 100] [--events 300] [--partitions 6]

Everything runs on 127.0.0.1 (the tests' harness, ``tests/nats_cluster.py``): three nats-server nodes with
JetStream (R3 streams) and the MQTT listener, a toy snapshot bootstrapped for the run (about 6 s), and workers as
``python -m devintel.fleet.cli worker`` processes. Measures:

1. **MQTT ingest, messages/s**: ``--homes`` simulated homes (``--events`` each, 20 days) published QoS 1 through
   the three nodes' MQTT listeners over 8 connections, into the partitioned events stream.
2. **Workers, events/s**, for 1, 2 and 3 workers: the stream is filled first (no worker running), then the workers
   start; timed from the first delivery to the moment every partition's consumer has acknowledged everything
   (so the snapshots that include every event are durable). A fresh cluster for each count.
3. **Memory per home**: ``tracemalloc`` of the per-home state (handlers with every event of ``--homes`` homes
   handled) in this process, and the bytes of its sealed snapshot per home.
4. **Failover**: three workers, kill -9 of one mid-stream: the time until every one of its partitions is leased
   by another worker (lease TTL 3 s, renewed every second), and until the stream is drained.

Prints a Markdown table and writes ``bench/results/fleet.md`` and ``fleet.json``. Takes about 3-5 minutes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

import nats

from devintel.daemon.from_settings import live_models
from devintel.daemon.settings import load_settings
from devintel.fleet.cluster import EVENTS_STREAM, open_cluster
from devintel.fleet.homes import HomeFactory, tap_of
from devintel.fleet.modelset import ModelSet
from devintel.fleet.settings import FleetSettings
from devintel.fleet.state import PartitionState, encode_state
from devintel.models.bootstrap import BootstrapConfig, bootstrap
from devintel.models.gate import QualityThresholds
from devintel.models.snapshots import SnapshotStore
from nats_cluster import FleetProcess, Home, NatsCluster, payload_bytes, publish_homes, simulated_homes

RESULTS = Path(__file__).resolve().parent / "results"


async def _init(cluster: NatsCluster) -> None:
    async with await nats.connect(cluster.urls) as nc:
        await open_cluster(FleetSettings(nats={"servers": cluster.urls}, partitions=cluster.partitions), nc)


async def _drain_time(cluster: NatsCluster, total: int, timeout: float = 600.0) -> tuple[float, float]:
    """(seconds from the first delivery to all acknowledged, seconds from now to the first delivery)."""
    start = time.monotonic()
    first: float | None = None
    async with await nats.connect(cluster.urls) as nc:
        js = nc.jetstream()
        while time.monotonic() - start < timeout:
            delivered, done = 0, True
            for k in range(cluster.partitions):
                try:
                    info = await js.consumer_info(EVENTS_STREAM, f"partition-{k}")
                except Exception:
                    done = False
                    continue
                delivered += info.delivered.stream_seq or 0
                done = done and info.num_pending == 0 and info.num_ack_pending == 0
            if first is None and delivered > 0:
                first = time.monotonic()
            if done and first is not None:
                return time.monotonic() - first, first - start
            await asyncio.sleep(0.1)
    raise TimeoutError("the workers did not drain the stream")


def cpu_seconds(pid: int | None) -> float:
    """User and system CPU time of a process so far (``/proc/<pid>/stat``), 0 when it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _workers(cluster: NatsCluster, model_dir: Path, logs: Path, count: int) -> list[FleetProcess]:
    return [
        FleetProcess("worker", cluster.fleet_env(f"w{i}", model_dir), logs / f"w{count}-{i}.log").start()
        for i in range(1, count + 1)
    ]


def throughput(homes: list[Home], model_dir: Path, root: Path, partitions: int, workers: int) -> dict[str, float]:
    """Ingest and drain figures with ``workers`` workers on a fresh cluster."""
    cluster = NatsCluster(root / f"cluster-{workers}", partitions=partitions)
    cluster.start()
    try:
        asyncio.run(_init(cluster))
        started = time.monotonic()
        sent = asyncio.run(publish_homes(homes, cluster.mqtt_ports))
        ingest = sent / (time.monotonic() - started)
        servers_before = sum(cpu_seconds(node.process.pid if node.process else None) for node in cluster.nodes)
        processes = _workers(cluster, model_dir, root, workers)
        try:
            drain, startup = asyncio.run(_drain_time(cluster, sent))
            workers_cpu = sum(cpu_seconds(p.process.pid if p.process else None) for p in processes)
            servers_cpu = sum(cpu_seconds(n.process.pid if n.process else None) for n in cluster.nodes) - servers_before
        finally:
            for process in processes:
                process.stop()
        return {
            "workers": workers,
            "messages": sent,
            "ingest_per_s": ingest,
            "drain_s": drain,
            "events_per_s": sent / drain,
            "startup_s": startup,
            "workers_cpu_s": workers_cpu,
            "servers_cpu_s": servers_cpu,
        }
    finally:
        cluster.stop()


def failover(homes: list[Home], model_dir: Path, root: Path, partitions: int) -> dict[str, float]:
    """kill -9 of one of three workers mid-stream: lease takeover time and drain."""
    cluster = NatsCluster(root / "cluster-failover", partitions=partitions)
    cluster.start()
    processes = _workers(cluster, model_dir, root, 3)

    async def scenario() -> dict[str, float]:
        async with await nats.connect(cluster.urls) as nc:
            kv = None
            deadline = time.monotonic() + 120
            while True:  # the workers made the buckets and share the partitions
                if time.monotonic() > deadline:
                    raise TimeoutError("the three workers did not share the partitions")
                try:
                    kv = kv or await nc.jetstream().key_value("devintel-leases")
                    holders = {k: (await kv.get(f"partition.{k}")).value for k in range(partitions)}
                    if len(set(holders.values())) == 3:
                        break
                except Exception:
                    pass
                await asyncio.sleep(0.2)
            publishing = asyncio.create_task(publish_homes(homes, cluster.mqtt_ports))
            await asyncio.sleep(2.0)
            theirs = [k for k, v in holders.items() if v == b"w1"]
            processes[0].kill()
            killed = time.monotonic()
            while True:
                held = {}
                for k in theirs:
                    try:
                        held[k] = (await kv.get(f"partition.{k}")).value
                    except Exception:
                        held[k] = None
                if all(v not in (None, b"w1") for v in held.values()):
                    break
                await asyncio.sleep(0.05)
            takeover = time.monotonic() - killed
            sent = await publishing
        await _drain_time(cluster, sent)
        return {
            "partitions_moved": len(theirs),
            "takeover_s": takeover,
            "drained_after_kill_s": time.monotonic() - killed,
        }

    try:
        return asyncio.run(scenario())
    finally:
        for process in processes:
            process.kill()
        cluster.stop()


def memory(homes: list[Home], model_dir: Path) -> dict[str, float]:
    """Per-home state: Python allocations and sealed snapshot bytes."""
    os.environ["DEVINTEL_MODEL_DIR"] = str(model_dir)
    settings, snapshot = load_settings(), SnapshotStore(model_dir).load()
    models = ModelSet.from_live(live_models(settings, snapshot))
    factory = HomeFactory(settings, snapshot, 0.2)
    state = PartitionState(0, version=models.version)
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for home in homes:
        handler = state.homes[home.home_id] = factory.new(home.home_id, models)
        tap = tap_of(handler)
        for line in home.capture:
            handler.handle(str(line["topic"]), payload_bytes(line), float(line["ts"]))  # type: ignore[arg-type]
            if tap is not None:
                tap.drain()  # the worker sends the examples after each message
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    devices = sum(len(h.devices) for h in state.homes.values())
    blob = encode_state(state, models)
    return {
        "homes": len(homes),
        "devices": devices,
        "bytes_per_home": (after - before) / len(homes),
        "bytes_per_device": (after - before) / max(devices, 1),
        "snapshot_bytes_per_home": len(blob) / len(homes),
    }


def main() -> int:
    """Run the benchmark (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--homes", type=int, default=100)
    parser.add_argument("--events", type=int, default=300)
    parser.add_argument("--partitions", type=int, default=6)
    args, _ = parser.parse_known_args()
    with tempfile.TemporaryDirectory(prefix="devintel-bench-fleet-") as tmp:
        root = Path(tmp)
        model_dir = root / "models"
        bootstrap(
            BootstrapConfig(
                samples=20_000,
                holdout_samples=8_000,
                days=40.0,
                seed=3,
                thresholds=QualityThresholds(0.0, 0.0, 0.0, 0.0, 1e9, 0.0),
            ),
            SnapshotStore(model_dir),
        )
        homes = simulated_homes(args.homes, args.events, 20.0, seed=10_000)
        runs = [throughput(homes, model_dir, root, args.partitions, n) for n in (1, 2, 3)]
        fail = failover(homes, model_dir, root, args.partitions)
        mem = memory(simulated_homes(20, 3_000, 20.0, seed=20_000), model_dir)
    result: dict[str, Any] = {
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}",
        "homes": args.homes,
        "events_per_home": args.events,
        "partitions": args.partitions,
        "throughput": runs,
        "failover": fail,
        "memory": mem,
    }
    lines = [
        "# Fleet benchmark (`.venv/bin/python bench/bench_fleet.py`)",
        "",
        f"{result['machine']}; three nats-server 2.9 nodes on loopback, R3 streams; {args.homes} homes x "
        f"{args.events} events; {args.partitions} partitions; workers, servers and publisher share the cores.",
        "",
        "| workers | messages | MQTT ingest (msg/s) | workers' drain (s) | events/s | worker start (s) "
        "| CPU s: workers / servers, during the drain |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for run in runs:
        lines.append(
            f"| {run['workers']} | {run['messages']:,} | {run['ingest_per_s']:,.0f} | {run['drain_s']:.1f} | "
            f"{run['events_per_s']:,.0f} | {run['startup_s']:.1f} | "
            f"{run['workers_cpu_s']:.1f} / {run['servers_cpu_s']:.1f} |"
        )
    lines += [
        "",
        f"Failover (kill -9 of one of three workers mid-stream, lease TTL 3 s): its {fail['partitions_moved']} "
        f"partitions leased by the others after **{fail['takeover_s']:.1f} s**; stream drained "
        f"{fail['drained_after_kill_s']:.1f} s after the kill.",
        "",
        f"Memory per home ({mem['homes']} homes, {mem['devices']} devices, every event handled): "
        f"**{mem['bytes_per_home'] / 1024:,.0f} KiB** of Python allocations per home "
        f"({mem['bytes_per_device'] / 1024:,.1f} KiB per device); sealed snapshot "
        f"{mem['snapshot_bytes_per_home'] / 1024:,.1f} KiB per home.",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "fleet.md").write_text(text)
    (RESULTS / "fleet.json").write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
