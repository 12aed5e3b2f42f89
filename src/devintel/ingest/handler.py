"""The one path from an MQTT message to what devintel publishes: live ingest and replay both call it.

:meth:`Handler.handle` takes a message (topic, payload bytes, time of receipt), lets the adapter that claims
the topic turn it into inbound items (:mod:`devintel.ingest.inbound`), and acts on each: telemetry goes to the
live models (features, routed prediction, delayed labels, learning), availability and feedback become live
evidence of failure, bridge device lists attach Home Assistant entities to the bridge's devices. It returns the
messages to publish and the commands to carry out; it does no I/O itself, so replay writes exactly what the
live daemon would have published.

Bad input never reaches a model: an adapter raises :class:`~devintel.ingest.inbound.Rejected`, the handler
counts the reason and writes a rate-limited log line; a bad metric value in an otherwise good event is left out
of it, counted (``dropped_values``) and logged the same way (the validation policy of
:mod:`devintel.ingest.inbound`). Per-device state is bounded: what the handler knows of a device is a field of its
record in the live models' device table (:mod:`devintel.models.devices`), whose one cap is ``max_devices`` (the
least recently heard are evicted first, and counted here), and devices silent for ``retention_s`` of stream time
are evicted (their Home Assistant entities removed when ``remove_gone``).

Why one module of over 400 lines: it is the one path from a message to what is published; the items it acts on
and the per-device bounds it keeps share one state, which two files would have to keep in step.
"""

from __future__ import annotations

import hashlib
import logging
import sys
from array import array
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

import orjson

from devintel.ingest.adapters import claiming
from devintel.ingest.adapters.base import Adapter
from devintel.ingest.counters import Counters, RateLimitedLog
from devintel.ingest.inbound import (
    Availability,
    Command,
    DeviceInfo,
    DeviceLeft,
    Feedback,
    HomeAssistantOnline,
    Inbound,
    Rejected,
    Skipped,
    Telemetry,
)
from devintel.ingest.outbound import (
    Origin,
    Outgoing,
    Topics,
    discovery_messages,
    prediction_message,
    removal_messages,
    service_discovery_messages,
)
from devintel.ingest.validation import clean_name, sanitize_device_id
from devintel.models.devices import Column, DeviceTable
from devintel.models.live import CLEARING_FEEDBACK, LiveModels, Prediction

logger = logging.getLogger(__name__)

#: Latest events remembered per device to recognise a duplicate (a QoS 1 redelivery).
RECENT_EVENTS = 16
#: Topics whose adapter the handler remembers (a few per device); past this the memo starts afresh.
CLAIMED_TOPICS = 65_536


def fingerprint(event: Mapping[str, object]) -> int:
    """A 64-bit fingerprint of a canonical event (its time among its fields) that is the same in every process: a
    redelivered duplicate is recognised after the handler's state was restored in another process (a fleet
    partition taken over from its snapshot), which Python's per-process salted ``hash`` of strings would miss."""
    digest = hashlib.blake2b(orjson.dumps(event, option=orjson.OPT_SORT_KEYS), digest_size=8).digest()
    return int.from_bytes(digest, "little", signed=True)


@dataclass(frozen=True, slots=True)
class HandlerOptions:
    """How the handler publishes and what it keeps (from the settings)."""

    discovery: bool = True
    remove_gone: bool = True
    publish_interval_s: float = 300.0
    backlog_publish_interval_s: float = 1.0
    """While :attr:`Handler.catching_up`, a device's prediction is published at most once per this many seconds of
    receipt time; its latest is published by :meth:`Handler.release_held` (0: as without a backlog)."""
    retention_s: float = 30 * 86_400.0
    max_devices: int = 10_000
    tick_interval_s: float = 300.0
    """Stream time between checks of the live evidence (offline, silence) and of retention."""
    clock_skew_s: float = 3600.0
    """How far ahead of its receipt an event may move the stream clock. An event further ahead (a device clock
    set wrong, yet within ``live.max_future_s``) is still scored and learned at its own time, but the clock stops
    at receipt + this: otherwise one such event would make every other device look silent and count as failed."""
    origin: Origin = field(default_factory=Origin)
    """The ``origin`` of every discovery config (devintel's version, where to read about it)."""


