"""The messages waiting for the broker: in order, bounded, and a retained topic's newer value supersedes its older.

A retained topic holds a state (a device's prediction, its discovery config, the service's health): a subscriber
such as Home Assistant only ever acts on its latest value. When the daemon catches up on a backlog (the broker kept
its persistent session's messages while it was away, or a replay-fast source floods it), it handles events faster
than QoS 1 publishing goes, and publishing every intermediate prediction of a device would hold the up-to-date
state back behind stale ones. So a retained message whose topic already has one waiting replaces it, and goes to
the back of the queue: the latest values reach the broker in the order they were made (a removal's empty discovery
config still precedes its empty state). A message that is not retained is never merged. In steady operation the
outbox is empty when a message arrives and nothing changes: this only matters while the broker lags or is away.
Then it also decides what a full outbox loses: a plain FIFO would keep the oldest predictions and drop the newest,
while here a device's newer prediction always fits (it replaces the waiting one), so what is dropped is never a
device's current state. (``bench/bench_live.py`` on loopback: the outbox never held more than 7 messages.)

:class:`Outbox` has the part of :class:`asyncio.Queue`'s interface the daemon uses (``put_nowait`` raising
:class:`asyncio.QueueFull`, ``get``, ``get_nowait``, ``task_done``, ``join``, ``qsize``, ``empty``, ``maxsize``).
"""

from __future__ import annotations

import asyncio
import itertools
from collections import OrderedDict
from collections.abc import Hashable

from devintel.ingest.counters import Counters
from devintel.ingest.outbound import Outgoing


class Outbox:
    """A bounded FIFO of :class:`~devintel.ingest.outbound.Outgoing` where a retained message supersedes the one
    still waiting for its topic (see the module docstring); the messages so replaced are counted in
    ``counters.superseded_publish``."""

    def __init__(self, maxsize: int, counters: Counters) -> None:
        if maxsize <= 0:
            raise ValueError("an outbox needs room for at least one message")
        self.maxsize = maxsize
        self.counters = counters
        self._waiting: OrderedDict[Hashable, Outgoing] = OrderedDict()
        self._serial = itertools.count()
        self._unfinished = 0
        self._ready = asyncio.Event()
        self._done = asyncio.Event()
        self._done.set()

    def qsize(self) -> int:
        """Messages waiting."""
        return len(self._waiting)

    def empty(self) -> bool:
        """Whether no message is waiting."""
        return not self._waiting

    def put_nowait(self, message: Outgoing) -> None:
        """Queue ``message`` at the back, replacing a waiting message of the same retained topic; raises
        :class:`asyncio.QueueFull` when the outbox is full (a replacement always fits)."""
        key: Hashable = message.topic if message.retain else ("not retained", next(self._serial))
        if self._waiting.pop(key, None) is not None:
            self.counters.superseded_publish += 1
            self._finish()
        elif len(self._waiting) >= self.maxsize:
            raise asyncio.QueueFull
        self._waiting[key] = message
        self._unfinished += 1
        self._done.clear()
        self._ready.set()

    def requeue(self, message: Outgoing) -> None:
        """Put back a message whose publishing failed, unless a newer one for its retained topic is waiting (then
        it is superseded); raises :class:`asyncio.QueueFull` when the outbox is full."""
        if message.retain and message.topic in self._waiting:
            self.counters.superseded_publish += 1
            return
        self.put_nowait(message)

    async def get(self) -> Outgoing:
        """The oldest waiting message, waiting for one if none is."""
        while not self._waiting:
            self._ready.clear()
            await self._ready.wait()
        return self._waiting.popitem(last=False)[1]

    def get_nowait(self) -> Outgoing:
        """The oldest waiting message; :class:`asyncio.QueueEmpty` when none is."""
        if not self._waiting:
            raise asyncio.QueueEmpty
        return self._waiting.popitem(last=False)[1]

    def task_done(self) -> None:
        """A message from :meth:`get` was handled (published, or put back)."""
        self._finish()

    async def join(self) -> None:
        """Wait until every queued message was handled or superseded."""
        await self._done.wait()

    def _finish(self) -> None:
        if self._unfinished <= 0:
            raise ValueError("task_done() called too many times")
        self._unfinished -= 1
        if self._unfinished == 0:
            self._done.set()
