"""A stand-in for Home Assistant's websocket API, on a free loopback port, for the tests of devintel's HA source.

It speaks HA's protocol (``auth_required`` / ``auth`` / ``auth_ok`` or ``auth_invalid``, commands with ids answered
by ``result`` messages, ``subscribe_events`` and ``event`` messages; text frames only: a binary frame closes the
connection, as HA does) over a real websocket server (``websockets``),
and answers the commands devintel sends from the registries, states and history it is given. Tests push state
changes with :meth:`FakeHomeAssistant.state_changed` and drop connections with :meth:`drop`. Only what devintel
uses is implemented: an unknown command gets HA's ``unknown_command`` error.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import orjson
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed

TOKEN = "test-long-lived-token"
HA_VERSION = "2025.4.4"


@dataclass
class FakeHomeAssistant:
    """What the stand-in knows and what it saw."""

    devices: list[dict[str, Any]] = field(default_factory=list)
    entities: list[dict[str, Any]] = field(default_factory=list)
    areas: list[dict[str, Any]] = field(default_factory=list)
    states: list[dict[str, Any]] = field(default_factory=list)
    history: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    """Recorded states by entity id (compressed: ``{"s": state, "lu": epoch s}``)."""
    token: str = TOKEN
    commands: list[dict[str, Any]] = field(default_factory=list)
    auth_attempts: int = 0
    binary_frames: int = 0
    """Binary frames received (HA closes the connection on one, as this stand-in does)."""
    connections: list[ServerConnection] = field(default_factory=list)
    subscriptions: dict[ServerConnection, dict[str, int]] = field(default_factory=dict)
    server: Server | None = None

    @property
    def url(self) -> str:
        """``ws://127.0.0.1:<port>/api/websocket``."""
        assert self.server is not None
        port = next(iter(self.server.sockets)).getsockname()[1]
        return f"ws://127.0.0.1:{port}/api/websocket"

    async def handle(self, ws: ServerConnection) -> None:
        """One client connection, as HA serves it."""
        self.connections.append(ws)
        await ws.send(orjson.dumps({"type": "auth_required", "ha_version": HA_VERSION}).decode())
        frame = await ws.recv()
        if not isinstance(frame, str):  # HA: "Received non-Text message of type 2 during auth phase"
            self.binary_frames += 1
            await ws.close()
            return
        auth = orjson.loads(frame)
        self.auth_attempts += 1
        if auth.get("type") != "auth" or auth.get("access_token") != self.token:
            await ws.send(orjson.dumps({"type": "auth_invalid", "message": "Invalid access token"}).decode())
            await ws.close()
            return
        await ws.send(orjson.dumps({"type": "auth_ok", "ha_version": HA_VERSION}).decode())
        self.subscriptions[ws] = {}
        with contextlib.suppress(ConnectionClosed):
            async for frame in ws:
                if not isinstance(frame, str):
                    self.binary_frames += 1
                    await ws.close()
                    return
                message = orjson.loads(frame)
                self.commands.append(message)
                await ws.send(orjson.dumps(self._answer(ws, message)).decode())

    def _answer(self, ws: ServerConnection, message: dict[str, Any]) -> dict[str, Any]:
        number, kind = message["id"], message["type"]
        results: dict[str, object] = {
            "config/device_registry/list": self.devices,
            "config/entity_registry/list": self.entities,
            "config/area_registry/list": self.areas,
            "get_states": self.states,
        }
        if kind in results:
            return {"id": number, "type": "result", "success": True, "result": results[kind]}
        if kind == "subscribe_events":
            self.subscriptions[ws][message["event_type"]] = number
            return {"id": number, "type": "result", "success": True, "result": None}
        if kind == "history/history_during_period":
            return {"id": number, "type": "result", "success": True, "result": self._history(message)}
        return {"id": number, "type": "result", "success": False, "error": {"code": "unknown_command"}}

    def _history(self, message: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
        from datetime import datetime

        low = datetime.fromisoformat(message["start_time"]).timestamp()
        high = datetime.fromisoformat(message["end_time"]).timestamp()
        out = {}
        for entity_id in message["entity_ids"]:
            entries = [e for e in self.history.get(entity_id, []) if low <= e["lu"] < high]
            if entries:
                out[entity_id] = entries
        return out

    async def state_changed(self, entity_id: str, new_state: dict[str, Any] | None) -> None:
        """Send a ``state_changed`` event to every subscribed connection."""
        data = {"entity_id": entity_id, "old_state": None, "new_state": new_state}
        for ws, subscribed in list(self.subscriptions.items()):
            number = subscribed.get("state_changed")
            if number is None:
                continue
            event = {"event_type": "state_changed", "data": data, "origin": "LOCAL", "time_fired": "now"}
            with contextlib.suppress(ConnectionClosed):
                await ws.send(orjson.dumps({"id": number, "type": "event", "event": event}).decode())

    async def drop(self) -> None:
        """Close every connection (HA restarting)."""
        for ws in list(self.subscriptions):
            await ws.close()
        self.subscriptions.clear()

    async def wait_for(self, predicate: Any, what: str, timeout: float = 20.0) -> None:
        """Wait until ``predicate()`` holds."""
        deadline = asyncio.get_running_loop().time() + timeout
        while not predicate():
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"timed out waiting for {what}")
            await asyncio.sleep(0.02)


@contextlib.asynccontextmanager
async def fake_home_assistant(home: FakeHomeAssistant) -> AsyncIterator[FakeHomeAssistant]:
    """Serve ``home`` on a free loopback port for the duration of the block."""
    async with serve(home.handle, "127.0.0.1", 0, compression=None) as server:
        home.server = server
        yield home
