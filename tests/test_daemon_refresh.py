"""A refresh is a child process the daemon can end: SIGTERM during ``POST /models/refresh`` exits within
``live.shutdown_timeout_s`` with the final snapshot written, and the refresh's processes (its bootstrap worker
included) end with it; so do they when the daemon is killed outright."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from devintel.daemon.refresh import RefreshError, RefreshJob, run_refresh
from devintel.models.bootstrap import BootstrapConfig
from devintel.models.snapshots import SnapshotStore
from harness.broker import Broker, free_port
from harness.daemon_env import daemon_env

#: A refresh this big takes minutes: it is surely under way when the signal comes.
LONG_REFRESH_SAMPLES = "3000000"
SHUTDOWN_TIMEOUT_S = 10.0


def _wait_for(log: Path, pattern: str, daemon: subprocess.Popen[bytes], timeout: float = 60.0) -> re.Match[str]:
    deadline = time.monotonic() + timeout
    while True:
        found = re.search(pattern, log.read_text(errors="replace"))
        if found is not None:
            return found
        if daemon.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(f"{pattern!r} not logged:\n{log.read_text(errors='replace')[-3000:]}")
        time.sleep(0.05)


def _group(pgid: int) -> list[int]:
    """The live (not zombie) processes of process group ``pgid``."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        state, _ppid, group = stat.rsplit(")", 1)[1].split()[:3]
        if int(group) == pgid and state != "Z":
            members.append(int(entry.name))
    return members


@dataclass
class Refreshing:
    """A daemon in the middle of a refresh: the process, its log, the refresh's process group (the child and the
    bootstrap's worker process), and the HTTP request's answer (a status code, or the error's name) once it came."""

    daemon: subprocess.Popen[bytes]
    log: Path
    child: int
    asker: threading.Thread
    answers: list[int | str] = field(default_factory=list)


@pytest.fixture
def refreshing_daemon(small_snapshot: Path, mqtt_broker: Broker, tmp_path: Path) -> Iterator[Refreshing]:
    """A daemon (a real subprocess, a real broker) in the middle of a long refresh asked for over HTTP."""
    port = free_port()
    env = daemon_env(
        small_snapshot,
        "refresh",
        mqtt_broker,
        DEVINTEL_HTTP__PORT=str(port),
        DEVINTEL_BOOTSTRAP__SAMPLES=LONG_REFRESH_SAMPLES,
        DEVINTEL_LIVE__SHUTDOWN_TIMEOUT_S=str(SHUTDOWN_TIMEOUT_S),
    )
    log = tmp_path / "daemon.log"
    answers: list[int | str] = []
    with log.open("w") as err:
        daemon = subprocess.Popen([sys.executable, "-m", "devintel.daemon.service"], env=env, stderr=err)
        try:
            _wait_for(log, r"serving snapshot", daemon)

            def ask() -> None:
                deadline = time.monotonic() + 30
                while True:
                    try:
                        answers.append(httpx.post(f"http://127.0.0.1:{port}/models/refresh", timeout=300).status_code)
                        return
                    except httpx.ConnectError:
                        if time.monotonic() > deadline:
                            raise
                        time.sleep(0.1)
                    except httpx.HTTPError as error:
                        answers.append(type(error).__name__)
                        return

            asker = threading.Thread(target=ask, daemon=True)
            asker.start()
            child = int(_wait_for(log, r"refresh: bootstrap running in process (\d+)", daemon).group(1))
            _wait_for(log, r"warm-starting the global model", daemon)  # the worker process runs by now
            yield Refreshing(daemon, log, child, asker, answers)
        finally:
            if daemon.poll() is None:
                daemon.kill()
                daemon.wait()


def test_sigterm_during_a_refresh_exits_in_bounded_time_with_the_final_snapshot(
    refreshing_daemon: Refreshing, small_snapshot: Path
) -> None:
    daemon, log, child = refreshing_daemon.daemon, refreshing_daemon.log, refreshing_daemon.child
    group = _group(child)
    assert len(group) >= 2, f"the refresh child and its worker, found {group}"
    before = SnapshotStore(small_snapshot).versions()
    signalled = time.monotonic()
    daemon.send_signal(signal.SIGTERM)
    assert daemon.wait(timeout=120) == 0
    took = time.monotonic() - signalled
    text = log.read_text(errors="replace")
    assert took < SHUTDOWN_TIMEOUT_S, f"shutdown took {took:.1f} s:\n{text[-3000:]}"
    assert "cancelling the refresh under way" in text
    after = SnapshotStore(small_snapshot).versions()
    assert len(after) == len(before) + 1  # the final snapshot, and nothing of the refresh
    assert re.search(rf"snapshot {after[-1]} written", text)
    assert _group(child) == [], "the refresh's processes outlived the daemon"
    refreshing_daemon.asker.join(timeout=10)
    assert refreshing_daemon.answers == [503]  # the request was answered: cancelled by the shutdown


def test_a_daemon_killed_during_a_refresh_takes_the_refresh_with_it(
    refreshing_daemon: Refreshing,
) -> None:
    daemon, child = refreshing_daemon.daemon, refreshing_daemon.child
    assert len(_group(child)) >= 2
    daemon.kill()  # no shutdown at all: the child sees its standard input close
    daemon.wait()
    deadline = time.monotonic() + 10
    while _group(child) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _group(child) == [], "the refresh's processes outlived a killed daemon"


async def test_a_refresh_whose_bootstrap_fails_raises_with_the_childs_traceback(tmp_path: Path) -> None:
    unknown_world = BootstrapConfig(samples=200, holdout_samples=200, days=1.0, train_variants=("nowhere",))
    with pytest.raises(RefreshError, match=r"(?s)Traceback.*ValueError: variants must be"):
        await run_refresh(RefreshJob(unknown_world, tmp_path, keep=2, signing_key=None))
    assert SnapshotStore(tmp_path).versions() == []
