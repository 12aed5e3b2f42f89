"""Reliability under bad input: 100,000 bad messages through the handler.

Two handlers on one snapshot get the same good stream (a seeded generator, for speed: 20 devices, 2,000 events,
native and Zigbee2MQTT, with failure feedback so labels resolve and the models learn); the second also gets
100,000 bad messages interleaved, of every reason a whole message is rejected for and every skip reason (a bad
metric value in a good message is not one: it is dropped alone, ``test_daemon_handler.py``). No exception; every
bad message is counted under the reason of its kind; the models, the feature states, the label buffer and the
Zigbee2MQTT adapter's memory are identical (pickles) and so is every message published. (Adapters fuzzed one by one:
``test_reliability_fuzz.py``.)
"""

from __future__ import annotations

import logging
import pickle
import random
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest

from devintel.daemon.from_settings import build_handler
from devintel.daemon.settings import Settings
from devintel.ingest.adapters import Zigbee2MqttAdapter
from devintel.ingest.handler import Handler
from devintel.ingest.inbound import MAX_PAYLOAD_BYTES, REJECT_REASONS, SKIP_REASONS, Telemetry
from devintel.models.snapshots import SnapshotStore
from fuzz_strategies import RECEIVED

T0 = 1_790_000_000.0
HOUR = 3600.0
GOOD_DEVICES = 20
GOOD_EVENTS = 2_000
BAD_MESSAGES = 100_000
#: Native devices that fail (feedback) part-way, and the event index (of theirs) at which they do.
FAILING = {"dev00": 60, "dev01": 75, "dev02": 90}
Z2M_DEVICES = {"hall/motion": "0x00158d0001e50d78", "porch plug": "0x00158d0001e50d79"}
Message = tuple[str, bytes, float]


