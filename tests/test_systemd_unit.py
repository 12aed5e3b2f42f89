"""The systemd unit (``systemd/devintel.service``), its installer and the daemon's side of ``Type=notify``.

- ``systemd-analyze verify`` finds nothing wrong with the unit, and ``systemd-analyze security --offline=yes``
  rates its exposure at 2.0 or better. Both need ``systemd-analyze`` (Debian package ``systemd``; systemd need
  not be running, these are static checks). Without it they are skipped locally but fail in CI (``$CI`` set), so
  that a CI image without systemd cannot pass them silently.
- ``devintel-daemon``, a real subprocess serving a small real snapshot against a real broker, talks to a datagram
  socket standing in for systemd's ``NOTIFY_SOCKET``: ``READY=1``, ``STATUS=``, ``WATCHDOG=1`` every half of
  ``WATCHDOG_USEC``, ``STOPPING=1`` on SIGTERM, exit 0, every message from the main process (``NotifyAccess=main``).
- ``scripts/install-systemd --dry-run`` prints the install without changing anything.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.broker import Broker

ROOT = Path(__file__).resolve().parent.parent
UNIT = ROOT / "systemd" / "devintel.service"
INSTALLER = ROOT / "scripts" / "install-systemd"
#: The ExecStart binary of the shipped unit (created by scripts/install-systemd).
INSTALLED_DAEMON = "/opt/devintel/venv/bin/devintel-daemon"
#: The same console script in the venv running these tests.
VENV_DAEMON = Path(sys.executable).with_name("devintel-daemon")
#: The exposure score (0 safest … 10) the unit must reach in ``systemd-analyze security``.
MAX_EXPOSURE = 2.0
INSTALL_HINT = "install the Debian package 'systemd' (apt-get install -y systemd) for systemd-analyze"
WAIT_S = 60.0


def systemd_analyze() -> str:
    """The path of ``systemd-analyze`` (version 250 or newer, for ``security --offline``).

    Missing: skipped on a developer machine, a failure in CI (``$CI`` set), with the package to install.
    """
    path = shutil.which("systemd-analyze")
    problem = None
    if path is None:
        problem = f"systemd-analyze not found: {INSTALL_HINT}"
    else:
        out = subprocess.run([path, "--version"], capture_output=True, text=True, check=False).stdout
        match = re.search(r"systemd (\d+)", out)
        if match is None or int(match.group(1)) < 250:
            problem = (
                f"systemd-analyze {out.splitlines()[:1]} is older than 250 (no security --offline): {INSTALL_HINT}"
            )
    if problem is None:
        assert path is not None
        return path
    if os.environ.get("CI"):
        pytest.fail(problem)
    pytest.skip(problem)


def _analyze_env() -> dict[str, str]:
    # No colours, no pager, no emoji in the output we parse.
    return {**os.environ, "SYSTEMD_COLORS": "0", "SYSTEMD_PAGER": "", "SYSTEMD_LOG_COLOR": "0"}


@pytest.fixture
def testable_unit(tmp_path: Path) -> Path:
    """The shipped unit with only ExecStart's binary changed to this venv's ``devintel-daemon``.

    ``systemd-analyze verify`` checks that ExecStart names an executable file, and the unit's
    ``/opt/devintel/venv/bin/devintel-daemon`` exists only once scripts/install-systemd has run. Everything else
    is the shipped file, byte for byte (checked here).
    """
    assert VENV_DAEMON.is_file(), f"{VENV_DAEMON} missing: run scripts/setup"
    text = UNIT.read_text(encoding="utf-8")
    assert text.count(f"ExecStart={INSTALLED_DAEMON} ") == 1
    copy = tmp_path / "devintel.service"
    copy.write_text(text.replace(f"ExecStart={INSTALLED_DAEMON} ", f"ExecStart={VENV_DAEMON} "), encoding="utf-8")
    changed = [
        (a, b) for a, b in zip(text.splitlines(), copy.read_text(encoding="utf-8").splitlines(), strict=True) if a != b
    ]
    assert len(changed) == 1
    assert changed[0][0].startswith("ExecStart=")
    return copy


def _directives(path: Path) -> dict[str, list[str]]:
    """``Section.Key`` → values, in order (comments and blank lines dropped)."""
    found: dict[str, list[str]] = {}
    section = ""
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        found.setdefault(f"{section}.{key}", []).append(value)
    return found


def test_unit_declares_notify_watchdog_credentials_and_state() -> None:
    d = _directives(UNIT)
    assert d["Service.Type"] == ["notify"]
    assert d["Service.NotifyAccess"] == ["main"]
    assert d["Service.WatchdogSec"] == ["120s"]
    assert d["Service.ExecStart"] == [f"{INSTALLED_DAEMON} --bootstrap-synthetic"]
    assert d["Service.DynamicUser"] == ["yes"]
    assert d["Service.StateDirectory"] == ["devintel"]
    assert "DEVINTEL_MODEL_DIR=%S/devintel/models" in d["Service.Environment"]
    assert d["Service.EnvironmentFile"] == ["-/etc/devintel/devintel.env"]
    # A LoadCredential= of a missing absolute path fails the start, unless SetCredential= gives the same id a
    # default: that default must be one devintel reads as "no password" (see test_daemon_speaks_sd_notify).
    assert d["Service.LoadCredential"] == ["mqtt__password:/etc/devintel/mqtt_password"]
    assert d["Service.SetCredential"] == [r"mqtt__password:\n"]
    assert d["Service.Restart"] == ["on-failure"]
    assert "Unit.StartLimitIntervalSec" in d
    assert "Unit.StartLimitBurst" in d
    # The first start bootstraps for minutes before READY=1.
    assert d["Service.TimeoutStartSec"] == ["15min"]


def test_systemd_analyze_verify_is_clean(testable_unit: Path) -> None:
    analyze = systemd_analyze()
    run = subprocess.run(
        [analyze, "verify", str(testable_unit)], capture_output=True, text=True, env=_analyze_env(), check=False
    )
    output = (run.stdout + run.stderr).strip()
    assert run.returncode == 0, output
    assert output == "", output


def test_systemd_analyze_verify_of_the_shipped_unit_only_misses_the_installed_binary() -> None:
    """The shipped file as it is: the one complaint is the ExecStart binary that scripts/install-systemd creates."""
    analyze = systemd_analyze()
    if Path(INSTALLED_DAEMON).exists():
        pytest.skip(f"{INSTALLED_DAEMON} is installed here: test_systemd_analyze_verify_is_clean covers it")
    run = subprocess.run(
        [analyze, "verify", str(UNIT)], capture_output=True, text=True, env=_analyze_env(), check=False
    )
    lines = [line for line in (run.stdout + run.stderr).splitlines() if line.strip()]
    assert lines, "expected systemd-analyze verify to report the missing ExecStart binary"
    assert all(INSTALLED_DAEMON in line for line in lines), lines


def test_systemd_analyze_security_exposure(testable_unit: Path) -> None:
    analyze = systemd_analyze()
    # --threshold takes the exposure times 10: the command itself fails above MAX_EXPOSURE.
    run = subprocess.run(
        [
            analyze,
            "security",
            "--offline=yes",
            f"--threshold={round(MAX_EXPOSURE * 10)}",
            "--no-pager",
            str(testable_unit),
        ],
        capture_output=True,
        text=True,
        env=_analyze_env(),
        check=False,
    )
    output = run.stdout + run.stderr
    match = re.search(r"Overall exposure level for devintel\.service:\s*([0-9.]+)", output)
    assert match is not None, output
    exposure = float(match.group(1))
    print(f"systemd-analyze security: overall exposure {exposure}")
    assert exposure <= MAX_EXPOSURE, output
    assert run.returncode == 0, output


# --- the daemon's sd_notify conversation -----------------------------------------------------------------------


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[tuple[socket.socket, Path]]:
    """A datagram socket standing in for systemd's: it receives the sender's credentials (SO_PASSCRED)."""
    path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
    try:
        yield sock, path
    finally:
        sock.close()


def _receive(sock: socket.socket, timeout: float) -> tuple[str, int] | None:
    """The next datagram and its sender's pid, or None after ``timeout`` seconds."""
    sock.settimeout(timeout)
    try:
        data, ancillary, _, _ = sock.recvmsg(4096, socket.CMSG_SPACE(struct.calcsize("3i")))
    except TimeoutError:
        return None
    pid = -1
    for level, kind, payload in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
            pid = struct.unpack("3i", payload[: struct.calcsize("3i")])[0]
    return data.decode("utf-8"), pid


