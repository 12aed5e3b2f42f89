"""A real three-node nats-server cluster, fleet worker and trainer processes, and simulated homes (tests, bench).

:class:`NatsCluster` starts Debian's ``nats-server`` three times on free loopback ports (client, cluster, MQTT),
with JetStream stores in a temporary directory and the configuration of :func:`devintel.fleet.servers.server_config`,
and waits until JetStream has a meta leader. :class:`FleetProcess` runs ``devintel-fleet worker`` or ``trainer`` in
a subprocess (so a test can kill -9 it). :func:`simulated_homes` makes homes of the synthetic world with a capture
each, as the home's own broker would have seen it; :func:`publish_homes` sends them through the MQTT listeners.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiomqtt
import httpx
import nats
import orjson
from nats.aio.client import Client as NatsClient

from devintel.daemon.captures import synthetic_capture
from devintel.fleet.servers import NodeConfig, server_config
from devintel.generators import generate
from harness.broker import free_port

NATS_SERVER = shutil.which("nats-server") or "/usr/sbin/nats-server"


def nats_server_available() -> bool:
    """Whether a nats-server binary is installed."""
    return os.access(NATS_SERVER, os.X_OK)


@dataclass
class Node:
    """One nats-server process of the cluster."""

    config: NodeConfig
    path: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """Its client URL."""
        return f"nats://127.0.0.1:{self.config.client_port}"

    def alive(self) -> bool:
        """Whether its process runs."""
        return self.process is not None and self.process.poll() is None

    async def jsz(self) -> dict[str, Any]:
        """Its ``/jsz`` with every account's streams (the monitoring port): where each stream's leader and replicas
        sit, as this node sees it."""
        url = f"http://127.0.0.1:{self.config.http_port}/jsz?accounts=true&streams=true"
        async with httpx.AsyncClient(timeout=5.0) as http:
            answer = await http.get(url)
            answer.raise_for_status()
            return dict(answer.json())

    async def connection_names(self) -> set[str]:
        """The names of the client connections this node serves now (``/connz``)."""
        async with httpx.AsyncClient(timeout=5.0) as http:
            answer = await http.get(f"http://127.0.0.1:{self.config.http_port}/connz?limit=10000")
            answer.raise_for_status()
            return {str(c.get("name", "")) for c in answer.json().get("connections") or []}

    def start(self) -> None:
        """Start (or restart) the server."""
        conf = self.path / f"{self.config.name}.conf"
        conf.write_text(server_config(self.config))
        log = (self.path / f"{self.config.name}.log").open("ab")
        self.process = subprocess.Popen([NATS_SERVER, "-c", str(conf)], stdout=log, stderr=log)

    def kill(self) -> None:
        """kill -9."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> None:
        """SIGTERM, then kill after 10 s."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()


def stream_placement(jsz: Mapping[str, Any]) -> dict[str, str]:
    """``stream name -> "leader [replicas]"`` from a node's ``/jsz`` (the meta group as ``meta``)."""
    placement = {"meta": str((jsz.get("meta_cluster") or {}).get("leader", "?"))}
    for account in jsz.get("account_details") or []:
        for stream in account.get("stream_detail") or []:
            cluster = stream.get("cluster") or {}
            replicas = ",".join(sorted(str(r.get("name")) for r in cluster.get("replicas") or []))
            placement[str(stream.get("name"))] = f"{cluster.get('leader') or '-'} [{replicas}]"
    return placement


async def placement(cluster: NatsCluster) -> dict[str, str]:
    """The streams' leaders and replicas as the first running node reports them (empty when none answers)."""
    for node in cluster.nodes:
        if node.alive():
            with contextlib.suppress(httpx.HTTPError):
                return stream_placement(await node.jsz())
    return {}


