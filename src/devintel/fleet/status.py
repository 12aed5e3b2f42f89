"""``devintel-fleet status``: who holds which partition, how far each partition's durable state goes, the trainer
and the model version, and the streams (I/O to read, a pure formatter to print)."""

from __future__ import annotations

from typing import Any

import orjson
from nats.js.errors import KeyNotFoundError

from devintel.fleet.cluster import EVENTS_STREAM, EXAMPLES_STREAM, LEASES, connect, open_cluster
from devintel.fleet.leases import Leases
from devintel.fleet.partition import pointer_key
from devintel.fleet.settings import FleetSettings
from devintel.fleet.trainer import CHECKPOINT, LEASE
from devintel.fleet.worker import CURRENT_MODELS, partition_lease


async def _json(cluster: Any, key: str) -> Any:
    try:
        entry = await cluster.state.get(key)
    except KeyNotFoundError:
        return None
    return orjson.loads(entry.value or b"null")


async def fleet_status(settings: FleetSettings) -> dict[str, Any]:
    """The fleet as the cluster knows it (a JSON-ready dict)."""
    nc = await connect(settings, "devintel-fleet-status")
    try:
        cluster = await open_cluster(settings, nc)
        leases = Leases(cluster.leases, "status", cluster.js, LEASES)
        partitions = []
        for k in range(settings.partitions):
            pointer = await _json(cluster, pointer_key(k)) or {}
            partitions.append(
                {"partition": k, "holder": await leases.holder_of(partition_lease(k)), **pointer.get("totals", {})}
            )
        streams = {}
        for name in (EVENTS_STREAM, EXAMPLES_STREAM):
            info = await cluster.js.stream_info(name)
            streams[name] = {
                "messages": info.state.messages,
                "bytes": info.state.bytes,
                "last_seq": info.state.last_seq,
            }
        return {
            "workers": sorted(key.split(".", 1)[1] for key in await leases.keys("worker.")),
            "partitions": partitions,
            "trainer": {"holder": await leases.holder_of(LEASE), "checkpoint": await _json(cluster, CHECKPOINT)},
            "models": await _json(cluster, CURRENT_MODELS),
            "streams": streams,
        }
    finally:
        await nc.close()


def format_status(report: dict[str, Any]) -> str:
    """The status as a text table (pure)."""
    lines = [f"workers: {', '.join(report['workers']) or 'none'}", ""]
    lines.append(f"{'partition':>9}  {'holder':<24} {'seq':>10} {'homes':>6} {'devices':>8} {'events':>10}  version")
    for p in report["partitions"]:
        lines.append(
            f"{p['partition']:>9}  {p.get('holder') or '-':<24} {p.get('seq', 0):>10} {p.get('homes', 0):>6} "
            f"{p.get('devices', 0):>8} {p.get('events', 0):>10}  {p.get('version', '-')}"
        )
    trainer = report["trainer"]
    checkpoint = trainer.get("checkpoint") or {}
    lines += [
        "",
        f"trainer: {trainer.get('holder') or 'none active'}; checkpoint at {checkpoint.get('seq', '-')}, "
        f"{checkpoint.get('learned', 0)} learned; {checkpoint.get('verdict', '')}",
        f"models: {(report.get('models') or {}).get('version', 'the snapshot (no fleet version yet)')}",
    ]
    for name, stream in report["streams"].items():
        lines.append(f"stream {name}: {stream['messages']} messages, {stream['bytes']} bytes")
    return "\n".join(lines) + "\n"
