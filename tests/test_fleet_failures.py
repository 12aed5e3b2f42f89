"""Every failure path of a fleet worker, on a real cluster, with the worker in this process: bad input is counted,
logged rate-limited and dropped (the worker goes on); a lost lease stops the partition without a snapshot, a stale
holder's snapshot is refused, and the partition is claimed again once the lease is free; a snapshot that does not
read is counted and logged and the partition rebuilt from the stream, every event still counted once; deliveries
that never reach the runner are delivered again."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path

import nats
import orjson
import pytest
from nats.js.errors import ObjectNotFoundError

from devintel.daemon.settings import load_settings
from devintel.fleet.cluster import EVENTS_STREAM, OBJECTS, STATE, open_cluster
from devintel.fleet.homes import HomeFactory
from devintel.fleet.leases import LeaseLostError, Leases
from devintel.fleet.partition import PartitionRunner, pointer_key
from devintel.fleet.reads import live_keys, read_object
from devintel.fleet.settings import FleetSettings
from devintel.fleet.status import fleet_status, format_status
from devintel.fleet.worker import Worker
from devintel.models.snapshots import SnapshotStore
from fleet_support import (
    FLEET_TESTS,
    events_leader,
    expected_events,
    fleet_cluster,
    fleet_settings,
    handled_per_home,
    partition_states,
    wait_all_acked,
)
from nats_cluster import Home, NatsCluster, publish_homes, simulated_homes

pytestmark = FLEET_TESTS


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[NatsCluster]:
    """A fresh three-node cluster."""
    yield from fleet_cluster(tmp_path)


@asynccontextmanager
async def running_worker(settings: FleetSettings, model_dir: Path) -> AsyncIterator[Worker]:
    """A worker in this event loop, stopped (bounded) at the end."""
    stop = asyncio.Event()
    worker = Worker(settings, load_settings(), SnapshotStore(model_dir).load(), stop)
    task = asyncio.create_task(worker.run(), name="worker")
    try:
        while len(worker.runners) < settings.partitions or any(r.resumed_at is None for r in worker.runners.values()):
            assert not task.done(), "the worker ended"
            await asyncio.sleep(0.1)
        yield worker
    finally:
        stop.set()
        assert await asyncio.wait_for(task, 30) == 0


def check_counts(
    handled: Mapping[str, Counter[str]], homes: list[Home], model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every home's durable counts equal a single daemon's."""
    for home in homes:
        assert dict(handled[home.home_id]) == dict(expected_events(home, model_dir, monkeypatch)), home.home_id