def _good_stream(seed: int = 5) -> list[tuple[Message, bool]]:
    """The good stream: (message, is it an event) of 18 native devices and 2 Zigbee2MQTT ones, 100 reports each
    about 3 hours apart (12.5 days: labels resolve negative after the 7-day horizon), three native devices
    draining their battery and failing (feedback), a Zigbee2MQTT device list first."""
    rng = random.Random(seed)
    timed: list[tuple[float, int, Message, bool]] = []
    bridge = [
        {
            "ieee_address": ieee,
            "friendly_name": name,
            "type": "EndDevice",
            "power_source": "Battery" if "motion" in name else "Mains (single phase)",
            "definition": {"exposes": [{"property": "occupancy" if "motion" in name else "power"}]},
        }
        for name, ieee in Z2M_DEVICES.items()
    ]
    timed.append((T0 - 1, 0, ("zigbee2mqtt/bridge/devices", orjson.dumps(bridge), T0 - 1), False))
    native = [f"dev{d:02d}" for d in range(GOOD_DEVICES - len(Z2M_DEVICES))]
    for d, device in enumerate(native):
        phase = rng.uniform(0, 3 * HOUR)
        battery = rng.uniform(60, 100)
        kind = ("leak_sensor", "motion_sensor", "contact_sensor", "smoke_detector")[d % 4]
        for k in range(GOOD_EVENTS // GOOD_DEVICES):
            ts = T0 + phase + k * 3 * HOUR + rng.uniform(-600, 600)
            fail_at = FAILING.get(device)
            if fail_at is not None and k == fail_at:
                body = orjson.dumps({"event": "failure", "ts": ts})
                timed.append((ts, len(timed), (f"devintel/feedback/{device}", body, ts), False))
                break
            drain = 1.2 if fail_at is not None and k > fail_at - 30 else 0.05
            battery = max(0.0, battery - drain - rng.uniform(0, 0.05))
            body = orjson.dumps(
                {
                    "ts": round(ts, 3),
                    "device_type": kind,
                    "power_source": "battery",
                    "battery_level": round(battery, 2),
                    "linkquality": round(rng.uniform(60, 200), 1),
                    "response_time": round(rng.uniform(20, 400), 1),
                    "value": float(rng.random() < 0.1),
                }
            )
            timed.append((ts, len(timed), (f"devintel/events/{device}", body, ts), True))
    for d, (name, _) in enumerate(Z2M_DEVICES.items()):
        outages = 0
        for k in range(GOOD_EVENTS // GOOD_DEVICES):
            ts = T0 + d * 900 + k * 3 * HOUR
            outages += rng.random() < 0.05
            state: dict[str, object] = {"linkquality": rng.randint(40, 200), "power_outage_count": outages}
            state.update({"battery": "88.00", "occupancy": rng.random() < 0.2} if "motion" in name else {"power": 3.5})
            state["last_seen"] = int(ts * 1000)
            timed.append((ts, len(timed), (f"zigbee2mqtt/{name}", orjson.dumps(state), ts), True))
    timed.sort(key=lambda t: (t[0], t[1]))
    return [(message, is_event) for _, _, message, is_event in timed]


class BadMessages:
    """A seeded generator of bad messages, one kind at a time; each kind knows the counter it must land in
    (``("rejected" | "skipped", reason)``). The shapes are those the hypothesis properties above explore."""

    def __init__(self, seed: int, devices: list[str]) -> None:
        self.rng = random.Random(seed)
        self.devices = devices
        self.last_event: Message | None = None
        """The latest good event, for the ``duplicate`` kind (a QoS 1 redelivery)."""
        r = self.rng
        self.kinds: list[tuple[str, str, Callable[[float], Message]]] = [
            # too_large: over 64 KB, on every adapter
            ("rejected", "too_large", lambda now: self._native(self._padded(r.randint(1, 30_000)), now)),
            ("rejected", "too_large", lambda now: (self._z2m(), self._padded(r.randint(1, 9)), now)),
            ("rejected", "too_large", lambda now: ("homeassistant/status", b"online" * 11_000, now)),
            ("rejected", "too_large", lambda now: (self._z2m() + "/availability", b"o" * 70_000, now)),
            # malformed_json: not JSON, not UTF-8, non-standard literals, truncated
            ("rejected", "malformed_json", lambda now: self._native(self._garbage(), now)),
            ("rejected", "malformed_json", lambda now: self._native(b'{"battery_level": NaN}', now)),
            ("rejected", "malformed_json", lambda now: self._native(b'{"battery_level": 1e400}', now)),
            ("rejected", "malformed_json", lambda now: self._native(b'{"device_type": "\xff\xfe"}', now)),
            ("rejected", "malformed_json", lambda now: (self._z2m(), b'{"battery": 80, ', now)),
            ("rejected", "malformed_json", lambda now: ("homeassistant/status", b"\xff\xfeonline", now)),
            ("rejected", "malformed_json", lambda now: ("zigbee2mqtt/bridge/devices", b"[{", now)),
            # wrong_type: the wrong JSON shape
            ("rejected", "wrong_type", lambda now: self._native(r.choice([b"[1, 2]", b"42", b'"x"', b"null"]), now)),
            ("rejected", "wrong_type", lambda now: self._native(self._body(now, name=r.choice([7, [], {}])), now)),
            ("rejected", "wrong_type", lambda now: ("zigbee2mqtt/bridge/devices", b'{"devices": []}', now)),
            ("rejected", "wrong_type", lambda now: ("zigbee2mqtt/bridge/event", b"[]", now)),
            ("rejected", "wrong_type", lambda now: (self._z2m() + "/availability", b'{"state": 1}', now)),
            # out_of_range: a name too long (a bad metric value is not a bad message: it is dropped alone and the
            # event used, test_daemon_handler.py; so a non-finite number, always one value, is no reason here)
            (
                "rejected",
                "out_of_range",
                lambda now: self._native(self._body(now, name="n" * r.randint(129, 500)), now),
            ),
            # bad_device_id: wildcards, NUL, control characters, '..', too long
            ("rejected", "bad_device_id", lambda now: (f"devintel/events/{self._bad_id()}", self._body(now), now)),
            (
                "rejected",
                "bad_device_id",
                lambda now: (f"devintel/feedback/{self._bad_id()}", b'{"event": "failure"}', now),
            ),
            ("rejected", "bad_device_id", lambda now: (f"zigbee2mqtt/{self._bad_z2m_name()}", b'{"battery": 50}', now)),
            # device_id_mismatch: the payload names another device (or not a string)
            ("rejected", "device_id_mismatch", lambda now: self._native(self._body(now, device_id=self._other()), now)),
            # bad_timestamp: too far ahead or behind, not a time
            ("rejected", "bad_timestamp", lambda now: self._native(self._body(now, ts=self._bad_ts(now)), now)),
            (
                "rejected",
                "bad_timestamp",
                lambda now: (self._z2m(), orjson.dumps({"battery": 9, "last_seen": "x"}), now),
            ),
            # unknown_value: a string outside its vocabulary
            (
                "rejected",
                "unknown_value",
                lambda now: self._feedback(r.choice(["exploded", "FAILURE", "", "fail"]), now),
            ),
            (
                "rejected",
                "unknown_value",
                lambda now: (f"devintel/cmd/{r.choice(['rm', 'format', 'SNAPSHOT'])}", b"", now),
            ),
            ("rejected", "unknown_value", lambda now: self._native(self._body(now, power_source="solar"), now)),
            ("rejected", "unknown_value", lambda now: self._native(self._body(now, home_type="castle"), now)),
            ("rejected", "unknown_value", lambda now: ("homeassistant/status", b"rebooting", now)),
            ("rejected", "unknown_value", lambda now: (self._z2m() + "/availability", b"maybe", now)),
            # skipped: no adapter claims the topic
            ("skipped", "unknown_topic", lambda now: (self._unclaimed(), self._body(now), now)),
            # skipped: well-formed, but no device health in it
            ("skipped", "not_telemetry", lambda now: (r.choice(self._bridge_topics), b'{"state": "online"}', now)),
            (
                "skipped",
                "not_telemetry",
                lambda now: (self._z2m() + r.choice(["/set", "/get"]), b'{"state": "ON"}', now),
            ),
            ("skipped", "not_telemetry", lambda now: (self._z2m() + "/state", b"ON", now)),
            ("skipped", "not_telemetry", lambda now: ("homeassistant/status", b"offline", now)),
            ("skipped", "not_telemetry", lambda now: ("zigbee2mqtt/bridge/event", b'{"type": "device_joined"}', now)),
            ("skipped", "no_metrics", lambda now: ("zigbee2mqtt/remote1", b'{"action": "single"}', now)),
            ("skipped", "no_metrics", lambda now: (self._z2m(), b'{"linkquality": null, "update": {}}', now)),
            # skipped: a QoS 1 redelivery of the latest good event
            ("skipped", "duplicate", lambda now: self.last_event or self._native(b"{", now)),
        ]

    _bridge_topics = ("zigbee2mqtt/bridge/state", "zigbee2mqtt/bridge/logging", "zigbee2mqtt/bridge/info")

    def next(self, now: float) -> tuple[Message, tuple[str, str]]:
        """One bad message received at ``now`` and the (counter, reason) it must be counted under."""
        kinds = [k for k in self.kinds if k[1] != "duplicate"] if self.last_event is None else self.kinds
        counter, reason, make = self.rng.choice(kinds)
        return make(now), (counter, reason)

    # shapes --------------------------------------------------------------------------------------------------

    def _device(self) -> str:
        return self.rng.choice(self.devices)

    def _z2m(self) -> str:
        return f"zigbee2mqtt/{self.rng.choice([*Z2M_DEVICES, 'remote1', 'kitchen/lamp'])}"

    def _native(self, payload: bytes, now: float) -> Message:
        return f"devintel/events/{self._device()}", payload, now

    def _body(self, now: float, **fields: object) -> bytes:
        body: dict[str, object] = {"ts": now, "device_type": "leak_sensor", "battery_level": 50.0, "linkquality": 90}
        body.update(fields)
        return orjson.dumps(body)

    def _padded(self, extra: int) -> bytes:
        return orjson.dumps({"battery_level": 50.0, "pad": "x" * (MAX_PAYLOAD_BYTES + extra)})

    def _garbage(self) -> bytes:
        r = self.rng
        junk = bytes(b for b in (r.randrange(256) for _ in range(r.randint(1, 40))) if b != ord("}"))
        return r.choice([b'{"a": ' + junk, b"{not json", b"{'single': 'quotes'}", b'{"a": 1,}', b"\x00\x00"])

    def _bad_id(self) -> str:
        r = self.rng
        return r.choice(["a+b", "#", "dev#1", "..", "a..b", "dev\x00", "\x01x", "x\x7f", "d" * r.randint(129, 400)])

    def _bad_z2m_name(self) -> str:
        return self.rng.choice(["bad\x00name", "tab\tname", "a+b", "x/../y", "n" * 300])

    def _other(self) -> object:
        return self.rng.choice(["someone-else", "dev99", 42, ["dev00"]])

    def _bad_ts(self, now: float) -> object:
        r = self.rng
        return r.choice(
            [now + 2 * 86_400 + r.random() * 1e6, now - 401 * 86_400, 1.0, True, "yesterday", "2026-13-45", [now], {}]
        )

    def _feedback(self, kind: str, now: float) -> Message:
        return f"devintel/feedback/{self._device()}", orjson.dumps({"event": kind}), now

    def _unclaimed(self) -> str:
        r = self.rng
        return r.choice(
            [
                "tasmota/tele/plug/SENSOR",
                "shellies/shelly1/relay/0",
                "esphome/node/status",
                f"devintel/predictions/{self._device()}",
                "devintel/health",
                f"devintel/events/{self._device()}/extra",
                "devintel/events",
                "homeassistant/sensor/x/config",
                "zigbee2mqttx/lamp",
            ]
        )


def _handler(model_dir: Path) -> Handler:
    return build_handler(Settings(model_dir=model_dir), SnapshotStore(model_dir).load())


def test_100k_bad_messages_are_counted_and_change_nothing(
    small_snapshot: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The acceptance run: 100,000 bad messages interleaved with 2,000 good ones (see the module docstring)."""
    # The rate-limited warnings are not the subject here (the level is restored after the test: a level left at
    # ERROR hid a later test's warnings from its caplog).
    caplog.set_level(logging.ERROR, logger="devintel")
    good = _good_stream()
    clean, dirty = _handler(small_snapshot), _handler(small_snapshot)
    devices = sorted({m[0].rsplit("/", 1)[1] for m, _ in good if m[0].startswith("devintel/events/")})
    bad = BadMessages(seed=11, devices=devices)
    per_good = BAD_MESSAGES // len(good)
    extra = BAD_MESSAGES - per_good * len(good)
    expected: Counter[tuple[str, str]] = Counter()
    clean_out: list[dict[str, object]] = []
    dirty_out: list[dict[str, object]] = []
    bad_seconds = 0.0
    sent = 0
    for index, (message, is_event) in enumerate(good):
        clean_out += [m.as_record() for m in clean.handle(*message).messages]
        handled = dirty.handle(*message)
        dirty_out += [m.as_record() for m in handled.messages]
        if is_event:
            bad.last_event = message
        for _ in range(per_good + (1 if index < extra else 0)):
            bad_message, kind = bad.next(now=message[2])
            started = time.perf_counter()
            out = dirty.handle(*bad_message)
            bad_seconds += time.perf_counter() - started
            assert out.messages == [], (bad_message[0], bad_message[1][:200], kind)
            assert out.commands == [], (bad_message[0], bad_message[1][:200], kind)
            expected[kind] += 1
            sent += 1
    assert sent == BAD_MESSAGES

    rejected = Counter({reason: n for (counter, reason), n in expected.items() if counter == "rejected"})
    skipped = Counter({reason: n for (counter, reason), n in expected.items() if counter == "skipped"})
    assert set(rejected) == set(REJECT_REASONS) - {"not_finite"}, "every reason a whole message is rejected for"
    assert set(skipped) == set(SKIP_REASONS), "every skip reason is exercised"
    c, k = dirty.counters, clean.counters
    assert c.rejected == rejected
    assert k.rejected == Counter()
    assert c.skipped - k.skipped == skipped
    assert sum(c.rejected.values()) + sum((c.skipped - k.skipped).values()) == BAD_MESSAGES
    assert c.messages == k.messages + BAD_MESSAGES
    assert (c.events, c.predictions, c.published, c.failures) == (k.events, k.predictions, k.published, k.failures)

    # The good stream did something: labels resolved (positive ones among them) and the models learned.
    learner = clean.live.learner
    assert k.events == sum(is_event for _, is_event in good) > 1_900
    assert learner.resolved > 500
    assert learner.learned > 100
    assert any(label for label, _ in learner.outcomes)
    assert k.failures["feedback"] == len(FAILING)

    # Nothing of the bad input reached a model, a feature, a label or the adapter's memory.
    assert pickle.dumps(dirty.live.models) == pickle.dumps(clean.live.models)
    assert pickle.dumps(dirty.live.learner.features.states) == pickle.dumps(clean.live.learner.features.states)
    assert pickle.dumps(dirty.live.learner.labels) == pickle.dumps(clean.live.learner.labels)
    assert (dirty.live.learner.learned, dirty.live.learner.resolved) == (learner.learned, learner.resolved)
    assert pickle.dumps(dirty.adapters[1].__dict__) == pickle.dumps(clean.adapters[1].__dict__)
    assert list(dirty.devices) == list(clean.devices)
    assert dirty_out == clean_out
    assert len(clean_out) > 1_000

    rate = BAD_MESSAGES / bad_seconds
    print(f"\n100,000 bad messages: {bad_seconds:.2f} s in the handler ({rate:,.0f}/s)")
    print("rejected:", dict(sorted(c.rejected.items())))
    print("skipped: ", dict(sorted((c.skipped - k.skipped).items())))
    assert bad_seconds < 30.0


@pytest.mark.parametrize("seed", [1, 2])
def test_bad_message_kinds_land_where_they_say(small_snapshot: Path, seed: int) -> None:
    """Each kind of the generator, alone on a fresh handler, is counted under its own reason (so the big run's
    tally cannot balance by accident)."""
    handler = _handler(small_snapshot)
    good = _good_stream()
    handler.handle(*good[0][0])  # the Zigbee2MQTT device list
    first_event = next(m for m, is_event in good if is_event)
    bad = BadMessages(seed=seed, devices=["dev03", "dev04"])
    bad.last_event = first_event
    handler.handle(*first_event)
    for counter, reason, make in bad.kinds:
        for _ in range(5):
            before = (Counter(handler.counters.rejected), Counter(handler.counters.skipped))
            message = make(first_event[2])
            handler.handle(*message)
            after = (handler.counters.rejected, handler.counters.skipped)
            delta = (after[0] - before[0]) if counter == "rejected" else (after[1] - before[1])
            assert delta == Counter({reason: 1}), (reason, message[0][:80], message[1][:120], delta)


def test_a_redelivered_zigbee2mqtt_state_is_the_same_event() -> None:
    """Regression (found by the 100k run): a QoS 1 redelivery of a Zigbee2MQTT state whose
    ``power_outage_count`` rose gave ``restart_count`` 0 the second time (the count was already remembered), so
    the handler saw a new event and learned it twice. The redelivery now reports the same rise; a new message
    with the same count still reports none."""
    adapter = Zigbee2MqttAdapter()
    first = orjson.dumps({"linkquality": 80, "power_outage_count": 3, "last_seen": int(RECEIVED * 1000)})
    rise = orjson.dumps({"linkquality": 80, "power_outage_count": 5, "last_seen": int(RECEIVED * 1000) + 60_000})
    later = orjson.dumps({"linkquality": 80, "power_outage_count": 5, "last_seen": int(RECEIVED * 1000) + 120_000})
    restarts = []
    for payload in (first, first, rise, rise, rise, later):
        (item,) = adapter.parse("zigbee2mqtt/plug", payload, RECEIVED + 200)
        assert isinstance(item, Telemetry)
        restarts.append(item.event["restart_count"])
    assert restarts == [0.0, 0.0, 2.0, 2.0, 2.0, 0.0]
