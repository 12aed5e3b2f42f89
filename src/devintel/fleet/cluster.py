"""Connecting to the NATS cluster and making sure its streams, buckets and object store exist (I/O).

- ``DEVINTEL_EVENTS``: every home's ingress messages, on ``devintel.in.<partition>.homes.<home_id>...`` (the
  servers' mappings), replicated, kept ``events_max_age_days``;
- ``DEVINTEL_EXAMPLES``: learned examples (features and label, no identity), deduplicated by message id over a
  window longer than a takeover, so an example a takeover re-sends counts once;
- key-value ``devintel-leases`` (TTL ``lease_ttl_s``): ``partition.<k>`` and ``trainer`` leases, ``worker.<id>``
  heartbeats;
- key-value ``devintel-state``: ``partition.<k>`` (the object of its latest snapshot and the sequence it covers),
  ``trainer`` (the trainer's checkpoint), ``models.current`` (the newest version that passed its gate);
- object store ``devintel``: ``partitions/<k>/<seq>``, ``trainer/<seq>``, ``models/<version>``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import ssl
from typing import Any, Final

import nats
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import (
    DiscardPolicy,
    KeyValueConfig,
    ObjectStoreConfig,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)
from nats.js.errors import BadRequestError, BucketNotFoundError
from nats.js.kv import KeyValue
from nats.js.object_store import ObjectStore

from devintel.fleet.reads import read_object
from devintel.fleet.settings import FleetSettings
from devintel.fleet.subjects import EXAMPLES, INGRESS

logger = logging.getLogger(__name__)

EVENTS_STREAM: Final = "DEVINTEL_EVENTS"
EXAMPLES_STREAM: Final = "DEVINTEL_EXAMPLES"
LEASES: Final = "devintel-leases"
STATE: Final = "devintel-state"
OBJECTS: Final = "devintel"
#: Deduplication window of the examples stream, seconds (far longer than a takeover).
EXAMPLES_DEDUPE_S: Final = 600.0


def _tls(settings: FleetSettings) -> ssl.SSLContext | None:
    n = settings.nats
    if not (n.tls or n.ca_file or n.cert_file or any(url.startswith("tls://") for url in n.servers)):
        return None
    context = ssl.create_default_context(cafile=str(n.ca_file) if n.ca_file else None)
    if n.cert_file is not None:
        context.load_cert_chain(str(n.cert_file), str(n.key_file) if n.key_file else None)
    return context


async def connect(settings: FleetSettings, name: str) -> Client:
    """A connection to the cluster with the settings' credentials and TLS; it reconnects for ever."""
    n = settings.nats
    options: dict[str, Any] = {
        "servers": n.servers,
        "name": name,
        "connect_timeout": n.connect_timeout_s,
        "reconnect_time_wait": n.reconnect_wait_s,
        "max_reconnect_attempts": -1,
        "allow_reconnect": True,
    }
    if n.user is not None:
        options["user"] = n.user
    if n.password is not None and n.password.get_secret_value():  # systemd's default credential is empty
        options["password"] = n.password.get_secret_value()
    if n.token is not None and n.token.get_secret_value():
        options["token"] = n.token.get_secret_value()
    if n.creds_file is not None:
        options["user_credentials"] = str(n.creds_file)
    tls = _tls(settings)
    if tls is not None:
        options["tls"] = tls

    async def on_error(error: Exception) -> None:
        logger.warning("NATS: %s", error)

    async def on_disconnect() -> None:
        logger.warning("NATS: disconnected; reconnecting")

    async def on_reconnect() -> None:
        logger.info("NATS: reconnected")

    return await nats.connect(error_cb=on_error, disconnected_cb=on_disconnect, reconnected_cb=on_reconnect, **options)


class Cluster:
    """The fleet's streams, buckets and object store on one connection."""

    def __init__(self, nc: Client, js: JetStreamContext, leases: KeyValue, state: KeyValue, objects: ObjectStore):
        self.nc = nc
        self.js = js
        self.leases = leases
        self.state = state
        self.objects = objects

    async def read_object(self, name: str) -> bytes:
        """The bytes of object ``name`` of the object store, read with no consumer (:mod:`devintel.fleet.reads`)."""
        return await read_object(self.js, self.objects, OBJECTS, name)


async def _stream(js: JetStreamContext, config: StreamConfig) -> None:
    try:
        await js.add_stream(config)
    except BadRequestError:  # it exists with another configuration: keep it, and say so
        logger.warning("stream %s exists with another configuration; kept as it is", config.name)


async def open_cluster(settings: FleetSettings, nc: Client) -> Cluster:
    """Create (idempotently) and open the fleet's streams, buckets and object store."""
    js = nc.jetstream(timeout=10.0)
    replicas = settings.replicas
    await _stream(
        js,
        StreamConfig(
            name=EVENTS_STREAM,
            subjects=[f"{INGRESS}.>"],
            retention=RetentionPolicy.LIMITS,
            storage=StorageType.FILE,
            num_replicas=replicas,
            max_age=settings.events_max_age_days * 86_400.0,
            discard=DiscardPolicy.OLD,
        ),
    )
    await _stream(
        js,
        StreamConfig(
            name=EXAMPLES_STREAM,
            subjects=[f"{EXAMPLES}.>"],
            retention=RetentionPolicy.LIMITS,
            storage=StorageType.FILE,
            num_replicas=replicas,
            max_age=settings.examples_max_age_days * 86_400.0,
            duplicate_window=EXAMPLES_DEDUPE_S,
        ),
    )
    leases = await _bucket(js, KeyValueConfig(bucket=LEASES, ttl=settings.lease_ttl_s, history=1, replicas=replicas))
    state = await _bucket(js, KeyValueConfig(bucket=STATE, history=1, replicas=replicas))
    try:
        objects = await js.object_store(OBJECTS)
    except BucketNotFoundError:
        objects = await js.create_object_store(OBJECTS, config=ObjectStoreConfig(replicas=replicas))
    return Cluster(nc, js, leases, state, objects)


async def _bucket(js: JetStreamContext, config: KeyValueConfig) -> KeyValue:
    """The bucket as it exists (the first process made it), else made with ``config``."""
    try:
        return await js.key_value(config.bucket)
    except BucketNotFoundError:
        return await js.create_key_value(config)


async def open_with_retry(settings: FleetSettings, name: str, stop: asyncio.Event) -> Cluster | None:
    """Connect and open the cluster, again and again with capped randomised backoff while the cluster does not
    answer (a node is down, JetStream elects a leader); None when ``stop`` is set first."""
    delay = 0.5
    while not stop.is_set():
        nc: Client | None = None
        try:
            nc = await connect(settings, name)
            return await open_cluster(settings, nc)
        except Exception as error:  # any failure to reach the cluster is retried
            logger.warning(
                "the NATS cluster does not answer (%s: %s); retrying in %.1f s", type(error).__name__, error, delay
            )
            if nc is not None:
                try:
                    await nc.close()
                except Exception:  # closing a half-open connection
                    logger.debug("closing the connection failed", exc_info=True)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), delay * random.uniform(0.5, 1.0))
        delay = min(delay * 2.0, 10.0)
    return None
