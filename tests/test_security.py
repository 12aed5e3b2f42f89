"""Security, end to end (docs/RELIABILITY.md, "Security and threat model"):

- signed snapshots: ``snapshot.signing_key`` (from ``$CREDENTIALS_DIRECTORY``) reaches every snapshot store (the
  daemon, its reload, ``devintel models``, ``report``, ``replay`` and ``bootstrap``); unsigned and wrongly signed
  snapshots are refused with the reason and the newest good signed one is served; what the daemon writes is
  signed;
- MQTT user name, password and TLS against a real mosquitto: ``test_security_mqtt.py`` (helpers shared in
  ``security_helpers.py``);
- the HTTP API of the real daemon: loopback only by default, ``POST`` needs the bearer token;
- device ids: no payload or topic makes the daemon publish outside its own topics or create a file.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import json
import re
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import aiomqtt
import httpx
import orjson
import pytest

from devintel.daemon import cli
from devintel.daemon.service import insecure_settings, prepare_models
from devintel.daemon.settings import HttpSettings, MqttSettings, Settings, load_settings
from devintel.ingest.adapters.native import NativeAdapter
from devintel.ingest.adapters.zigbee2mqtt import Zigbee2MqttAdapter
from devintel.ingest.inbound import Rejected
from devintel.ingest.outbound import SERVICE_ENTITIES
from devintel.models.snapshots import MANIFEST_FILE, SnapshotStore, canonical_json
from harness.broker import Broker, free_port
from harness.collector import WAIT_S, collect, leak_event
from harness.daemon_env import daemon_env
from security_helpers import KEY, OTHER_KEY, PASSWORD, TOKEN, USER, Daemon, _clean_settings_env, _credentials

# --- signed snapshots ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SignedDir:
    """A model directory holding, oldest first: the original (unsigned) snapshot, a good signed one, one signed
    with another key, and an unsigned one that ``current`` names."""

    root: Path
    original: str
    good: str
    wrong_key: str
    unsigned: str


def _signed_dir(small_snapshot: Path) -> SignedDir:
    plain = SnapshotStore(small_snapshot)
    base = plain.load()
    good = SnapshotStore(small_snapshot, signing_key=KEY.encode()).write(base.files, base.manifest)
    wrong = SnapshotStore(small_snapshot, signing_key=OTHER_KEY).write(base.files, base.manifest)
    unsigned = plain.write(base.files, base.manifest)
    assert plain.current_version() == unsigned
    return SignedDir(small_snapshot, base.version, good, wrong, unsigned)


def _signature_ok(root: Path, version: str, key: bytes) -> bool:
    manifest = json.loads((root / version / MANIFEST_FILE).read_text(encoding="utf-8"))
    signature = manifest.pop("signature", None)
    expected = hmac.new(key, canonical_json(manifest), hashlib.sha256).hexdigest()
    return isinstance(signature, str) and hmac.compare_digest(signature, expected)


def test_signing_key_setting_comes_from_the_credentials_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _clean_settings_env(monkeypatch)
    monkeypatch.chdir(tmp_path)  # no .env
    assert load_settings().snapshot.signing_key_bytes() is None  # off by default
    credentials = _credentials(tmp_path / "credentials", snapshot__signing_key=KEY, mqtt__password=PASSWORD)
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(credentials))
    monkeypatch.setenv("DEVINTEL_SNAPSHOT__KEEP", "3")  # merged with the credential, setting by setting
    monkeypatch.setenv("DEVINTEL_MQTT__USERNAME", USER)  # a password needs a user name
    settings = load_settings()
    assert settings.snapshot.signing_key_bytes() == KEY.encode()
    assert settings.snapshot.keep == 3
    assert KEY not in settings.model_dump_json()
    assert KEY not in repr(settings)
    (credentials / "snapshot__signing_key").chmod(0o600)
    (credentials / "snapshot__signing_key").write_text("", encoding="utf-8")
    with pytest.raises(ValueError, match="signing_key"):
        load_settings()  # an empty key is an error, not "no signing"


def test_every_store_of_the_command_line_checks_signatures(
    small_snapshot: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    d = _signed_dir(small_snapshot)
    _clean_settings_env(monkeypatch)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DEVINTEL_MODEL_DIR", str(d.root))
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(_credentials(tmp_path / "credentials", snapshot__signing_key=KEY)))

    # devintel models: every snapshot listed; all but the good signed one refused, with the reason.
    assert cli.main(["models"]) == 0
    listing = {line[2:].split()[0]: line for line in capsys.readouterr().out.splitlines()}
    assert "REFUSED" not in listing[d.good]
    assert "F1" in listing[d.good]
    assert "manifest is not signed" in listing[d.unsigned]
    assert listing[d.unsigned].startswith("*")
    assert "manifest is not signed" in listing[d.original]
    assert "signature does not match" in listing[d.wrong_key]

    # devintel report: the live snapshot is refused, the newest good one is used, and the log says why.
    caplog.clear()
    assert cli.main(["report"]) == 0
    assert capsys.readouterr().out.strip()
    log = caplog.text
    assert f"loaded snapshot {d.good} instead of {d.unsigned}" in log
    assert re.search(rf"{d.unsigned}: manifest is not signed but a signing key is configured", log)
    assert re.search(rf"{d.wrong_key}: manifest signature does not match", log)
    assert cli.main(["report", "--version", d.wrong_key]) == 2

    # devintel replay and the daemon's start-up load the good signed one too.
    capture, out = tmp_path / "capture.jsonl", tmp_path / "out.jsonl"
    capture.write_text("", encoding="utf-8")
    assert cli.main(["replay", str(capture), "--out", str(out)]) == 0
    assert f"with snapshot {d.good}" in capsys.readouterr().out
    flags = argparse.Namespace(force_bootstrap=False, bootstrap_synthetic=False, allow_low_quality=False)
    assert prepare_models(load_settings(), flags).version == d.good

    # devintel bootstrap writes with a signing store.
    stores: list[SnapshotStore] = []

    def fake_bootstrap(config: object, store: SnapshotStore) -> SimpleNamespace:
        stores.append(store)
        return SimpleNamespace(version=store.write({"m.pkl": b"model"}, {}), gate=SimpleNamespace(table=str))

    monkeypatch.setattr("devintel.models.bootstrap.bootstrap", fake_bootstrap)
    other = tmp_path / "other-models"
    assert cli.main(["bootstrap", "--model-dir", str(other)]) == 0
    (written,) = SnapshotStore(other).versions()
    assert _signature_ok(other, written, KEY.encode())


def test_the_daemon_serves_only_signed_snapshots_and_guards_its_http_api(
    small_snapshot: Path, mqtt_broker: Broker, topic_namespace: str, tmp_path: Path, daemons: list[Daemon]
) -> None:
    """One daemon run: signature checks at start-up and on reload, signed snapshots written, the bearer token on
    ``POST``, the HTTP API on loopback only."""
    assert HttpSettings().host == "127.0.0.1"  # the default bind
    d = _signed_dir(small_snapshot)
    ns = topic_namespace
    port = free_port()
    env = daemon_env(
        d.root,
        ns,
        mqtt_broker,
        DEVINTEL_HTTP__PORT=str(port),  # http.host left at its default
        DEVINTEL_HTTP__TOKEN=TOKEN,
        CREDENTIALS_DIRECTORY=str(_credentials(tmp_path / "credentials", snapshot__signing_key=KEY)),
    )
    daemon = Daemon.start(env, tmp_path / "daemon.log")
    daemons.append(daemon)
    daemon.wait_for_log(r"MQTT connected")
    start_log = daemon.log()
    assert f"loaded snapshot {d.good} instead of {d.unsigned}" in start_log
    assert "manifest is not signed but a signing key is configured" in start_log
    assert "manifest signature does not match" in start_log

    http = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10.0)
    deadline = time.monotonic() + WAIT_S
    while True:
        try:
            models = http.get("/models").json()
            break
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
    assert models["version"] == d.good

    # Changing endpoints need the token; reading ones do not.
    before = set(SnapshotStore(d.root).versions())
    assert http.post("/models/snapshot").status_code == 401
    assert http.post("/models/snapshot", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert http.post("/predict", json={"device_id": "x"}).status_code == 401
    assert set(SnapshotStore(d.root).versions()) == before  # nothing written without the token
    auth = {"Authorization": f"Bearer {TOKEN}"}
    answer = http.post("/models/snapshot", headers=auth)
    assert answer.status_code == 200, answer.text
    (new,) = set(SnapshotStore(d.root).versions()) - before
    assert answer.json()["version"] == new
    assert _signature_ok(d.root, new, KEY.encode())  # what the daemon writes is signed
    bad_id = http.post("/predict", headers=auth, json={"device_id": "../../etc", "device_type": "leak_sensor"})
    assert bad_id.status_code == 422
    assert bad_id.json()["reason"] == "bad_device_id"

    # A snapshot dropped into the model directory unsigned (as by someone who can write it) is refused on reload.
    base = SnapshotStore(d.root).load(new)
    planted = SnapshotStore(d.root).write(base.files, base.manifest)
    _publish_sync(mqtt_broker, f"{ns}/cmd/reload")
    daemon.wait_for_log(rf"loaded snapshot {new} instead of {planted}")
    assert http.get("/models/version").json()["version"] == new

    # The API listens on loopback only.
    listening = _listening_addresses(port)
    if listening is not None:
        assert listening == {"127.0.0.1"}, listening
    outside = _non_loopback_address()
    if outside is not None:
        with pytest.raises(ConnectionRefusedError), socket.create_connection((outside, port), timeout=2.0):
            pass
    http.close()

    code, _ = daemon.stop()
    assert code == 0, daemon.log()[-3000:]
    final = SnapshotStore(d.root, signing_key=KEY.encode()).load()  # the final snapshot: signed, and current
    assert final.version not in before | {new, planted}
    assert TOKEN not in daemon.log()
    assert KEY not in daemon.log()


def test_exposed_settings_are_warned_about(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The defaults (HTTP on loopback, no password) warn about nothing; an open HTTP API on the network and a
    password sent in clear text to another host are named."""
    _clean_settings_env(monkeypatch)
    monkeypatch.chdir(tmp_path)  # no .env
    assert insecure_settings(Settings()) == []
    assert (
        insecure_settings(Settings(http=HttpSettings(host="::1"), mqtt=MqttSettings(username=USER, password="x"))) == []
    )
    assert insecure_settings(Settings(http=HttpSettings(host="0.0.0.0", token=TOKEN))) == []
    exposed = Settings(
        http=HttpSettings(host="0.0.0.0"), mqtt=MqttSettings(host="broker.lan", username=USER, password="x")
    )
    http_warning, mqtt_warning = insecure_settings(exposed)
    assert "set http.token" in http_warning
    assert "clear text to broker.lan" in mqtt_warning
    assert (
        insecure_settings(Settings(mqtt=MqttSettings(host="broker.lan", username=USER, password="x", tls=True))) == []
    )


