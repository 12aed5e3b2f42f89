"""Helpers of the fault tests (``test_reliability_faults.py``): the seed, a daemon subprocess and its log, the
snapshot store's state, a test event.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiomqtt
import orjson

import devintel.models.snapshots as snapshots
from devintel.daemon.from_settings import live_models
from devintel.daemon.settings import Settings
from devintel.models.snapshots import TMP_PREFIX, SnapshotStore
from harness.broker import Broker

SEED = int(os.environ.get("DEVINTEL_FAULT_SEED", "20261122"))
WAIT_S = 30.0
#: The reconnection bound the issue sets: the daemon is back within this long after the broker returns.
RECONNECT_BOUND_S = 5.0
SRC = str(Path(snapshots.__file__).parents[2])


# --------------------------------------------------------------------------------------------- helpers


@contextlib.contextmanager
def _daemon(env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """The daemon as a subprocess, its log in ``log`` (a file: a pipe nobody reads would block it)."""
    with log.open("wb") as err:
        process = subprocess.Popen(
            [sys.executable, "-m", "devintel.daemon.service"], env=env, stdout=subprocess.DEVNULL, stderr=err
        )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


async def _wait_for_log(log: Path, pattern: str, process: subprocess.Popen[bytes], timeout: float = WAIT_S) -> str:
    """The first match of ``pattern`` in the log (its first group, if any); fails if the daemon exits first."""
    deadline = time.monotonic() + timeout
    regex = re.compile(pattern)
    while True:
        text = log.read_text(errors="replace")
        match = regex.search(text)
        if match:
            return match.group(1) if match.groups() else match.group(0)
        if process.poll() is not None:
            raise AssertionError(
                f"the daemon exited ({process.returncode}) before logging {pattern!r}:\n{text[-3000:]}"
            )
        if time.monotonic() > deadline:
            raise AssertionError(f"{pattern!r} not logged within {timeout} s:\n{text[-3000:]}")
        await asyncio.sleep(0.02)


def _tmp_entries(root: Path) -> list[str]:
    return sorted(name for name in os.listdir(root) if name.startswith(TMP_PREFIX))


def _check_store(root: Path, at_least: str | None, why: str) -> str:
    """What a restart does: load the newest valid snapshot; it must be the one ``current`` names, no older than the
    last write known to have completed, every version directory complete, and its models must unpickle."""
    store = SnapshotStore(root)
    loaded = store.load()
    assert loaded.version == store.current_version(), why
    if at_least is not None:
        assert snapshots._version_key(loaded.version) >= snapshots._version_key(at_least), why
    for version in store.versions():
        store.load(version)  # never a half-written snapshot under a version name
    live_models(Settings(model_dir=root), loaded)
    return loaded.version


def _event(i: int, base: float, devices: int = 10) -> tuple[str, bytes]:
    """Event ``i`` of a stream: device ``dev<i % devices>``, its own time; the same bytes every time it is sent."""
    body = {
        "ts": base + i,
        "device_type": "leak_sensor",
        "power_source": "battery",
        "battery_level": 95.0 - (i % 50) * 0.1,
        "linkquality": 120.0 - (i % 30),
        "value": 0.0,
    }
    return f"dev{i % devices}", orjson.dumps(body)


@contextlib.asynccontextmanager
async def health_of(broker: Broker, ns: str) -> AsyncIterator[dict[str, dict[str, object]]]:
    """The latest health message of the daemon under ``ns``, kept up to date in ``["health"]`` while open."""
    latest: dict[str, dict[str, object]] = {"health": {}}
    async with aiomqtt.Client(broker.host, broker.port, identifier=f"health-{ns}-{time.monotonic_ns()}") as c:
        await c.subscribe(f"{ns}/health", qos=1)

        async def collect() -> None:
            async for message in c.messages:
                if isinstance(message.payload, bytes) and message.payload:
                    latest["health"] = orjson.loads(message.payload)

        task = asyncio.create_task(collect())
        try:
            yield latest
        finally:
            task.cancel()
