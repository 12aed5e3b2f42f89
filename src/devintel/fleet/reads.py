"""Reads of a key-value bucket's keys and of an object that create no consumer (I/O).

nats-py's ``KeyValue.keys()`` and ``ObjectStore.get()`` read through an ordered consumer: an ephemeral R1
consumer on the bucket's R3 stream. nats-server before 2.9.12 (Debian bookworm ships 2.9.10) places such a consumer
on any one of the stream's peers, a dead one included (fixed upstream in commit e15eb22, "when we create a consumer
with less replicas than the stream, make sure to select from online peers"), and its creation then times out. With
one node of three down, a third of those reads hung for the request timeout: a worker's lease round stalled past
the lease TTL and lost every lease, a runner's snapshot load failed, and the workers kept trading partitions for as
long as the node stayed down. These functions read with the stream's message API instead (a request per key or per
chunk), which the stream's leader serves.
"""

from __future__ import annotations

import base64
import hashlib

from nats.js import JetStreamContext
from nats.js.errors import NotFoundError, ObjectNotFoundError
from nats.js.object_store import ObjectStore

#: The header of a key-value entry that marks a deleted or purged key.
_KV_OPERATION = "KV-Operation"
_KV_GONE = frozenset({"DEL", "PURGE"})


class DigestMismatchError(ValueError):
    """An object's chunks do not add up to its recorded size and digest."""


async def live_keys(js: JetStreamContext, bucket: str, prefix: str) -> list[str]:
    """The keys of ``bucket`` that start with ``prefix`` (a whole token, ending in ``.``) and are neither deleted
    nor purged."""
    stream, head = f"KV_{bucket}", f"$KV.{bucket}."
    info = await js.stream_info(stream, subjects_filter=f"{head}{prefix}>")
    keys = []
    for subject in sorted(info.state.subjects or {}):
        try:
            last = await js.get_last_msg(stream, subject)
        except NotFoundError:  # it expired meanwhile
            continue
        if (last.headers or {}).get(_KV_OPERATION) not in _KV_GONE:
            keys.append(subject[len(head) :])
    return keys


async def read_object(js: JetStreamContext, objects: ObjectStore, bucket: str, name: str) -> bytes:
    """The bytes of object ``name`` in the object store ``bucket`` (``objects``), chunk by chunk; raises
    ObjectNotFoundError when it does not exist and :class:`DigestMismatchError` when it does not add up."""
    info = await objects.get_info(name)
    if not info.nuid or info.is_link():
        raise ObjectNotFoundError
    data = bytearray()
    stream, subject, seq = f"OBJ_{bucket}", f"$O.{bucket}.C.{info.nuid}", 1
    for _ in range(info.chunks or 0):
        msg = await js.get_msg(stream, seq=seq, subject=subject, next=True)
        data += msg.data or b""
        seq = int(msg.seq or seq) + 1
    digest = (info.digest or "").split("=", 1)[-1]
    if len(data) != (info.size or 0) or hashlib.sha256(data).digest() != base64.urlsafe_b64decode(digest):
        raise DigestMismatchError(f"object {name}: {len(data)} bytes read, {info.size} recorded, or a wrong digest")
    return bytes(data)
