"""A NATS node stopped (kill -9, or lame duck mode and then kill -9) while homes publish QoS 1 through the two
other nodes' MQTT listeners: what the publisher had acknowledged (PUBACK) against what the events stream holds, and
where the streams' leaders sat.

    .venv/bin/python bench/bench_fleet_node_kill.py [--trials 6] [--homes 60] [--events 200] [--kill-after 1.5]
        [--victim n2|leader] [--stop kill|ldm]

Each trial: a fresh three-node cluster (``tests/nats_cluster.py``, the configuration of ``devintel-fleet
server-config``), the fleet's streams made, no worker; ``--homes`` homes published over 4 connections to the two
other nodes, and the victim (node 2, or the node that leads the events stream) stopped ``--kill-after`` seconds in:
kill -9, or (``ldm``) SIGUSR2 (lame duck mode: the node hands its Raft leaderships over) and kill -9 once it leads
no stream. Every 0.2 s it samples the PUBACKed count, the events stream's message count and (from a live node's
``/jsz``) the leaders of the events stream, of the MQTT listener's ``$MQTT_msgs`` stream and of the meta group. The
*gap* is the time after the kill during which messages were PUBACKed but the stream's count did not move. Prints a
Markdown table and writes ``bench/results/fleet_node_kill[_<victim>_<stop>].md`` and ``.json``."""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import platform
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

import nats
from nats.aio.client import Client as NatsClient

from devintel.fleet.cluster import EVENTS_STREAM, open_cluster
from devintel.fleet.settings import FleetSettings
from nats_cluster import NatsCluster, Progress, placement, publish_homes, settled_messages, simulated_homes

RESULTS = Path(__file__).resolve().parent / "results"
MQTT_MSGS = "$MQTT_msgs"


async def _stored(nc: NatsClient) -> int | None:
    try:
        info = await nc.jetstream(timeout=1.0).stream_info(EVENTS_STREAM)
    except Exception:  # no leader for the moment
        return None
    return int(info.state.messages)


def _leader(where: dict[str, str], stream: str) -> str:
    return where.get(stream, "?").split(" ")[0]


async def _stop(cluster: NatsCluster, victim: int, how: str) -> None:
    """kill -9 the victim; with ``ldm``, lame duck mode first (SIGUSR2: the node hands its Raft leaderships to
    others), and kill -9 once no stream is led by it any more (at most 10 s)."""
    node = cluster.nodes[victim]
    if how == "ldm" and node.process is not None:
        node.process.send_signal(signal.SIGUSR2)
        deadline = time.monotonic() + 10.0
        while time.monotonic() < deadline:
            where = await placement(cluster)
            if where and all(not v.startswith(node.config.name + " ") for k, v in where.items() if k != "meta"):
                break
            await asyncio.sleep(0.1)
    node.kill()


