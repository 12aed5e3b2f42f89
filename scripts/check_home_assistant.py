"""The checks of ``scripts/check-home-assistant``: devintel against a real Home Assistant, on loopback only.

Run by the shell script (which installs HA); by hand: ``.venv/bin/python scripts/check_home_assistant.py --hass
PATH/TO/hass``. It starts mosquitto and Home Assistant on free loopback ports (HA in a temporary configuration
directory), onboards HA over REST, adds MQTT by config flow, creates a long-lived access token, bootstraps a small
snapshot and runs ``devintel-daemon`` with HA as a source, then checks, each printed as ``ok`` or ``FAILED``:

1. a Zigbee2MQTT device announced *before* devintel's config and one announced *after* it: devintel's entities on
   Zigbee2MQTT's device, named, no ``none_`` entity ids;
2. an HA-native device (an MQTT device with a MAC connection and a battery sensor, made by HA's MQTT discovery, which
   devintel reads through the websocket source): devintel's entities on that same device;
3. devintel's own device with its diagnostic entities;
4. availability: SIGTERM, kill -9 and a restart of devintel;
5. re-discovery on HA's birth message (HA restarted with devintel's retained configs gone);
6. removal of a device (Zigbee2MQTT ``device_leave``) leaving not one ERROR or WARNING line about devintel in HA's
   log (nor, in the whole run, any other);
7. the history backfill: what HA recorded before devintel first connected reaches the models.

Exit status 0 when every check passes, 1 otherwise; HA's and devintel's logs are kept in the work directory printed
at the start.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiomqtt
import httpx
import orjson
import websockets

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
from harness.broker import Broker, free_port  # noqa: E402

LOOPBACK = "127.0.0.1"
Z2M = "zigbee2mqtt"
BEFORE = ("0x00158d0001e50d01", "Hall motion")  # Zigbee2MQTT's config reaches HA before devintel's
AFTER = ("0x00158d0001e50d02", "Cellar leak")  # devintel's config reaches HA first
GARDEN_MAC = "02:00:00:00:be:ef"
RESULTS: list[tuple[str, bool, str]] = []


def check(name: str, passed: bool, detail: str = "") -> bool:
    RESULTS.append((name, passed, detail))
    print(f"{'ok    ' if passed else 'FAILED'} {name}{': ' + detail if detail and not passed else ''}", flush=True)
    return passed


async def wait_until(what: str, predicate: Callable[[], Awaitable[bool]], timeout: float = 60.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if await predicate():
                return True
        except (httpx.HTTPError, OSError, KeyError, websockets.WebSocketException):
            pass
        await asyncio.sleep(0.5)
    print(f"       (timed out after {timeout:.0f} s waiting for {what})", flush=True)
    return False


class HomeAssistant:
    """A Home Assistant process in its own configuration directory, on a loopback port."""

    def __init__(self, hass: str, config: Path, frontend: bool = False) -> None:
        self.hass = hass
        self.config = config
        self.port = free_port()
        self.base = f"http://{LOOPBACK}:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None
        self.token = ""
        self.http = httpx.AsyncClient(base_url=self.base, timeout=30.0, trust_env=False)
        (config / "configuration.yaml").write_text(
            "\n".join(
                [
                    "homeassistant:",
                    "  name: devintel check",
                    "  time_zone: UTC",
                    "http:",
                    f"  server_host: {LOOPBACK}",
                    f"  server_port: {self.port}",
                    "api:",
                    "websocket_api:",
                    "config:",
                    "onboarding:",
                    "person:",
                    "recorder:",
                    "  commit_interval: 1",
                    "history:",
                    "logger:",
                    "  default: warning",
                    *(["frontend:"] if frontend else []),
                    "",
                ]
            )
        )

    @property
    def log(self) -> Path:
        return self.config / "home-assistant.log"

    async def start(self) -> None:
        out = open(self.config / "hass.stdout", "ab")  # noqa: SIM115 (the process owns it)
        self.process = subprocess.Popen(
            [self.hass, "-c", str(self.config), "--log-file", str(self.log)], stdout=out, stderr=subprocess.STDOUT
        )

        async def up() -> bool:  # /api/ answers once the api integration is up (401 without a token)
            return (await self.http.get("/api/")).status_code in (200, 401)

        if not await wait_until("Home Assistant's HTTP server", up, timeout=600.0):
            raise RuntimeError(f"Home Assistant did not start; see {self.config}/hass.stdout and {self.log}")
        if self.token:
            self.http.headers["Authorization"] = f"Bearer {self.token}"

    async def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                await asyncio.to_thread(self.process.wait, 60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                await asyncio.to_thread(self.process.wait)

    async def onboard(self) -> None:
        client_id = f"{self.base}/"
        user = await self.http.post(
            "/api/onboarding/users",
            json={"client_id": client_id, "name": "Check", "username": "check", "password": "check-pass-1234",
                  "language": "en"},
        )  # fmt: skip
        user.raise_for_status()
        token = await self.http.post(
            "/auth/token",
            data={"grant_type": "authorization_code", "code": user.json()["auth_code"], "client_id": client_id},
        )
        token.raise_for_status()
        self.http.headers["Authorization"] = f"Bearer {token.json()['access_token']}"
        for step, body in (
            ("core_config", {}),
            ("analytics", {}),
            ("integration", {"client_id": client_id, "redirect_uri": f"{self.base}/?auth_callback=1"}),
        ):
            (await self.http.post(f"/api/onboarding/{step}", json=body)).raise_for_status()
        answer = await self.ws_call({"type": "auth/long_lived_access_token", "client_name": "devintel", "lifespan": 30},
                                    access=token.json()["access_token"])  # fmt: skip
        self.token = str(answer)
        self.http.headers["Authorization"] = f"Bearer {self.token}"

    async def add_mqtt(self, broker: Broker) -> None:
        flow = (await self.http.post("/api/config/config_entries/flow", json={"handler": "mqtt"})).json()
        if flow.get("type") == "menu":
            flow = (await self.http.post(f"/api/config/config_entries/flow/{flow['flow_id']}",
                                         json={"next_step_id": "broker"})).json()  # fmt: skip
        result = (
            await self.http.post(
                f"/api/config/config_entries/flow/{flow['flow_id']}", json={"broker": broker.host, "port": broker.port}
            )
        ).json()
        if result.get("type") != "create_entry":
            raise RuntimeError(f"the MQTT config flow did not create an entry: {result}")

    async def ws_call(self, message: dict[str, Any], access: str | None = None) -> Any:
        async with websockets.connect(f"ws://{LOOPBACK}:{self.port}/api/websocket", max_size=2**26, proxy=None) as ws:
            await ws.recv()
            await ws.send(orjson.dumps({"type": "auth", "access_token": access or self.token}).decode())
            if orjson.loads(await ws.recv()).get("type") != "auth_ok":
                raise RuntimeError("websocket auth failed")
            await ws.send(orjson.dumps({"id": 1, **message}).decode())
            while True:
                answer = orjson.loads(await ws.recv())
                if answer.get("id") == 1 and answer.get("type") == "result":
                    if not answer.get("success"):
                        raise RuntimeError(f"{message['type']}: {answer.get('error')}")
                    return answer.get("result")

    async def registries(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        devices = await self.ws_call({"type": "config/device_registry/list"})
        entities = await self.ws_call({"type": "config/entity_registry/list"})
        return devices, entities

    async def state(self, entity_id: str) -> str | None:
        response = await self.http.get(f"/api/states/{entity_id}")
        return response.json()["state"] if response.status_code == 200 else None


class Devintel:
    """``devintel-daemon`` as a subprocess."""

    def __init__(self, work: Path, broker: Broker, ha: HomeAssistant) -> None:
        self.model_dir = work / "models"
        self.log = work / "devintel.log"
        credentials = work / "credentials"
        credentials.mkdir(exist_ok=True)
        (credentials / "ha__api_token").write_text(ha.token + "\n")
        os.chmod(credentials / "ha__api_token", 0o600)
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("DEVINTEL_")}
        self.env.update(
            {
                "DEVINTEL_MODEL_DIR": str(self.model_dir),
                "DEVINTEL_MQTT__HOST": broker.host,
                "DEVINTEL_MQTT__PORT": str(broker.port),
                "DEVINTEL_HTTP__PORT": str(free_port()),
                "DEVINTEL_HTTP__HOST": LOOPBACK,
                "DEVINTEL_LIVE__HEALTH_INTERVAL_S": "1",
                "DEVINTEL_HA__API_URL": ha.base,
                "DEVINTEL_HA__HISTORY_DAYS": "1",
                "DEVINTEL_BOOTSTRAP__SAMPLES": "20000",
                "DEVINTEL_BOOTSTRAP__HOLDOUT_SAMPLES": "5000",
                "DEVINTEL_BOOTSTRAP__DAYS": "60",
                "CREDENTIALS_DIRECTORY": str(credentials),
            }
        )
        self.process: subprocess.Popen[bytes] | None = None

    def bootstrap(self) -> None:
        subprocess.run(
            [sys.executable, "-m", "devintel.daemon.service", "--bootstrap-synthetic", "--exit-after-bootstrap",
             "--allow-low-quality"],
            env=self.env, check=True, stdout=subprocess.DEVNULL, stderr=open(self.log, "ab"),  # noqa: SIM115
        )  # fmt: skip

    def start(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "devintel.daemon.service"],
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=open(self.log, "ab"),  # noqa: SIM115
        )

    def stop(self, sig: int = signal.SIGTERM) -> int:
        assert self.process is not None
        self.process.send_signal(sig)
        return self.process.wait(60)


async def devintel_online(broker: Broker, timeout: float = 120.0) -> bool:
    """Wait for devintel's retained ``online`` (it has subscribed by then: what is published after reaches it)."""
    async with aiomqtt.Client(broker.host, broker.port, identifier=f"check-status-{time.monotonic_ns()}") as watch:
        await watch.subscribe("devintel/status", qos=1)
        try:
            async with asyncio.timeout(timeout):
                async for message in watch.messages:
                    if message.payload == b"online":
                        return True
        except TimeoutError:
            return False
    return False


