"""The MQTT session: connect, subscribe, receive into the bounded queue, publish from the outbox, reconnect.

One task runs the aiomqtt 2.x reconnection loop: a fixed client id with a persistent session (``clean_session``
False), so QoS 1 messages published while devintel is away wait at the broker; QoS 1 subscriptions; the last
will is a retained ``offline`` on ``<prefix>/status``, and every connection publishes a retained ``online``.
A lost connection is retried after a capped, randomised exponential backoff.

Authentication (``mqtt.username``, ``mqtt.password``) and TLS (``mqtt.tls``, verified against ``mqtt.ca_file`` or
the system's CAs, host name included) are the broker's; a refusal of either is logged as an error naming the
setting to check (:func:`describe_connect_error`), and retried like any lost connection, so that a fixed broker
is picked up without a restart.

The receive loop never waits on model work: it puts each message into the processing queue without blocking,
and when the queue is full the message is dropped and counted (``shed_events``). Publishing goes through an
outbox queue, so the processing worker never waits on the network either.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import socket
import time
from dataclasses import dataclass, field

import aiomqtt

from devintel.daemon.from_settings import mqtt_client
from devintel.daemon.outbox import Outbox
from devintel.daemon.settings import MqttSettings
from devintel.ingest.counters import Counters, RateLimitedLog
from devintel.ingest.outbound import Outgoing, Topics

logger = logging.getLogger(__name__)

#: First wait before reconnecting, seconds (doubled after every failed attempt, up to the cap).
BACKOFF_START_S = 0.5
#: Seconds the receive loop may take to end by itself when the connection fails on the sending side.
RECEIVER_GRACE_S = 5.0
#: Seconds a subscribe or a QoS 1 publish may wait for the broker's acknowledgement (aiomqtt's ``timeout`` once
#: connected; the connection attempt itself waits ``mqtt.connect_timeout_s``).
OPERATION_TIMEOUT_S = 10.0
#: QoS 1 messages published and not yet acknowledged, at most.
MAX_IN_FLIGHT = 64
#: CONNACK codes of a refused login: MQTT 3.1.1's 4 and 5, MQTT 5's 134 (bad user name or password), 135 (not
#: authorized) and 140 (bad authentication method).
AUTH_REFUSED_CODES = frozenset({4, 5, 134, 135, 140})


@dataclass(frozen=True, slots=True)
class Received:
    """A message as received: topic, payload bytes, and the wall-clock time of receipt (epoch s)."""

    topic: str
    payload: bytes
    received: float


@dataclass(slots=True)
class SessionState:
    """What the health report says of the MQTT session."""

    connected: bool = False
    connections: int = 0
    last_error: str | None = None
    refused: bool = False
    """The last attempt failed on the credentials or the TLS handshake: retrying alone will not fix it."""
    connected_event: asyncio.Event = field(default_factory=asyncio.Event)


def backoff_delay(attempt: int, cap_s: float, rng: random.Random) -> float:
    """The wait before reconnection attempt ``attempt`` (0-based): :data:`BACKOFF_START_S` doubled per attempt,
    capped at ``cap_s``, and randomised to between half and all of that (so that many clients do not return in
    step after a broker restart)."""
    return float(min(cap_s, BACKOFF_START_S * 2.0 ** min(attempt, 30)) * (0.5 + 0.5 * rng.random()))


def describe_connect_error(error: aiomqtt.MqttError, settings: MqttSettings) -> tuple[str, bool]:
    """Why a connection failed, for the log: ``(reason, refused)``, ``refused`` when the broker turned the
    credentials down or the TLS handshake failed (a configuration to fix, not a broker that is away), with the
    settings to check. The password is never part of it."""
    rc = getattr(error, "rc", None)
    code = rc if isinstance(rc, int) else getattr(rc, "value", None)
    if isinstance(code, int) and code in AUTH_REFUSED_CODES:
        user = f"user {settings.username!r}" if settings.username else "no user name"
        password = "a password" if settings.password else "no password"
        return (
            f"the broker refused the login ({error}) with {user} and {password}; check mqtt.username and mqtt.password",
            True,
        )
    text = str(error)
    if settings.tls and ("SSL" in text or "certificate" in text.lower()):
        ca = str(settings.ca_file) if settings.ca_file else "the system's CAs"
        return (
            f"TLS handshake failed ({text}); the broker's certificate must be signed by a CA of mqtt.ca_file "
            f"({ca}) and name mqtt.host ({settings.host}) in its subjectAltName",
            True,
        )
    return text, False


def _payload_bytes(payload: object) -> bytes:
    if isinstance(payload, bytes | bytearray):
        return bytes(payload)
    if payload is None:
        return b""
    return str(payload).encode("utf-8")


class MqttSession:
    """The MQTT connection of the daemon (see the module docstring)."""

    def __init__(
        self,
        settings: MqttSettings,
        topics: Topics,
        subscriptions: list[str],
        inbox: asyncio.Queue[Received],
        outbox: Outbox,
        counters: Counters,
    ) -> None:
        self.settings = settings
        self.topics = topics
        self.subscriptions = subscriptions
        self.inbox = inbox
        self.outbox = outbox
        self.counters = counters
        self.state = SessionState()
        self.intake = True
        """While False (shutting down) received messages are no longer queued."""
        self._client: aiomqtt.Client | None = None
        self._shed_log = RateLimitedLog(logger)

    def _client_for(self) -> aiomqtt.Client:
        return mqtt_client(
            self.settings,
            self.settings.client_id,
            clean_session=False,
            will=aiomqtt.Will(self.topics.status, b"offline", qos=1, retain=True),
            timeout=OPERATION_TIMEOUT_S,
            # Predictions are small messages: without TCP_NODELAY, Nagle's algorithm and delayed ACKs add
            # tens of milliseconds to each (measured in bench/bench_live.py).
            socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)],
        )

    async def run(self, stop: asyncio.Event) -> None:
        """Stay connected until ``stop`` is set, reconnecting with backoff."""
        rng = random.Random()
        attempt = 0
        # One client for every connection: messages it received (and acknowledged) but we had not yet taken
        # from its queue when a connection dropped are still there on the next one, so none is lost.
        reusable = self._client_for()
        # aiomqtt warns at every call past this many pending ones; up to MAX_IN_FLIGHT publishes (plus a
        # subscribe or two) are pending by design.
        reusable.pending_calls_threshold = 2 * MAX_IN_FLIGHT
        while not stop.is_set():
            try:
                # A connection the broker drops before its CONNACK is not reported by aiomqtt: the attempt waits
                # out the client's timeout. Connect under the shorter connect timeout, then operate under the longer.
                reusable.timeout = self.settings.connect_timeout_s
                async with reusable as client:
                    client.timeout = OPERATION_TIMEOUT_S
                    self._client = client
                    await self._on_connect(client)
                    attempt = 0
                    await self._serve(client, stop)
                    if stop.is_set():
                        return
            except aiomqtt.MqttError as error:
                reason, refused = describe_connect_error(error, self.settings)
                self.state.last_error = reason
                self.state.refused = refused
                delay = backoff_delay(attempt, self.settings.reconnect_max_s, rng)
                attempt += 1
                logger.log(
                    logging.ERROR if refused else logging.WARNING,
                    "MQTT %s:%s: %s; reconnecting in %.1f s",
                    self.settings.host,
                    self.settings.port,
                    reason,
                    delay,
                )
            finally:
                self._client = None
                self.state.connected = False
                self.state.connected_event.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay)

    async def _on_connect(self, client: aiomqtt.Client) -> None:
        for topic in self.subscriptions:
            await client.subscribe(topic, qos=1)
        # Only then "online": whoever waits for it may publish at once, and nothing must fall between the two.
        await client.publish(self.topics.status, b"online", qos=1, retain=True)
        self.state.refused = False
        self.state.connected = True
        self.state.connections += 1
        self.state.connected_event.set()
        logger.info(
            "MQTT connected to %s:%s as %s; subscribed to %s",
            self.settings.host,
            self.settings.port,
            self.settings.client_id,
            ", ".join(self.subscriptions),
        )

    async def _serve(self, client: aiomqtt.Client, stop: asyncio.Event) -> None:
        tasks = [
            asyncio.create_task(self._receive(client), name="mqtt-receive"),
            asyncio.create_task(self._send(client), name="mqtt-send"),
            asyncio.create_task(stop.wait(), name="mqtt-stop"),
        ]
        receiver, stopper = tasks[0], tasks[2]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            if receiver not in done and not stopper.done():
                # The sender failed first: the connection is going. Let the receiver end by itself (it raises on
                # the disconnection) rather than cancel it: a cancellation can land just after aiomqtt took a
                # message off its queue, and that message, already acknowledged to the broker, would be lost.
                await asyncio.wait({receiver, stopper}, timeout=RECEIVER_GRACE_S, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        for task in done:
            error = None if task.cancelled() else task.exception()
            if error is not None:
                raise error

    async def _receive(self, client: aiomqtt.Client) -> None:
        async for message in client.messages:
            if not self.intake:
                continue
            item = Received(message.topic.value, _payload_bytes(message.payload), time.time())
            try:
                self.inbox.put_nowait(item)
            except asyncio.QueueFull:
                self.counters.shed_events += 1
                self._shed_log.warning("queue_full", "processing queue full: dropped a message on %s", item.topic)

    async def _send(self, client: aiomqtt.Client) -> None:
        """Publish from the outbox, up to :data:`MAX_IN_FLIGHT` QoS 1 messages awaiting their acknowledgement at
        once (one at a time would cap publishing at one broker round trip per message). Messages are handed to
        the client in outbox order, so they reach the broker in that order."""
        in_flight: set[asyncio.Task[None]] = set()
        errors: list[BaseException] = []

        def finished(task: asyncio.Task[None]) -> None:
            in_flight.discard(task)
            if not task.cancelled() and task.exception() is not None:
                errors.append(task.exception())  # type: ignore[arg-type]

        try:
            while not errors:
                message = await self.outbox.get()
                while len(in_flight) >= MAX_IN_FLIGHT:
                    await asyncio.wait(in_flight, return_when=asyncio.FIRST_COMPLETED)
                task = asyncio.create_task(self._publish(client, message), name="mqtt-publish")
                in_flight.add(task)
                task.add_done_callback(finished)
            raise errors[0]  # the connection failed: the reconnection loop takes over
        finally:
            for task in list(in_flight):
                task.cancel()
            await asyncio.gather(*in_flight, return_exceptions=True)

    def received_waiting(self) -> int:
        """Messages the client received from the broker (and acknowledged) that the receive loop has not yet taken
        (aiomqtt's queue, ahead of the processing queue: where a backlog waits); 0 when not connected."""
        client = self._client
        return len(client.messages) if client is not None else 0

    async def _publish(self, client: aiomqtt.Client, message: Outgoing) -> None:
        try:
            await client.publish(message.topic, message.payload, qos=message.qos, retain=message.retain)
        except (aiomqtt.MqttError, asyncio.CancelledError):
            # Requeue it (at the back: order across a reconnection is not kept) for the next connection.
            try:
                self.outbox.requeue(message)
            except asyncio.QueueFull:
                self.counters.shed_publish += 1
            raise
        finally:
            self.outbox.task_done()

    async def publish_now(self, message: Outgoing, timeout_s: float = 5.0) -> bool:
        """Publish directly when connected (the final ``stopped`` status); False when it could not be sent."""
        client = self._client
        if client is None:
            return False
        try:
            await asyncio.wait_for(
                client.publish(message.topic, message.payload, qos=message.qos, retain=message.retain), timeout_s
            )
        except (aiomqtt.MqttError, TimeoutError) as error:
            logger.warning("could not publish %s: %s", message.topic, error)
            return False
        return True

    async def drain_outbox(self, timeout_s: float) -> bool:
        """Wait until every queued outgoing message was handed to the broker; False on timeout, and False at
        once when not connected because the broker refused the login or the TLS handshake (it will not take
        them within the timeout: a shutdown should not wait for it)."""
        if not self.state.connected and self.state.refused and not self.outbox.empty():
            return False
        try:
            await asyncio.wait_for(self.outbox.join(), timeout_s)
        except TimeoutError:
            return False
        return True
