"""One partition, consumed by its current lease holder: load, resume, handle, snapshot, acknowledge (I/O).

The runner loads the partition's latest snapshot (its state and the stream sequence it covers), recreates the
partition's durable consumer to start right after that sequence, and handles each message through its home's
handler: what the handler publishes goes out on the home's topics at once (at least once: a message handled again
after a takeover publishes the same messages again, with the same ``Devintel-Seq`` header), the examples its
resolved labels give go to the examples stream (deduplicated by message id). Every ``snapshot_every`` messages or
``snapshot_interval_s`` it waits for those examples, writes the state to the object store, moves the partition's
pointer by compare-and-set (a stale holder fails here, and stops), and only then acknowledges the last message
(ack policy "all"): every message counts exactly once in the state, whoever handled it.

A delivery that never arrives would leave a hole in the state: a pull consumer's messages sent while the connection
was down are gone (core NATS), and the consumer only sends them again after ``ack_wait``, by when the runner has moved
past them. So the runner counts its consumer's deliveries (1, 2, 3, ...: the server numbers every one) and watches
the connection's reconnects: on a delivery missing or a reconnect it starts the consumer again right after the last
message in its state (counted in ``consumer_restarts``), and the messages after that come again, in order.

A snapshot that does not read (checksum, compression, unpickling) is counted and logged, and the partition is
rebuilt from the start of the stream. Bad messages are counted, logged rate-limited and dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import nats.errors
import orjson
from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError, NotFoundError, ObjectNotFoundError

from devintel.fleet.cluster import EVENTS_STREAM, Cluster
from devintel.fleet.homes import HomeFactory, switch_models, tap_of
from devintel.fleet.leases import LeaseLostError
from devintel.fleet.modelset import ModelSet
from devintel.fleet.settings import FleetSettings
from devintel.fleet.state import PartitionState, decode_state, encode_state
from devintel.fleet.subjects import egress_subject, parse_ingress, partition_subject
from devintel.ingest.counters import RateLimitedLog

logger = logging.getLogger(__name__)

#: Header of every output message: ``<stream sequence>.<index>`` of the message and output it answers.
SEQ_HEADER = "Devintel-Seq"
#: Header that the examples stream deduplicates by.
MSG_ID = "Nats-Msg-Id"


def pointer_key(partition: int) -> str:
    """The state bucket's key of a partition's latest snapshot."""
    return f"partition.{partition}"


class PartitionRunner:
    """The lifecycle of one leased partition (see the module docstring)."""

    def __init__(
        self,
        partition: int,
        cluster: Cluster,
        settings: FleetSettings,
        factory: HomeFactory,
        models: Callable[[], ModelSet],
    ) -> None:
        self.partition = partition
        self.cluster = cluster
        self.settings = settings
        self.factory = factory
        self.models = models
        self.stop = asyncio.Event()
        """Set: finish the batch, write a last snapshot, acknowledge, end."""
        self.lost = False
        """The lease was lost: end without writing anything."""
        self.failed = False
        """The runner failed (the cluster did not answer in time, say): its lease is released, to be claimed again."""
        self.state: PartitionState | None = None
        self.pointer_revision = 0
        self.previous_object: str | None = None
        self.last: Msg | None = None
        self.committed_seq = 0
        self.committed_version = ""
        self.corrupt_snapshots = 0
        self.consumer_restarts = 0
        """How often the consumer was started again after a delivery went missing or the connection was re-made."""
        self.delivered = 0
        """The consumer's number of the last delivery handled (the server numbers them 1, 2, 3, ...)."""
        self.reconnects = 0
        """The connection's reconnect count when the consumer was made."""
        self.started = time.monotonic()
        self.resumed_at: float | None = None
        """Monotonic time at which the partition was loaded and its consumer ready."""
        self._bad = RateLimitedLog(logger)
        self._pending: list[asyncio.Future[Any]] = []

    def active(self) -> bool:
        """Neither stopped nor lost (the lease renewals may change that while a batch is handled)."""
        return not (self.stop.is_set() or self.lost)

    @property
    def durable(self) -> str:
        """The partition's durable consumer."""
        return f"partition-{self.partition}"

    async def load(self) -> PartitionState:
        """The partition's latest snapshot, or a fresh state when there is none or it does not read."""
        models = self.models()
        try:
            entry = await self.cluster.state.get(pointer_key(self.partition))
        except KeyNotFoundError:
            return PartitionState(self.partition, version=models.version)
        self.pointer_revision = entry.revision or 0
        try:
            pointer = orjson.loads(entry.value or b"")
            name = str(pointer["object"])
            self.previous_object = name
            # A timeout or a lost connection is no corruption: it propagates (the lease is given up, and retried).
            blob = await self.cluster.read_object(name)
            state = decode_state(blob, models)
            if state.seq != int(pointer["seq"]) or state.partition != self.partition:
                raise ValueError(
                    f"snapshot {name} covers partition {state.partition} to {state.seq}, not the pointer's"
                )
        except (nats.errors.TimeoutError, TimeoutError, nats.errors.ConnectionClosedError, nats.errors.NoServersError):
            raise
        except ObjectNotFoundError as error:
            return self._corrupt(error, models)
        except Exception as error:  # a damaged blob: the checksum, decompression, or unpickling (almost anything)
            return self._corrupt(error, models)
        logger.info("partition %d: resumed from its snapshot at stream sequence %d", self.partition, state.seq)
        return state

    def _corrupt(self, error: BaseException, models: ModelSet) -> PartitionState:
        self.corrupt_snapshots += 1
        logger.error(
            "partition %d: its snapshot does not read (%s: %s); rebuilding it from the start of the stream",
            self.partition,
            type(error).__name__,
            str(error)[:200],
        )
        return PartitionState(self.partition, version=models.version)

    async def _consumer(self, start: int) -> Any:
        js = self.cluster.js
        self.delivered, self.reconnects = 0, self.cluster.nc.stats["reconnects"]
        with contextlib.suppress(NotFoundError):
            await js.delete_consumer(EVENTS_STREAM, self.durable)
        config = ConsumerConfig(
            durable_name=self.durable,
            ack_policy=AckPolicy.ALL,
            deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
            opt_start_seq=max(start, 1),
            filter_subject=partition_subject(self.partition),
            max_ack_pending=max(10 * self.settings.snapshot_every, 10_000),
            ack_wait=120.0,
        )
        return await js.pull_subscribe(
            partition_subject(self.partition), durable=self.durable, stream=EVENTS_STREAM, config=config
        )

    async def run(self) -> None:
        """Load, resume, and handle until stopped or the lease is lost (never raises but for cancellation)."""
        try:
            await self._run()
        except LeaseLostError:
            logger.warning("partition %d: the lease was lost; stopped without a snapshot", self.partition)
        except Exception:
            logger.exception("partition %d: the runner failed; its lease is given up", self.partition)
            self.failed = True

    async def _run(self) -> None:
        state = self.state = await self.load()
        self.committed_seq, self.committed_version = state.seq, state.version
        psub = await self._consumer(state.seq + 1)
        self.resumed_at = time.monotonic()
        last_commit = time.monotonic()
        try:
            while self.active():
                try:
                    messages = await psub.fetch(self.settings.fetch_batch, timeout=0.5)
                except (nats.errors.TimeoutError, TimeoutError):  # nothing new within the timeout
                    messages = []
                for index, message in enumerate(messages, start=1):
                    if not self.active():
                        break
                    gap = self._gap(message)
                    if gap:
                        psub = await self._restart(psub, state, gap)
                        break
                    self._handle(state, message)
                    if index % 64 == 0:
                        await asyncio.sleep(0)  # the lease renewals and the other partitions run too
                if self.cluster.nc.stats["reconnects"] != self.reconnects:
                    psub = await self._restart(psub, state, "the connection to NATS was made again")
                if self.models().version != state.version:
                    self._switch(state)
                due = state.seq - self.committed_seq >= self.settings.snapshot_every
                late = time.monotonic() - last_commit >= self.settings.snapshot_interval_s
                switched = state.version != self.committed_version  # the durable state names what serves
                if (state.seq > self.committed_seq or switched) and (due or late):
                    await self.commit()
                    last_commit = time.monotonic()
            if not self.lost and state.seq > self.committed_seq:
                await self.commit()
        finally:
            try:
                await psub.unsubscribe()
            except Exception:  # the connection may be gone
                logger.debug("partition %d: unsubscribe failed", self.partition, exc_info=True)

    def _gap(self, message: Msg) -> str:
        """Why ``message`` is not the consumer's next delivery ("" when it is), and take it as the last one."""
        number = message.metadata.sequence.consumer
        expected, self.delivered = self.delivered + 1, number
        if number == expected:
            return ""
        return f"delivery {number} came where {expected} was due"

    async def _restart(self, psub: Any, state: PartitionState, why: str) -> Any:
        """The consumer made again to deliver every message after the state's last (see the module docstring)."""
        self.consumer_restarts += 1
        self._bad.warning(
            "restart", "partition %d: %s; consuming again after stream sequence %d", self.partition, why, state.seq
        )
        with contextlib.suppress(Exception):  # the old subscription's connection may be gone
            await psub.unsubscribe()
        self.last = None  # the new consumer starts past every message of the state: nothing of the old one to ack
        return await self._consumer(state.seq + 1)

    def _switch(self, state: PartitionState) -> None:
        models = self.models()
        for handler in state.homes.values():
            switch_models(handler, models)
        logger.info("partition %d: serving model version %s", self.partition, models.version)
        state.version = models.version

    def _handle(self, state: PartitionState, message: Msg) -> None:
        seq = message.metadata.sequence.stream
        if seq <= state.seq:  # already in the state (a redelivery)
            return
        state.seq = seq
        self.last = message
        try:
            inbound = parse_ingress(message.subject)
            if inbound.partition != self.partition:
                raise ValueError(f"partition {inbound.partition} on the consumer of {self.partition}")
        except ValueError as error:
            state.bad["subject"] += 1
            self._bad.warning("subject", "partition %d: dropped a message: %s", self.partition, error)
            return
        handler = state.homes.get(inbound.home_id)
        if handler is None:
            handler = state.homes[inbound.home_id] = self.factory.new(inbound.home_id, self.models())
        received = message.metadata.timestamp.timestamp()
        before = handler.counters.events
        try:
            handled = handler.handle(inbound.topic, message.data, received)
        except Exception:
            state.errors += 1
            if self._bad.warning(
                "error", "partition %d: handling a message of %s failed", self.partition, inbound.home_id
            ):
                logger.exception("partition %d: the failure, on %s", self.partition, inbound.topic[:200])
            return
        if handler.counters.events > before:
            state.handled.setdefault(inbound.home_id, Counter())[inbound.topic] += 1
        nc = self.cluster.nc
        for index, out in enumerate(handled.messages):
            subject = egress_subject(inbound.home_id, out.topic)
            headers = {SEQ_HEADER: f"{seq}.{index}"}
            self._pending.append(asyncio.ensure_future(nc.publish(subject, out.payload, headers=headers)))
        tap = tap_of(handler)
        for example in tap.drain() if tap is not None else ():
            future = self.cluster.js.publish(example.subject, example.body, headers={MSG_ID: example.msg_id})
            self._pending.append(asyncio.ensure_future(future))

    async def commit(self) -> None:
        """Make the state durable, then acknowledge every message it includes (see the module docstring)."""
        state = self.state
        if state is None:
            return
        pending, self._pending = self._pending, []
        await asyncio.gather(*pending)  # the examples are in their stream before the state that sent them
        blob = encode_state(state, self.models())
        name = f"partitions/{self.partition}/{state.seq}"
        await self.cluster.objects.put(name, blob)
        pointer = orjson.dumps(
            {"object": name, "seq": state.seq, "owner": self.settings.worker_id, "totals": state.totals()}
        )
        key = pointer_key(self.partition)
        try:
            if self.pointer_revision:
                self.pointer_revision = await self.cluster.state.update(key, pointer, last=self.pointer_revision)
            else:
                self.pointer_revision = await self.cluster.state.create(key, pointer)
        except KeyWrongLastSequenceError:
            self.lost = True
            raise LeaseLostError(key) from None
        if self.last is not None and state.seq > self.committed_seq:
            await self.last.ack()
        self.committed_seq, self.committed_version = state.seq, state.version
        if self.previous_object is not None and self.previous_object != name:
            try:
                await self.cluster.objects.delete(self.previous_object)
            except Exception:
                logger.debug("partition %d: old snapshot %s not deleted", self.partition, self.previous_object)
        self.previous_object = name
        logger.debug("partition %d: snapshot at %d (%d bytes)", self.partition, state.seq, len(blob))
