"""The running service: one TaskGroup of named tasks around the handler, and a bounded shutdown.

Tasks (all in one ``asyncio.TaskGroup``):

- ``mqtt``: the MQTT session (:class:`~devintel.daemon.mqtt.MqttSession`): receive into the bounded queue,
  publish from the outbox, reconnect with capped randomised backoff;
- ``worker``: the processing worker: takes messages off the queue, runs the handler, queues what to publish;
  when the queue is more than ``live.shed_learning_at`` full, labels that resolve are scored but not learned
  (learning is shed before prediction, and counted);
- ``health``: the retained health message every ``live.health_interval_s``;
- ``snapshots``: a snapshot every ``snapshot.interval_s`` when the models learned something since the last;
- ``http``: the loopback HTTP API (uvicorn in this loop), unless ``http.port`` is 0;
- ``watchdog``: systemd ``WATCHDOG=1`` at half of ``WatchdogSec`` when systemd asks for it;
- ``homeassistant``: with ``ha.api_url`` and ``ha.api_token``, the client of Home Assistant's websocket API
  (:mod:`~devintel.daemon.homeassistant_api`), feeding the same queue as MQTT;
- ``simulate``: with ``--simulate``, a synthetic home publishing live events through the broker;
- ``shutdown``: waits for SIGTERM or SIGINT, then stops intake, drains the queue (within
  ``live.shutdown_timeout_s``), writes the final snapshot, publishes ``stopped`` and ends the others.

A second signal forces the exit at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import asdict
from importlib.metadata import version as package_version
from typing import TYPE_CHECKING, Any

from devintel.daemon.adapters.homeassistant import HomeAssistantAdapter
from devintel.daemon.adapters.homeassistant_api import HomeAssistantApiAdapter
from devintel.daemon.adapters.native import NativeAdapter
from devintel.daemon.adapters.zigbee2mqtt import Zigbee2MqttAdapter
from devintel.daemon.counters import RateLimitedLog
from devintel.daemon.handler import Handler, HandlerOptions
from devintel.daemon.homeassistant_api import HomeAssistantSource
from devintel.daemon.inbound import Command
from devintel.daemon.mqtt import MqttSession, Received
from devintel.daemon.notify import SystemdNotifier
from devintel.daemon.outbound import Origin, Outgoing, Topics, iso_time, json_message
from devintel.daemon.prometheus import prometheus_text
from devintel.daemon.registry import load_registry, registry_path, save_registry
from devintel.daemon.settings import Settings
from devintel.daemon.validation import TimeWindow, canonical_event, sanitize_device_id
from devintel.models.live import LiveEvidence, LiveModels, from_snapshot, snapshot_contents
from devintel.models.snapshots import LoadedSnapshot, SnapshotStore

if TYPE_CHECKING:
    from devintel.models.bootstrap import BootstrapConfig

logger = logging.getLogger(__name__)

#: Messages the worker handles in a row before it lets the other tasks run (the receive loop among them).
WORKER_BATCH = 32


def time_window(settings: Settings) -> TimeWindow:
    """How far event times may stray from their receipt (settings ``live.max_future_s``, ``max_past_days``)."""
    return TimeWindow(max_future_s=settings.live.max_future_s, max_past_s=settings.live.max_past_days * 86_400.0)


def live_models(settings: Settings, snapshot: LoadedSnapshot) -> LiveModels:
    """The live models of a verified snapshot, with the settings' horizon and evidence rules."""
    evidence = LiveEvidence(
        offline_grace_s=settings.labels.offline_grace_s,
        silence_factor=settings.labels.silence_factor,
        min_silence_s=settings.labels.min_silence_s,
        gone_for_good_s=settings.labels.gone_for_good_s,
    )
    return from_snapshot(
        snapshot.files,
        snapshot.manifest,
        snapshot.version,
        settings.horizon_days * 86_400.0,
        evidence,
        label_interval_s=settings.live.label_interval_s,
    )


