"""The daemon's small HTTP API (DESIGN.md, section HTTP), served by uvicorn inside the daemon's own loop.

:func:`create_app` builds the FastAPI application over a :class:`ServiceApi` (the daemon's runtime
implements it); :func:`serve` runs it until an event is set. Every endpoint is ``async def``, so every call
into the service runs on the daemon's event loop, never on a worker thread: the runtime's state needs no
lock. Reading endpoints are open; changing ones (every ``POST``) need ``Authorization: Bearer <token>``
when a token is configured. There is no OpenAPI document and no docs UI: the surface stays small.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
from collections.abc import Generator
from typing import Any, Final, Protocol

import fastapi
import orjson
import uvicorn
from fastapi import Depends, Request
from fastapi.responses import Response

from devintel.daemon.refresh import RefreshCancelledError, RefreshError
from devintel.ingest.inbound import MAX_PAYLOAD_BYTES, Rejected

logger = logging.getLogger(__name__)

#: Largest ``POST /predict`` body accepted, in bytes (the same bound as an MQTT payload).
MAX_BODY_BYTES: Final = MAX_PAYLOAD_BYTES
#: Content type of ``GET /metrics`` (Prometheus text exposition format 0.0.4).
METRICS_CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"
#: Seconds :func:`serve` gives open requests to finish once asked to stop.
SHUTDOWN_GRACE_S: Final = 5


class ServiceApi(Protocol):
    """What the HTTP API asks of the daemon's runtime."""

    def health(self) -> dict[str, Any]:
        """The retained MQTT health message; ``"status"`` is ``ok``, ``degraded``, ``starting`` or ``stopping``."""
        ...

    def models(self) -> dict[str, Any]:
        """The loaded snapshot's manifest summary: version, created, models with thresholds, router, quality."""
        ...

    def model_version(self) -> str:
        """The loaded snapshot's version."""
        ...

    async def refresh(self) -> dict[str, Any]:
        """Re-bootstrap from synthetic data: ``{"passed": bool, "version": ... | None, "gate": {...}}`` (a failed
        gate writes and changes nothing).

        Raises :class:`~devintel.daemon.refresh.RefreshCancelledError` when the daemon shuts down meanwhile,
        :class:`~devintel.daemon.refresh.RefreshError` when the refresh's process fails, :class:`RuntimeError` when
        a refresh is already running, :class:`OSError` when the snapshot cannot be written or read."""
        ...

    async def snapshot(self) -> str:
        """Write a snapshot now and return its version; raises :class:`OSError` on a disk failure."""
        ...

    def predictions(self) -> list[dict[str, Any]]:
        """The latest prediction of every device (the MQTT prediction payload)."""
        ...

    def prediction(self, device_id: str) -> dict[str, Any] | None:
        """The latest prediction of one device, ``None`` when the device is unknown."""
        ...

    def maintenance(self) -> list[dict[str, Any]]:
        """The devices that need attention, highest failure probability first."""
        ...

    def predict(self, event: dict[str, Any]) -> dict[str, Any]:
        """Score an ad-hoc canonical event without learning or changing state.

        Raises :class:`~devintel.ingest.inbound.Rejected` for a message that cannot be read; a bad metric value
        is left out and named under ``dropped_values``."""
        ...

    def metrics_text(self) -> str:
        """The daemon's metrics in the Prometheus text exposition format."""
        ...


class HttpBindError(OSError):
    """The HTTP API could not listen on its address (port in use, address not available, no permission)."""


