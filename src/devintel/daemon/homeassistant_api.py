"""The Home Assistant source: a client of HA's websocket API (the I/O half; the mapping is the pure
:mod:`devintel.ingest.adapters.homeassistant_api`).

One task: connect (``ha.api_url``), authenticate with the long-lived access token (``ha.api_token``, best from
``$CREDENTIALS_DIRECTORY`` as ``ha__api_token``), read the device, entity and area registries and the current
states, subscribe to ``state_changed`` (and to registry updates, which read the registries again), and hand
everything to the processing worker as messages on ``$homeassistant-api/...`` pseudo-topics, through the same
queue and handler as MQTT. On the first connection, and after a gap, it reads the recorded history of the mapped
entities (``history/history_during_period``) one day at a time, bounded by ``ha.history_days`` and
``ha.history_max_states``, with its progress in the log. A lost connection is retried after a capped, randomised
exponential backoff (as the MQTT session's); a refused token is logged as an error naming the setting.

It uses ``websockets`` (asyncio, typed, maintained; the library HA's own websocket clients in Python use): HA's
protocol is plain JSON text frames over one connection, which needs no more than that.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

import orjson
import websockets
from websockets.asyncio.client import ClientConnection, connect

from devintel.daemon.mqtt import Received, backoff_delay
from devintel.daemon.settings import HomeAssistantSettings
from devintel.ingest.adapters.homeassistant_api import API_TOPIC, MAX_API_BYTES, HomeAssistantApiAdapter
from devintel.ingest.counters import Counters, RateLimitedLog

logger = logging.getLogger(__name__)

#: Seconds an answer to one command may take (a large registry, a day of history).
CALL_TIMEOUT_S: Final = 60.0
#: A backfill slice: one day of history per request.
HISTORY_SLICE_S: Final = 86_400.0
#: Registry updates within this many seconds are read as one.
REGISTRY_DEBOUNCE_S: Final = 2.0


class HomeAssistantError(Exception):
    """HA refused something (the token, a command) or spoke out of protocol."""


class AuthRefusedError(HomeAssistantError):
    """HA turned the access token down: retrying alone will not fix it."""


def websocket_url(url: str) -> str:
    """HA's websocket endpoint from a configured URL: ``ws(s)://…/api/websocket`` as it is, an ``http(s)://`` URL
    of HA (with or without the path) turned into it."""
    url = url.rstrip("/")
    for plain, secure in (("http://", "ws://"), ("https://", "wss://")):
        if url.startswith(plain):
            url = secure + url[len(plain) :]
    if not url.endswith("/api/websocket"):
        url += "/api/websocket"
    return url


@dataclass(slots=True)
class SourceState:
    """What the health report says of the HA source."""

    connected: bool = False
    connections: int = 0
    last_error: str | None = None
    ha_version: str | None = None
    devices: int = 0
    """HA devices mapped at the last registry read."""
    backfilled_states: int = 0
    """Recorded states read by backfills."""


class _Connection:
    """One authenticated websocket connection: commands with ids and their results, events by subscription."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.ids = itertools.count(1)
        self.pending: dict[int, asyncio.Future[Any]] = {}
        self.subscriptions: dict[int, Callable[[dict[str, Any]], None]] = {}

    async def call(self, kind: str, **fields: object) -> Any:
        """Send a command and return its result (raises :class:`HomeAssistantError` on a failed one)."""
        number = next(self.ids)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.pending[number] = future
        try:
            await self.ws.send(orjson.dumps({"id": number, "type": kind, **fields}).decode())
            return await asyncio.wait_for(future, CALL_TIMEOUT_S)
        finally:
            self.pending.pop(number, None)

    async def subscribe(self, event_type: str, on_event: Callable[[dict[str, Any]], None]) -> None:
        """Subscribe to an event type; ``on_event`` gets each event's ``event`` object."""
        number = next(self.ids)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.pending[number] = future
        self.subscriptions[number] = on_event
        await self.ws.send(orjson.dumps({"id": number, "type": "subscribe_events", "event_type": event_type}).decode())
        await asyncio.wait_for(future, CALL_TIMEOUT_S)

    async def read(self) -> None:
        """Dispatch every message until the connection closes (then raise)."""
        async for frame in self.ws:
            message = orjson.loads(frame)
            for item in message if isinstance(message, list) else [message]:  # HA may coalesce messages
                self._dispatch(item)
        raise ConnectionError("Home Assistant closed the connection")

    def _dispatch(self, item: object) -> None:
        if not isinstance(item, dict):
            return
        number = item.get("id")
        if item.get("type") == "event" and number in self.subscriptions:
            event = item.get("event")
            if isinstance(event, dict):
                self.subscriptions[number](event)
        elif item.get("type") == "result" and number in self.pending:
            future = self.pending[number]
            if future.done():
                return
            if item.get("success"):
                future.set_result(item.get("result"))
            else:
                error = item.get("error") or {}
                future.set_exception(HomeAssistantError(f"{error.get('code')}: {error.get('message')}"))