def test_daemon_speaks_sd_notify(
    tmp_path: Path,
    small_snapshot: Path,
    mqtt_broker: Broker,
    topic_namespace: str,
    notify_socket: tuple[socket.socket, Path],
) -> None:
    sock, path = notify_socket
    # The unit's credential default (SetCredential=mqtt__password:\n, used when /etc/devintel/mqtt_password is
    # absent) as systemd would lay it out: the daemon must read it as "no password" and reach the broker.
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    (credentials / "mqtt__password").write_text("\n", encoding="utf-8")
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("DEVINTEL_") and k not in {"NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"}
    }
    env.update(
        {
            "DEVINTEL_MODEL_DIR": str(small_snapshot),
            "DEVINTEL_MQTT__HOST": mqtt_broker.host,
            "DEVINTEL_MQTT__PORT": str(mqtt_broker.port),
            "DEVINTEL_MQTT__CLIENT_ID": f"devintel-{topic_namespace}",
            "DEVINTEL_TOPIC_PREFIX": topic_namespace,
            "DEVINTEL_HA__PREFIX": f"{topic_namespace}-ha",
            "DEVINTEL_ZIGBEE2MQTT__BASE_TOPIC": f"{topic_namespace}-z2m",
            "DEVINTEL_HTTP__PORT": "0",
            "DEVINTEL_LIVE__HEALTH_INTERVAL_S": "0.5",
            "NOTIFY_SOCKET": str(path),
            "WATCHDOG_USEC": "1000000",  # a ping every 0.5 s
            "CREDENTIALS_DIRECTORY": str(credentials),
        }
    )
    # The console script, as ExecStart runs it (no --bootstrap-synthetic: the snapshot exists, and a bootstrap
    # would only add time before READY=1). Its log goes to a file, read while it runs.
    log = tmp_path / "daemon.log"
    with log.open("w", encoding="utf-8") as log_file:
        process = subprocess.Popen(
            [str(VENV_DAEMON)], env=env, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=log_file, text=True
        )
    notes: list[tuple[str, int]] = []
    try:
        deadline = time.monotonic() + WAIT_S
        # Until READY=1, the broker connection (so that the empty credential is known to have worked) and one
        # second more: at least one watchdog ping (every 0.5 s).
        ready_at: float | None = None
        while time.monotonic() < deadline and process.poll() is None:
            note = _receive(sock, 0.2)
            if note is not None:
                notes.append(note)
                if ready_at is None and "READY=1" in note[0].split("\n"):
                    ready_at = time.monotonic()
            if (
                ready_at is not None
                and time.monotonic() > ready_at + 1.2
                and "MQTT connected to" in log.read_text(encoding="utf-8")
            ):
                break
        assert ready_at is not None, f"no READY=1 within {WAIT_S} s; got {notes}; {_tail(process, log)}"
        assert "MQTT connected to" in log.read_text(encoding="utf-8"), _tail(process, log)
        process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline and not any("STOPPING=1" in n for n, _ in notes):
            note = _receive(sock, 0.2)
            if note is not None:
                notes.append(note)
        code = process.wait(timeout=WAIT_S)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    err = log.read_text(encoding="utf-8")
    fields = [field for text, _ in notes for field in text.split("\n")]
    assert code == 0, err[-3000:]
    assert fields.index("READY=1") < fields.index("STOPPING=1"), fields
    assert any(f.startswith("STATUS=serving snapshot ") for f in fields), fields
    watchdogs = [i for i, f in enumerate(fields) if f == "WATCHDOG=1"]
    assert watchdogs, fields
    assert fields.index("READY=1") < watchdogs[0] < fields.index("STOPPING=1"), fields
    # NotifyAccess=main: systemd accepts only messages from the main process, which is the console script itself.
    assert {pid for _, pid in notes} == {process.pid}, (notes, process.pid)
    assert "stopped" in err, err[-3000:]