class OrjsonResponse(Response):
    """A JSON response rendered by orjson (NumPy scalars and arrays allowed; NaN and infinities become null)."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        """The body: ``content`` as JSON."""
        return orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY)


def _json(content: Any, status_code: int = 200) -> OrjsonResponse:
    return OrjsonResponse(content, status_code=status_code)


def _error(status_code: int, detail: str, reason: str | None = None) -> OrjsonResponse:
    body: dict[str, str] = {"detail": detail} if reason is None else {"reason": reason, "detail": detail}
    return _json(body, status_code)


async def _read_body(request: Request, limit: int) -> bytes | None:
    """The request body, or ``None`` once it is known to exceed ``limit`` bytes (declared or streamed)."""
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            if int(declared) > limit:
                return None
        except ValueError:
            pass  # the server has already refused a malformed Content-Length; stream and count anyway
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def create_app(service: ServiceApi, token: str | None) -> fastapi.FastAPI:
    """The HTTP API over ``service``; with a ``token``, every ``POST`` needs ``Authorization: Bearer <token>``.

    ``token=None`` leaves the changing endpoints open (fine on loopback); an empty token is refused with
    :class:`ValueError` rather than taken to mean "no token"."""
    if token is not None and not token:
        raise ValueError("the HTTP token must not be empty (use None for no token)")
    expected = None if token is None else f"Bearer {token}".encode()

    async def authorize(request: Request) -> None:
        if expected is None:
            return
        # Starlette decodes header bytes as latin-1: encoding back gives the bytes as sent (a UTF-8 token works).
        given = request.headers.get("authorization", "").encode("latin-1")
        if not hmac.compare_digest(given, expected):
            raise fastapi.HTTPException(
                status_code=401, detail="a valid bearer token is required", headers={"WWW-Authenticate": "Bearer"}
            )

    app = fastapi.FastAPI(
        title="devintel",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        default_response_class=OrjsonResponse,
    )
    changing = [Depends(authorize)]

    @app.get("/health")
    async def health() -> Response:
        report = service.health()
        return _json(report, 200 if report.get("status") == "ok" else 503)

    @app.get("/models")
    async def models() -> Response:
        return _json(service.models())

    @app.get("/models/version")
    async def model_version() -> Response:
        return _json({"version": service.model_version()})

    @app.post("/models/refresh", dependencies=changing)
    async def refresh() -> Response:
        try:
            result = await service.refresh()
        except RefreshCancelledError as exc:
            return _error(503, str(exc))
        except RefreshError as exc:
            logger.error("refresh requested over HTTP failed: %s", exc)
            return _error(500, "the refresh failed (see the daemon's log)")
        except RuntimeError as exc:
            return _error(409, f"a refresh is already running: {exc}")
        except OSError as exc:
            logger.error("refresh requested over HTTP failed: %s", exc)
            return _error(507, f"could not write the snapshot: {exc}")
        return _json(result)

    @app.post("/models/snapshot", dependencies=changing)
    async def snapshot() -> Response:
        try:
            version = await service.snapshot()
        except OSError as exc:
            logger.error("snapshot requested over HTTP failed: %s", exc)
            return _error(507, f"could not write the snapshot: {exc}")
        return _json({"version": version})

    @app.get("/predictions")
    async def predictions() -> Response:
        return _json(service.predictions())

    @app.get("/predictions/{device_id}")
    async def prediction(device_id: str) -> Response:
        found = service.prediction(device_id)
        if found is None:
            return _error(404, f"no prediction for device {device_id!r}")
        return _json(found)

    @app.get("/maintenance")
    async def maintenance() -> Response:
        return _json(service.maintenance())

    @app.post("/predict", dependencies=changing)
    async def predict(request: Request) -> Response:
        body = await _read_body(request, MAX_BODY_BYTES)
        if body is None:
            return _error(413, f"request body over {MAX_BODY_BYTES} bytes", reason="too_large")
        try:
            event = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            return _error(422, f"the body is not JSON: {exc}", reason="malformed_json")
        if not isinstance(event, dict):
            return _error(422, f"expected a JSON object, got {type(event).__name__}", reason="wrong_type")
        try:
            scored = service.predict(event)
        except Rejected as exc:
            return _error(422, exc.detail, reason=exc.reason)
        return _json(scored)

    @app.get("/metrics")
    async def metrics() -> Response:
        return Response(service.metrics_text(), media_type=METRICS_CONTENT_TYPE)

    return app


class _Server(uvicorn.Server):
    """uvicorn's server without its signal handling: the daemon owns SIGINT and SIGTERM."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        """uvicorn >= 0.29 swaps the process's SIGINT/SIGTERM handlers in here; do nothing instead."""
        yield

    def install_signal_handlers(self) -> None:
        """uvicorn < 0.29 installs its signal handlers in here; do nothing instead."""


async def serve(app: fastapi.FastAPI, host: str, port: int, stop: asyncio.Event) -> None:
    """Serve ``app`` on ``host:port`` in the running loop until ``stop`` is set, then shut down gracefully.

    Open requests get :data:`SHUTDOWN_GRACE_S` seconds to finish. uvicorn installs no signal handlers and
    leaves logging alone (its loggers propagate to the daemon's). Raises :class:`HttpBindError` (an
    :class:`OSError`) when the address cannot be bound, where uvicorn itself would ``sys.exit(1)``."""
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level="warning",
        log_config=None,
        lifespan="off",
        access_log=False,
        server_header=False,
        timeout_graceful_shutdown=SHUTDOWN_GRACE_S,
    )
    server = _Server(config)

    async def watch_stop() -> None:
        await stop.wait()
        server.should_exit = True

    watcher = asyncio.create_task(watch_stop(), name="http-stop-watch")
    try:
        await server.serve()
    except SystemExit as exc:
        # uvicorn logs the OSError from create_server and calls sys.exit(1) inside its except block, so the
        # OSError is the SystemExit's context. SystemExit must not leave this coroutine: in a Task, asyncio
        # re-raises it out of the event loop itself.
        cause = exc.__context__
        if isinstance(cause, OSError):
            raise HttpBindError(
                cause.errno, f"HTTP API cannot listen on {host}:{port}: {cause.strerror or cause}"
            ) from cause
        raise HttpBindError(f"HTTP API failed to start on {host}:{port} (uvicorn exit code {exc.code})") from None
    except asyncio.CancelledError:
        # Cancelled rather than stopped (a sibling task failed): at least stop listening and drop connections.
        for listener in getattr(server, "servers", []):
            listener.close()
        for connection in list(server.server_state.connections):
            connection.shutdown()
        raise
    finally:
        watcher.cancel()