class HomeAssistantSource:
    """The HA websocket client task (see the module docstring)."""

    def __init__(
        self,
        settings: HomeAssistantSettings,
        inbox: asyncio.Queue[Received],
        counters: Counters,
        clock: Callable[[], float | None] = lambda: None,
        rng: random.Random | None = None,
    ) -> None:
        if not settings.api_url or settings.api_token is None:
            raise ValueError("the Home Assistant source needs ha.api_url and ha.api_token")
        self.settings = settings
        self.url = websocket_url(settings.api_url)
        self.inbox = inbox
        self.counters = counters
        self.clock = clock
        """The HA source's stream clock (the latest event time devintel has of it), None before any: where a
        backfill after a gap starts."""
        self.rng = rng or random.Random()
        self.state = SourceState()
        self._log = RateLimitedLog(logger, interval_s=300.0)
        self._refresh: asyncio.Task[None] | None = None

    async def run(self, stop: asyncio.Event) -> None:
        """Connect, serve, and reconnect after a capped randomised backoff, until ``stop`` is set."""
        attempt = 0
        while not stop.is_set():
            try:
                async with connect(
                    self.url, max_size=MAX_API_BYTES, proxy=None, open_timeout=10, compression=None
                ) as ws:
                    connection = await self._authenticate(ws)
                    attempt = 0
                    await self._serve(connection, stop)
            except AuthRefusedError as error:
                self._failed(f"access token refused ({error}): check ha.api_token", error=True)
            except (OSError, TimeoutError, ConnectionError, websockets.WebSocketException, HomeAssistantError) as e:
                self._failed(f"{type(e).__name__}: {e}", error=False)
            except orjson.JSONDecodeError as error:
                self._failed(f"not JSON from Home Assistant: {error}", error=False)
            finally:
                self.state.connected = False
                if self._refresh is not None:
                    self._refresh.cancel()
            if stop.is_set():
                return
            delay = backoff_delay(attempt, self.settings.reconnect_max_s, self.rng)
            attempt += 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay)

    def _failed(self, reason: str, error: bool) -> None:
        self.state.last_error = reason
        if error:
            logger.error("Home Assistant %s: %s", self.url, reason)
        else:
            self._log.warning("lost", "Home Assistant %s: %s; reconnecting", self.url, reason)

    async def _authenticate(self, ws: ClientConnection) -> _Connection:
        hello = orjson.loads(await asyncio.wait_for(ws.recv(), CALL_TIMEOUT_S))
        if hello.get("type") != "auth_required":
            raise HomeAssistantError(f"expected auth_required, got {str(hello.get('type'))[:40]!r}")
        assert self.settings.api_token is not None
        token = self.settings.api_token.get_secret_value()
        await ws.send(orjson.dumps({"type": "auth", "access_token": token}).decode())  # text frames only: HA's rule
        reply = orjson.loads(await asyncio.wait_for(ws.recv(), CALL_TIMEOUT_S))
        if reply.get("type") == "auth_invalid":
            raise AuthRefusedError(str(reply.get("message") or "auth_invalid"))
        if reply.get("type") != "auth_ok":
            raise HomeAssistantError(f"expected auth_ok, got {str(reply.get('type'))[:40]!r}")
        self.state.ha_version = str(reply.get("ha_version") or hello.get("ha_version") or "") or None
        return _Connection(ws)

    async def _serve(self, connection: _Connection, stop: asyncio.Event) -> None:
        reader = asyncio.create_task(connection.read(), name="homeassistant-read")
        stopper = asyncio.create_task(stop.wait(), name="homeassistant-stop")
        try:
            setup = asyncio.create_task(self._setup(connection), name="homeassistant-setup")
            done, _ = await asyncio.wait({reader, stopper, setup}, return_when=asyncio.FIRST_COMPLETED)
            if setup in done:
                setup.result()  # raise what the setup raised
                done, _ = await asyncio.wait({reader, stopper}, return_when=asyncio.FIRST_COMPLETED)
            else:
                setup.cancel()
                await asyncio.gather(setup, return_exceptions=True)
            if reader in done:
                reader.result()
        finally:
            for task in (reader, stopper):
                task.cancel()
            await asyncio.gather(reader, stopper, return_exceptions=True)

    async def _setup(self, connection: _Connection) -> None:
        """Registries and states, the subscriptions, then the backfill when one is due."""
        since = self.clock()
        backfill = self.settings.history_days > 0
        registries = await self._read_registries(connection, current=not backfill)
        await connection.subscribe("state_changed", self._state_changed)
        for event_type in ("device_registry_updated", "entity_registry_updated", "area_registry_updated"):
            await connection.subscribe(event_type, lambda _: self._schedule_refresh(connection))
        self.state.connected = True
        self.state.connections += 1
        logger.info(
            "Home Assistant %s connected (HA %s): %d devices mapped",
            self.url,
            self.state.ha_version,
            self.state.devices,
        )
        if backfill:
            await self._backfill(connection, registries, since)

    async def _read_registries(self, connection: _Connection, current: bool) -> dict[str, Any]:
        devices = await connection.call("config/device_registry/list")
        entities = await connection.call("config/entity_registry/list")
        areas = await connection.call("config/area_registry/list")
        states = await connection.call("get_states")
        registries = {"devices": devices, "entities": entities, "areas": areas, "states": states, "current": current}
        probe = HomeAssistantApiAdapter()
        with contextlib.suppress(Exception):  # a bad registry is the worker's to count and log
            probe.parse(f"{API_TOPIC}/registries", orjson.dumps({**registries, "current": False}), time.time())
        self.state.devices = len(probe.devices())
        await self.inbox.put(Received(f"{API_TOPIC}/registries", orjson.dumps(registries), time.time()))
        return registries

    def _schedule_refresh(self, connection: _Connection) -> None:
        if self._refresh is not None and not self._refresh.done():
            return

        async def refresh() -> None:
            await asyncio.sleep(REGISTRY_DEBOUNCE_S)
            try:
                await self._read_registries(connection, current=False)
            except (HomeAssistantError, TimeoutError, websockets.WebSocketException) as error:
                logger.warning("Home Assistant registries not read again: %s", error)

        self._refresh = asyncio.create_task(refresh(), name="homeassistant-registries")

    def _state_changed(self, event: dict[str, Any]) -> None:
        data = event.get("data")
        if not isinstance(data, dict):
            return
        item = Received(f"{API_TOPIC}/state_changed", orjson.dumps(data), time.time())
        try:
            self.inbox.put_nowait(item)
        except asyncio.QueueFull:
            self.counters.shed_events += 1
            self._log.warning("queue_full", "processing queue full: dropped a Home Assistant state change")

    async def _backfill(self, connection: _Connection, registries: dict[str, Any], since: float | None) -> None:
        """Read the recorded history of the mapped entities from ``since`` (or ``ha.history_days`` ago, whichever
        is later) to now, one day a request, into the same path as live readings; bounded in states."""
        probe = HomeAssistantApiAdapter()
        probe.parse(f"{API_TOPIC}/registries", orjson.dumps({**registries, "current": False}), time.time())
        entity_ids = sorted(probe.entities())
        now = time.time()
        start = now - self.settings.history_days * 86_400.0
        if since is not None:
            start = max(start, since)
        if not entity_ids or start >= now - 1.0:
            await self._current(registries)
            return
        slices = max(1, int((now - start + HISTORY_SLICE_S - 1) // HISTORY_SLICE_S))
        logger.info(
            "history backfill: %d entities of %d devices, %.1f days from %s",
            len(entity_ids),
            len(probe.devices()),
            (now - start) / 86_400.0,
            _iso(start),
        )
        read = 0
        begin = time.monotonic()
        for index in range(slices):
            low = start + index * HISTORY_SLICE_S
            high = min(now, low + HISTORY_SLICE_S)
            history = await connection.call(
                "history/history_during_period",
                start_time=_iso(low),
                end_time=_iso(high),
                entity_ids=entity_ids,
                minimal_response=True,
                no_attributes=True,
                significant_changes_only=False,
            )
            if not isinstance(history, dict):
                raise HomeAssistantError("history/history_during_period answered no object")
            states = sum(len(v) for v in history.values() if isinstance(v, list))
            read += states
            self.state.backfilled_states += states
            await self.inbox.put(Received(f"{API_TOPIC}/history", orjson.dumps({"history": history}), time.time()))
            logger.info(
                "history backfill: day %d/%d, %d states (%d in all, %.1f s)",
                index + 1,
                slices,
                states,
                read,
                time.monotonic() - begin,
            )
            if read >= self.settings.history_max_states:
                logger.warning(
                    "history backfill stopped at %d states (ha.history_max_states); the rest is not read", read
                )
                break
        await self._current(registries)
        logger.info("history backfill done: %d states in %.1f s", read, time.monotonic() - begin)

    async def _current(self, registries: dict[str, Any]) -> None:
        """The current states as the devices' latest readings, after the history."""
        await self.inbox.put(
            Received(f"{API_TOPIC}/registries", orjson.dumps({**registries, "current": True}), time.time())
        )


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat()
