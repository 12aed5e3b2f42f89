"""``devintel healthcheck``: the daemon's own settings, a real HTTP server, real processes and /proc.

The check against the real daemon (a TOML port found through its command line) is in tests/test_docker.py
(``test_seeded_container_serves_health_and_stops_on_sigterm``) and, in a container, in scripts/check-docker.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from devintel.daemon.healthcheck import daemon_process, health_url
from devintel.daemon.settings import Settings
from harness.broker import free_port


def _env(**settings: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DEVINTEL_") and k != "CREDENTIALS_DIRECTORY"}
    return env | settings


def _healthcheck(*args: str, cwd: Path, **settings: str) -> subprocess.CompletedProcess[str]:
    """``python -m devintel.daemon.healthcheck`` as the image's HEALTHCHECK runs it."""
    return subprocess.run(
        [sys.executable, "-m", "devintel.daemon.healthcheck", "--pid", str(os.getpid()), *args],
        env=_env(**settings),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


@pytest.fixture
def health_server() -> Iterator[tuple[int, dict[str, object]]]:
    """A real HTTP server on loopback answering /health with ``state["code"]`` and ``{"status": ...}``."""
    state: dict[str, object] = {"code": 200, "status": "ok", "paths": []}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            paths = state["paths"]
            assert isinstance(paths, list)
            paths.append(self.path)
            body = json.dumps({"status": state["status"]}).encode()
            code = state["code"]
            assert isinstance(code, int)
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1], state
    finally:
        server.shutdown()
        server.server_close()


def test_healthy_on_200_and_unhealthy_on_503(health_server: tuple[int, dict[str, object]], tmp_path: Path) -> None:
    port, state = health_server
    ok = _healthcheck(cwd=tmp_path, DEVINTEL_HTTP__PORT=str(port))
    assert ok.returncode == 0, ok.stderr
    assert f"healthy: http://127.0.0.1:{port}/health answered 200 (ok)" in ok.stdout
    assert state["paths"] == ["/health"]

    state.update(code=503, status="degraded")  # the broker is away
    degraded = _healthcheck(cwd=tmp_path, DEVINTEL_HTTP__PORT=str(port))
    assert degraded.returncode == 1
    assert "answered 503 (degraded)" in degraded.stderr


def test_unhealthy_when_nothing_answers(tmp_path: Path) -> None:
    result = _healthcheck("--timeout", "2", cwd=tmp_path, DEVINTEL_HTTP__PORT=str(free_port()))
    assert result.returncode == 1
    assert "unhealthy: no answer" in result.stderr


def test_port_from_dotenv_and_from_toml(health_server: tuple[int, dict[str, object]], tmp_path: Path) -> None:
    port, _ = health_server
    (tmp_path / ".env").write_text(f"DEVINTEL_HTTP__PORT={port}\n", encoding="utf-8")
    from_dotenv = _healthcheck(cwd=tmp_path)
    assert from_dotenv.returncode == 0, from_dotenv.stderr
    (tmp_path / ".env").unlink()

    config = tmp_path / "devintel.toml"
    config.write_text(f"[http]\nport = {port}\n", encoding="utf-8")
    from_toml = _healthcheck("--config", str(config), cwd=tmp_path)
    assert from_toml.returncode == 0, from_toml.stderr
    config.write_text(f"[http]\nport = {free_port()}\n", encoding="utf-8")
    elsewhere = _healthcheck("--config", str(config), "--timeout", "2", cwd=tmp_path)
    assert elsewhere.returncode == 1  # the TOML's port is the one asked


def test_http_api_off_is_not_a_failure(tmp_path: Path) -> None:
    result = _healthcheck(cwd=tmp_path, DEVINTEL_HTTP__PORT="0")
    assert result.returncode == 0, result.stderr
    assert "HTTP API is off" in result.stdout


def test_invalid_settings_are_unhealthy(tmp_path: Path) -> None:
    result = _healthcheck(cwd=tmp_path, DEVINTEL_HTTP__PORT="not-a-port")
    assert result.returncode == 1
    assert "invalid settings" in result.stderr


def test_health_url_from_the_listen_address() -> None:
    def url(host: str, port: int) -> str | None:
        return health_url(Settings.model_validate({"http": {"host": host, "port": port}}))

    assert url("127.0.0.1", 8019) == "http://127.0.0.1:8019/health"
    assert url("0.0.0.0", 9000) == "http://127.0.0.1:9000/health"  # every address: loopback is one
    assert url("::", 9000) == "http://[::1]:9000/health"
    assert url("::1", 9000) == "http://[::1]:9000/health"
    assert url("192.0.2.7", 9000) == "http://192.0.2.7:9000/health"
    assert url("127.0.0.1", 0) is None


def test_daemon_process_config_and_cwd_from_proc(tmp_path: Path) -> None:
    """A real process whose command line is a devintel-daemon's: its --config (made absolute) and cwd."""
    if not Path("/proc/self/cmdline").exists():
        pytest.skip("no /proc")
    script = tmp_path / "bin" / "devintel-daemon"
    script.parent.mkdir()
    script.write_text("import time\ntime.sleep(30)\n", encoding="utf-8")
    workdir = tmp_path / "work"
    workdir.mkdir()
    proc = subprocess.Popen(
        [sys.executable, str(script), "--embedded-broker", "--config", "conf/devintel.toml"], cwd=workdir
    )
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)", "--config", "x.toml"], cwd=workdir)
    try:
        deadline = time.monotonic() + 10
        found = daemon_process(proc.pid)
        while found is None and time.monotonic() < deadline:  # the exec may not have happened yet
            time.sleep(0.05)
            found = daemon_process(proc.pid)
        assert found is not None
        assert found.config == workdir / "conf" / "devintel.toml"
        assert found.cwd == workdir
        assert daemon_process(other.pid) is None  # not the daemon: its --config is not taken
    finally:
        for p in (proc, other):
            p.kill()
            p.wait(timeout=10)
    assert daemon_process(proc.pid) is None  # gone
