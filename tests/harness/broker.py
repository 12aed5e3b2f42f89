"""A real MQTT broker in a subprocess, for integration tests.

Mosquitto when it is installed (on ``PATH``, or Debian's ``/usr/sbin/mosquitto``), with persistence on so
that persistent sessions and their queued QoS 1 messages survive :meth:`Broker.restart`; otherwise amqtt,
the pure-Python broker that ``devintel-daemon --embedded-broker`` uses, in a ``python -c`` subprocess (it
keeps nothing across a restart). Set ``MQTT_TEST_BROKER=amqtt`` (or ``mosquitto``) to choose.

Each broker listens on a free loopback port, which it keeps across restarts, and writes its configuration,
database and log into its own directory. A mosquitto broker takes ``extra_config``: lines appended to its
generated configuration (more listeners, TLS files, a password file; a later ``allow_anonymous`` overrides the
default ``true``). Methods block (at most ``startup_timeout`` / ``stop_timeout``
seconds); from a coroutine, ``await asyncio.to_thread(broker.restart)`` keeps the event loop running.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import logging
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import time
import weakref
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import aiomqtt

logger = logging.getLogger(__name__)

__all__ = ["Broker", "BrokerError", "BrokerKind", "describe_broker", "find_mosquitto", "free_port", "preferred_kind"]

BrokerKind = Literal["mosquitto", "amqtt"]

#: Environment variable that chooses the broker kind (``mosquitto`` or ``amqtt``) instead of auto-detection.
KIND_ENV = "MQTT_TEST_BROKER"
#: Where Debian installs mosquitto; ``/usr/sbin`` is not on every user's ``PATH``.
DEBIAN_MOSQUITTO = "/usr/sbin/mosquitto"

#: The amqtt subprocess: a broker on 127.0.0.1:<argv[1]> that shuts down cleanly on SIGTERM or SIGINT.
_AMQTT_SCRIPT = """
import asyncio, logging, signal, sys
logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s")
from amqtt.broker import Broker

async def main(port):
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    broker = Broker({
        "listeners": {"default": {"type": "tcp", "bind": f"127.0.0.1:{port}"}},
        "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}},
    })
    await broker.start()
    print(f"amqtt broker listening on 127.0.0.1:{port}", file=sys.stderr, flush=True)
    await stop.wait()
    await broker.shutdown()

asyncio.run(main(int(sys.argv[1])))
"""

#: Brokers still running, killed at interpreter exit should a test session end without stopping them.
_live: weakref.WeakSet[Broker] = weakref.WeakSet()


def find_mosquitto() -> str | None:
    """The mosquitto executable: on ``PATH``, else Debian's ``/usr/sbin/mosquitto``, else ``None``."""
    found = shutil.which("mosquitto")
    if found:
        return found
    if os.access(DEBIAN_MOSQUITTO, os.X_OK):
        return DEBIAN_MOSQUITTO
    return None


def preferred_kind() -> BrokerKind:
    """The broker kind tests get: ``$MQTT_TEST_BROKER`` when set, else mosquitto when installed, else amqtt."""
    chosen = os.environ.get(KIND_ENV, "").strip().lower()
    if chosen == "mosquitto":
        return "mosquitto"
    if chosen == "amqtt":
        return "amqtt"
    if chosen:
        raise ValueError(f"{KIND_ENV}={chosen!r}: expected 'mosquitto' or 'amqtt'")
    return "mosquitto" if find_mosquitto() else "amqtt"


