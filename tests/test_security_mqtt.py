"""Security, end to end: MQTT user name, password and TLS against a real mosquitto with a password file and a TLS
listener whose certificate is signed by a CA made here (``openssl``): the daemon and ``--simulate`` connect and
serve; a wrong password and an untrusted CA are refused, logged with the setting to check, retried, and SIGTERM
still exits 0 at once. Split from ``test_security.py`` (signed snapshots, the HTTP API, device ids); shared
helpers in ``security_helpers.py``.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import ssl
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import aiomqtt
import orjson
import pytest

from devintel.daemon.settings import Settings
from devintel.daemon.simulate import simulate_home
from harness.broker import Broker, find_mosquitto, free_port, preferred_kind
from harness.collector import collect, leak_event
from harness.daemon_env import daemon_env
from security_helpers import PASSWORD, USER, Daemon, _clean_settings_env, _credentials

# --- MQTT user name, password and TLS against mosquitto ------------------------------------------------------


@dataclass(frozen=True)
class Pki:
    """A CA and a server certificate it signed (SAN 127.0.0.1 and localhost), and a second, untrusted CA."""

    ca: Path
    server_cert: Path
    server_key: Path
    rogue_ca: Path


def _openssl(*args: str, cwd: Path) -> None:
    run = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True, timeout=60, check=False)
    assert run.returncode == 0, f"openssl {' '.join(args)}:\n{run.stderr}"


def _make_ca(directory: Path, name: str) -> tuple[Path, Path]:
    key, cert = directory / f"{name}.key", directory / f"{name}.crt"
    _openssl(
        "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", f"/CN=devintel test {name}",
        "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        cwd=directory,
    )  # fmt: skip
    return key, cert


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is needed to make the test CA and certificates")
    directory = tmp_path_factory.mktemp("pki")
    ca_key, ca = _make_ca(directory, "ca")
    _, rogue = _make_ca(directory, "rogue-ca")
    key, csr, cert = directory / "server.key", directory / "server.csr", directory / "server.crt"
    _openssl(
        "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", str(key), "-out", str(csr), "-subj", "/CN=localhost",
        cwd=directory,
    )  # fmt: skip
    extensions = directory / "server.ext"
    extensions.write_text(
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
        encoding="utf-8",
    )
    _openssl(
        "x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key), "-CAcreateserial",
        "-out", str(cert), "-days", "2", "-extfile", str(extensions),
        cwd=directory,
    )  # fmt: skip
    return Pki(ca=ca, server_cert=cert, server_key=key, rogue_ca=rogue)


@dataclass
class SecureBroker:
    """mosquitto with ``allow_anonymous false``, a password file (user :data:`USER`, :data:`PASSWORD`) and a
    TLS listener on ``tls_port`` besides the plain one."""

    broker: Broker
    tls_port: int
    pki: Pki

    def client(self, identifier: str, password: str = PASSWORD) -> aiomqtt.Client:
        """A TLS client with the right CA and credentials."""
        return aiomqtt.Client(
            "127.0.0.1",
            self.tls_port,
            identifier=identifier,
            username=USER,
            password=password,
            tls_context=ssl.create_default_context(cafile=str(self.pki.ca)),
        )


@pytest.fixture
def secure_broker(pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureBroker]:
    if preferred_kind() != "mosquitto" or find_mosquitto() is None:
        pytest.skip("MQTT authentication and TLS are tested against mosquitto only (the amqtt broker is in use)")
    passwd_tool = shutil.which("mosquitto_passwd")
    if passwd_tool is None:
        pytest.skip("mosquitto_passwd is needed to write mosquitto's password file")
    workdir = tmp_path_factory.mktemp("mqtt-secure")
    password_file = workdir / "passwd"
    password_file.touch(mode=0o600)
    subprocess.run([passwd_tool, "-b", str(password_file), USER, PASSWORD], check=True, timeout=30)
    tls_port = free_port()
    broker = Broker(
        workdir,
        "mosquitto",
        extra_config=[
            "allow_anonymous false",  # overrides the default's true, for every listener
            f"password_file {password_file}",
            f"listener {tls_port} 127.0.0.1",
            f"cafile {pki.ca}",
            f"certfile {pki.server_cert}",
            f"keyfile {pki.server_key}",
        ],
    )
    broker.start()
    try:
        yield SecureBroker(broker, tls_port, pki)
    finally:
        broker.stop()


def _secure_env(
    model_dir: Path, namespace: str, secure: SecureBroker, credentials: Path, **extra: str
) -> dict[str, str]:
    secure_settings = {
        "DEVINTEL_MQTT__HOST": "127.0.0.1",
        "DEVINTEL_MQTT__PORT": str(secure.tls_port),
        "DEVINTEL_MQTT__TLS": "true",
        "DEVINTEL_MQTT__CA_FILE": str(secure.pki.ca),
        "DEVINTEL_MQTT__USERNAME": USER,
        "CREDENTIALS_DIRECTORY": str(credentials),
    }
    return daemon_env(model_dir, namespace, **{**secure_settings, **extra})


async def test_daemon_connects_with_user_password_and_tls(
    secure_broker: SecureBroker, small_snapshot: Path, topic_namespace: str, tmp_path: Path, daemons: list[Daemon]
) -> None:
    ns = topic_namespace
    # The anonymous plain listener is closed: the broker really asks for credentials.
    with pytest.raises(aiomqtt.MqttError, match="authori"):
        async with aiomqtt.Client(secure_broker.broker.host, secure_broker.broker.port):
            pass
    credentials = _credentials(tmp_path / "credentials", mqtt__password=PASSWORD)
    daemon = Daemon.start(_secure_env(small_snapshot, ns, secure_broker, credentials), tmp_path / "daemon.log")
    daemons.append(daemon)
    async with collect(secure_broker.client(f"watch-{ns}"), f"{ns}/#") as seen:
        await seen.wait_for(lambda: seen.latest.get(f"{ns}/status") == b"online", "retained online")
        now = time.time() - 3600
        async with secure_broker.client(f"pub-{ns}") as pub:
            for i in range(3):
                await pub.publish(f"{ns}/events/leak.cellar", leak_event(now + 60 * i, i), qos=1)
        await seen.wait_for(lambda: f"{ns}/predictions/leak.cellar" in seen.latest, "a prediction")
        prediction = orjson.loads(seen.latest[f"{ns}/predictions/leak.cellar"])
        assert prediction["device_id"] == "leak.cellar"
        code, _took = await asyncio.to_thread(daemon.stop)
        assert code == 0, daemon.log()[-3000:]
        await seen.wait_for(lambda: seen.latest.get(f"{ns}/status") == b"stopped", "status stopped")
    assert re.search(rf"New client connected .* as devintel-{ns} .*u'{USER}'", secure_broker.broker.log())
    assert PASSWORD not in daemon.log()


async def test_the_simulated_home_publishes_with_the_daemons_credentials_and_tls(
    secure_broker: SecureBroker, topic_namespace: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``--simulate`` connects as the daemon does (it used to open a plain connection without TLS or the CA file,
    so against this broker it could not publish at all)."""
    _clean_settings_env(monkeypatch)
    monkeypatch.chdir(tmp_path)
    ns = topic_namespace
    settings = Settings(
        topic_prefix=ns,
        mqtt={
            "host": "127.0.0.1",
            "port": secure_broker.tls_port,
            "tls": True,
            "ca_file": secure_broker.pki.ca,
            "username": USER,
            "password": PASSWORD,
            "client_id": f"devintel-{ns}",
        },
        simulate={"samples": 300, "days": 5.0, "rate": 10_000.0},
    )
    async with collect(secure_broker.client(f"watch-{ns}"), f"{ns}/events/#") as seen:
        published = await simulate_home(settings)
        await seen.wait_for(lambda: len(seen.messages) >= published, f"{published} simulated events")
    assert published > 0
    assert all(topic.startswith(f"{ns}/events/") for topic, _, _ in seen.messages)
    assert re.search(rf"New client connected .* as devintel-{ns}-simulator .*u'{USER}'", secure_broker.broker.log())