def build_handler(settings: Settings, snapshot: LoadedSnapshot, live: LiveModels | None = None) -> Handler:
    """The handler the settings describe, serving ``snapshot`` (live ingest and replay build it alike); ``live``
    serves instead of the snapshot's own live models when given (the fleet shares one model set between homes)."""
    window = time_window(settings)
    adapters = [
        NativeAdapter(prefix=settings.topic_prefix, default_home_type=settings.home_type, window=window),
        Zigbee2MqttAdapter(
            base_topic=settings.zigbee2mqtt.base_topic, default_home_type=settings.home_type, window=window
        ),
        HomeAssistantAdapter(prefix=settings.ha.prefix),
        HomeAssistantApiAdapter(default_home_type=settings.home_type, window=window),
    ]
    options = HandlerOptions(
        discovery=settings.ha.discovery,
        remove_gone=settings.ha.remove_gone,
        publish_interval_s=settings.live.publish_interval_s,
        retention_s=settings.live.retention_days * 86_400.0,
        max_devices=settings.live.max_devices,
        origin=origin(settings),
    )
    topics = Topics(prefix=settings.topic_prefix, ha_prefix=settings.ha.prefix)
    return Handler(live if live is not None else live_models(settings, snapshot), adapters, topics, options)


def origin(settings: Settings) -> Origin:
    """devintel as its discovery configs name it: its version, and where to read about it (``ha.support_url``,
    else the HTTP API's list of devices that need attention when the API is on)."""
    url = settings.ha.support_url
    if url is None and settings.http.port:
        host = settings.http.host if ":" not in settings.http.host else f"[{settings.http.host}]"
        url = f"http://{host}:{settings.http.port}/maintenance"
    return Origin(name="devintel", sw_version=package_version("devintel"), support_url=url or "")


def bootstrap_config(settings: Settings, allow_low_quality: bool) -> BootstrapConfig:
    """The bootstrap the settings ask for."""
    from devintel.models.bootstrap import BootstrapConfig  # with pandas: only when a bootstrap runs
    from devintel.models.gate import QualityThresholds

    return BootstrapConfig(
        samples=settings.bootstrap.samples,
        holdout_samples=settings.bootstrap.holdout_samples,
        days=settings.bootstrap.days,
        seed=settings.bootstrap.seed,
        horizon_days=settings.horizon_days,
        thresholds=QualityThresholds(**settings.quality.model_dump()),
        allow_low_quality=allow_low_quality,
        workers=1,  # the second core: home-type models and the test homes (devintel.models.bootstrap.Worker)
    )


