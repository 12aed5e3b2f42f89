"""systemd notification: real datagram sockets (a path and an abstract one) stand in for systemd."""

from __future__ import annotations

import logging
import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from devintel.daemon.notify import SystemdNotifier


def receive(sock: socket.socket) -> str:
    """The next datagram on ``sock`` as text (fails the test when none arrives within 2 s)."""
    sock.settimeout(2.0)
    return sock.recv(4096).decode("utf-8")


def assert_nothing_waiting(sock: socket.socket) -> None:
    """No datagram is waiting on ``sock``."""
    sock.setblocking(False)
    with pytest.raises(BlockingIOError):
        sock.recv(4096)


@pytest.fixture
def path_socket(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    """A bound AF_UNIX datagram socket in the file system, and its path (systemd's usual NOTIFY_SOCKET)."""
    path = str(tmp_path / "notify.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(path)
        yield sock, path


@pytest.fixture
def abstract_socket() -> Iterator[tuple[socket.socket, str]]:
    """A bound AF_UNIX datagram socket in the abstract namespace, and its ``@name`` form."""
    name = f"devintel-test-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        yield sock, "@" + name


def test_lifecycle_messages_reach_a_path_socket(path_socket: tuple[socket.socket, str]) -> None:
    sock, path = path_socket
    notifier = SystemdNotifier({"NOTIFY_SOCKET": path})
    assert notifier.enabled
    assert notifier.ready()
    assert receive(sock) == "READY=1"
    assert notifier.status("serving snapshot 20250101T000000Z")
    assert receive(sock) == "STATUS=serving snapshot 20250101T000000Z"
    assert notifier.watchdog()
    assert receive(sock) == "WATCHDOG=1"
    assert notifier.stopping()
    assert receive(sock) == "STOPPING=1"
    notifier.close()


def test_several_fields_go_in_one_datagram(path_socket: tuple[socket.socket, str]) -> None:
    sock, path = path_socket
    notifier = SystemdNotifier({"NOTIFY_SOCKET": path})
    assert notifier.notify(READY=1, STATUS="loaded\nmodels", MAINPID=os.getpid())
    assert receive(sock) == f"READY=1\nSTATUS=loaded models\nMAINPID={os.getpid()}"
    assert_nothing_waiting(sock)


def test_abstract_socket(abstract_socket: tuple[socket.socket, str]) -> None:
    sock, name = abstract_socket
    notifier = SystemdNotifier({"NOTIFY_SOCKET": name})
    assert notifier.ready()
    assert receive(sock) == "READY=1"
    assert notifier.status("ok")
    assert receive(sock) == "STATUS=ok"


def test_reads_os_environ_by_default(monkeypatch: pytest.MonkeyPatch, path_socket: tuple[socket.socket, str]) -> None:
    sock, path = path_socket
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    assert SystemdNotifier().ready()
    assert receive(sock) == "READY=1"


def test_without_notify_socket_everything_is_a_no_op(path_socket: tuple[socket.socket, str]) -> None:
    sock, _ = path_socket
    notifier = SystemdNotifier({})
    assert not notifier.enabled
    assert not notifier.ready()
    assert not notifier.status("x")
    assert not notifier.watchdog()
    assert not notifier.stopping()
    assert notifier.watchdog_interval() is None
    assert_nothing_waiting(sock)


def test_relative_notify_socket_is_ignored_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="devintel.daemon.notify"):
        notifier = SystemdNotifier({"NOTIFY_SOCKET": "relative/notify.sock"})
    assert not notifier.enabled
    assert "NOTIFY_SOCKET" in caplog.text


def test_send_errors_are_logged_not_raised(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    notifier = SystemdNotifier({"NOTIFY_SOCKET": str(tmp_path / "nobody-listens.sock")})
    with caplog.at_level(logging.WARNING, logger="devintel.daemon.notify"):
        assert not notifier.ready()
        assert not notifier.watchdog()
    assert "READY" in caplog.text
    assert "nobody-listens.sock" in caplog.text


def test_recovers_when_the_socket_appears_later(tmp_path: Path) -> None:
    path = str(tmp_path / "late.sock")
    notifier = SystemdNotifier({"NOTIFY_SOCKET": path})
    assert not notifier.ready()
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(path)
        assert notifier.ready()
        assert receive(sock) == "READY=1"


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, None),
        ({"WATCHDOG_USEC": "30000000"}, 15.0),
        ({"WATCHDOG_USEC": "3000000", "WATCHDOG_PID": str(os.getpid())}, 1.5),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid() + 1)}, None),
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "soon"}, None),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "me"}, None),
    ],
    ids=["unset", "usec", "own-pid", "other-pid", "zero", "invalid-usec", "invalid-pid"],
)
def test_watchdog_interval_is_half_of_watchdog_usec(environ: dict[str, str], expected: float | None) -> None:
    assert SystemdNotifier(environ).watchdog_interval() == expected