def _publish_sync(broker: Broker, topic: str, payload: bytes = b"") -> None:
    """Publish one message from synchronous test code (in an event loop of its own)."""

    async def publish() -> None:
        async with aiomqtt.Client(broker.host, broker.port) as pub:
            await pub.publish(topic, payload, qos=1)

    asyncio.run(publish())


def _listening_addresses(port: int) -> set[str] | None:
    """The local IPv4 and IPv6 addresses listening on TCP ``port`` (from /proc/net), or None off Linux."""
    found: set[str] = set()
    seen_table = False
    for table, size in (("/proc/net/tcp", 4), ("/proc/net/tcp6", 16)):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        seen_table = True
        for line in lines:
            local, state = line.split()[1], line.split()[3]
            address, hex_port = local.split(":")
            if state != "0A" or int(hex_port, 16) != port:  # 0A: LISTEN
                continue
            raw = bytes.fromhex(address)
            if size == 4:
                found.add(socket.inet_ntop(socket.AF_INET, raw[::-1]))
            else:
                words = b"".join(raw[i : i + 4][::-1] for i in range(0, 16, 4))
                found.add(socket.inet_ntop(socket.AF_INET6, words))
    return found if seen_table else None


def _non_loopback_address() -> str | None:
    """An IPv4 address of this host that is not loopback, or None (no route: nothing is sent)."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.connect(("192.0.2.1", 9))  # TEST-NET-1: only picks the outgoing interface
            address: str = probe.getsockname()[0]
    except OSError:
        return None
    return None if address.startswith("127.") or address == "0.0.0.0" else address


# --- device ids cannot inject topics or paths ----------------------------------------------------------------

NASTY_IDS = ["a/b", "+", "#", "\x00", "..", "../../etc", "x" * 1000, "victim/../../x", "a\x00b", "+/#", "/", ""]
SAFE_ID = re.compile(r"[A-Za-z0-9_.:-]{1,128}")
SAFE_OBJECT_ID = re.compile(r"[A-Za-z0-9_-]{1,128}")


@pytest.mark.parametrize("nasty", ["a+b", "#", "a\x00b", "..", "../../etc", "x" * 200, "a\x7fb"])
def test_topic_levels_that_would_inject_are_rejected(nasty: str) -> None:
    """Topic levels MQTT clients cannot normally publish (wildcards, NUL) are refused by the adapters too."""
    now = time.time()
    with pytest.raises(Rejected, match=r"wildcard|control character|chars >|empty"):
        NativeAdapter(prefix="p").parse(f"p/events/{nasty}", leak_event(now, 0), now)
    with pytest.raises(Rejected):
        Zigbee2MqttAdapter(base_topic="z").parse(f"z/{nasty}", b'{"battery": 80, "linkquality": 90}', now)


async def test_no_device_id_injects_a_topic_or_a_path(
    mqtt_broker: Broker, small_snapshot: Path, topic_namespace: str, tmp_path: Path, daemons: list[Daemon]
) -> None:
    ns = topic_namespace
    before = {p.relative_to(tmp_path) for p in tmp_path.rglob("*")}
    before_version = SnapshotStore(small_snapshot).current_version()
    env = daemon_env(small_snapshot, ns, mqtt_broker)
    daemon = Daemon.start(env, tmp_path / "daemon.log")
    daemons.append(daemon)
    client = aiomqtt.Client(mqtt_broker.host, mqtt_broker.port, identifier=f"watch-{ns}")
    async with collect(client, "#") as seen:
        await seen.wait_for(lambda: seen.latest.get(f"{ns}/status") == b"online", "status online")
        now = time.time() - 3600
        inputs: list[tuple[str, bytes]] = []
        for i in range(2):  # controls: a clean id, and one whose topic and payload agree once sanitised
            inputs.append((f"{ns}/events/good.one", leak_event(now + i, i)))
            inputs.append((f"{ns}/events/a_b", leak_event(now + i, i, device_id="a/b")))
        for nasty in NASTY_IDS:  # a payload naming another device than its topic
            inputs.append((f"{ns}/events/victim", leak_event(now, 0, device_id=nasty)))
        for level in ("..", "...", "x" * 200, "a..b"):  # topic levels a client can publish
            inputs.append((f"{ns}/events/{level}", leak_event(now, 0)))
        z2m = f"{ns}-z2m"
        devices = [
            {"ieee_address": nasty, "friendly_name": f"dev{i}", "type": "EndDevice"}
            for i, nasty in enumerate(NASTY_IDS)
        ]
        inputs.append((f"{z2m}/bridge/devices", orjson.dumps(devices)))
        state = orjson.dumps({"battery": 80, "linkquality": 90, "voltage": 2900})
        inputs += [(f"{z2m}/dev{i}", state) for i in range(len(NASTY_IDS))]  # ids from refused ieee addresses
        inputs += [(f"{z2m}/../../etc", state), (f"{z2m}/bedroom/radiator", state), (f"{z2m}/x/../y", state)]
        inputs.append((f"{z2m}/bridge/event", orjson.dumps({"type": "device_leave", "data": {"ieee_address": "#"}})))
        async with aiomqtt.Client(mqtt_broker.host, mqtt_broker.port, identifier=f"pub-{ns}") as pub:
            for topic, payload in inputs:
                await pub.publish(topic, payload, qos=1)
        await seen.wait_for(lambda: seen.counters(ns).get("messages") == len(inputs), f"{len(inputs)} messages handled")
        code, _ = await asyncio.to_thread(daemon.stop)
        assert code == 0, daemon.log()[-3000:]
        await seen.wait_for(lambda: seen.latest.get(f"{ns}/status") == b"stopped", "status stopped")

    counters = seen.counters(ns)
    # Refused, counted: every nasty payload id (12), topic level (4), friendly name (2) and the device_leave (1).
    refused = counters["rejected"].get("bad_device_id", 0) + counters["rejected"].get("device_id_mismatch", 0)
    assert refused == len(NASTY_IDS) + 4 + 2 + 1, counters["rejected"]

    sent = {topic for topic, _ in inputs}
    published = {topic for topic, payload, _ in seen.messages if topic not in sent}
    predicted: set[str] = set()
    for topic in published:
        if topic in (f"{ns}/status", f"{ns}/health"):
            continue
        prediction = re.fullmatch(rf"{re.escape(ns)}/predictions/([^/]+)", topic)
        discovery = re.fullmatch(
            rf"{re.escape(ns)}-ha/(sensor|binary_sensor)/{re.escape(ns)}/([^/]+)_(failure_probability|needs_attention)/config",
            topic,
        )
        service = re.fullmatch(
            rf"{re.escape(ns)}-ha/(sensor|binary_sensor)/{re.escape(ns)}_service/([a-z_]+)/config", topic
        )
        if service:  # devintel's own device: its fixed entities only
            assert (service.group(1), service.group(2)) in {(c, x) for c, x, _, _ in SERVICE_ENTITIES}, topic
            continue
        assert prediction or discovery, f"the daemon published outside its topics: {topic!r}"
        if prediction:
            device = prediction.group(1)
            assert SAFE_ID.fullmatch(device), topic
            assert ".." not in device, topic
            predicted.add(device)
        else:
            assert discovery is not None
            assert SAFE_OBJECT_ID.fullmatch(discovery.group(2)), topic
    # Only the clean ids and the sanitised ones: "a/b" as an ieee address names dev0 "a_b"; the other devices'
    # ieee addresses were refused, so they go by their friendly names.
    expected = {"good.one", "a_b", "bedroom_radiator"} | {f"dev{i}" for i in range(1, len(NASTY_IDS))}
    assert predicted == expected

    # No path either: the model directory holds versions, current, the lock and the known-device registry (whose ids
    # are the same clean ones), each version only model files.
    store = SnapshotStore(small_snapshot)
    entries = {p.name for p in small_snapshot.iterdir()}
    assert entries == set(store.versions()) | {"current", ".lock", "devices.json"}, entries
    registry = orjson.loads((small_snapshot / "devices.json").read_bytes())
    assert {entry["device_id"] for entry in registry["devices"]} == expected
    names = {
        frozenset(p.relative_to(small_snapshot / v).as_posix() for p in (small_snapshot / v).rglob("*"))
        for v in store.versions()
    }
    allowed = re.compile(
        r"manifest\.json|models|challenger|report|state|(models|challenger)/\w+\.pkl|report/[\w.]+|state/alarms\.json"
    )
    assert all(allowed.fullmatch(name) for files in names for name in files), names
    final = store.load()  # the final snapshot, after learning from these devices, names none of them in a path ...
    assert final.version != before_version
    for device in ("good.one", "bedroom_radiator", "dev3"):
        blobs = [blob for name, blob in final.files.items() if name != "state/alarms.json"]
        assert not any(device.encode() in blob for blob in blobs), device
    alarms = orjson.loads(final.files["state/alarms.json"])  # ... and only as JSON keys of the alarm states
    assert all(SAFE_ID.fullmatch(device) for states in alarms.values() for device in states)
    after = {p.relative_to(tmp_path) for p in tmp_path.rglob("*")}
    created = {p for p in after - before if p.parts[0] != "models"}
    assert created == {Path("daemon.log")}, created
