"""The HTTP API: every endpoint over a fake service, the bearer token, the error paths, and a real server."""

from __future__ import annotations

import asyncio
import errno
import signal
import socket
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from devintel.daemon.http import MAX_BODY_BYTES, HttpBindError, ServiceApi, create_app, serve
from devintel.daemon.refresh import RefreshCancelledError, RefreshError
from devintel.ingest.inbound import Rejected

TOKEN = "s3cret-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


class FakeService:
    """A ServiceApi over plain dicts: just enough state to exercise every endpoint."""

    def __init__(self) -> None:
        self.status = "ok"
        self.version = "20240101T000000Z"
        self.refreshing = False
        self.refresh_error: Exception | None = None
        self.disk_full = False
        self.refreshes = 0
        self.snapshots = 0
        self.latest: dict[str, dict[str, Any]] = {
            "plug.1": {"device_id": "plug.1", "probability": 0.9, "ts": 100.0},
            "door:2": {"device_id": "door:2", "probability": 0.2, "ts": 101.0},
        }

    def health(self) -> dict[str, Any]:
        return {"status": self.status, "model_version": self.version, "rejected": {"too_large": 0}}

    def models(self) -> dict[str, Any]:
        return {"version": self.version, "created": "2024-01-01T00:00:00Z", "models": {"logistic": {"threshold": 0.5}}}

    def model_version(self) -> str:
        return self.version

    async def refresh(self) -> dict[str, Any]:
        if self.refreshing:
            raise RuntimeError("refresh in progress")
        if self.refresh_error is not None:
            raise self.refresh_error
        self.refreshes += 1
        self.version = f"v{self.refreshes}"
        return {"version": self.version, "gate": {"passed": True}}

    async def snapshot(self) -> str:
        if self.disk_full:
            raise OSError(errno.ENOSPC, "No space left on device")
        self.snapshots += 1
        return self.version

    def predictions(self) -> list[dict[str, Any]]:
        return list(self.latest.values())

    def prediction(self, device_id: str) -> dict[str, Any] | None:
        return self.latest.get(device_id)

    def maintenance(self) -> list[dict[str, Any]]:
        return sorted(
            (p for p in self.latest.values() if p["probability"] >= 0.5), key=lambda p: -float(p["probability"])
        )

    def predict(self, event: dict[str, Any]) -> dict[str, Any]:
        if "device_id" not in event:
            raise Rejected("bad_device_id", "device_id is missing")
        level = event.get("battery_level", 100)
        if not isinstance(level, int | float) or isinstance(level, bool):
            raise Rejected("wrong_type", "battery_level must be a number")
        return {"device_id": event["device_id"], "probability": 1.0 - level / 100.0}

    def metrics_text(self) -> str:
        return "# TYPE devintel_events_total counter\ndevintel_events_total 42\n"


@pytest.fixture
def service() -> FakeService:
    return FakeService()


@pytest.fixture
def client(service: FakeService) -> Iterator[TestClient]:
    with TestClient(create_app(service, TOKEN)) as c:
        yield c


def test_fake_service_satisfies_the_protocol(service: FakeService) -> None:
    api: ServiceApi = service  # checked by mypy; at run time, just the call
    assert api.model_version() == service.version


# --- reading endpoints -----------------------------------------------------------------------------------


def test_health_ok_is_200_with_the_health_json(client: TestClient) -> None:
    r = client.get("/health")
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/json"
    assert r.json() == {"status": "ok", "model_version": "20240101T000000Z", "rejected": {"too_large": 0}}


@pytest.mark.parametrize("status", ["degraded", "starting", "stopping"])
def test_health_not_ok_is_503_with_the_same_body(client: TestClient, service: FakeService, status: str) -> None:
    service.status = status
    r = client.get("/health")
    assert r.status_code == 503
    assert r.json()["status"] == status


