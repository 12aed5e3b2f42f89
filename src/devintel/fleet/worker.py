"""``devintel-fleet worker``: lease partitions, run them, switch to new model versions, stop in bounded time (I/O).

One ``asyncio.TaskGroup`` holds named tasks:

- ``leases``: every third of the lease TTL, the heartbeat ``worker.<id>``, the renewal of every held partition
  lease (a lost one stops its runner at once, without a snapshot), and the claim of free partitions up to this
  worker's share (``ceil(partitions / live workers)``); past its share it hands a partition back (snapshot, ack,
  release) so that a new worker gets some;
- ``partition-<k>``: one :class:`~devintel.fleet.partition.PartitionRunner` per held partition;
- ``models``: every ``models_poll_s``, the newest model version that passed the trainer's gate;
- ``shutdown``: waits for the stop event (SIGTERM, SIGINT, or a test), then stops every runner (each writes its
  last snapshot and releases its lease) within ``shutdown_timeout_s``, and ends the others.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import signal
import time
import zlib
from collections import Counter
from typing import Any

import orjson
from nats.aio.client import Client
from nats.js.errors import KeyNotFoundError

from devintel.daemon.from_settings import live_models
from devintel.daemon.settings import Settings
from devintel.fleet.cluster import LEASES, Cluster, open_with_retry
from devintel.fleet.codec import CorruptBlobError
from devintel.fleet.homes import HomeFactory
from devintel.fleet.leases import LeaseLostError, Leases
from devintel.fleet.modelset import ModelSet
from devintel.fleet.partition import PartitionRunner
from devintel.fleet.settings import FleetSettings
from devintel.models.snapshots import LoadedSnapshot

logger = logging.getLogger(__name__)

#: Bound of each step of the shutdown after the runners' last snapshots (releasing a lease, draining), seconds:
#: with the cluster unreachable, the leases expire on their own.
BRIEF_S = 2.0
#: The state bucket's key naming the newest model version that passed its gate.
CURRENT_MODELS = "models.current"


def partition_lease(partition: int) -> str:
    """The lease key of a partition."""
    return f"partition.{partition}"


def claim_order(worker_id: str, partitions: int) -> list[int]:
    """The order in which a worker tries free partitions: rotated by its id, so workers starting together
    do not all race for partition 0 (pure)."""
    start = zlib.crc32(worker_id.encode()) % partitions
    return [(start + i) % partitions for i in range(partitions)]


async def load_version(cluster: Cluster, base: ModelSet) -> ModelSet:
    """The newest version that passed the trainer's gate, or ``base`` when there is none (or it does not read)."""
    try:
        entry = await cluster.state.get(CURRENT_MODELS)
    except KeyNotFoundError:
        return base
    try:
        pointer = orjson.loads(entry.value or b"")
        if pointer.get("version") == base.version:
            return base
        blob = await cluster.read_object(str(pointer["object"]))
        return base.with_version(blob)
    except (CorruptBlobError, ValueError, KeyError, TypeError) as error:
        logger.error("model version %s does not read (%s); serving %s", entry.value, error, base.version)
        return base