def describe_broker() -> str:
    """One line for the pytest report header: which broker the integration tests run against."""
    kind = preferred_kind()
    if kind == "mosquitto":
        return f"mqtt broker for integration tests: mosquitto ({find_mosquitto() or 'not found!'})"
    reason = f"{KIND_ENV}=amqtt" if os.environ.get(KIND_ENV) else "mosquitto not on PATH"
    return f"mqtt broker for integration tests: amqtt (embedded; {reason})"


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that nothing listens on right now (the kernel's choice for an ephemeral bind)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


class BrokerError(RuntimeError):
    """The broker did not start (its log is in the message)."""


class Broker:
    """A real MQTT broker process on a free loopback port, for one test.

    ``workdir`` receives the configuration, the persistence database and the broker's log. ``kind`` defaults
    to :func:`preferred_kind`; ``port`` to a free one, chosen on the first :meth:`start`.
    """

    host = "127.0.0.1"

    def __init__(
        self,
        workdir: Path,
        kind: BrokerKind | None = None,
        *,
        port: int | None = None,
        startup_timeout: float = 10.0,
        stop_timeout: float = 10.0,
        extra_config: Sequence[str] = (),
        persistence: bool = True,
    ) -> None:
        """Prepare a broker in ``workdir``; nothing runs until :meth:`start`. ``extra_config`` (mosquitto only:
        ``ValueError`` for amqtt) is appended to the generated mosquitto configuration. ``persistence`` False keeps
        mosquitto's sessions in memory only (no database written every second: what a benchmark wants)."""
        self._workdir = Path(workdir)
        self._workdir.mkdir(parents=True, exist_ok=True)
        self._kind: BrokerKind = kind or preferred_kind()
        if extra_config and self._kind != "mosquitto":
            raise ValueError("extra_config is mosquitto configuration: the amqtt broker cannot take it")
        self._extra_config = list(extra_config)
        self._persistence = persistence
        self._executable = find_mosquitto() if self._kind == "mosquitto" else sys.executable
        if self._executable is None:
            raise BrokerError("mosquitto is not installed")
        self._startup_timeout = startup_timeout
        self._stop_timeout = stop_timeout
        self._port: int | None = port
        self._process: subprocess.Popen[bytes] | None = None
        self.log_path = self._workdir / f"{self._kind}.log"

    @property
    def kind(self) -> BrokerKind:
        """``"mosquitto"`` or ``"amqtt"``."""
        return self._kind

    @property
    def port(self) -> int:
        """The TCP port; chosen by the first :meth:`start` and kept across restarts."""
        if self._port is None:
            raise RuntimeError("the broker has not been started")
        return self._port

    @property
    def persistent(self) -> bool:
        """Whether sessions and queued messages survive :meth:`restart` (mosquitto with persistence only)."""
        return self._kind == "mosquitto" and self._persistence

    @property
    def running(self) -> bool:
        """Whether the broker process is alive."""
        return self._process is not None and self._process.poll() is None

    def start(self) -> None:
        """Start the broker and wait until its port accepts connections.

        Without a ``port`` given, the first start picks a free one and tries another should the broker fail to
        start (another process may have taken the port in between); later starts reuse the port.
        """
        if self.running:
            raise RuntimeError(f"the {self._kind} broker is already running on port {self._port}")
        attempts = 1 if self._port is not None else 3
        for attempt in range(1, attempts + 1):
            if attempts > 1:
                self._port = free_port(self.host)
            try:
                self._spawn()
                return
            except BrokerError:
                if attempt == attempts:
                    raise
                logger.warning("%s broker did not start on port %s; trying another port", self._kind, self._port)

    def stop(self) -> None:
        """Stop the broker with SIGTERM (mosquitto saves its database) and wait for it to exit.

        Falls back to SIGKILL after ``stop_timeout`` seconds. A no-op when it is not running.
        """
        process = self._process
        if process is None:
            return
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(self._stop_timeout)
            except subprocess.TimeoutExpired:
                logger.warning("%s broker did not stop within %ss: killing it", self._kind, self._stop_timeout)
                process.kill()
                process.wait()
        self._process = None
        _live.discard(self)

    def kill(self) -> None:
        """Kill the broker with SIGKILL (a crash: mosquitto keeps only what it autosaved) and reap it."""
        process = self._process
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
        process.wait()
        self._process = None
        _live.discard(self)

    def restart(self) -> None:
        """Stop (SIGTERM) and start again on the same port."""
        self.stop()
        self.start()

    def log(self) -> str:
        """What the broker has logged so far."""
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def __enter__(self) -> Broker:
        """Start the broker for the ``with`` block."""
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        """Stop the broker."""
        self.stop()

    def __repr__(self) -> str:
        """``Broker(mosquitto 127.0.0.1:PORT running)``."""
        state = "running" if self.running else "stopped"
        return f"Broker({self._kind} {self.host}:{self._port} {state})"

    def _command(self) -> list[str]:
        assert self._executable is not None
        if self._kind == "amqtt":
            return [self._executable, "-c", _AMQTT_SCRIPT, str(self.port)]
        config = self._workdir / "mosquitto.conf"
        lines = [
            f"listener {self.port} {self.host}",
            "allow_anonymous true",
            *(
                ["persistence true", f"persistence_location {self._workdir}/", "autosave_interval 1"]
                if self._persistence
                else ["persistence false"]
            ),
            "log_dest stderr",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "log_type information",
        ]
        if os.geteuid() == 0:
            # As root, mosquitto switches to the user "mosquitto", which cannot write to a root-owned tmp dir.
            lines.append(f"user {pwd.getpwuid(os.geteuid()).pw_name}")
        lines += self._extra_config
        config.write_text("\n".join(lines) + "\n")
        return [self._executable, "-c", str(config)]

    def _spawn(self) -> None:
        command = self._command()
        with self.log_path.open("ab") as log:
            log.write(f"--- {' '.join(command[:2])} ... on port {self.port}\n".encode())
            log.flush()
            self._process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self._workdir,
            )
        _live.add(self)
        deadline = time.monotonic() + self._startup_timeout
        while True:
            if self._process.poll() is not None:
                code = self._process.returncode
                self._process = None
                _live.discard(self)
                raise BrokerError(f"{self._kind} exited with {code} on start; its log:\n{self.log()}")
            if accepts(self.port, self.host):
                return
            if time.monotonic() > deadline:
                self.kill()
                raise BrokerError(
                    f"{self._kind} did not accept connections on port {self.port} within "
                    f"{self._startup_timeout}s; its log:\n{self.log()}"
                )
            time.sleep(0.02)


def accepts(port: int, host: str = "127.0.0.1") -> bool:
    """Whether something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


@atexit.register
def _kill_leftovers() -> None:
    for broker in list(_live):
        with contextlib.suppress(Exception):
            broker.kill()


async def next_message(client: aiomqtt.Client, timeout: float = 5.0) -> aiomqtt.Message:
    """The next message the client receives (a ``TimeoutError`` when none arrives in time)."""
    async with asyncio.timeout(timeout):
        return await anext(client.messages)