def z2m_device(ieee: str, name: str) -> dict[str, Any]:
    return {"ieee_address": ieee, "friendly_name": name, "type": "EndDevice", "power_source": "Battery",
            "definition": {"vendor": "Xiaomi", "model": "RTCGQ11LM", "description": "Motion sensor",
                           "exposes": [{"property": "occupancy"}, {"property": "battery"}]}}  # fmt: skip


async def announce_z2m(mqtt: aiomqtt.Client, ieee: str, name: str) -> None:
    """Zigbee2MQTT's own discovery of a device's battery sensor, as its homeassistant extension writes it."""
    slug = name.lower().replace(" ", "_")
    config = {
        "name": "Battery", "device_class": "battery", "unit_of_measurement": "%", "state_class": "measurement",
        "state_topic": f"{Z2M}/{name}", "value_template": "{{ value_json.battery }}",
        "unique_id": f"{ieee}_battery_{Z2M}", "object_id": f"{slug}_battery", "entity_category": "diagnostic",
        "device": {"identifiers": [f"zigbee2mqtt_{ieee}"], "name": name, "manufacturer": "Xiaomi",
                   "model": "Motion sensor"},
        "origin": {"name": "Zigbee2MQTT", "sw": "2.1.3", "url": "https://www.zigbee2mqtt.io"},
    }  # fmt: skip
    await mqtt.publish(f"homeassistant/sensor/{ieee}/battery/config", orjson.dumps(config), qos=1, retain=True)


