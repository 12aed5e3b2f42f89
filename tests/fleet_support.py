"""What the fleet tests share: the cluster fixture, the output collector, waiting for the fleet to finish, the
durable state of every partition, and the single-process reference (``devintel replay --no-learn``)."""

from __future__ import annotations

import asyncio
import time
from collections import Counter, defaultdict
from collections.abc import Iterator, Sequence
from pathlib import Path

import httpx
import nats
import orjson
import pytest
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg

from devintel.daemon import cli
from devintel.fleet.cluster import EVENTS_STREAM, OBJECTS, open_cluster
from devintel.fleet.codec import CorruptBlobError
from devintel.fleet.modelset import ModelSet
from devintel.fleet.partition import SEQ_HEADER, pointer_key
from devintel.fleet.reads import read_object
from devintel.fleet.settings import FleetSettings
from devintel.fleet.state import PartitionState, decode_state
from devintel.fleet.subjects import HOMES
from devintel.ingest.outbound import Outgoing
from nats_cluster import Home, NatsCluster, nats_server_available, placement, stream_placement

#: The marks of a fleet test module (``pytestmark = FLEET_TESTS``): run by scripts/check-fleet, skipped without
#: nats-server.
FLEET_TESTS = [
    pytest.mark.fleet,
    pytest.mark.skipif(not nats_server_available(), reason="nats-server is not installed"),
]

Record = tuple[str, object]


def fleet_cluster(tmp_path: Path) -> Iterator[NatsCluster]:
    """A fresh three-node cluster for one test, its streams and buckets made (a test module's fixture)."""
    nodes = NatsCluster(tmp_path / "nats", partitions=6)
    nodes.start()
    try:
        asyncio.run(init_cluster(nodes))
        yield nodes
    finally:
        nodes.stop()


def fleet_settings(cluster: NatsCluster, **overrides: object) -> FleetSettings:
    """Fleet settings for a process of the test (the same as the subprocesses' environment)."""
    values: dict[str, object] = {
        "nats": {"servers": cluster.urls},
        "partitions": cluster.partitions,
        "lease_ttl_s": 3.0,
        "snapshot_interval_s": 1.0,
        "models_poll_s": 1.0,
    }
    values.update(overrides)
    return FleetSettings(**values)  # type: ignore[arg-type]


async def init_cluster(cluster: NatsCluster) -> None:
    """Make the streams, buckets and object store (as the first worker would) before homes publish."""
    nc = await nats.connect(cluster.urls)
    try:
        await open_cluster(fleet_settings(cluster), nc)
    finally:
        await nc.close()


