"""The runtime's lifecycle driven in process by an injected shutdown trigger (no signal involved): it serves,
shuts down in order when the trigger fires (final snapshot, retained ``stopped``), and a refresh under way is
cancelled by the shutdown, bounded in time."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

import aiomqtt
import pytest

from devintel.daemon.refresh import RefreshCancelledError
from devintel.daemon.runtime import Runtime
from devintel.daemon.settings import Settings
from devintel.models.snapshots import SnapshotStore
from harness.broker import Broker
from harness.collector import collect, leak_event

SHUTDOWN_TIMEOUT_S = 5.0


@pytest.fixture
def settings(
    small_snapshot: Path, mqtt_broker: Broker, topic_namespace: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Settings:
    """Settings of a runtime on the test's broker and topics, the HTTP API off, nothing from the environment."""
    for name in [name for name in os.environ if name.startswith("DEVINTEL_") or name == "CREDENTIALS_DIRECTORY"]:
        monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    ns = topic_namespace
    return Settings(
        model_dir=small_snapshot,
        topic_prefix=ns,
        ha={"prefix": f"{ns}-ha"},
        zigbee2mqtt={"base_topic": f"{ns}-z2m"},
        mqtt={"host": mqtt_broker.host, "port": mqtt_broker.port, "client_id": f"devintel-{ns}"},
        http={"port": 0},
        live={"health_interval_s": 0.5, "shutdown_timeout_s": SHUTDOWN_TIMEOUT_S},
    )


def _refreshing(runtime: Runtime) -> bool:
    """Whether the runtime's model service is refreshing now."""
    return runtime.models_service.refreshing


def _runtime(settings: Settings) -> Runtime:
    store = SnapshotStore(settings.model_dir)
    return Runtime(settings, store, store.load())


async def test_an_injected_trigger_drives_the_lifecycle_in_process(
    settings: Settings, mqtt_broker: Broker, topic_namespace: str
) -> None:
    ns = topic_namespace
    runtime = _runtime(settings)
    before = len(runtime.models_service.store.versions())
    trigger = asyncio.Event()
    async with collect(aiomqtt.Client(mqtt_broker.host, mqtt_broker.port, identifier=f"watch-{ns}"), f"{ns}/#") as seen:
        running = asyncio.create_task(runtime.run(shutdown_trigger=trigger.wait))
        await seen.wait_for(lambda: seen.latest.get(f"{ns}/status") == b"online", "retained online")
        assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the trigger replaces the signal handlers
        async with aiomqtt.Client(mqtt_broker.host, mqtt_broker.port, identifier=f"pub-{ns}") as pub:
            now = time.time() - 3600
            for i in range(3):
                await pub.publish(f"{ns}/events/leak.hall", leak_event(now + 60 * i, i), qos=1)
        await seen.wait_for(lambda: f"{ns}/predictions/leak.hall" in seen.latest, "a prediction")
        trigger.set()
        assert await asyncio.wait_for(running, 4 * SHUTDOWN_TIMEOUT_S) == 0
        await seen.wait_for(lambda: seen.latest.get(f"{ns}/status") == b"stopped", "retained stopped")
    assert len(runtime.models_service.store.versions()) == before + 1  # the final snapshot
    assert runtime.status == "stopping"


async def test_a_shutdown_during_a_refresh_cancels_it_in_bounded_time(settings: Settings) -> None:
    runtime = _runtime(
        settings.model_copy(update={"bootstrap": settings.bootstrap.model_copy(update={"samples": 3_000_000})})
    )
    versions = runtime.models_service.store.versions()
    trigger = asyncio.Event()
    running = asyncio.create_task(runtime.run(shutdown_trigger=trigger.wait))
    refresh = asyncio.create_task(runtime.api.refresh())
    await asyncio.sleep(3.0)  # the child process is generating the training events by now
    assert runtime.models_service.refreshing
    assert not refresh.done()
    signalled = time.monotonic()
    trigger.set()
    assert await asyncio.wait_for(running, 60) == 0
    assert time.monotonic() - signalled < SHUTDOWN_TIMEOUT_S
    with pytest.raises(RefreshCancelledError):
        await refresh
    assert not _refreshing(runtime)  # (a call: mypy would keep the narrowing of the assert above)
    after = runtime.models_service.store.versions()
    assert len(after) == len(versions) + 1  # the final snapshot only: nothing of the refresh
    with pytest.raises(RefreshCancelledError, match="shutting down"):  # no refresh starts once it is closed
        await runtime.api.refresh()