def test_models_and_version(client: TestClient, service: FakeService) -> None:
    assert client.get("/models").json() == service.models()
    r = client.get("/models/version")
    assert r.status_code == 200
    assert r.json() == {"version": "20240101T000000Z"}


def test_predictions_list_and_one(client: TestClient) -> None:
    listed = client.get("/predictions").json()
    assert [p["device_id"] for p in listed] == ["plug.1", "door:2"]
    r = client.get("/predictions/door:2")
    assert r.status_code == 200
    assert r.json() == {"device_id": "door:2", "probability": 0.2, "ts": 101.0}


def test_prediction_of_an_unknown_device_is_404(client: TestClient) -> None:
    r = client.get("/predictions/nope")
    assert r.status_code == 404
    assert "nope" in r.json()["detail"]


def test_maintenance_highest_first(client: TestClient, service: FakeService) -> None:
    service.latest["lock.3"] = {"device_id": "lock.3", "probability": 0.95, "ts": 102.0}
    assert [p["device_id"] for p in client.get("/maintenance").json()] == ["lock.3", "plug.1"]


def test_metrics_is_prometheus_text(client: TestClient) -> None:
    r = client.get("/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    assert "devintel_events_total 42" in r.text


def test_gets_are_open_even_with_a_token(client: TestClient) -> None:
    for path in ("/health", "/models", "/models/version", "/predictions", "/maintenance", "/metrics"):
        assert client.get(path).status_code == 200, path


@pytest.mark.parametrize("path", ["/docs", "/redoc", "/openapi.json", "/docs/oauth2-redirect"])
def test_no_docs_or_openapi_routes(client: TestClient, path: str) -> None:
    assert client.get(path).status_code == 404


def test_numpy_values_serialise(service: FakeService) -> None:
    np = pytest.importorskip("numpy")
    service.latest["plug.1"]["probability"] = np.float64(0.75)
    with TestClient(create_app(service, None)) as c:
        assert c.get("/predictions/plug.1").json()["probability"] == 0.75


# --- changing endpoints and the token ----------------------------------------------------------------------


def test_refresh_with_the_token(client: TestClient, service: FakeService) -> None:
    r = client.post("/models/refresh", headers=AUTH)
    assert r.status_code == 200
    assert r.json() == {"version": "v1", "gate": {"passed": True}}
    assert service.version == "v1"


def test_refresh_already_running_is_409(client: TestClient, service: FakeService) -> None:
    service.refreshing = True
    r = client.post("/models/refresh", headers=AUTH)
    assert r.status_code == 409
    assert "already running" in r.json()["detail"]
    assert service.refreshes == 0


@pytest.mark.parametrize(
    ("error", "status"),
    [(RefreshCancelledError("shutting down"), 503), (RefreshError("Traceback ... ValueError: bad"), 500)],
)
def test_a_refresh_cancelled_or_failed_is_503_or_500(
    client: TestClient, service: FakeService, error: Exception, status: int
) -> None:
    service.refresh_error = error
    r = client.post("/models/refresh", headers=AUTH)
    assert r.status_code == status
    assert "Traceback" not in r.text  # the child's traceback goes to the log, not to the client


def test_snapshot_with_the_token(client: TestClient, service: FakeService) -> None:
    r = client.post("/models/snapshot", headers=AUTH)
    assert r.status_code == 200
    assert r.json() == {"version": service.version}
    assert service.snapshots == 1


def test_snapshot_disk_failure_is_507_with_a_clear_message(client: TestClient, service: FakeService) -> None:
    service.disk_full = True
    r = client.post("/models/snapshot", headers=AUTH)
    assert r.status_code == 507
    assert "could not write the snapshot" in r.json()["detail"]
    assert "No space left on device" in r.json()["detail"]


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong"},
        {"Authorization": f"Bearer {TOKEN}x"},
        {"Authorization": TOKEN},
        {"Authorization": f"Basic {TOKEN}"},
        {"Authorization": "Bearer "},
    ],
    ids=["missing", "wrong", "longer", "no-scheme", "basic", "empty"],
)
@pytest.mark.parametrize("path", ["/models/refresh", "/models/snapshot", "/predict"])
def test_posts_without_the_right_token_are_401(
    client: TestClient, service: FakeService, headers: dict[str, str], path: str
) -> None:
    r = client.post(path, headers=headers, json={"device_id": "x"})
    assert r.status_code == 401
    assert r.headers["www-authenticate"] == "Bearer"
    assert service.refreshes == 0
    assert service.snapshots == 0


