"""Helpers of the security tests (``test_security*.py``): keys and credentials, a daemon subprocess, and the
``daemons`` fixture (``conftest.py`` imports it, so every test module has it).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from harness.collector import WAIT_S

KEY = "correct horse battery staple"
OTHER_KEY = b"some other key"
TOKEN = "t0ken-for-posts"
PASSWORD = "pa ss:w0rd/with#odd+chars"
USER = "devintel"


# --- helpers -------------------------------------------------------------------------------------------------


def _credentials(directory: Path, **secrets: str) -> Path:
    """A ``$CREDENTIALS_DIRECTORY`` as systemd makes it: one file per secret, mode 0400."""
    directory.mkdir(parents=True, exist_ok=True)
    for name, value in secrets.items():
        path = directory / name
        path.write_text(value + "\n", encoding="utf-8")
        path.chmod(0o400)
    return directory


@dataclass
class Daemon:
    """A ``devintel-daemon`` subprocess whose log (stderr) goes to a file, so a test can watch it while it runs."""

    process: subprocess.Popen[bytes]
    log_path: Path

    @classmethod
    def start(cls, env: dict[str, str], log_path: Path) -> Daemon:
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "devintel.daemon.service"],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        return cls(process, log_path)

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def wait_for_log(self, pattern: str, count: int = 1, timeout: float = WAIT_S) -> list[str]:
        """The log lines matching ``pattern`` once there are ``count`` of them (fails on timeout or exit)."""
        deadline = time.monotonic() + timeout
        while True:
            lines = [line for line in self.log().splitlines() if re.search(pattern, line)]
            if len(lines) >= count:
                return lines
            if self.process.poll() is not None:
                raise AssertionError(f"the daemon exited ({self.process.returncode}) before {pattern!r}:\n{self.log()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {count} x {pattern!r}; log:\n{self.log()[-4000:]}")
            time.sleep(0.05)

    def stop(self) -> tuple[int, float]:
        """SIGTERM; the exit code and the seconds it took to exit."""
        started = time.monotonic()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(WAIT_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise AssertionError(f"the daemon did not stop within {WAIT_S} s:\n{self.log()[-4000:]}") from None
        return code, time.monotonic() - started

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


@pytest.fixture
def daemons() -> Iterator[list[Daemon]]:
    """Daemons a test starts; any still running at its end are killed."""
    started: list[Daemon] = []
    yield started
    for daemon in started:
        daemon.kill()


def _clean_settings_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Remove every DEVINTEL_* setting and the credentials directory from the environment, for this test."""
    for name in list(os.environ):
        if name.startswith("DEVINTEL_") or name == "CREDENTIALS_DIRECTORY":
            monkeypatch.delenv(name)
