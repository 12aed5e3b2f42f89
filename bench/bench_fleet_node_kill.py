"""kill -9 of a NATS node while homes publish QoS 1 through the surviving nodes' MQTT listeners: what the publisher
had acknowledged (PUBACK) against what the events stream holds, and where the streams' leaders sat.

    .venv/bin/python bench/bench_fleet_node_kill.py [--trials 6] [--homes 60] [--events 200] [--kill-after 1.5]

Each trial: a fresh three-node cluster (``tests/nats_cluster.py``, the configuration of ``devintel-fleet
server-config``), the fleet's streams made, no worker; ``--homes`` homes published over 4 connections to nodes 1
and 3, and node 2 killed ``--kill-after`` seconds in. Every 0.2 s it samples the PUBACKed count, the events
stream's message count and (from node 1's ``/jsz``) the leaders of the events stream, of the MQTT listener's
``$MQTT_msgs`` stream and of the meta group. The *gap* is the time after the kill during which messages were
PUBACKed but the stream's count did not move. Prints a Markdown table and writes ``bench/results/fleet_node_kill.md``
and ``.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import platform
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


async def _trial(cluster: NatsCluster, homes: int, events: int, kill_after: float, seed: int) -> dict[str, Any]:
    async with await nats.connect(cluster.urls, max_reconnect_attempts=-1, reconnect_time_wait=0.3) as nc:
        await open_cluster(FleetSettings(nats={"servers": cluster.urls}, partitions=cluster.partitions), nc)
        await asyncio.sleep(1.0)  # the streams' groups settle
        before = await placement(cluster)
        batch = simulated_homes(homes, events, 20.0, seed=seed)
        survivors = [cluster.mqtt_ports[0], cluster.mqtt_ports[2]]
        progress = Progress()
        samples: list[tuple[float, int, int | None, str, str]] = []
        started = time.monotonic()
        publishing = asyncio.create_task(publish_homes(batch, survivors, connections=4, progress=progress))
        killed_at: float | None = None
        while not publishing.done():
            now = time.monotonic() - started
            if killed_at is None and now >= kill_after:
                cluster.nodes[1].kill()
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
        "killed": "n2",
        "events_before": before.get(EVENTS_STREAM, "?"),
        "mqtt_msgs_before": before.get(MQTT_MSGS, "?"),
        "meta_before": before.get("meta", "?"),
        "events_after": after.get(EVENTS_STREAM, "?"),
        "mqtt_msgs_after": after.get(MQTT_MSGS, "?"),
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
    args = parser.parse_args()
    rows = []
    for trial in range(args.trials):
        with tempfile.TemporaryDirectory(prefix="devintel-nodekill-") as tmp:
            cluster = NatsCluster(Path(tmp), partitions=6)
            cluster.start()
            try:
                row = asyncio.run(_trial(cluster, args.homes, args.events, args.kill_after, 3000 + 100 * trial))
            finally:
                cluster.stop()
        rows.append(row)
        print(
            f"trial {trial + 1}: events leader before {row['events_before']}, $MQTT_msgs {row['mqtt_msgs_before']}, "
            f"meta {row['meta_before']}; PUBACKed {row['acked']}, stored {row['stored']}, lost {row['lost']}, "
            f"gap {row['gap_s']} s",
            flush=True,
        )
    header = (
        "| trial | events stream: leader [replicas] before | after | $MQTT_msgs before | meta before | PUBACKed "
        "| stored | lost | gap after the kill (s) | publishing (s) |\n"
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n"
    )
    body = "".join(
        f"| {i + 1} | {r['events_before']} | {r['events_after']} | {r['mqtt_msgs_before']} | {r['meta_before']} "
        f"| {r['acked']} | {r['stored']} | {r['lost']} | {r['gap_s']} | {r['publish_s']} |\n"
        for i, r in enumerate(rows)
    )
    text = (
        f"# kill -9 of NATS node n2 while homes publish QoS 1 through n1 and n3\n\n"
        f"`{' '.join(sys.argv)}` on {platform.node()} ({platform.machine()}), "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}\n\n{header}{body}"
    )
    print(text)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "fleet_node_kill.md").write_text(text, encoding="utf-8")
    (RESULTS / "fleet_node_kill.json").write_text(json.dumps(rows, indent=1), encoding="utf-8")


if __name__ == "__main__":
    main()