async def test_wrong_password_and_untrusted_ca_are_refused_logged_and_retried(
    secure_broker: SecureBroker, small_snapshot: Path, topic_namespace: str, tmp_path: Path, daemons: list[Daemon]
) -> None:
    """Two misconfigured daemons at once: a wrong password, and a CA that did not sign the broker's certificate.
    Neither connects; each logs why and which setting to check, keeps retrying, and exits 0 at once on SIGTERM."""
    fast_retry = {"DEVINTEL_MQTT__RECONNECT_MAX_S": "0.5"}
    wrong = tmp_path / "wrong"
    shutil.copytree(small_snapshot, wrong / "models")
    wrong_password = Daemon.start(
        _secure_env(
            wrong / "models",
            f"{topic_namespace}a",
            secure_broker,
            _credentials(wrong / "credentials", mqtt__password="not the password"),
            **fast_retry,
        ),
        tmp_path / "wrong-password.log",
    )
    daemons.append(wrong_password)
    untrusted = Daemon.start(
        _secure_env(
            small_snapshot,
            f"{topic_namespace}b",
            secure_broker,
            _credentials(tmp_path / "credentials", mqtt__password=PASSWORD),
            DEVINTEL_MQTT__CA_FILE=str(secure_broker.pki.rogue_ca),
            **fast_retry,
        ),
        tmp_path / "untrusted.log",
    )
    daemons.append(untrusted)

    refused = await asyncio.to_thread(wrong_password.wait_for_log, r"ERROR .*the broker refused the login", 3)
    assert "check mqtt.username and mqtt.password" in refused[0]
    assert f"user '{USER}'" in refused[0]
    assert "reconnecting in" in refused[0]
    failed = await asyncio.to_thread(untrusted.wait_for_log, r"ERROR .*TLS handshake failed", 3)
    assert "CERTIFICATE_VERIFY_FAILED" in failed[0]
    assert "mqtt.ca_file" in failed[0]
    assert "not authorised" in secure_broker.broker.log()

    # Neither ever connected: no retained status under their topics.
    async with (
        collect(secure_broker.client(f"watch-{topic_namespace}"), f"{topic_namespace}a/#") as seen,
        collect(secure_broker.client(f"watch2-{topic_namespace}"), f"{topic_namespace}b/#") as seen2,
    ):
        await asyncio.sleep(0.5)
    assert seen.messages == []
    assert seen2.messages == []

    for daemon in (wrong_password, untrusted):
        code, took = await asyncio.to_thread(daemon.stop)
        assert code == 0, daemon.log()[-3000:]
        assert took < 5.0, f"SIGTERM took {took:.1f} s"
        assert "MQTT connected" not in daemon.log()
        assert "not the password" not in daemon.log()
        assert PASSWORD not in daemon.log()