@dataclass(slots=True)
class DeviceRecord:
    """What the handler knows of one device."""

    last_heard: float
    source: str = ""
    """The adapter's source the device was last heard from (its stream clock judges the device's silence)."""
    name: str | None = None
    """A person's name for the device, from its events (the native ``name`` field)."""
    device_type: str | None = None
    info: DeviceInfo | None = None
    prediction: Prediction | None = None
    published: tuple[str, bool, float] | None = None
    """(risk level, needs attention, event time) of the last prediction published."""
    published_at: float = float("-inf")
    """When (receipt time) the last prediction was published."""
    discovered: bool = False
    recent: array[int] = field(default_factory=lambda: array("q"))
    """Fingerprints (a hash of the event time and the event) of the device's latest :data:`RECENT_EVENTS` events, to
    drop redelivered duplicates: a ring of machine integers (a deque of tuples cost ~2.7 KB a device)."""
    _next: int = 0

    def seen(self, fingerprint: int) -> bool:
        """Whether ``fingerprint`` is among the latest events' (else it is remembered, in place of the oldest)."""
        recent = self.recent
        if fingerprint in recent:
            return True
        if len(recent) < RECENT_EVENTS:
            recent.append(fingerprint)
        else:
            recent[self._next] = fingerprint
            self._next = (self._next + 1) % RECENT_EVENTS
        return False


@dataclass(slots=True)
class Handled:
    """What one message produced."""

    messages: list[Outgoing] = field(default_factory=list)
    commands: list[Command] = field(default_factory=list)