class Collector:
    """Every output message of the fleet (``homes.>`` on NATS), by home, with its ``Devintel-Seq`` header."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, bytes, str]] = []

    async def on_message(self, msg: Msg) -> None:
        """One output."""
        seq = (msg.headers or {}).get(SEQ_HEADER, "")
        self.messages.append((msg.subject, msg.data, seq))

    def by_home(self) -> tuple[dict[str, list[Record]], int]:
        """Per home, its outputs in order with the repeats of a takeover removed (same sequence and index), as
        (topic of the home's broker, payload as replay writes it); and how many repeats there were."""
        seen: dict[str, dict[tuple[int, int], Record]] = defaultdict(dict)
        repeats = 0
        for subject, data, seq in self.messages:
            tokens = subject.split(".")
            assert tokens[0] == HOMES, subject
            home, topic = tokens[1], "/".join(tokens[2:])
            stream_seq, index = (int(part) for part in seq.split("."))
            record = Outgoing(topic, data).as_record()
            key = (stream_seq, index)
            if key in seen[home]:
                repeats += 1
                again = (record["topic"], record["payload"])
                assert seen[home][key] == again, f"{home} {seq}: a repeat {again} differs from {seen[home][key]}"
                continue
            seen[home][key] = (str(record["topic"]), record["payload"])
        return {home: [records[k] for k in sorted(records)] for home, records in seen.items()}, repeats


async def wait_all_acked(nc: NatsClient, partitions: int, sent: int, timeout: float = 180.0) -> float:
    """Until the events stream holds ``sent`` messages and every partition's consumer has acknowledged all it
    holds (so the state that includes them is durable); returns the time it took."""
    js = nc.jetstream()
    started = time.monotonic()
    seen = "nothing read yet"
    while True:
        try:
            info = await js.stream_info(EVENTS_STREAM)
            done = info.state.messages >= sent
            states = [f"stream {info.state.messages} of {sent} messages"]
            for k in range(partitions):
                consumer = await js.consumer_info(EVENTS_STREAM, f"partition-{k}")
                done = done and consumer.num_pending == 0 and consumer.num_ack_pending == 0
                states.append(f"partition-{k} pending {consumer.num_pending} unacked {consumer.num_ack_pending}")
            seen = "; ".join(states)
        except Exception as error:  # a node down, a leader being elected: look again
            done = False
            seen = f"{type(error).__name__}: {error}"
        if done:
            return time.monotonic() - started
        if time.monotonic() - started > timeout:
            raise TimeoutError(f"the fleet did not finish within {timeout} s; last seen: {seen}")
        await asyncio.sleep(0.5)


async def partition_states(nc: NatsClient, partitions: int, models: ModelSet) -> list[PartitionState]:
    """The durable state of every partition (its latest snapshot)."""
    js = nc.jetstream()
    state_kv = await js.key_value("devintel-state")
    objects = await js.object_store("devintel")
    states = []
    for k in range(partitions):
        try:
            entry = await state_kv.get(pointer_key(k))
        except nats.js.errors.KeyNotFoundError:
            continue
        pointer = orjson.loads(entry.value or b"")
        for attempt in range(10):  # a node was killed: the object store's leader may be moving
            try:
                blob = await read_object(js, objects, OBJECTS, str(pointer["object"]))
                break
            except (nats.errors.TimeoutError, TimeoutError):
                if attempt == 9:
                    raise
                await asyncio.sleep(1.0)
        try:
            states.append(decode_state(blob, models))
        except CorruptBlobError:
            raise AssertionError(f"partition {k}: its durable snapshot does not read") from None
    return states


def handled_per_home(states: Sequence[PartitionState]) -> dict[str, Counter[str]]:
    """Per home, per topic: the telemetry events the fleet's durable state counts."""
    out: dict[str, Counter[str]] = {}
    for state in states:
        for home, counts in state.handled.items():
            assert home not in out, f"home {home} is in two partitions"
            out[home] = counts
    return out


def replay_reference(home: Home, work: Path, monkeypatch: pytest.MonkeyPatch, model_dir: Path) -> list[Record]:
    """What ``devintel replay --no-learn`` of the home's capture writes (in this process: the command's code)."""
    capture = work / f"{home.home_id}.jsonl"
    out = work / f"{home.home_id}.out.jsonl"
    capture.write_bytes(b"".join(orjson.dumps(line) + b"\n" for line in home.capture))
    monkeypatch.setenv("DEVINTEL_MODEL_DIR", str(model_dir))
    assert cli.main(["replay", str(capture), "--out", str(out), "--no-learn"]) == 0
    records = [orjson.loads(line) for line in out.read_bytes().splitlines() if line.strip()]
    return [(str(r["topic"]), r["payload"]) for r in records]


def expected_events(home: Home, model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """Per topic, the telemetry events a single daemon counts for the home's capture (what was sent, less what
    its validation rejects or finds a duplicate)."""
    from devintel.daemon.from_settings import build_handler
    from devintel.daemon.settings import load_settings
    from devintel.models.snapshots import SnapshotStore
    from nats_cluster import payload_bytes

    monkeypatch.setenv("DEVINTEL_MODEL_DIR", str(model_dir))
    settings = load_settings()
    handler = build_handler(settings, SnapshotStore(model_dir).load())
    handler.live.learner.learn = False
    counts: Counter[str] = Counter()
    for line in home.capture:
        before = handler.counters.events
        handler.handle(str(line["topic"]), payload_bytes(line), float(line["ts"]))  # type: ignore[arg-type]
        if handler.counters.events > before:
            counts[str(line["topic"])] += 1
    return counts


async def events_leader(cluster: NatsCluster) -> int:
    """The index of the node that leads the events stream, once every running node's ``/jsz`` names the same
    running node (so the new leader's subscription is known to them all), waiting for that."""
    names = [node.config.name for node in cluster.nodes]
    deadline = time.monotonic() + 30.0
    while True:
        seen = set()
        for node in cluster.nodes:
            if node.alive():
                try:
                    seen.add(stream_placement(await node.jsz()).get(EVENTS_STREAM, "-").split(" ")[0])
                except httpx.HTTPError:
                    seen.add("?")
        leader = seen.pop() if len(seen) == 1 else "-"
        if leader in names and cluster.nodes[names.index(leader)].alive():
            return names.index(leader)
        assert time.monotonic() < deadline, f"the events stream has no leader: {await placement(cluster)}"
        await asyncio.sleep(0.2)