def test_bad_input_is_counted_logged_rate_limited_and_dropped(
    cluster: NatsCluster,
    small_snapshot_master: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setenv("DEVINTEL_MODEL_DIR", str(small_snapshot_master))
    homes = simulated_homes(6, 100, 10.0, seed=6000)
    bad_mqtt = [
        ("homes/hbad/devintel/events/dev1", b"not json"),
        ("homes/hbad/devintel/events/dev1", b'{"ts": "yesterday"}'),
        ("homes/hbad/devintel/events/dev1", b'{"device_type": "motion_sensor", "battery_level": 7000}'),
        ("homes/hbad/devintel/events/dev1", b"x" * 300_000),
        ("homes/hbad/devintel/feedback/dev1", b'{"event": "exploded"}'),
        ("homes/hbad/zigbee2mqtt/bridge/devices", b"[{]"),
    ]
    settings = fleet_settings(cluster)

    async def scenario() -> None:
        caplog.set_level(logging.WARNING)
        async with running_worker(settings, small_snapshot_master) as worker, await nats.connect(cluster.urls) as nc:
            sent = await publish_homes(homes, cluster.mqtt_ports, extra=bad_mqtt)
            for _ in range(5):  # straight onto a partition: subjects no mapping makes
                await nc.jetstream().publish("devintel.in.0.garbage", b"{}")
                await nc.jetstream().publish("devintel.in.0.homes.bad$id.devintel.events.x", b"{}")
            await wait_all_acked(nc, settings.partitions, sent + 10)
            assert all(not task.done() for task in worker.tasks.values()), "a partition runner ended"
            states = await partition_states(nc, settings.partitions, worker.models)
            report = await fleet_status(settings)  # what `devintel-fleet status` prints
            assert report["workers"] == [settings.worker_id]
            assert {p["holder"] for p in report["partitions"]} == {settings.worker_id}
            assert sum(p.get("events", 0) for p in report["partitions"]) == sum(s.totals()["events"] for s in states)
            assert "stream DEVINTEL_EVENTS" in format_status(report)
        totals = [state.totals() for state in states]
        rejected = sum(sum(t["rejected"].values()) for t in totals)
        assert rejected >= 5, totals
        assert sum(t["dropped_values"].get("out_of_range", 0) for t in totals) == 1, "the battery of 7000 %"
        assert sum(t["bad"].get("subject", 0) for t in totals) == 10
        assert sum(t["errors"] for t in totals) == 0
        subject_lines = [r for r in caplog.records if "partition 0: dropped a message" in r.getMessage()]
        assert len(subject_lines) == 1, "ten bad subjects, one log line (rate-limited)"
        check_counts(handled_per_home(states), homes, small_snapshot_master, monkeypatch)

    asyncio.run(scenario())


def test_a_lost_lease_stops_the_partition_and_a_stale_holder_cannot_snapshot(
    cluster: NatsCluster, small_snapshot_master: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DEVINTEL_MODEL_DIR", str(small_snapshot_master))
    homes = simulated_homes(12, 150, 10.0, seed=7000)
    settings = fleet_settings(cluster)

    async def scenario() -> None:
        async with running_worker(settings, small_snapshot_master) as worker, await nats.connect(cluster.urls) as nc:
            js = nc.jetstream()
            leases = await js.key_value("devintel-leases")
            await leases.put("partition.2", b"thief")  # someone else holds it now
            for _ in range(50):
                if 2 not in worker.runners:
                    break
                await asyncio.sleep(0.1)
            assert 2 not in worker.runners, "the worker kept a partition whose lease it lost"
            sent = await publish_homes(homes, cluster.mqtt_ports)  # the thief never renews: its lease expires
            await wait_all_acked(nc, settings.partitions, sent, timeout=60)
            assert 2 in worker.runners, "the partition was not claimed again once its lease was free"
            states = await partition_states(nc, settings.partitions, worker.models)
            check_counts(handled_per_home(states), homes, small_snapshot_master, monkeypatch)

            # Two holders of one partition: the one whose pointer revision is stale cannot write its snapshot.
            cluster_io = await open_cluster(settings, nc)
            factory = HomeFactory(load_settings(), SnapshotStore(small_snapshot_master).load(), 0.2)
            stale = PartitionRunner(5, cluster_io, settings, factory, worker.current_models)
            stale.state = await stale.load()
            fresh = PartitionRunner(5, cluster_io, settings, factory, worker.current_models)
            fresh.state = await fresh.load()
            fresh.state.seq += 1  # pretend it handled a message: its snapshot moves the pointer
            await fresh.commit()
            stale.state.seq += 1
            with pytest.raises(LeaseLostError):
                await stale.commit()
            assert stale.lost

    asyncio.run(scenario())


def test_deliveries_that_never_arrive_are_delivered_again(
    cluster: NatsCluster,
    small_snapshot_master: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """What a pull consumer sent while the runner's connection was down never arrives (as in a node kill): here a
    thief bound to each partition's consumer takes its first deliveries and never acknowledges them. Each runner
    sees its deliveries' numbers jump, starts its consumer again after its state's last message, and counts every
    event once. Without that, the stolen events were never in the state (the later acknowledgements cover them).
    Partition 0's first restart times out (as on a loaded CI machine, where the cluster did not answer in time): its
    runner fails, the worker claims it again, and the successor resumes from the snapshot."""
    monkeypatch.setenv("DEVINTEL_MODEL_DIR", str(small_snapshot_master))
    homes = simulated_homes(12, 150, 10.0, seed=8200)
    settings = fleet_settings(cluster)
    make_consumer = PartitionRunner._consumer

    async def first_restart_of_0_times_out(runner: PartitionRunner, start: int) -> object:
        if runner.partition == 0 and runner.consumer_restarts == 1 and not timed_out:
            timed_out.append(start)
            raise nats.errors.TimeoutError
        return await make_consumer(runner, start)

    timed_out: list[int] = []
    monkeypatch.setattr(PartitionRunner, "_consumer", first_restart_of_0_times_out)

    async def scenario() -> None:
        caplog.set_level(logging.WARNING)
        async with running_worker(settings, small_snapshot_master) as worker, await nats.connect(cluster.urls) as nc:
            js = nc.jetstream()
            thieves = [
                await js.pull_subscribe_bind(durable=f"partition-{k}", stream=EVENTS_STREAM)
                for k in range(settings.partitions)
            ]
            steals = [asyncio.create_task(thief.fetch(3, timeout=20.0)) for thief in thieves]
            await asyncio.sleep(0.2)  # their pull requests wait on the server before the runners' next ones
            sent = await publish_homes(homes, cluster.mqtt_ports)
            stolen = [len(messages) for messages in await asyncio.gather(*steals)]
            await wait_all_acked(nc, settings.partitions, sent)
            restarts = {k: worker.consumer_restarts(k) for k in range(settings.partitions)}
            states = await partition_states(nc, settings.partitions, worker.models)
        assert sum(stolen) > 0, "the thieves took nothing"
        check_counts(handled_per_home(states), homes, small_snapshot_master, monkeypatch)
        assert all(restarts[k] for k, n in enumerate(stolen) if n), (stolen, restarts)
        assert any("was due; consuming again after stream sequence" in r.getMessage() for r in caplog.records)
        if stolen[0]:
            assert timed_out, "partition 0 never restarted its consumer"
            assert any("partition 0: the runner failed" in r.getMessage() for r in caplog.records)

    asyncio.run(scenario())


def test_a_worker_whose_node_dies_consumes_again_after_its_state(
    cluster: NatsCluster,
    small_snapshot_master: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """kill -9 of the node a worker is connected to, between two bursts of homes: the worker reconnects to another
    node, its runners make their consumers again after their states' last messages (what the old consumer sent to
    the dead connection is gone, and nothing may come after it to show the gap), and every event counts once."""
    monkeypatch.setenv("DEVINTEL_MODEL_DIR", str(small_snapshot_master))
    homes = simulated_homes(12, 150, 10.0, seed=8300)
    settings = fleet_settings(cluster)

    async def scenario() -> None:
        caplog.set_level(logging.INFO)
        async with running_worker(settings, small_snapshot_master) as worker:
            assert worker.cluster is not None
            assert worker.cluster.nc.connected_url is not None
            port = worker.cluster.nc.connected_url.port
            victim = next(i for i, node in enumerate(cluster.nodes) if node.config.client_port == port)
            survivors = [node for i, node in enumerate(cluster.nodes) if i != victim]
            mqtt = [node.config.mqtt_port for node in survivors]
            async with await nats.connect([node.url for node in survivors]) as nc:
                sent = await publish_homes(homes[:6], mqtt)
                await wait_all_acked(nc, settings.partitions, sent)
                cluster.nodes[victim].kill()
                await events_leader(cluster)  # before that, the MQTT listener may acknowledge and drop (docs/fleet.md)
                sent += await publish_homes(homes[6:], mqtt)
                await wait_all_acked(nc, settings.partitions, sent)
                states = await partition_states(nc, settings.partitions, worker.models)
        check_counts(handled_per_home(states), homes, small_snapshot_master, monkeypatch)
        messages = [r.getMessage() for r in caplog.records]
        assert any(m.startswith("NATS: reconnected") for m in messages), "the worker did not reconnect"
        assert any("the connection to NATS was made again; consuming again" in m for m in messages)

    asyncio.run(scenario())


def test_a_snapshot_that_does_not_read_is_rebuilt_from_the_stream(
    cluster: NatsCluster,
    small_snapshot_master: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setenv("DEVINTEL_MODEL_DIR", str(small_snapshot_master))
    homes = simulated_homes(12, 150, 10.0, seed=8000)
    settings = fleet_settings(cluster)

    async def scenario() -> None:
        async with await nats.connect(cluster.urls) as nc:
            async with running_worker(settings, small_snapshot_master) as worker:
                sent = await publish_homes(homes, cluster.mqtt_ports)
                await wait_all_acked(nc, settings.partitions, sent)
                before = handled_per_home(await partition_states(nc, settings.partitions, worker.models))
            js = nc.jetstream()
            state_kv, objects = await js.key_value("devintel-state"), await js.object_store("devintel")
            damaged = []
            for k, damage in ((1, "garbage"), (3, "flipped"), (4, "missing")):
                pointer = orjson.loads((await state_kv.get(pointer_key(k))).value or b"")
                name = str(pointer["object"])
                blob = (await objects.get(name)).data or b""
                if damage == "garbage":
                    await objects.put(name, b"DEVINTEL/partition/1\n" + b"\0" * 64)
                elif damage == "flipped":
                    await objects.put(name, blob[:-10] + bytes(b ^ 0xFF for b in blob[-10:]))
                else:
                    await objects.delete(name)
                damaged.append(k)
            caplog.set_level(logging.ERROR)
            async with running_worker(settings, small_snapshot_master) as worker:
                corrupt = {k: r.corrupt_snapshots for k, r in worker.runners.items()}
                assert {k for k, n in corrupt.items() if n} == set(damaged), corrupt
                await wait_all_acked(nc, settings.partitions, sent)
                await asyncio.sleep(settings.snapshot_interval_s * 2)  # the rebuilt state is written
                after = handled_per_home(await partition_states(nc, settings.partitions, worker.models))
        assert after == before
        lines = [r for r in caplog.records if "does not read" in r.getMessage()]
        assert len(lines) == len(damaged)
        check_counts(after, homes, small_snapshot_master, monkeypatch)

    asyncio.run(scenario())


def test_shutdown_is_bounded_when_the_cluster_is_gone(
    cluster: NatsCluster, small_snapshot_master: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DEVINTEL_MODEL_DIR", str(small_snapshot_master))
    settings = fleet_settings(cluster, shutdown_timeout_s=3.0)

    async def scenario() -> None:
        stop = asyncio.Event()
        worker = Worker(settings, load_settings(), SnapshotStore(small_snapshot_master).load(), stop)
        task = asyncio.create_task(worker.run(), name="worker")
        while len(worker.runners) < settings.partitions:
            await asyncio.sleep(0.1)
        homes = simulated_homes(3, 100, 10.0, seed=8500)
        await publish_homes(homes, cluster.mqtt_ports)
        for node in cluster.nodes:
            node.kill()
        stop.set()
        started = asyncio.get_running_loop().time()
        assert await asyncio.wait_for(task, 30) == 0
        took = asyncio.get_running_loop().time() - started
        assert took < settings.shutdown_timeout_s + 10.0, f"the shutdown took {took:.1f} s"

    asyncio.run(scenario())


def test_a_stop_that_arrives_while_a_partition_is_claimed_ends_the_worker(
    cluster: NatsCluster, small_snapshot_master: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The race of a SIGTERM with a claim round, made certain: the stop is set while the round's first claim is in
    flight (the claim sets it, then answers that it won). The lease won is given back, no partition is started, and
    the worker exits. Without the checks of the stop in ``Worker._balance`` the round went on: the shutdown stopped
    the one runner it found, the round started the other five, and the worker never exited."""
    monkeypatch.setenv("DEVINTEL_MODEL_DIR", str(small_snapshot_master))
    settings = fleet_settings(cluster, shutdown_timeout_s=3.0)
    real_claim = Leases.claim
    claims: list[tuple[str, bool]] = []

    async def scenario() -> None:
        stop = asyncio.Event()

        async def claim_then_stop(self: Leases, key: str) -> bool:
            won = await real_claim(self, key)
            claims.append((key, won))
            stop.set()  # the SIGTERM arrives while the claim is in flight
            return won

        monkeypatch.setattr(Leases, "claim", claim_then_stop)
        worker = Worker(settings, load_settings(), SnapshotStore(small_snapshot_master).load(), stop)
        task = asyncio.create_task(worker.run(), name="worker")
        done, _ = await asyncio.wait([task], timeout=30.0)
        started = sorted(worker.runners)
        if not done:
            stop.set()
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        assert done, f"the worker did not exit 30 s after its stop (claims {claims}, runners of {started})"
        assert task.result() == 0
        assert len(claims) == 1, f"the round went on claiming after the stop: {claims}"
        assert started == [], f"partitions {started} were started after the stop"
        assert claims[0][1], f"the claim did not win its lease: {claims}"
        async with await nats.connect(cluster.urls) as nc:
            kv = await nc.jetstream().key_value("devintel-leases")
            with pytest.raises(nats.js.errors.KeyNotFoundError):  # deleted: the lease won was given back
                await kv.get(claims[0][0])

    asyncio.run(scenario())


def test_keys_and_objects_read_with_no_consumer_while_a_node_is_down(cluster: NatsCluster) -> None:
    """:mod:`devintel.fleet.reads`: the live keys under a prefix (a deleted key is not one), an object's bytes (a
    deleted object is not found); and with a node killed, every read answers. nats-py's ``keys()`` and ``get()``
    read through an R1 consumer that nats-server 2.9.10 may place on the dead peer (then it times out): how many of
    theirs failed is printed, not asserted (it is the server's bug, fixed in 2.9.12)."""

    async def scenario() -> None:
        async with await nats.connect(cluster.urls, max_reconnect_attempts=-1, reconnect_time_wait=0.3) as nc:
            js = nc.jetstream(timeout=3.0)
            kv = await js.key_value(STATE)  # no TTL (the leases expire in 3 s)
            objects = await js.object_store(OBJECTS)
            for name in ("worker.a", "worker.b", "worker.c", "partition.1"):
                await kv.put(name, b"x")
            await kv.delete("worker.b")
            blob = bytes(range(256)) * 2_000  # 512 kB: several chunks
            await objects.put("probe", blob)
            await objects.put("gone", b"y")
            await objects.delete("gone")
            assert await live_keys(js, STATE, "worker.") == ["worker.a", "worker.c"]
            assert await read_object(js, objects, OBJECTS, "probe") == blob
            with pytest.raises(ObjectNotFoundError):
                await read_object(js, objects, OBJECTS, "gone")
            cluster.nodes[1].kill()
            theirs_failed = 0
            for _ in range(10):
                for attempt in range(20):  # while a stream elects a new leader, a read may time out
                    try:
                        assert await live_keys(js, STATE, "worker.") == ["worker.a", "worker.c"]
                        assert await read_object(js, objects, OBJECTS, "probe") == blob
                        break
                    except (nats.errors.TimeoutError, TimeoutError, nats.js.errors.ServiceUnavailableError):
                        assert attempt < 19, "the reads did not answer with a node down"
                        await asyncio.sleep(0.5)
                try:
                    await asyncio.wait_for(kv.keys(), 4.0)
                except (nats.errors.TimeoutError, TimeoutError):
                    theirs_failed += 1
            print(f"with a node down, nats-py's kv.keys() timed out {theirs_failed} times in 10; ours: none")

    asyncio.run(scenario())