async def announce_garden(mqtt: aiomqtt.Client) -> None:
    """An HA-native device (to devintel: not Zigbee2MQTT's, with a MAC connection) with a battery and a signal."""
    device = {"identifiers": ["garden_sensor_1"], "connections": [["mac", GARDEN_MAC]], "name": "Garden sensor",
              "manufacturer": "Acme", "model": "GS-1"}  # fmt: skip
    for key, unit, device_class in (("battery", "%", "battery"), ("rssi", "dBm", "signal_strength")):
        config = {
            "name": key.capitalize(), "device_class": device_class, "unit_of_measurement": unit,
            "state_topic": "garden/sensor", "value_template": f"{{{{ value_json.{key} }}}}",
            "availability_topic": "garden/sensor/availability",
            "unique_id": f"garden_sensor_1_{key}", "device": device, "entity_category": "diagnostic",
        }  # fmt: skip
        await mqtt.publish(f"homeassistant/sensor/garden_{key}/config", orjson.dumps(config), qos=1, retain=True)
    await mqtt.publish("garden/sensor/availability", b"online", qos=1, retain=True)


def devintel_entities(entities: list[dict[str, Any]], device_id: str) -> list[dict[str, Any]]:
    return [e for e in entities if e.get("platform") == "mqtt" and e.get("device_id") == device_id
            and str(e.get("unique_id", "")).startswith("devintel_")]  # fmt: skip


def device_with(devices: list[dict[str, Any]], identifier: str | None = None, mac: str | None = None) -> Any:
    for device in devices:
        if identifier and ["mqtt", identifier] in device.get("identifiers", []):
            return device
        if mac and ["mac", mac] in device.get("connections", []):
            return device
    return None


