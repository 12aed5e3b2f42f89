"""``devintel healthcheck``: ask a running daemon whether it is healthy, with the daemon's own settings.

Exit 0 when ``GET /health`` answers 200 (``ok``), 1 otherwise (503 ``degraded``/``starting``/``stopping``, no
answer, invalid settings). The address comes from the settings, read the way the daemon reads them: the
environment, ``.env`` in the daemon's working directory and the TOML file the daemon was started with
(``--config``); so a port set in TOML or ``.env`` is followed. With the HTTP API off (``http.port = 0``) there is
nothing to ask: it says so and exits 0 (a container's health is then its daemon's process being alive).

The Docker image's ``HEALTHCHECK`` runs it as ``python -m devintel.daemon.healthcheck``, which imports only the
settings (every 30 s on a 2-core box: no pandas, River or FastAPI). Without ``--config``, it looks for the daemon's
command line in ``/proc/<pid>/cmdline`` (``--pid``, 1 by default: the container's daemon, which the entrypoint
execs) and takes its ``--config`` and working directory.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from devintel.daemon.settings import Settings, load_settings

#: The daemon's console script: a process whose command line holds it is the daemon.
DAEMON_SCRIPT = "devintel-daemon"


@dataclass(frozen=True)
class DaemonProcess:
    """What the health check takes from the running daemon's process: its ``--config`` and working directory."""

    config: Path | None
    cwd: Path | None


def daemon_process(pid: int, proc: Path = Path("/proc")) -> DaemonProcess | None:
    """The ``--config`` and working directory of process ``pid`` when it is devintel-daemon, else ``None``."""
    try:
        argv = (proc / str(pid) / "cmdline").read_bytes().split(b"\0")
    except OSError:
        return None
    words = [w.decode("utf-8", errors="surrogateescape") for w in argv if w]
    if not any(Path(w).name == DAEMON_SCRIPT for w in words[:2]):
        return None
    try:
        cwd: Path | None = Path(os.readlink(proc / str(pid) / "cwd"))
    except OSError:
        cwd = None
    config: Path | None = None
    for i, word in enumerate(words):
        if word == "--config" and i + 1 < len(words):
            config = Path(words[i + 1])
        elif word.startswith("--config="):
            config = Path(word.partition("=")[2])
    if config is not None and not config.is_absolute() and cwd is not None:
        config = cwd / config
    return DaemonProcess(config, cwd)


def health_url(settings: Settings) -> str | None:
    """The URL of the daemon's ``/health`` from its settings, or ``None`` when the HTTP API is off."""
    if settings.http.port == 0:
        return None
    host = settings.http.host
    if host in ("", "0.0.0.0"):
        host = "127.0.0.1"  # listening on every address: loopback is one of them
    elif host == "::":
        host = "::1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{settings.http.port}/health"


def check(url: str, timeout: float) -> tuple[bool, str]:
    """``(healthy, one line saying why)`` from one ``GET`` of ``url``."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            body = response.read()
            code = response.status
    except urllib.error.HTTPError as error:
        body, code = error.read(), error.code
    except (urllib.error.URLError, OSError) as error:
        reason = error.reason if isinstance(error, urllib.error.URLError) else error
        return False, f"unhealthy: no answer from {url} ({reason})"
    try:
        status = json.loads(body).get("status", "?")
    except (ValueError, AttributeError):
        status = "?"
    if code == 200:
        return True, f"healthy: {url} answered {code} ({status})"
    return False, f"unhealthy: {url} answered {code} ({status})"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="devintel healthcheck",
        description="Exit 0 when the running daemon's GET /health answers 200, 1 otherwise (its own settings).",
    )
    add_arguments(p)
    return p


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The health check's options (shared by ``devintel healthcheck`` and ``python -m``)."""
    p.add_argument("--config", type=Path, default=None, help="the daemon's TOML settings file [the daemon's own]")
    p.add_argument("--pid", type=int, default=1, help="the daemon's process, for its --config [%(default)s]")
    p.add_argument("--timeout", type=float, default=4.0, help="seconds to wait for the answer [%(default)s]")


def run(args: argparse.Namespace) -> int:
    """The health check with parsed arguments; prints one line, returns the exit code."""
    config = args.config
    if config is None:
        daemon = daemon_process(args.pid)
        if daemon is not None:
            config = daemon.config
            if daemon.cwd is not None:
                with contextlib.suppress(OSError):
                    os.chdir(daemon.cwd)  # .env is read from the daemon's working directory
    try:
        settings = load_settings(config)
    except (ValidationError, ValueError, FileNotFoundError) as invalid:
        print(f"unhealthy: invalid settings: {invalid}", file=sys.stderr)
        return 1
    url = health_url(settings)
    if url is None:
        print("healthy: the HTTP API is off (http.port = 0), nothing to ask; the daemon's process is the check")
        return 0
    healthy, line = check(url, args.timeout)
    print(line, file=sys.stdout if healthy else sys.stderr)
    return 0 if healthy else 1


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m devintel.daemon.healthcheck``."""
    return run(build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
