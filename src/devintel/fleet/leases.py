"""Leases in a JetStream key-value bucket with a TTL (I/O).

A lease is a key (``partition.3``, ``trainer``) whose value is the holder's worker id. It is taken with
``create`` (only when the key is absent: free, released, or expired past the bucket's TTL), renewed with
``update`` against the revision the holder last wrote (compare-and-set), and released by deleting it at that
revision. A renewal that fails means someone else holds the lease: :class:`LeaseLostError`. Workers also keep a
heartbeat key ``worker.<id>`` so that each knows how many share the partitions.
"""

from __future__ import annotations

import logging

from nats.js import JetStreamContext
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from devintel.fleet.reads import live_keys

logger = logging.getLogger(__name__)


class LeaseLostError(Exception):
    """The lease is held by someone else now (it expired, or was taken)."""


class Leases:
    """One holder's leases in a bucket."""

    def __init__(self, kv: KeyValue, holder: str, js: JetStreamContext, bucket: str) -> None:
        self.kv = kv
        self.holder = holder
        self.js = js
        self.bucket = bucket
        """The bucket's name (``kv``'s), for :func:`~devintel.fleet.reads.live_keys`."""
        self.held: dict[str, int] = {}
        """Key -> revision of the holder's last write."""

    async def claim(self, key: str) -> bool:
        """Take the lease when it is free; True when taken."""
        try:
            self.held[key] = await self.kv.create(key, self.holder.encode())
        except KeyWrongLastSequenceError:
            return False
        return True

    async def renew(self, key: str) -> None:
        """Renew a held lease; :class:`LeaseLostError` when it is not ours any more."""
        revision = self.held.get(key)
        if revision is None:
            raise LeaseLostError(key)
        try:
            self.held[key] = await self.kv.update(key, self.holder.encode(), last=revision)
        except KeyWrongLastSequenceError:
            self.held.pop(key, None)
            raise LeaseLostError(key) from None

    async def release(self, key: str) -> None:
        """Give a held lease back (nothing when it is not ours any more)."""
        revision = self.held.pop(key, None)
        if revision is None:
            return
        try:
            await self.kv.delete(key, last=revision)
        except KeyWrongLastSequenceError:
            logger.info("lease %s was no longer ours at release", key)

    def forget(self, key: str) -> None:
        """Stop renewing ``key`` (it was lost)."""
        self.held.pop(key, None)

    async def holder_of(self, key: str) -> str | None:
        """Who holds ``key`` now (None: nobody)."""
        try:
            entry = await self.kv.get(key)
        except KeyNotFoundError:
            return None
        return entry.value.decode() if entry.value else None

    async def keys(self, prefix: str) -> list[str]:
        """The live keys that start with ``prefix`` (a whole token: ``worker.``), read with no consumer (see
        :mod:`devintel.fleet.reads`)."""
        return await live_keys(self.js, self.bucket, prefix)