def test_non_ascii_authorization_is_401_not_500(client: TestClient) -> None:
    r = client.post("/models/snapshot", headers=[(b"Authorization", b"Bearer caf\xe9")])
    assert r.status_code == 401


def test_a_non_ascii_token_sent_as_utf8_is_accepted(service: FakeService) -> None:
    with TestClient(create_app(service, "caf\u00e9")) as c:
        assert c.post("/models/snapshot", headers=[(b"Authorization", "Bearer caf\u00e9".encode())]).status_code == 200
        assert c.post("/models/snapshot", headers={"Authorization": "Bearer cafe"}).status_code == 401


def test_without_a_configured_token_posts_are_open(service: FakeService) -> None:
    with TestClient(create_app(service, None)) as c:
        assert c.post("/models/snapshot").status_code == 200
        assert c.post("/models/refresh").status_code == 200
        assert c.post("/predict", json={"device_id": "a"}).status_code == 200


def test_an_empty_token_is_refused(service: FakeService) -> None:
    with pytest.raises(ValueError, match="empty"):
        create_app(service, "")


# --- POST /predict ---------------------------------------------------------------------------------------


def test_predict_scores_an_event(client: TestClient) -> None:
    r = client.post("/predict", headers=AUTH, json={"device_id": "plug.9", "battery_level": 25})
    assert r.status_code == 200
    assert r.json() == {"device_id": "plug.9", "probability": 0.75}


def test_predict_rejected_is_422_with_reason_and_detail(client: TestClient) -> None:
    r = client.post("/predict", headers=AUTH, json={"battery_level": 25})
    assert r.status_code == 422
    assert r.json() == {"reason": "bad_device_id", "detail": "device_id is missing"}
    r = client.post("/predict", headers=AUTH, json={"device_id": "a", "battery_level": "low"})
    assert r.status_code == 422
    assert r.json()["reason"] == "wrong_type"


def test_predict_malformed_json_is_422(client: TestClient) -> None:
    r = client.post("/predict", headers={**AUTH, "Content-Type": "application/json"}, content=b"{not json")
    assert r.status_code == 422
    assert r.json()["reason"] == "malformed_json"
    r = client.post("/predict", headers=AUTH, content=b"\xff\xfe")
    assert r.status_code == 422
    assert r.json()["reason"] == "malformed_json"


@pytest.mark.parametrize("body", [b"[1, 2]", b'"text"', b"3", b"null"])
def test_predict_non_object_is_422_wrong_type(client: TestClient, body: bytes) -> None:
    r = client.post("/predict", headers=AUTH, content=body)
    assert r.status_code == 422
    assert r.json()["reason"] == "wrong_type"


def _padded_event(size: int) -> bytes:
    """A JSON object of exactly ``size`` bytes."""
    head = b'{"device_id":"a","pad":"'
    tail = b'"}'
    return head + b"x" * (size - len(head) - len(tail)) + tail


def test_predict_body_at_the_limit_is_accepted(client: TestClient) -> None:
    r = client.post("/predict", headers=AUTH, content=_padded_event(MAX_BODY_BYTES))
    assert r.status_code == 200


def test_predict_body_over_the_limit_is_413(client: TestClient) -> None:
    r = client.post("/predict", headers=AUTH, content=_padded_event(MAX_BODY_BYTES + 1))
    assert r.status_code == 413
    assert r.json()["reason"] == "too_large"