def _tail(process: subprocess.Popen[str], log: Path) -> str:
    state = "still running" if process.poll() is None else f"exited {process.returncode}"
    return f"daemon {state}:\n{log.read_text(encoding='utf-8')[-3000:]}"


# --- the installer -----------------------------------------------------------------------------------------------


def _install(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHON": sys.executable}  # a Python >= 3.11 whatever python3 is here
    return subprocess.run(
        ["bash", str(INSTALLER), *args], capture_output=True, text=True, env=env, timeout=60, check=False
    )


def test_installer_dry_run(tmp_path: Path) -> None:
    prefix = tmp_path / "devintel"
    run = _install("--dry-run", "--prefix", str(prefix))
    assert run.returncode == 0, run.stdout + run.stderr
    out = run.stdout
    assert f"-m venv {prefix}/venv" in out, out
    assert f"+ {prefix}/venv/bin/python -m pip install" in out, out
    assert "/etc/devintel/devintel.env" in out, out
    assert re.search(r"\+ install -m 0644 \S+/devintel\.service /etc/systemd/system/devintel\.service", out), out
    assert "+ systemctl daemon-reload" in out, out
    assert "+ systemctl enable --now --no-block devintel.service" in out, out
    assert "journalctl -u devintel -f" in out, out
    assert "curl -s localhost:8019/health" in out, out
    assert not prefix.exists(), "--dry-run created the prefix"


def test_installer_no_start_only_enables(tmp_path: Path) -> None:
    run = _install("--dry-run", "--no-start", f"--prefix={tmp_path / 'p'}")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "+ systemctl enable devintel.service" in run.stdout, run.stdout
    assert "--now" not in run.stdout, run.stdout


@pytest.mark.parametrize("prefix", ["relative/dir", "/opt/dev intel", "/opt/devintel%i"])
def test_installer_rejects_a_prefix_the_unit_cannot_hold(prefix: str) -> None:
    run = _install("--dry-run", "--prefix", prefix)
    assert run.returncode == 2, run.stdout + run.stderr
    assert "--prefix" in run.stderr