class Handler:
    """Messages in, messages to publish out (see the module docstring)."""

    def __init__(
        self, live: LiveModels, adapters: Sequence[Adapter], topics: Topics, options: HandlerOptions | None = None
    ) -> None:
        self.live = live
        self.adapters = list(adapters)
        self._claimed: dict[str, Adapter | None] = {}
        """The adapter of each topic heard (``claiming`` memoised: the adapters and their filters are fixed)."""
        self.topics = topics
        self.options = options or HandlerOptions()
        self.counters = Counters()
        self._devices: Column[DeviceRecord] = live.table.column("ingest")
        self._infos: Column[DeviceInfo] = live.table.column("info")
        live.table.max_devices = self.options.max_devices
        self.last_drift: float | None = None
        self._drifts_seen = len(live.learner.drifts)
        self._last_tick: dict[str, float] = {}
        """Each source's clock at its last check of the evidence and of retention."""
        self._oldest_heard = float("inf")
        """No device was last heard before this (a bound, made exact at each walk of the devices): the retention
        check walks them only once the stream clock is past it by the retention time."""
        self._received = float("-inf")
        self.catching_up = False
        """Set by the daemon while a backlog of received messages waits to be handled: a device's due prediction is
        then published at most once per ``backlog_publish_interval_s``, and the others are held (Home Assistant
        wants each device's latest state, not every stale one before it); :meth:`release_held` publishes the latest
        of each once the backlog is handled. Replay and the fleet never set it."""
        self._held: set[str] = set()
        """The devices whose latest prediction is due and held (published by :meth:`release_held` or their own next
        publication)."""
        self._bad_input = RateLimitedLog(logger)
        self._drift_log = RateLimitedLog(logger, interval_s=600.0)

    @property
    def devices(self) -> Column[DeviceRecord]:
        """The devices that reported, least recently heard first (a view of the device table)."""
        self._table()
        return self._devices

    @property
    def infos(self) -> Column[DeviceInfo]:
        """What the sources' device lists say about each device (a view of the device table)."""
        self._table()
        return self._infos

    def _table(self) -> DeviceTable:
        """The device table of the models that serve (the views follow it when other models serve with another)."""
        table = self.live.table
        if self._devices.table is not table:
            self._devices, self._infos = table.column("ingest"), table.column("info")
            table.max_devices = self.options.max_devices
        return table

    def subscriptions(self) -> list[str]:
        """Every topic filter the adapters need."""
        return [topic for adapter in self.adapters for topic in adapter.subscriptions()]

    def handle(self, topic: str, payload: bytes, received: float) -> Handled:
        """Handle one message received at ``received`` (epoch s); never raises for bad input."""
        self.counters.messages += 1
        self._received = received
        out = Handled()
        try:
            adapter = self._claimed[topic]
        except KeyError:
            if len(self._claimed) >= CLAIMED_TOPICS:
                self._claimed.clear()
            adapter = self._claimed[topic] = claiming(self.adapters, topic)
        if adapter is None:
            self.counters.skipped["unknown_topic"] += 1
            return out
        try:
            items = adapter.parse(topic, payload, received)
        except Rejected as rejected:
            self.counters.rejected[rejected.reason] += 1
            self._bad_input.warning(
                rejected.reason, "dropped a message on %s: %s", topic[:200], str(rejected.detail)[:200]
            )
            return out
        for item in items:
            if isinstance(item, Telemetry) and item.dropped:
                self._dropped_values(item, topic)
            self._act(item, out, adapter.source)
            self._evicted(out)
        clock = self.live.clocks.get(adapter.source, self.live.clock)
        if clock - self._last_tick.get(adapter.source, float("-inf")) >= self.options.tick_interval_s:
            self._last_tick[adapter.source] = clock
            self._tick(out)
        return out

    def _dropped_values(self, item: Telemetry, topic: str) -> None:
        """Count and log the metric values left out of an event that is used otherwise."""
        for bad in item.dropped:
            self.counters.dropped_values[bad.reason] += 1
            self._bad_input.warning(
                f"value:{bad.reason}",
                "dropped a value on %s, used the rest of the event: %s",
                topic[:200],
                bad.detail[:200],
            )

    def _act(self, item: Inbound, out: Handled, source: str) -> None:
        match item:
            case Telemetry():
                self._telemetry(item, out, source)
            case Availability():
                self.live.availability(item.device_id, item.online, item.ts, source)
            case Feedback():
                self._feedback(item, out)
            case DeviceInfo():
                self._device_info(item, out)
            case DeviceLeft():
                if item.device_id in self.devices:
                    self._evict(item.device_id, out, "left the network")
            case Command():
                out.commands.append(item)
            case HomeAssistantOnline():
                out.messages += self.discovery()
            case Skipped():
                self.counters.skipped[item.reason] += 1

    def _telemetry(self, item: Telemetry, out: Handled, source: str) -> None:
        event = item.event
        device_id = item.device_id
        ts = float(event["ts"])  # type: ignore[arg-type]
        record = self._record(device_id, ts, out)
        record.source = source
        if record.seen(fingerprint(event)):
            self.counters.skipped["duplicate"] += 1
            return
        name = event.pop("name", None)
        if isinstance(name, str) and name != record.name:
            record.name = name
            record.discovered = False  # announce it again under its name
        info = self.infos.get(device_id)
        if info is not None:
            if info.device_type and "device_type" not in event:
                event["device_type"] = info.device_type
            if info.power_source and "power_source" not in event:
                event["power_source"] = info.power_source
        # One string per type for every device (not a copy per device from each payload).
        record.device_type = sys.intern(str(event.get("device_type") or record.device_type or "generic"))
        prediction = self.live.observe(
            event, explain=False, clock_limit=self._received + self.options.clock_skew_s, source=source
        )
        self.counters.events += 1
        previous, record.prediction = record.prediction, prediction
        if self.options.discovery and not record.discovered:
            out.messages += self._discovery_of(device_id, record)
        raised = prediction.needs_attention and (previous is None or not previous.needs_attention)
        due = self._due(record, prediction)
        if raised or due:
            # Its reasons now, while the live models still hold this event's features.
            prediction = record.prediction = self.live.explain(prediction)
        if raised:  # logged when raised, whether or not it is published (held while catching up on a backlog)
            logger.info(
                "%s needs attention: failure probability %.2f (%s), model %s, signals: %s",
                device_id,
                prediction.failure_probability,
                prediction.risk_level,
                prediction.model,
                ", ".join(prediction.reasons) or "-",
            )
        if due:
            if self.catching_up and self._received - record.published_at < self.options.backlog_publish_interval_s:
                self._held.add(device_id)
                self.counters.held_publish += 1
            else:
                self._publish(device_id, record, prediction, out)
        drifts = len(self.live.learner.drifts)
        if drifts != self._drifts_seen:
            self._drifts_seen = drifts
            self.counters.drift_alerts += 1
            self.last_drift = self.live.learner.drifts[-1] if drifts else None
            self._drift_log.warning(
                "drift",
                "drift: the live error rate changed (ADWIN) at stream time %.0f; rolling metrics %s",
                self.last_drift or 0.0,
                self.live.learner.rolling.get(),
            )

    def _publish(self, device_id: str, record: DeviceRecord, prediction: Prediction, out: Handled) -> None:
        """Publish ``prediction``, the device's latest (a prediction of it held before is no longer waiting)."""
        out.messages.append(prediction_message(self.topics, prediction))
        record.published = (prediction.risk_level, prediction.needs_attention, prediction.ts)
        record.published_at = self._received
        self._held.discard(device_id)
        self.counters.published += 1

    @property
    def holding(self) -> bool:
        """Whether predictions wait for :meth:`release_held`."""
        return bool(self._held)

    def release_held(self) -> Handled:
        """The latest prediction of every device whose prediction was held while catching up on a backlog (those of
        devices forgotten since are not published: their entities may have been removed), in device order."""
        out = Handled()
        held, self._held = self._held, set()
        for device_id in sorted(held):  # an order that is the same in every process (a set's is not)
            record = self.devices.get(device_id)
            if record is not None and record.prediction is not None:
                self._publish(device_id, record, record.prediction, out)
        return out

    def _feedback(self, item: Feedback, out: Handled) -> None:
        """A person's word: a failure is evidence; ``replaced`` and ``repaired`` clear the device's alarm, and the
        cleared state is published at once."""
        self.counters.feedback[item.kind] += 1
        if self.live.feedback(item.device_id, item.ts, item.kind) is not None:
            self.counters.failures["feedback"] += 1
        logger.info("feedback: %s %s", item.device_id, item.kind)
        record = self.devices.get(item.device_id)
        prediction = record.prediction if record is not None else None
        if (
            item.kind in CLEARING_FEEDBACK
            and record is not None
            and prediction is not None
            and prediction.needs_attention
        ):
            record.prediction = prediction = replace(prediction, needs_attention=False)
            self._publish(item.device_id, record, prediction, out)

    def _record(self, device_id: str, ts: float, out: Handled) -> DeviceRecord:
        device = self._table().heard(device_id)
        record: DeviceRecord | None = device.ingest
        if record is None:
            self._evicted(out)
            record = device.ingest = DeviceRecord(last_heard=ts)
            self._oldest_heard = min(self._oldest_heard, ts)
        else:
            record.last_heard = max(record.last_heard, ts)
        return record

    def _evicted(self, out: Handled) -> None:
        """Count, log and announce the devices the table's cap evicted (those that reported: a device only listed
        by its source, or only heard of through its availability, goes silently, as it came)."""
        for device_id, device in self.live.table.take_evicted():
            if device.ingest is not None:
                self._gone(device_id, out, f"over the cap of {self.options.max_devices} devices")

    def _due(self, record: DeviceRecord, prediction: Prediction) -> bool:
        if record.published is None:
            return True
        risk, attention, ts = record.published
        if (risk, attention) != (prediction.risk_level, prediction.needs_attention):
            return True
        return prediction.ts - ts >= self.options.publish_interval_s

    def _device_info(self, info: DeviceInfo, out: Handled) -> None:
        device = self._table().record(info.device_id)  # a bridge may list devices that never report: capped too
        previous, device.info = device.info, info
        record: DeviceRecord | None = device.ingest
        if record is not None and record.discovered and self.options.discovery and previous != info:
            out.messages += self._discovery_of(info.device_id, record)

    def _discovery_of(self, device_id: str, record: DeviceRecord) -> list[Outgoing]:
        """A device's discovery configs, named by its own events, else by its source's device list."""
        record.discovered = True
        info = self.infos.get(device_id)
        return discovery_messages(
            self.topics, device_id, info, record.device_type, record.name, origin=self.options.origin
        )

    def _tick(self, out: Handled) -> None:
        for failure in self.live.tick():
            self.counters.failures[failure.evidence] += 1
            logger.info("failure evidence: %s (%s at %.0f)", failure.device_id, failure.evidence, failure.ts)
        retention = self.options.retention_s
        if self.live.clock - self._oldest_heard <= retention:
            return  # no device can be silent past the retention time: no source's clock is past the stream clock
        # Each device against its own source's clock: one source's time must not age out another's devices.
        clocks, never, oldest = self.live.clocks, float("-inf"), float("inf")
        expired = []
        for device_id, device in self._table().records.items():
            record: DeviceRecord | None = device.ingest
            if record is None:
                continue
            if clocks.get(record.source, never) - record.last_heard > retention:
                expired.append(device_id)
            else:
                oldest = min(oldest, record.last_heard)
        self._oldest_heard = oldest
        for device_id in expired:
            self._evict(device_id, out, "silent past the retention time")

    def _evict(self, device_id: str, out: Handled, why: str) -> None:
        self.live.forget(device_id)
        self._gone(device_id, out, why)

    def _gone(self, device_id: str, out: Handled, why: str) -> None:
        self.counters.evicted += 1
        logger.info("forgetting device %s: %s", device_id, why)
        if self.options.remove_gone:
            out.messages += removal_messages(self.topics, device_id, self.options.discovery)

    def discovery(self) -> list[Outgoing]:
        """Discovery configs of devintel's own device and of every known device, those restored from the
        registry of a previous run included (Home Assistant came online)."""
        if not self.options.discovery:
            return []
        messages = service_discovery_messages(self.topics, self.options.origin)
        for device_id, record in self.devices.items():
            messages += self._discovery_of(device_id, record)
        return messages

    def registry(self) -> dict[str, object]:
        """What must outlive a restart so that Home Assistant keeps every device's entities: each known device's
        source, last report, name, type and the source's word about it (a JSON-ready dict, for
        :meth:`restore`)."""
        devices = []
        for device_id, record in self.devices.items():
            entry: dict[str, object] = {
                "device_id": device_id,
                "source": record.source,
                "last_heard": record.last_heard,
                "name": record.name,
                "device_type": record.device_type,
            }
            info = self.infos.get(device_id)
            if info is not None:
                entry["info"] = {
                    "device_type": info.device_type,
                    "power_source": info.power_source,
                    "ieee_address": info.ieee_address,
                    "name": info.name,
                    "area": info.area,
                    "connections": [list(pair) for pair in info.connections],
                    "source": info.source,
                }
            devices.append(entry)
        return {"version": 1, "devices": devices}

    def restore(self, registry: object) -> int:
        """Know again the devices of :meth:`registry` (written by a previous run), least recently heard first, up
        to ``max_devices``; entries that do not read are skipped. Returns how many were restored."""
        entries = registry.get("devices") if isinstance(registry, dict) else None
        restored = 0
        for entry in entries if isinstance(entries, list) else []:
            try:
                device_id, record, info = _restored(entry)
            except (KeyError, TypeError, ValueError, Rejected) as error:
                self._bad_input.warning("registry", "skipped an entry of the device registry: %s", error)
                continue
            table = self._table()
            if device_id in self.devices or len(table) >= self.options.max_devices:
                continue
            device = table.record(device_id)
            device.ingest = record
            self._oldest_heard = min(self._oldest_heard, record.last_heard)
            if info is not None:
                device.info = info
            restored += 1
        return restored

    def false_alarms(self) -> dict[str, object]:
        """The live false-alarm share: of the resolved events the serving threshold alarmed on (the latest ones
        the learner keeps), the share whose device did not fail within the horizon; None before any. Event
        level: the episode rate per 100 device-days is the decision layer's to report."""
        threshold = self.live.thresholds.get("global", 0.5)
        alarmed = [label for label, probability in self.live.learner.outcomes if probability >= threshold]
        false = sum(1 for label in alarmed if not label)
        return {"alarmed": len(alarmed), "false": false, "share": false / len(alarmed) if alarmed else None}

    def predictions(self) -> list[Prediction]:
        """The latest prediction of every known device."""
        return [r.prediction for r in self.devices.values() if r.prediction is not None]

    def report(self) -> dict[str, object]:
        """What the handler knows of its own health: counters, devices, the stream clock, rolling metrics."""
        learner = self.live.learner
        return {
            "model_version": self.live.version,
            "models": {name: {"threshold": t} for name, t in sorted(self.live.thresholds.items())},
            "router": dict(sorted(self.live.router.items())),
            "stream_time": self.live.clock if self.live.clock > float("-inf") else None,
            "devices": len(self.devices),
            "needs_attention": sum(1 for p in self.predictions() if p.needs_attention),
            "false_alarms": self.false_alarms(),
            "rolling": learner.rolling.get(),
            "labels": {
                "resolved": learner.resolved,
                "learned": learner.learned,
                "shed_learning": learner.shed,
                "waiting": len(learner.labels),
                "dropped": learner.labels.dropped,
            },
            "drift": {"detections": self.counters.drift_alerts, "last": self.last_drift},
            "decision": self.live.decision.as_dict() if self.live.decision is not None else None,
            "challenger": self.live.challenge(),
            "alarms": self.live.alarm_quality(),
            "counters": self.counters.as_dict(),
        }