class Worker:
    """A fleet worker (see the module docstring)."""

    def __init__(self, settings: FleetSettings, daemon: Settings, snapshot: LoadedSnapshot, stop: asyncio.Event):
        self.settings = settings
        self.daemon = daemon
        self.snapshot = snapshot
        self.stop = stop
        self.models = ModelSet.from_live(live_models(daemon, snapshot))
        self.factory = HomeFactory(daemon, snapshot, settings.negative_rate)
        self.runners: dict[int, PartitionRunner] = {}
        self.tasks: dict[int, asyncio.Task[None]] = {}
        self.cluster: Cluster | None = None
        self.leases: Leases | None = None
        self._loops: list[asyncio.Task[None]] = []
        self.handed_back: dict[int, float] = {}
        """Partition -> monotonic time until which this worker leaves it to the others."""
        self._ended_restarts: Counter[int] = Counter()
        """Partition -> consumer restarts of this worker's runners of it that have ended (a failed one included)."""
        self._done = asyncio.Event()

    def consumer_restarts(self, partition: int) -> int:
        """How often this worker's runners of ``partition`` started its consumer again, the ended ones included:
        a runner may fail while it restarts (the cluster did not answer in time), and its successor resumes."""
        runner = self.runners.get(partition)
        return self._ended_restarts[partition] + (runner.consumer_restarts if runner else 0)

    def current_models(self) -> ModelSet:
        """The model version the worker serves now."""
        return self.models

    async def run(self) -> int:
        """Connect, then run the tasks until stopped; returns the exit code."""
        cluster = await open_with_retry(self.settings, f"devintel-fleet-worker-{self.settings.worker_id}", self.stop)
        if cluster is None:
            return 0
        nc = cluster.nc
        try:
            self.cluster = cluster
            self.leases = Leases(self.cluster.leases, self.settings.worker_id, self.cluster.js, LEASES)
            try:
                self.models = await load_version(self.cluster, self.models)
            except Exception as error:  # a bucket just made may not answer yet: the models task looks again
                logger.warning("the fleet's model version could not be read yet (%r); serving the snapshot", error)
            logger.info(
                "worker %s: serving model version %s, %d partitions in the fleet",
                self.settings.worker_id,
                self.models.version,
                self.settings.partitions,
            )
            async with asyncio.TaskGroup() as group:
                self._loops = [
                    group.create_task(self._lease_loop(group), name="leases"),
                    group.create_task(self._model_loop(), name="models"),
                ]
                group.create_task(self._shutdown(), name="shutdown")
        finally:
            await close(nc)
        return 0

    async def _lease_loop(self, group: asyncio.TaskGroup) -> None:
        assert self.cluster is not None
        assert self.leases is not None
        leases = self.leases
        beat = f"worker.{self.settings.worker_id}"
        interval = min(1.0, self.settings.lease_ttl_s / 3.0)
        while not self._done.is_set():
            try:
                await self.cluster.leases.put(beat, b"alive")
                await self._renew(leases)
                if not self.stop.is_set():
                    await self._balance(leases, group)
            except Exception:  # the cluster is unreachable for a moment: the leases expire if it lasts
                logger.warning("leases: a round failed; retrying", exc_info=True)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._done.wait(), interval)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.cluster.leases.delete(beat), BRIEF_S)

    async def _renew(self, leases: Leases) -> None:
        for partition, runner in list(self.runners.items()):
            task = self.tasks[partition]
            if task.done():
                del self.runners[partition], self.tasks[partition]
                self._ended_restarts[partition] += runner.consumer_restarts
                if runner.lost:
                    leases.forget(partition_lease(partition))
                else:
                    await leases.release(partition_lease(partition))
                continue
            try:
                await leases.renew(partition_lease(partition))
            except LeaseLostError:
                logger.warning("partition %d: lease lost; stopping its runner", partition)
                runner.lost = True
                runner.stop.set()

    async def _balance(self, leases: Leases, group: asyncio.TaskGroup) -> None:
        assert self.cluster is not None
        alive = max(1, len(set(await leases.keys("worker."))))
        share = math.ceil(self.settings.partitions / alive)
        now = time.monotonic()
        for partition in claim_order(self.settings.worker_id, self.settings.partitions):
            if len(self.runners) >= share:
                break
            if partition in self.runners or self.handed_back.get(partition, 0.0) > now:
                continue  # a partition handed back is left to the others for a while
            if self.stop.is_set():
                break  # the shutdown has taken its list of runners: start no more
            if not await leases.claim(partition_lease(partition)):
                continue
            if self.stop.is_set():  # the stop came while the claim was in flight: give it back, start nothing
                await leases.release(partition_lease(partition))
                break
            logger.info("partition %d: claimed by %s", partition, self.settings.worker_id)
            runner = PartitionRunner(partition, self.cluster, self.settings, self.factory, self.current_models)
            self.runners[partition] = runner
            self.tasks[partition] = group.create_task(runner.run(), name=f"partition-{partition}")
        active = [p for p, r in self.runners.items() if not r.stop.is_set()]
        if len(active) > share:
            logger.info("partition %d: handed back (%d workers share the fleet)", active[-1], alive)
            self.runners[active[-1]].stop.set()
            self.handed_back[active[-1]] = now + 3.0 * self.settings.lease_ttl_s

    async def _model_loop(self) -> None:
        assert self.cluster is not None
        while not self._done.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._done.wait(), self.settings.models_poll_s)
            if self._done.is_set():
                return
            try:
                models = await load_version(self.cluster, self.models)
            except Exception:
                logger.warning("models: looking for a new version failed", exc_info=True)
                continue
            if models.version != self.models.version:
                logger.info("switching to model version %s (%s)", models.version, models.meta)
                self.models = models

    async def _shutdown(self) -> None:
        await self.stop.wait()
        logger.info("worker %s: stopping (%d partitions)", self.settings.worker_id, len(self.runners))
        for runner in self.runners.values():
            runner.stop.set()
        tasks = list(self.tasks.values())
        if tasks:
            _, late = await asyncio.wait(tasks, timeout=self.settings.shutdown_timeout_s)
            for task in late:
                logger.error(
                    "%s did not stop within %.0f s; cancelled", task.get_name(), self.settings.shutdown_timeout_s
                )
                task.cancel()
        assert self.leases is not None
        releases = [self.leases.release(partition_lease(p)) for p, r in self.runners.items() if not r.lost]
        with contextlib.suppress(Exception):
            await asyncio.wait_for(asyncio.gather(*releases), BRIEF_S)
        self._done.set()
        for loop in self._loops:  # a round stuck on an unreachable cluster ends now: its leases expire
            loop.cancel()

    def report(self) -> dict[str, Any]:
        """What the worker holds now (partitions and their counters)."""
        return {
            "worker": self.settings.worker_id,
            "version": self.models.version,
            "partitions": {
                p: r.state.totals() if r.state is not None else None for p, r in sorted(self.runners.items())
            },
        }


def install_signals(stop: asyncio.Event) -> None:
    """SIGTERM and SIGINT set ``stop`` (a second one exits at once)."""
    loop = asyncio.get_running_loop()

    def on_signal(sig: signal.Signals) -> None:
        if stop.is_set():
            raise SystemExit(128 + sig.value)
        logger.info("%s: stopping", sig.name)
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal, sig)


async def close(nc: Client) -> None:
    """Drain the connection (bounded), else close it."""
    try:
        await asyncio.wait_for(nc.drain(), BRIEF_S)
    except Exception:  # the cluster is gone: drop the connection
        with contextlib.suppress(Exception):
            await nc.close()
