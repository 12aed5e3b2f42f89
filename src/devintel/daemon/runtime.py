"""The running service: one TaskGroup of named tasks around the handler, and a bounded shutdown.

Tasks (all in one ``asyncio.TaskGroup``):

- ``mqtt``: the MQTT session (:class:`~devintel.daemon.mqtt.MqttSession`): receive into the bounded queue,
  publish from the outbox, reconnect with capped randomised backoff;
- ``worker``: the processing worker: takes messages off the queue, runs the handler, queues what to publish;
  when the queue is more than ``live.shed_learning_at`` full, labels that resolve are scored but not learned
  (learning is shed before prediction, and counted); while a backlog waits (:data:`BACKLOG_MESSAGES` received and
  not yet handled), the handler is *catching up*: a device's prediction is published at most once per
  ``live.backlog_publish_interval_s``, and each device's latest once the backlog is handled;
- ``health``: the retained health message every ``live.health_interval_s``;
- ``snapshots``: a snapshot every ``snapshot.interval_s`` when the models learned something since the last;
- ``http``: the loopback HTTP API (uvicorn in this loop) over :class:`~devintel.daemon.api.ApiFacade`, unless
  ``http.port`` is 0;
- ``watchdog``: systemd ``WATCHDOG=1`` at half of ``WatchdogSec`` when systemd asks for it;
- ``homeassistant``: with ``ha.api_url`` and ``ha.api_token``, the client of Home Assistant's websocket API
  (:mod:`~devintel.daemon.homeassistant_api`), feeding the same queue as MQTT;
- ``simulate``: with ``--simulate``, a synthetic home publishing live events through the broker;
- ``cmd-<name>-<n>``: a command received on ``<prefix>/cmd/<name>`` (snapshot, reload, refresh);
- ``trigger``: with a ``shutdown_trigger`` given to :meth:`Runtime.run` (instead of the signal handlers), waits
  for it and begins the shutdown;
- ``shutdown``: waits for SIGTERM or SIGINT (or the trigger), then stops intake, ends a refresh under way (its
  processes: :class:`~devintel.daemon.model_service.ModelService`), drains the queue (within
  ``live.shutdown_timeout_s``), writes the final snapshot, publishes ``stopped`` and ends the others.

A second signal forces the exit at once. The snapshots, reloads and refreshes are the
:class:`~devintel.daemon.model_service.ModelService`'s; what the daemon prints at its end is
:mod:`~devintel.daemon.attention`'s.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from dataclasses import asdict
from importlib.metadata import version as package_version
from typing import Any

from devintel.daemon.api import ApiFacade
from devintel.daemon.attention import summary
from devintel.daemon.from_settings import build_handler, time_window
from devintel.daemon.homeassistant_api import HomeAssistantSource
from devintel.daemon.model_service import ModelService
from devintel.daemon.mqtt import MqttSession, Received
from devintel.daemon.notify import SystemdNotifier
from devintel.daemon.outbox import Outbox
from devintel.daemon.settings import Settings
from devintel.ingest.adapters.homeassistant_api import HomeAssistantApiAdapter
from devintel.ingest.counters import RateLimitedLog
from devintel.ingest.inbound import Command
from devintel.ingest.outbound import Outgoing, json_message
from devintel.models.snapshots import LoadedSnapshot, SnapshotStore

logger = logging.getLogger(__name__)

#: Messages the worker handles in a row before it lets the other tasks run (the receive loop among them).
WORKER_BATCH = 32
#: Received messages waiting to be handled (aiomqtt's queue and the processing queue) from which the daemon is
#: catching up on a backlog (:attr:`~devintel.ingest.handler.Handler.catching_up`). Draining a backlog the broker
#: kept, thousands wait; a paced load the daemon keeps up with leaves a few at a time (``bench/bench_live.py``).
BACKLOG_MESSAGES = 100


class Runtime:
    """The service around one handler (see the module docstring): it supervises the tasks; the models are the
    :attr:`models_service`'s, the HTTP API is served from :attr:`api`."""

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
        self.handler = build_handler(settings, snapshot)
        self.topics = self.handler.topics
        self.models_service = ModelService(settings, store, snapshot, self.handler)
        """Snapshot, reload and refresh of the models the handler serves."""
        self.api = ApiFacade(
            self.handler,
            self.models_service,
            self.health,
            default_home_type=settings.home_type,
            window=time_window(settings),
        )
        """What the HTTP API serves."""
        self.inbox: asyncio.Queue[Received] = asyncio.Queue(maxsize=settings.live.queue_size)
        self.outbox = Outbox(settings.live.queue_size, self.handler.counters)
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
        self.busy_s = 0.0
        """Seconds the worker spent handling messages (the models' work on each event and what it produces): over
        the uptime, the share of a core the handler uses; the rest of a saturated daemon's time is MQTT and
        asyncio."""
        self.status = "starting"
        self.stop = asyncio.Event()
        """Set by a signal (or the end of a simulation with ``--exit-after-simulation``): begin the shutdown."""
        self._done = asyncio.Event()
        """Set at the end of the shutdown: every other task ends."""
        self._mqtt_stop = asyncio.Event()
        self._signals = 0
        self._publish_log = RateLimitedLog(logger)
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._group: asyncio.TaskGroup | None = None
        self._commands = 0
        self.failed = False
        """A task crashed (logged): the exit code is 1."""

    # -- the task group ---------------------------------------------------------------------------------------

    async def run(self, shutdown_trigger: Callable[[], Awaitable[object]] | None = None) -> int:
        """Run until SIGTERM or SIGINT, or, given a ``shutdown_trigger``, until the awaitable it returns completes
        (then no signal handler is installed: a test drives the lifecycle in process, as Hypercorn's ``serve``
        takes one). Return the exit code: 0 after a clean shutdown, 1 when a task crashed (the shutdown still ran,
        so that systemd's ``Restart=on-failure`` restarts the service)."""
        if shutdown_trigger is None:
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
                self._group = group
                self._spawn(group, "mqtt", self.session.run(self._mqtt_stop))
                for message in self.handler.discovery():  # devintel's own device, and every device it knows
                    self.publish(message)
                self._spawn(group, "worker", self._work())
                self._spawn(group, "health", self._health_loop())
                self._spawn(
                    group,
                    "snapshots",
                    self._every(self.settings.snapshot.interval_s, self.models_service.periodic_snapshot),
                )
                self._spawn(group, "watchdog", self._watchdog())
                if self.settings.http.port:
                    self._spawn(group, "http", self._http())
                if self.homeassistant is not None:
                    self._spawn(group, "homeassistant", self.homeassistant.run(self.stop))
                if self.simulate:
                    self._spawn(group, "simulate", self._simulate())
                if shutdown_trigger is not None:
                    self._spawn(group, "trigger", self._stop_when(shutdown_trigger))
                self._spawn(group, "shutdown", self._shutdown())
        finally:
            if shutdown_trigger is None:
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

    async def _stop_when(self, trigger: Callable[[], Awaitable[object]]) -> None:
        await trigger()
        logger.info("shutdown trigger: shutting down")
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
                behind = self.session.received_waiting() + self.inbox.qsize() >= BACKLOG_MESSAGES
                self.handler.catching_up = behind
                began = time.perf_counter()
                handled = self.handler.handle(item.topic, item.payload, item.received)
                self.busy_s += time.perf_counter() - began
                for message in handled.messages:
                    self.publish(message)
                for command in handled.commands:
                    self._run_command(command)
                if not behind:
                    self._release_held()
            except Exception:
                logger.exception("handling a message on %s failed; it is dropped", item.topic[:200])
            finally:
                self.inbox.task_done()
            handled_in_a_row += 1
            if handled_in_a_row >= WORKER_BATCH or self.inbox.empty():
                handled_in_a_row = 0
                await asyncio.sleep(0)  # let the receive and send loops run

    def _release_held(self) -> None:
        """Publish each device's latest prediction held while catching up on a backlog."""
        if self.handler.holding:
            for message in self.handler.release_held().messages:
                self.publish(message)

    def publish(self, message: Outgoing) -> None:
        """Queue a message for the broker; when the outbox is full it is dropped and counted."""
        try:
            self.outbox.put_nowait(message)
        except asyncio.QueueFull:
            self.handler.counters.shed_publish += 1
            self._publish_log.warning(
                "outbox_full", "outbox full (broker away?): dropped a message to %s", message.topic
            )

    def _run_command(self, command: Command) -> None:
        """Run ``command`` as a task of the group (ended with the others at the shutdown)."""
        if self._group is None:  # not running (a test driving the worker alone)
            return
        self._commands += 1
        self._spawn(self._group, f"cmd-{command.name}-{self._commands}", self._command(command))

    async def _command(self, command: Command) -> None:
        try:
            if command.name == "snapshot":
                await self.models_service.snapshot()
            elif command.name == "reload":
                await self.models_service.reload()
            else:
                await self.models_service.refresh()
        except (OSError, RuntimeError, ValueError) as error:
            logger.error("command %s failed: %s", command.name, error)

    # -- health -----------------------------------------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        """The health report (retained on ``<prefix>/health`` and served on ``GET /health``)."""
        status = self.status
        if status == "ok" and (not self.session.state.connected or self.models_service.last_snapshot_error is not None):
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
            "queue": {
                "depth": self.inbox.qsize(),
                "capacity": self.inbox.maxsize,
                "received": self.session.received_waiting(),
                "outbox": self.outbox.qsize(),
                "busy_s": round(self.busy_s, 3),
            },
            "snapshot": self.models_service.health(),
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
            "health: %s; %d events, %d predictions published, %d devices, %d need attention, %d rejected, "
            "%d values dropped",
            report["status"],
            counters.events,
            counters.published,
            report["devices"],
            report["needs_attention"],
            sum(counters.rejected.values()),
            sum(counters.dropped_values.values()),
        )

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
        await serve(create_app(self.api, token), self.settings.http.host, self.settings.http.port, self._done)

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
        await self.models_service.close()  # a refresh under way ends (bounded), its result is not awaited
        try:
            await asyncio.wait_for(self.inbox.join(), timeout)
        except TimeoutError:
            logger.warning("shutdown: %d queued messages not handled within %.0f s", self.inbox.qsize(), timeout)
        self._release_held()
        try:
            await asyncio.wait_for(self.models_service.snapshot(), timeout)
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
        logger.info("stopped; %s", summary(self.handler))


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