def _restored(entry: object) -> tuple[str, DeviceRecord, DeviceInfo | None]:
    """(device id, record, info) of one entry of a saved registry; raises on an entry that does not read."""
    if not isinstance(entry, dict):
        raise TypeError(f"an entry is a {type(entry).__name__}")
    device_id = sanitize_device_id(entry["device_id"])
    name, device_type = entry.get("name"), entry.get("device_type")
    record = DeviceRecord(
        last_heard=float(entry["last_heard"]),
        source=str(entry.get("source") or ""),
        name=clean_name(name),
        device_type=device_type if isinstance(device_type, str) else None,
    )
    raw = entry.get("info")
    if not isinstance(raw, dict):
        return device_id, record, None
    power = raw.get("power_source")
    info = DeviceInfo(
        device_id=device_id,
        device_type=raw.get("device_type") if isinstance(raw.get("device_type"), str) else None,
        power_source=power if power in ("battery", "mains") else None,
        ieee_address=raw.get("ieee_address") if isinstance(raw.get("ieee_address"), str) else None,
        name=clean_name(raw.get("name")),
        area=clean_name(raw.get("area")),
        connections=tuple((str(kind), str(value)) for kind, value in raw.get("connections") or ()),
        source=str(raw.get("source") or "zigbee2mqtt"),
    )
    return device_id, record, info