async def _trial(
    cluster: NatsCluster, homes: int, events: int, kill_after: float, seed: int, victim_of: str, how: str
) -> dict[str, Any]:
    async with await nats.connect(cluster.urls, max_reconnect_attempts=-1, reconnect_time_wait=0.3) as nc:
        await open_cluster(FleetSettings(nats={"servers": cluster.urls}, partitions=cluster.partitions), nc)
        await asyncio.sleep(1.0)  # the streams' groups settle
        before = await placement(cluster)
        names = [node.config.name for node in cluster.nodes]
        victim = names.index(_leader(before, EVENTS_STREAM)) if victim_of == "leader" else 1
        batch = simulated_homes(homes, events, 20.0, seed=seed)
        survivors = [node.config.mqtt_port for i, node in enumerate(cluster.nodes) if i != victim]
        progress = Progress()
        samples: list[tuple[float, int, int | None, str, str]] = []
        started = time.monotonic()
        publishing = asyncio.create_task(publish_homes(batch, survivors, connections=4, progress=progress))
        killed_at: float | None = None
        while not publishing.done():
            now = time.monotonic() - started
            if killed_at is None and now >= kill_after:
                await _stop(cluster, victim, how)
                killed_at = now
            where = await placement(cluster)
            stored = await _stored(nc)
            samples.append((now, progress.acked, stored, where.get(EVENTS_STREAM, "?"), where.get(MQTT_MSGS, "?")))
            await asyncio.sleep(0.2)
        acked = await publishing
        last = await settled_messages(nc, EVENTS_STREAM)
        after = await placement(cluster)
    gap = 0.0
    for (t0, a0, s0, _, _), (t1, a1, s1, _, _) in itertools.pairwise(samples):
        if killed_at is not None and t0 >= killed_at and a1 > a0 and (s0 is None or s1 is None or s1 <= s0):
            gap += t1 - t0
    return {
        "stopped": f"{names[victim]} ({how})",
        "events_before": _leader(before, EVENTS_STREAM),
        "mqtt_msgs_before": _leader(before, MQTT_MSGS),
        "meta_before": before.get("meta", "?"),
        "events_after": _leader(after, EVENTS_STREAM),
        "mqtt_msgs_after": _leader(after, MQTT_MSGS),
        "acked": acked,
        "stored": last,
        "lost": max(acked - last, 0),
        "gap_s": round(gap, 1),
        "publish_s": round(samples[-1][0] if samples else 0.0, 1),
        "samples": samples,
    }


def main() -> None:
    """Run the trials and write the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=6)
    parser.add_argument("--homes", type=int, default=60)
    parser.add_argument("--events", type=int, default=200)
    parser.add_argument("--kill-after", type=float, default=1.5)
    parser.add_argument("--victim", choices=("n2", "leader"), default="n2", help="n2, or the events stream's leader")
    parser.add_argument("--stop", choices=("kill", "ldm"), default="kill", help="kill -9, or lame duck mode first")
    args = parser.parse_args()
    rows = []
    for trial in range(args.trials):
        with tempfile.TemporaryDirectory(prefix="devintel-nodekill-") as tmp:
            cluster = NatsCluster(Path(tmp), partitions=6)
            cluster.start()
            try:
                seed = 3000 + 100 * trial
                row = asyncio.run(
                    _trial(cluster, args.homes, args.events, args.kill_after, seed, args.victim, args.stop)
                )
            finally:
                cluster.stop()
        rows.append(row)
        print(
            f"trial {trial + 1}: {row['stopped']}; events leader before {row['events_before']}, "
            f"$MQTT_msgs {row['mqtt_msgs_before']}, meta {row['meta_before']}; PUBACKed {row['acked']}, "
            f"stored {row['stored']}, lost {row['lost']}, gap {row['gap_s']} s",
            flush=True,
        )
    header = (
        "| trial | stopped | events stream's leader before | after | $MQTT_msgs' leader before | meta leader before "
        "| PUBACKed | stored | lost | gap after the kill (s) | publishing (s) |\n"
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n"
    )
    body = "".join(
        f"| {i + 1} | {r['stopped']} | {r['events_before']} | {r['events_after']} | {r['mqtt_msgs_before']} "
        f"| {r['meta_before']} | {r['acked']} | {r['stored']} | {r['lost']} | {r['gap_s']} | {r['publish_s']} |\n"
        for i, r in enumerate(rows)
    )
    text = (
        f"# A NATS node stopped while homes publish QoS 1 through the two others\n\n"
        f"`{' '.join(sys.argv)}` on {platform.node()} ({platform.machine()}), "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}\n\n{header}{body}"
    )
    print(text)
    RESULTS.mkdir(exist_ok=True)
    name = "fleet_node_kill" + ("" if (args.victim, args.stop) == ("n2", "kill") else f"_{args.victim}_{args.stop}")
    (RESULTS / f"{name}.md").write_text(text, encoding="utf-8")
    (RESULTS / f"{name}.json").write_text(json.dumps(rows, indent=1), encoding="utf-8")


if __name__ == "__main__":
    main()