@dataclass
class NatsCluster:
    """Three nats-server nodes on loopback (see the module docstring)."""

    root: Path
    partitions: int = 6
    nodes: list[Node] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._configure()

    def _configure(self) -> None:
        """Free ports for the three nodes (chosen anew: a port picked free may be taken before the server binds)."""
        self.nodes.clear()
        ports = [(free_port(), free_port(), free_port(), free_port()) for _ in range(3)]
        routes = tuple(f"127.0.0.1:{cluster}" for _, cluster, _, _ in ports)
        for i, (client, cluster, mqtt, http) in enumerate(ports, start=1):
            store = self.root / f"n{i}"
            store.mkdir(parents=True, exist_ok=True)
            config = NodeConfig(
                name=f"n{i}",
                host="127.0.0.1",
                client_port=client,
                cluster_port=cluster,
                mqtt_port=mqtt,
                store_dir=str(store),
                routes=routes,
                partitions=self.partitions,
                max_file_store="2GB",
                http_port=http,
            )
            self.nodes.append(Node(config, self.root))

    @property
    def urls(self) -> list[str]:
        """Every node's client URL."""
        return [node.url for node in self.nodes]

    @property
    def mqtt_ports(self) -> list[int]:
        """Every node's MQTT port."""
        return [node.config.mqtt_port for node in self.nodes]

    def start(self, timeout: float = 60.0, attempts: int = 3) -> None:
        """Start the three nodes and wait for JetStream's meta leader and the MQTT listeners; when a node exits at
        start (a port taken meanwhile), start all three again on other ports."""
        for attempt in range(attempts):
            for node in self.nodes:
                node.start()
            time.sleep(0.5)
            if all(node.process is not None and node.process.poll() is None for node in self.nodes):
                asyncio.run(self.wait_ready(timeout))
                if all(node.process is not None and node.process.poll() is None for node in self.nodes):
                    return
            self.stop()
            if attempt + 1 < attempts:
                self._configure()
        raise RuntimeError(f"nats-server did not start three nodes in {attempts} attempts (see {self.root})")

    async def wait_ready(self, timeout: float = 30.0) -> None:
        """Until a JetStream request answers through every running node."""
        deadline = time.monotonic() + timeout
        for node in self.nodes:
            if node.process is None or node.process.poll() is not None:
                continue
            while True:
                try:
                    nc = await nats.connect(node.url, connect_timeout=1, max_reconnect_attempts=0)
                    try:
                        await nc.jetstream(timeout=2).account_info()
                    finally:
                        await nc.close()
                    break
                except Exception:
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"nats-server {node.config.name} not ready in {timeout} s") from None
                    await asyncio.sleep(0.3)
        for node in self.nodes:  # the MQTT listener makes its own streams on the first connection
            if node.process is None or node.process.poll() is not None:
                continue
            while True:
                try:
                    async with aiomqtt.Client("127.0.0.1", node.config.mqtt_port, timeout=5, identifier="ready"):
                        break
                except aiomqtt.MqttError:
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"MQTT of {node.config.name} not ready in {timeout} s") from None
                    await asyncio.sleep(0.3)

    def stop(self) -> None:
        """Stop every node."""
        for node in self.nodes:
            node.stop()

    def fleet_env(self, worker_id: str, model_dir: Path, **extra: str) -> dict[str, str]:
        """The environment of a fleet process on this cluster."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("DEVINTEL_")}
        env.update(
            {
                "DEVINTEL_FLEET_NATS__SERVERS": orjson.dumps(self.urls).decode(),
                "DEVINTEL_FLEET_WORKER_ID": worker_id,
                "DEVINTEL_FLEET_PARTITIONS": str(self.partitions),
                "DEVINTEL_FLEET_LEASE_TTL_S": "3",
                "DEVINTEL_FLEET_SNAPSHOT_INTERVAL_S": "1",
                "DEVINTEL_FLEET_MODELS_POLL_S": "1",
                "DEVINTEL_MODEL_DIR": str(model_dir),
            }
        )
        env.update(extra)
        return env


@dataclass
class FleetProcess:
    """``devintel-fleet worker`` or ``trainer`` in a subprocess."""

    command: str
    env: Mapping[str, str]
    log: Path
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> FleetProcess:
        """Start it."""
        out = self.log.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "devintel.fleet.cli", self.command], env=dict(self.env), stdout=out, stderr=out
        )
        return self

    def kill(self) -> None:
        """kill -9."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM and wait for the exit (kill -9 past ``timeout``); the exit code."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        return self.process.returncode

    def alive(self) -> bool:
        """Whether it runs."""
        return self.process is not None and self.process.poll() is None


@dataclass(frozen=True)
class Home:
    """A simulated home: its id and its capture (topics of its own broker, in order)."""

    home_id: str
    capture: list[dict[str, object]]

    def events_per_topic(self) -> dict[str, int]:
        """Telemetry messages per topic, as sent."""
        counts: dict[str, int] = {}
        for line in self.capture:
            topic = str(line["topic"])
            if "/events/" in topic:
                counts[topic] = counts.get(topic, 0) + 1
        return counts


