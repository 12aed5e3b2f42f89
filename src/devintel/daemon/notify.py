"""systemd service notification (``sd_notify``) without dependencies.

systemd passes the path of a datagram socket in ``NOTIFY_SOCKET`` to a ``Type=notify`` service; the service
sends ``KEY=VALUE`` lines to it: ``READY=1`` once it serves, ``STATUS=...`` for ``systemctl status``,
``WATCHDOG=1`` at least every ``WatchdogSec`` (given as ``WATCHDOG_USEC``), ``STOPPING=1`` when it shuts down.
A path starting with ``@`` names a socket in the Linux abstract namespace.

Outside systemd (``NOTIFY_SOCKET`` unset) every method is a no-op. Sending never raises: a failure is logged
and the daemon carries on, since a missing notification must not take the service down.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Mapping

logger = logging.getLogger(__name__)

__all__ = ["SystemdNotifier"]


class SystemdNotifier:
    """Sends ``sd_notify`` messages to the socket named by ``NOTIFY_SOCKET``.

    ``environ`` defaults to ``os.environ``; it is read once, when the notifier is built.
    """

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        """Read ``NOTIFY_SOCKET``, ``WATCHDOG_USEC`` and ``WATCHDOG_PID`` from ``environ`` (or ``os.environ``)."""
        env = os.environ if environ is None else environ
        self._address: str | None = _socket_address(env.get("NOTIFY_SOCKET", ""))
        self._watchdog_usec = env.get("WATCHDOG_USEC")
        self._watchdog_pid = env.get("WATCHDOG_PID")
        self._socket: socket.socket | None = None

    @property
    def enabled(self) -> bool:
        """Whether a notification socket is configured (the service runs under systemd with ``Type=notify``)."""
        return self._address is not None

    def ready(self) -> bool:
        """Tell systemd that start-up is finished (``READY=1``)."""
        return self.notify(READY=1)

    def status(self, text: str) -> bool:
        """Set the one-line status that ``systemctl status`` shows (``STATUS=text``)."""
        return self.notify(STATUS=text)

    def watchdog(self) -> bool:
        """Keep the watchdog from firing (``WATCHDOG=1``)."""
        return self.notify(WATCHDOG=1)

    def stopping(self) -> bool:
        """Tell systemd that the service is shutting down (``STOPPING=1``)."""
        return self.notify(STOPPING=1)

    def notify(self, **fields: object) -> bool:
        """Send ``KEY=VALUE`` lines, one per field, in one datagram.

        Returns whether the datagram was sent; ``False`` when notification is off or sending failed (logged).
        Newlines in values are replaced by spaces, since a newline ends a field.
        """
        if self._address is None or not fields:
            return False
        message = "\n".join(f"{key}={_one_line(value)}" for key, value in fields.items())
        try:
            if self._socket is None:
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                sock.setblocking(False)  # a full receive queue must not block the event loop
                self._socket = sock
            self._socket.sendto(message.encode("utf-8"), self._address)
        except OSError as exc:
            logger.warning("systemd notification %s to %s failed: %s", list(fields), self._display_address(), exc)
            self.close()
            return False
        return True

    def watchdog_interval(self) -> float | None:
        """Seconds between ``WATCHDOG=1`` pings: half of ``WATCHDOG_USEC``, or ``None`` when there is no watchdog.

        ``None`` as well when ``WATCHDOG_PID`` names another process (the variables were inherited) or the
        values are not valid numbers.
        """
        if not self._watchdog_usec:
            return None
        if self._watchdog_pid:
            try:
                pid = int(self._watchdog_pid)
            except ValueError:
                logger.warning("ignoring invalid WATCHDOG_PID=%r", self._watchdog_pid)
                return None
            if pid != os.getpid():
                return None
        try:
            usec = int(self._watchdog_usec)
        except ValueError:
            logger.warning("ignoring invalid WATCHDOG_USEC=%r", self._watchdog_usec)
            return None
        if usec <= 0:
            return None
        return usec / 2 / 1_000_000

    def close(self) -> None:
        """Close the socket; a later notification opens a new one."""
        if self._socket is not None:
            self._socket.close()
            self._socket = None

    def _display_address(self) -> str:
        address = self._address or ""
        return "@" + address[1:] if address.startswith("\0") else address


def _socket_address(value: str) -> str | None:
    """The ``sendto`` address for ``NOTIFY_SOCKET``: a path, or ``\\0name`` for ``@name`` (abstract namespace)."""
    if not value:
        return None
    if value.startswith("@"):
        return "\0" + value[1:]
    if value.startswith("/"):
        return value
    logger.warning("ignoring NOTIFY_SOCKET=%r: neither an absolute path nor an abstract socket (@name)", value)
    return None


def _one_line(value: object) -> str:
    return str(value).replace("\n", " ")