def test_predict_streamed_body_over_the_limit_is_413(client: TestClient) -> None:
    def chunks() -> Iterator[bytes]:  # no Content-Length: chunked transfer encoding
        yield b'{"device_id":"a","pad":"'
        for _ in range(20):
            yield b"x" * 8192
        yield b'"}'

    r = client.post("/predict", headers=AUTH, content=chunks())
    assert r.status_code == 413


# --- serve() for real ------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _get_when_up(client: httpx.AsyncClient, url: str, task: asyncio.Task[None]) -> httpx.Response:
    async with asyncio.timeout(10):
        while True:
            assert not task.done(), "serve() ended before it answered"
            try:
                return await client.get(url)
            except httpx.ConnectError:
                await asyncio.sleep(0.02)


async def test_serve_answers_and_stops_when_asked(service: FakeService) -> None:
    port = _free_port()
    stop = asyncio.Event()
    sigint_before = signal.getsignal(signal.SIGINT)
    sigterm_before = signal.getsignal(signal.SIGTERM)
    task = asyncio.create_task(serve(create_app(service, TOKEN), "127.0.0.1", port, stop))
    try:
        async with httpx.AsyncClient() as http:  # keeps its connection open: shutdown must close it
            r = await _get_when_up(http, f"http://127.0.0.1:{port}/health", task)
            assert r.status_code == 200
            assert r.json()["status"] == "ok"
            assert "server" not in r.headers
            # uvicorn must leave the daemon's signal handlers alone.
            assert signal.getsignal(signal.SIGINT) is sigint_before
            assert signal.getsignal(signal.SIGTERM) is sigterm_before
            stop.set()
            async with asyncio.timeout(5):
                await task
    finally:
        task.cancel()
    assert task.exception() is None
    with pytest.raises(httpx.ConnectError):
        async with httpx.AsyncClient() as http:
            await http.get(f"http://127.0.0.1:{port}/health")


async def test_serve_on_a_busy_port_raises_a_clear_oserror(service: FakeService) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = int(busy.getsockname()[1])
        async with asyncio.timeout(5):
            with pytest.raises(HttpBindError) as caught:
                await serve(create_app(service, None), "127.0.0.1", port, asyncio.Event())
    assert isinstance(caught.value, OSError)
    assert caught.value.errno == errno.EADDRINUSE
    assert f"127.0.0.1:{port}" in str(caught.value)


async def test_serve_cancelled_stops_listening(service: FakeService) -> None:
    port = _free_port()
    task = asyncio.create_task(serve(create_app(service, None), "127.0.0.1", port, asyncio.Event()))
    async with httpx.AsyncClient() as http:
        await _get_when_up(http, f"http://127.0.0.1:{port}/health", task)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    with pytest.raises(httpx.ConnectError):
        async with httpx.AsyncClient() as http:
            await http.get(f"http://127.0.0.1:{port}/health")


def test_metrics_carry_the_live_alarm_quality_and_the_challenger() -> None:
    from devintel.daemon.prometheus import prometheus_text

    text = prometheus_text(
        {
            "alarms": {"false_alarms_per_100_device_days": 0.25, "catch_rate": 0.9, "failures": 4},
            "challenger": {"verdict": "serving models hold", "promotions": 1, "serving_false": 3},
            "queue": {"depth": 2, "capacity": 100, "received": 340, "outbox": 0, "busy_s": 12.5},
        }
    )
    assert "devintel_queue_depth 2" in text
    assert "devintel_queue_received 340" in text
    assert "devintel_handler_busy_seconds_total 12.5" in text
    assert 'devintel_alarm_quality{metric="false_alarms_per_100_device_days"} 0.25' in text
    assert 'devintel_alarm_quality{metric="catch_rate"} 0.9' in text
    assert 'devintel_challenger{metric="promotions"} 1' in text
    assert "verdict" not in text  # words stay in the health message