class Runtime:
    """The service around one handler (see the module docstring); it is also what the HTTP API serves."""

    def __init__(
        self,
        settings: Settings,
        store: SnapshotStore,
        snapshot: LoadedSnapshot,
        *,
        simulate: bool = False,
        exit_after_simulation: bool = False,
        notifier: SystemdNotifier | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.base = snapshot
        self.handler = build_handler(settings, snapshot)
        self.topics = self.handler.topics
        self.registry_file = registry_path(settings.model_dir)
        restored = self.handler.restore(load_registry(self.registry_file))
        if restored:
            logger.info("device registry: %d known devices restored from %s", restored, self.registry_file)
        self.inbox: asyncio.Queue[Received] = asyncio.Queue(maxsize=settings.live.queue_size)
        self.outbox: asyncio.Queue[Outgoing] = asyncio.Queue(maxsize=settings.live.queue_size)
        self.session = MqttSession(
            settings.mqtt, self.topics, self.handler.subscriptions(), self.inbox, self.outbox, self.handler.counters
        )
        self.homeassistant: HomeAssistantSource | None = None
        if settings.ha.api_url and settings.ha.api_token is not None:
            self.homeassistant = HomeAssistantSource(
                settings.ha,
                self.inbox,
                self.handler.counters,
                clock=lambda: self.handler.live.clocks.get(HomeAssistantApiAdapter.source),
            )
        self.simulate = simulate
        self.exit_after_simulation = exit_after_simulation
        self.notifier = notifier or SystemdNotifier()
        self.started = time.monotonic()
        self.status = "starting"
        self.stop = asyncio.Event()
        """Set by a signal (or the end of a simulation with ``--exit-after-simulation``): begin the shutdown."""
        self._done = asyncio.Event()
        """Set at the end of the shutdown: every other task ends."""
        self._mqtt_stop = asyncio.Event()
        self._learned_at_snapshot = 0
        self.last_snapshot: str | None = snapshot.version
        created = snapshot.manifest.get("created")
        self.last_snapshot_at: str | None = created if isinstance(created, str) else None
        self.last_snapshot_error: str | None = None
        self._snapshot_lock = asyncio.Lock()
        self._refreshing = False
        self._signals = 0
        self._publish_log = RateLimitedLog(logger)
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._commands: set[asyncio.Task[None]] = set()
        self.failed = False
        """A task crashed (logged): the exit code is 1."""

    # -- the task group ---------------------------------------------------------------------------------------

    async def run(self) -> int:
        """Run until a signal; return the exit code: 0 after a clean shutdown, 1 when a task crashed (the
        shutdown still ran, so that systemd's ``Restart=on-failure`` restarts the service)."""
        self._install_signals()
        self.notifier.ready()
        self.notifier.status(f"serving snapshot {self.handler.live.version}")
        logger.info(
            "devintel %s serving snapshot %s; MQTT %s:%s",
            package_version("devintel"),
            self.handler.live.version,
            self.settings.mqtt.host,
            self.settings.mqtt.port,
        )
        self.status = "ok"
        try:
            async with asyncio.TaskGroup() as group:
                self._spawn(group, "mqtt", self.session.run(self._mqtt_stop))
                for message in self.handler.discovery():  # devintel's own device, and every device it knows
                    self.publish(message)
                self._spawn(group, "worker", self._work())
                self._spawn(group, "health", self._health_loop())
                self._spawn(group, "snapshots", self._every(self.settings.snapshot.interval_s, self._periodic_snapshot))
                self._spawn(group, "watchdog", self._watchdog())
                if self.settings.http.port:
                    self._spawn(group, "http", self._http())
                if self.homeassistant is not None:
                    self._spawn(group, "homeassistant", self.homeassistant.run(self.stop))
                if self.simulate:
                    self._spawn(group, "simulate", self._simulate())
                self._spawn(group, "shutdown", self._shutdown())
        finally:
            self._remove_signals()
        return 1 if self.failed else 0

    def _spawn(self, group: asyncio.TaskGroup, name: str, work: Coroutine[Any, Any, None]) -> None:
        self._tasks[name] = group.create_task(self._until_done(name, work), name=name)

    async def _until_done(self, name: str, work: Coroutine[Any, Any, None]) -> None:
        """Run ``work`` until it ends or the shutdown is complete. A task that crashes is logged and starts the
        orderly shutdown (final snapshot included); should the shutdown itself crash, the service ends at once."""
        task = asyncio.ensure_future(work)
        done = asyncio.ensure_future(self._done.wait())
        try:
            await asyncio.wait({task, done}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            done.cancel()
            if not task.done():
                task.cancel()
            await asyncio.wait({task})  # let it finish; its outcome is read below, never raised here
        error = None if task.cancelled() else task.exception()
        if error is not None:
            logger.error("task %s failed: %s", name, error, exc_info=error)
            self.failed = True
            self.stop.set()
            if name == "shutdown":
                self._done.set()

    def _install_signals(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._on_signal, sig)

    def _remove_signals(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)

    def _on_signal(self, sig: signal.Signals) -> None:
        self._signals += 1
        if self._signals > 1:
            logger.error("second %s: exiting now, without the final snapshot", sig.name)
            os._exit(1)
        logger.info("%s: shutting down (a second signal forces the exit)", sig.name)
        self.stop.set()

    async def _every(self, interval_s: float, action: Callable[[], Coroutine[Any, Any, None]]) -> None:
        while True:
            await asyncio.sleep(interval_s)
            await action()

    # -- processing -------------------------------------------------------------------------------------------

    async def _work(self) -> None:
        shed_at = self.settings.live.shed_learning_at * self.settings.live.queue_size
        handled_in_a_row = 0
        while True:
            item = await self.inbox.get()
            try:
                learner = self.handler.live.learner  # replaced on reload and refresh
                learner.learn = self.inbox.qsize() < shed_at
                handled = self.handler.handle(item.topic, item.payload, item.received)
                for message in handled.messages:
                    self.publish(message)
                for command in handled.commands:
                    task = asyncio.create_task(self._command(command), name=f"cmd-{command.name}")
                    self._commands.add(task)
                    task.add_done_callback(self._commands.discard)
            except Exception:
                logger.exception("handling a message on %s failed; it is dropped", item.topic[:200])
            finally:
                self.inbox.task_done()
            handled_in_a_row += 1
            if handled_in_a_row >= WORKER_BATCH or self.inbox.empty():
                handled_in_a_row = 0
                await asyncio.sleep(0)  # let the receive and send loops run

    def publish(self, message: Outgoing) -> None:
        """Queue a message for the broker; when the outbox is full it is dropped and counted."""
        try:
            self.outbox.put_nowait(message)
        except asyncio.QueueFull:
            self.handler.counters.shed_publish += 1
            self._publish_log.warning(
                "outbox_full", "outbox full (broker away?): dropped a message to %s", message.topic
            )

    async def _command(self, command: Command) -> None:
        try:
            if command.name == "snapshot":
                await self.snapshot()
            elif command.name == "reload":
                await self.reload()
            else:
                await self.refresh()
        except (OSError, RuntimeError, ValueError) as error:
            logger.error("command %s failed: %s", command.name, error)

    # -- health -----------------------------------------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        """The health report (retained on ``<prefix>/health`` and served on ``GET /health``)."""
        status = self.status
        if status == "ok" and (not self.session.state.connected or self.last_snapshot_error is not None):
            status = "degraded"  # the broker is away, or snapshots fail (predictions go on; learning is not saved)
        return {
            "status": status,
            "version": package_version("devintel"),
            "uptime_s": round(time.monotonic() - self.started, 1),
            "mqtt": {
                "connected": self.session.state.connected,
                "connections": self.session.state.connections,
                "last_error": self.session.state.last_error,
            },
            **({"homeassistant": asdict(self.homeassistant.state)} if self.homeassistant is not None else {}),
            "queue": {"depth": self.inbox.qsize(), "capacity": self.inbox.maxsize, "outbox": self.outbox.qsize()},
            "snapshot": {
                "last": self.last_snapshot,
                "written_at": self.last_snapshot_at,
                "last_error": self.last_snapshot_error,
            },
            **self.handler.report(),
        }

    async def _health_loop(self) -> None:
        await self.session.state.connected_event.wait()  # the first report as soon as there is a broker
        while True:
            await self._publish_health()
            await asyncio.sleep(self.settings.live.health_interval_s)

    async def _publish_health(self) -> None:
        report = self.health()
        self.publish(json_message(self.topics.health, report, retain=True))
        counters = self.handler.counters
        logger.info(
            "health: %s; %d events, %d predictions published, %d devices, %d need attention, %d rejected",
            report["status"],
            counters.events,
            counters.published,
            report["devices"],
            report["needs_attention"],
            sum(counters.rejected.values()),
        )

    def metrics_text(self) -> str:
        """Prometheus text exposition of the health report."""
        return prometheus_text(self.health())

    async def _watchdog(self) -> None:
        interval = self.notifier.watchdog_interval()
        if interval is None:
            return
        while True:
            self.notifier.watchdog()
            await asyncio.sleep(interval)

    async def _http(self) -> None:
        from devintel.daemon.http import create_app, serve

        token = self.settings.http.token.get_secret_value() if self.settings.http.token else None
        await serve(create_app(self, token), self.settings.http.host, self.settings.http.port, self._done)

    # -- models -----------------------------------------------------------------------------------------------

    def models(self) -> dict[str, Any]:
        """The serving snapshot: version, created, models with thresholds, router, quality."""
        manifest = self.base.manifest
        return {
            "version": self.handler.live.version,
            "base_version": self.base.version,
            "created": manifest.get("created"),
            "models": {name: {"threshold": t} for name, t in sorted(self.handler.live.thresholds.items())},
            "router": self.handler.live.router,
            "training": manifest.get("training"),
            "quality_gate": manifest.get("quality_gate"),
            "metrics": manifest.get("metrics"),
            "live": {"learned": self.handler.live.learner.learned, "rolling": self.handler.live.learner.rolling.get()},
        }

    def model_version(self) -> str:
        """The version of the models serving now."""
        return self.handler.live.version

    async def snapshot(self) -> str:
        """Write a snapshot of the live models now; return its version (raises OSError on a disk failure)."""
        async with self._snapshot_lock:
            live = self.handler.live
            files, manifest = snapshot_contents(live, self.base.files, self.base.manifest)
            learned = live.learner.learned
            try:
                version = await asyncio.to_thread(self.store.write, files, manifest)
            except OSError as error:
                self.last_snapshot_error = f"{type(error).__name__}: {error}"
                raise
            self.last_snapshot, self.last_snapshot_error = version, None
            self.last_snapshot_at = iso_time(time.time())
            await self.save_registry()
            self._learned_at_snapshot = learned
            live.version = version
            logger.info("snapshot %s written (%d examples learned live)", version, learned)
            return version

    async def save_registry(self) -> None:
        """Write the known-device registry (logged, not raised, when it fails: serving goes on)."""
        try:
            await asyncio.to_thread(save_registry, self.registry_file, self.handler.registry())
        except OSError as error:
            logger.error("device registry not saved to %s: %s", self.registry_file, error)

    async def _periodic_snapshot(self) -> None:
        if self.handler.live.learner.learned == self._learned_at_snapshot:
            await self.save_registry()  # nothing learned, but devices may have come or gone
            return
        try:
            await self.snapshot()
        except OSError as error:
            logger.error("periodic snapshot failed, still serving (the last good one stays): %s", error)

    def _serve_snapshot(self, snapshot: LoadedSnapshot) -> None:
        fresh = live_models(self.settings, snapshot)
        fresh.adopt_state(self.handler.live)
        self.handler.live = fresh
        self.base = snapshot
        self.last_snapshot = snapshot.version
        self._learned_at_snapshot = 0
        logger.info("now serving snapshot %s", snapshot.version)

    async def reload(self) -> str:
        """Serve the newest valid snapshot on disk (written by another process, or a refresh)."""
        snapshot = await asyncio.to_thread(self.store.load)
        self._serve_snapshot(snapshot)
        return snapshot.version

    async def refresh(self) -> dict[str, Any]:
        """Re-bootstrap from synthetic data (in a thread; the service keeps serving), then serve the result:
        ``{"passed", "version", "gate"}``. A failed quality gate writes nothing and changes nothing (``passed``
        False, ``version`` None). Raises RuntimeError when a refresh is already running, OSError when the
        snapshot cannot be written."""
        if self._refreshing:
            raise RuntimeError("a refresh is already running")
        self._refreshing = True
        try:
            from devintel.models.bootstrap import bootstrap
            from devintel.models.gate import GateFailed

            config = bootstrap_config(self.settings, allow_low_quality=False)
            try:
                result = await asyncio.to_thread(bootstrap, config, self.store)
            except GateFailed as failed:
                logger.warning(
                    "refresh: the quality gate failed, nothing written; still serving %s\n%s",
                    self.handler.live.version,
                    failed.result.table(),
                )
                return {"passed": False, "version": None, "gate": failed.result.as_dict()}
            self._serve_snapshot(await asyncio.to_thread(self.store.load, result.version))
            return {"passed": True, "version": result.version, "gate": result.gate.as_dict()}
        finally:
            self._refreshing = False

    # -- predictions ------------------------------------------------------------------------------------------

    def predictions(self) -> list[dict[str, Any]]:
        """The latest prediction of every device."""
        return [p.as_dict() for p in self.handler.predictions()]

    def prediction(self, device_id: str) -> dict[str, Any] | None:
        """The latest prediction of one device."""
        record = self.handler.devices.get(device_id)
        return record.prediction.as_dict() if record is not None and record.prediction is not None else None

    def maintenance(self) -> list[dict[str, Any]]:
        """Devices that need attention, highest probability first."""
        flagged = [p for p in self.handler.predictions() if p.needs_attention]
        return [p.as_dict() for p in sorted(flagged, key=lambda p: -p.failure_probability)]

    def predict(self, event: dict[str, Any]) -> dict[str, Any]:
        """Score an ad-hoc canonical event; nothing is learned or kept."""
        device_id = sanitize_device_id(event.get("device_id"))
        canonical = canonical_event(
            event,
            device_id=device_id,
            received=time.time(),
            default_home_type=self.settings.home_type,
            window=time_window(self.settings),
        )
        return self.handler.live.score(canonical).as_dict()

    # -- simulation -------------------------------------------------------------------------------------------

    async def _simulate(self) -> None:
        from devintel.daemon.simulate import simulate_home

        await self.session.state.connected_event.wait()
        published = await simulate_home(self.settings)
        if not self.exit_after_simulation:
            return
        # Wait until the daemon has handled what the simulated home published (bounded), then stop.
        deadline = time.monotonic() + 60.0
        while self.handler.counters.messages < published and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        logger.info("simulation done: %d events published; stopping (--exit-after-simulation)", published)
        self.stop.set()

    # -- shutdown ---------------------------------------------------------------------------------------------

    async def _shutdown(self) -> None:
        await self.stop.wait()
        timeout = self.settings.live.shutdown_timeout_s
        self.status = "stopping"
        self.notifier.stopping()
        self.session.intake = False
        try:
            await asyncio.wait_for(self.inbox.join(), timeout)
        except TimeoutError:
            logger.warning("shutdown: %d queued messages not handled within %.0f s", self.inbox.qsize(), timeout)
        try:
            await asyncio.wait_for(self.snapshot(), timeout)
        except (OSError, TimeoutError) as error:
            logger.error("shutdown: final snapshot failed (the last good one stays): %s", error or "timed out")
        self.publish(json_message(self.topics.health, self.health(), retain=True))
        if not await self.session.drain_outbox(timeout):
            logger.warning("shutdown: %d messages not published", self.outbox.qsize())
        await self.session.publish_now(Outgoing(self.topics.status, b"stopped", retain=True))
        self._mqtt_stop.set()  # a clean disconnect: the broker does not publish the will
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(self._tasks["mqtt"]), timeout)
        self._done.set()
        logger.info("stopped; %s", self.summary())

    def attention_table(self, top: int = 10) -> str:
        """A plain-text table of the devices that need attention (the end of ``--exit-after-simulation``): the
        latest prediction of each, and how long it has been silent (a device that stopped reporting has most
        likely failed already; one still reporting is the warning)."""
        clock = self.handler.live.clock

        def silent_days(prediction: dict[str, Any]) -> float:
            return (clock - self.handler.devices[prediction["device_id"]].last_heard) / 86_400.0

        # Still reporting first (the warnings), then the silent ones (most likely failed already).
        flagged = sorted(self.maintenance(), key=lambda p: (silent_days(p) >= 1.0, -p["failure_probability"]))
        lines = [self.summary(), ""]
        if flagged:
            lines.append(f"{'device':<24} {'probability':>11}  {'risk':<8}  {'last report':<15}  signals")
            for p in flagged[:top]:
                days = silent_days(p)
                heard = "in the last day" if days < 1.0 else f"{days:.0f} days ago"
                signals = ", ".join(p["reasons"]) or "-"
                lines.append(
                    f"{p['device_id']:<24} {p['failure_probability']:>11.2f}  {p['risk_level']:<8}  {heard:<15}  "
                    f"{signals}"
                )
        return "\n".join(lines)

    def summary(self) -> str:
        """One line on what the service did: events, predictions, and the devices that need attention."""
        counters = self.handler.counters
        flagged = self.maintenance()
        top = ", ".join(f"{p['device_id']} {p['failure_probability']:.2f}" for p in flagged[:5])
        rejected = sum(counters.rejected.values())
        return (
            f"{counters.events} events ({rejected} rejected as bad input), {counters.published} predictions "
            f"published for {len(self.handler.devices)} devices, {len(flagged)} need attention"
            + (f" ({top})" if top else "")
        )


@contextlib.asynccontextmanager
async def optional_broker(run: bool, host: str, port: int) -> AsyncIterator[None]:
    """An embedded broker for the duration of the block when ``run``."""
    if not run:
        yield
        return
    from devintel.daemon.broker import embedded_broker

    async with embedded_broker(host, port):
        logger.info("embedded MQTT broker listening on %s:%s", host, port)
        yield