def simulated_homes(count: int, samples: int, days: float, seed: int = 100, end: float | None = None) -> list[Home]:
    """``count`` homes of the synthetic world (``samples`` events each over ``days``, a seed each), shifted so that
    the last ends at ``end`` (default now), each with its capture (telemetry and failure feedback)."""
    end = time.time() if end is None else end
    homes = []
    for i in range(count):
        frame = generate(samples=samples, days=days, seed=seed + i, start=end - days * 86_400.0)
        capture = synthetic_capture(frame)
        homes.append(Home(f"h{seed + i:04d}", capture))
    return homes


def payload_bytes(line: Mapping[str, object]) -> bytes:
    """A capture line's payload as the bytes sent."""
    payload = line["payload"]
    return payload.encode() if isinstance(payload, str) else orjson.dumps(payload)


@dataclass
class Progress:
    """How many messages a :func:`publish_homes` has had acknowledged (PUBACK) so far."""

    acked: int = 0


async def publish_homes(
    homes: Sequence[Home],
    mqtt_ports: Sequence[int],
    connections: int = 8,
    extra: Sequence[tuple[str, bytes]] = (),
    progress: Progress | None = None,
) -> int:
    """Publish every home's capture under ``homes/<home_id>/`` through the MQTT listeners (QoS 1, each home in its
    order over one connection; ``connections`` connections spread over the nodes); then ``extra`` (topic,
    payload) messages. Returns the messages sent (each acknowledged by the server: a QoS 1 publish returns on its
    PUBACK); ``progress`` counts them as they go."""
    sent = 0
    progress = Progress() if progress is None else progress

    async def one(index: int, share: Sequence[Home]) -> None:
        # As a bridge does: a message not acknowledged is sent again after reconnecting (to the next node), so a
        # node that dies mid-stream may make a duplicate (at least once; the handler drops repeated telemetry).
        nonlocal sent
        lines = [
            (f"homes/{home.home_id}/{line['topic']}", payload_bytes(line)) for home in share for line in home.capture
        ]
        position, attempt = 0, 0
        while position < len(lines):
            port = mqtt_ports[(index + attempt) % len(mqtt_ports)]
            try:
                async with aiomqtt.Client(
                    "127.0.0.1", port, identifier=f"home-bridge-{index}-{os.getpid()}", timeout=5
                ) as client:
                    while position < len(lines):
                        topic, payload = lines[position]
                        await client.publish(topic, payload, qos=1)
                        position += 1
                        sent += 1
                        progress.acked += 1
            except aiomqtt.MqttError:
                attempt += 1
                if attempt > 20:
                    raise
                await asyncio.sleep(0.5)

    shares = [homes[i::connections] for i in range(connections)]
    async with asyncio.TaskGroup() as group:
        for index, share in enumerate(shares):
            if share:
                group.create_task(one(index, share))
    if extra:
        async with aiomqtt.Client("127.0.0.1", mqtt_ports[0], identifier=f"home-extra-{os.getpid()}") as client:
            for topic, payload in extra:
                await client.publish(topic, payload, qos=1)
                sent += 1
                progress.acked += 1
    return sent


async def settled_messages(nc: NatsClient, stream: str, hold_s: float = 3.0, timeout: float = 120.0) -> int:
    """The stream's message count once it has held still for ``hold_s`` (a node was killed: what the stream got
    is only known once it stops growing)."""
    last, still, deadline = -1, time.monotonic(), time.monotonic() + timeout
    while time.monotonic() - still < hold_s:
        if time.monotonic() > deadline:
            raise TimeoutError(f"stream {stream} did not settle in {timeout} s (last {last} messages)")
        try:
            count = int((await nc.jetstream(timeout=2.0).stream_info(stream)).state.messages)
        except Exception:  # no leader for the moment: look again
            count = last
        if count != last:
            last, still = count, time.monotonic()
        await asyncio.sleep(0.3)
    return last


@contextlib.asynccontextmanager
async def connected(cluster: NatsCluster) -> AsyncIterator[NatsClient]:
    """A NATS connection to the cluster (any node)."""
    nc = await nats.connect(cluster.urls, max_reconnect_attempts=-1, reconnect_time_wait=0.5)
    try:
        yield nc
    finally:
        await nc.close()