#: HA's loggers whose warnings concern what devintel sends (MQTT discovery, state and its templates, the websocket API).
DEVINTEL_LOGGERS = re.compile(
    r"\[homeassistant\.(components\.(mqtt|websocket_api|sensor|binary_sensor)|helpers\.template)[.\]]"
)


def log_problems(path: Path, start: int = 0) -> list[str]:
    """ERROR and WARNING lines of HA's log from byte ``start`` on that concern devintel: they name it, or come from
    HA's MQTT, websocket API or sensor code."""
    if not path.exists():
        return []
    text = path.read_bytes()[start:].decode("utf-8", "replace")
    return [
        line
        for line in text.splitlines()
        if re.search(r"\b(ERROR|WARNING)\b", line) and ("devintel" in line.lower() or DEVINTEL_LOGGERS.search(line))
    ]


async def screenshot(ha: HomeAssistant, device_id: str, path: Path) -> None:
    """A PNG of the device's page in HA's frontend, from headless Chromium driven over its DevTools protocol (on a
    loopback port), logged in with the long-lived token."""
    import base64
    import shutil

    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        raise RuntimeError("no chromium (apt-get install chromium)")
    port = free_port()
    profile = Path(tempfile.mkdtemp(prefix="devintel-chromium-"))
    process = subprocess.Popen(
        [browser, "--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", f"--user-data-dir={profile}",
         f"--remote-debugging-port={port}", "--remote-debugging-address=127.0.0.1", "--window-size=1280,1000",
         "about:blank"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        async with httpx.AsyncClient(trust_env=False) as http:
            pages: list[dict[str, Any]] = []

            async def listed() -> bool:
                pages[:] = (await http.get(f"http://127.0.0.1:{port}/json/list")).json()
                return any(p.get("type") == "page" for p in pages)

            await wait_until("chromium", listed, 30.0)
        url = next(p["webSocketDebuggerUrl"] for p in pages if p.get("type") == "page")
        async with websockets.connect(url, max_size=2**27, proxy=None) as cdp:
            ids = iter(range(1, 1000))

            async def call(method: str, **params: Any) -> dict[str, Any]:
                number = next(ids)
                await cdp.send(orjson.dumps({"id": number, "method": method, "params": params}).decode())
                while True:
                    answer = orjson.loads(await cdp.recv())
                    if answer.get("id") == number:
                        return dict(answer.get("result") or {})

            await call("Page.enable")
            await call("Page.navigate", url=f"{ha.base}/onboarding.html")
            await asyncio.sleep(2.0)
            tokens = {
                "access_token": ha.token, "token_type": "Bearer", "expires_in": 1800, "hassUrl": ha.base,
                "clientId": f"{ha.base}/", "expires": int(time.time() * 1000) + 10 * 365 * 86_400_000,
                "refresh_token": "",
            }  # fmt: skip
            script = f"localStorage.setItem('hassTokens', {orjson.dumps(orjson.dumps(tokens).decode()).decode()})"
            await call("Runtime.evaluate", expression=script)
            await call("Page.navigate", url=f"{ha.base}/config/devices/device/{device_id}")
            await asyncio.sleep(12.0)
            shot = await call("Page.captureScreenshot", format="png")
            path.write_bytes(base64.b64decode(shot["data"]))
    finally:
        process.terminate()
        process.wait(10)


async def main(hass: str, keep: bool, shot: Path | None = None) -> int:
    work = Path(tempfile.mkdtemp(prefix="devintel-check-ha-"))
    print(f"work directory: {work}", flush=True)
    broker = Broker(work / "mosquitto")
    broker.start()
    (work / "ha").mkdir()
    ha = HomeAssistant(hass, work / "ha", frontend=shot is not None)
    devintel: Devintel | None = None
    try:
        await ha.start()
        await ha.onboard()
        await ha.add_mqtt(broker)
        check("Home Assistant onboarded over REST, MQTT added by config flow", True)

        async with aiomqtt.Client(broker.host, broker.port, identifier="check-publisher") as mqtt:
            # Before devintel: the bridge's device list, Zigbee2MQTT's config of BEFORE, and HA-native history.
            await mqtt.publish(f"{Z2M}/bridge/devices", orjson.dumps([z2m_device(*BEFORE), z2m_device(*AFTER)]),
                               qos=1, retain=True)  # fmt: skip
            await announce_z2m(mqtt, *BEFORE)
            await announce_garden(mqtt)
            for i in range(12):
                await mqtt.publish("garden/sensor", orjson.dumps({"battery": 90 - i, "rssi": -60 - i}), qos=1)
                await asyncio.sleep(0.3)

            async def garden_known() -> bool:
                devices, _ = await ha.registries()
                return device_with(devices, mac=GARDEN_MAC) is not None

            await wait_until("the garden sensor in HA", garden_known)
            await asyncio.sleep(2.0)  # the recorder commits every second

            devintel = Devintel(work, broker, ha)
            await asyncio.to_thread(devintel.bootstrap)
            devintel.start()
            if not await devintel_online(broker):
                raise RuntimeError("devintel did not come online")
            for name in (BEFORE[1], AFTER[1]):
                await mqtt.publish(f"{Z2M}/{name}", orjson.dumps({"battery": 80, "occupancy": False,
                                                                  "linkquality": 90}), qos=1)  # fmt: skip

            async def on_device(identifier: str | None = None, mac: str | None = None) -> bool:
                devices, entities = await ha.registries()
                device = device_with(devices, identifier=identifier, mac=mac)
                return device is not None and len(devintel_entities(entities, device["id"])) == 2

            await wait_until("devintel's entities on the AFTER device", lambda: on_device(f"zigbee2mqtt_{AFTER[0]}"))
            await announce_z2m(mqtt, *AFTER)  # Zigbee2MQTT's config after devintel's
            await wait_until("devintel's entities on the BEFORE device", lambda: on_device(f"zigbee2mqtt_{BEFORE[0]}"))
            await wait_until("devintel's entities on the garden sensor", lambda: on_device(mac=GARDEN_MAC), 90.0)
            devices, entities = await ha.registries()
            for label, (ieee, name) in (("before", BEFORE), ("after", AFTER)):
                device = device_with(devices, identifier=f"zigbee2mqtt_{ieee}")
                mine = devintel_entities(entities, device["id"]) if device else []
                ids = sorted(e["entity_id"] for e in mine)
                slug = name.lower().replace(" ", "_")
                expected = [f"binary_sensor.{slug}_needs_attention", f"sensor.{slug}_failure_probability"]
                named = bool(device) and device.get("name") == name
                detail = f"device {device and device.get('name')!r}, entities {ids}"
                check(f"Zigbee2MQTT device announced {label} devintel: entities on its device, named",
                      named and ids == expected, detail)  # fmt: skip
            garden = device_with(devices, mac=GARDEN_MAC)
            garden_entities = devintel_entities(entities, garden["id"]) if garden else []
            check("HA-native device (websocket source): devintel's entities on that device", len(garden_entities) == 2,
                  str([e["entity_id"] for e in garden_entities]))  # fmt: skip
            none_ids = [e["entity_id"] for e in entities if "none_" in e["entity_id"] or e["entity_id"].endswith("_2")]
            check("no none_ (nor _2) entity ids", not none_ids, str(none_ids))
            service = device_with(devices, identifier="devintel_service_devintel")
            service_entities = [e for e in entities if service and e.get("device_id") == service["id"]]
            check("devintel's own device with diagnostic entities", bool(service) and len(service_entities) >= 7,
                  str([e["entity_id"] for e in service_entities]))  # fmt: skip

            probe = f"sensor.{BEFORE[1].lower().replace(' ', '_')}_failure_probability"

            async def state_is(expected: Callable[[str | None], bool]) -> bool:
                return expected(await ha.state(probe))

            check("entities available while devintel runs", await wait_until("available", lambda: state_is(
                lambda s: s not in (None, "unavailable"))))  # fmt: skip
            code = devintel.stop(signal.SIGTERM)
            check("SIGTERM: clean exit, entities unavailable", code == 0 and await wait_until(
                "unavailable", lambda: state_is(lambda s: s == "unavailable")))  # fmt: skip
            devintel.start()
            check("restart: entities available again", await wait_until("available", lambda: state_is(
                lambda s: s not in (None, "unavailable"))))  # fmt: skip
            devintel.stop(signal.SIGKILL)
            check("kill -9: entities unavailable (the last will)", await wait_until(
                "unavailable", lambda: state_is(lambda s: s == "unavailable")))  # fmt: skip
            devintel.start()
            await wait_until("available", lambda: state_is(lambda s: s not in (None, "unavailable")))

            # Re-discovery: HA restarts, and devintel's retained configs are gone from the broker by then.
            await ha.stop()
            async with aiomqtt.Client(broker.host, broker.port, identifier="check-retained") as peek:
                await peek.subscribe("homeassistant/+/devintel/+/config")
                retained: list[str] = []
                try:
                    async with asyncio.timeout(2.0):
                        async for message in peek.messages:
                            retained.append(message.topic.value)
                except TimeoutError:
                    pass
            for topic in retained:
                await mqtt.publish(topic, b"", qos=1, retain=True)
            await ha.start()  # its log starts anew (the previous one becomes home-assistant.log.1)
            after_sensor = f"sensor.{AFTER[1].lower().replace(' ', '_')}_failure_probability"

            async def live(entity_id: str) -> bool:
                # HA restores registry entries of entities it has no config for as "unavailable", "restored": only
                # a config received again (re-discovery) makes the entity live with its retained state.
                response = await ha.http.get(f"/api/states/{entity_id}")
                body = response.json() if response.status_code == 200 else {}
                return body.get("state") not in (None, "unavailable", "unknown") and not body["attributes"].get(
                    "restored"
                )

            check("re-discovery on HA's birth: entities live again after an HA restart without retained configs",
                  await wait_until("re-discovery", lambda: live(after_sensor), 90.0))  # fmt: skip

            # Removal: the device leaves; not one error or warning about devintel in HA's log.
            mark = ha.log.stat().st_size if ha.log.exists() else 0
            leave = {"type": "device_leave", "data": {"ieee_address": AFTER[0], "friendly_name": AFTER[1]}}
            await mqtt.publish(f"{Z2M}/bridge/event", orjson.dumps(leave), qos=1)

            async def removed() -> bool:
                devices, entities = await ha.registries()
                device = device_with(devices, identifier=f"zigbee2mqtt_{AFTER[0]}")
                gone = device is None or not devintel_entities(entities, device["id"])
                return gone and (await ha.http.get(f"/api/states/{after_sensor}")).status_code == 404

            gone = await wait_until("removal", removed)
            await asyncio.sleep(3.0)
            problems = log_problems(ha.log, mark)
            check("removal: entities gone, no error or warning about devintel in HA's log", gone and not problems,
                  "; ".join(problems[:3]))  # fmt: skip
            everything = log_problems(ha.config / "home-assistant.log.1") + log_problems(ha.log)
            check("no error or warning about devintel in HA's log in the whole run (both HA starts)", not everything,
                  "; ".join(everything[:3]))  # fmt: skip

            # The backfill: the garden sensor's recorded states went through the models.
            health_url = f"http://{LOOPBACK}:{devintel.env['DEVINTEL_HTTP__PORT']}/health"
            async with httpx.AsyncClient(timeout=10.0, trust_env=False) as http:
                health = (await http.get(health_url)).json()
            source = health.get("homeassistant", {})
            check("history backfill read HA's recorded states and they reached the models",
                  source.get("backfilled_states", 0) >= 10 and health["counters"]["events"] >= 12,
                  f"homeassistant: {source}, events: {health['counters']['events']}")  # fmt: skip
            if shot is not None:
                state = {"battery": 80, "occupancy": False, "linkquality": 90}
                await mqtt.publish(f"{Z2M}/{BEFORE[1]}", orjson.dumps(state), qos=1)
                await asyncio.sleep(2.0)
                devices, _ = await ha.registries()
                for identifier, path in (
                    (f"zigbee2mqtt_{BEFORE[0]}", shot),
                    ("devintel_service_devintel", shot.with_name(f"{shot.stem}-devintel{shot.suffix}")),
                ):
                    await screenshot(ha, device_with(devices, identifier=identifier)["id"], path)
                    print(f"screenshot of a device page: {path}", flush=True)
    except Exception as error:
        check("the run itself", False, f"{type(error).__name__}: {error}")
    finally:
        if devintel is not None and devintel.process is not None and devintel.process.poll() is None:
            devintel.stop(signal.SIGTERM)
        await ha.stop()
        broker.stop()
    failed = [name for name, passed, _ in RESULTS if not passed]
    print(f"{len(RESULTS) - len(failed)} passed, {len(failed)} failed", flush=True)
    if failed or keep:
        print(f"logs: {work}/ha/home-assistant.log, {work}/devintel.log", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hass", required=True, help="the hass executable of the Home Assistant venv")
    parser.add_argument("--keep", action="store_true", help="print where the logs are even when all pass")
    parser.add_argument("--screenshot", type=Path, default=None, help="also a PNG of a device page (needs chromium)")
    arguments = parser.parse_args()
    sys.exit(asyncio.run(main(arguments.hass, arguments.keep, arguments.screenshot)))
