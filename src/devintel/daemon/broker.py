"""An MQTT broker inside the daemon's event loop, for ``devintel-daemon --embedded-broker``.

For a box without Mosquitto (a demo, a test, a container on its own): amqtt, a pure-Python MQTT 3.1.1 broker,
listens on the configured host and port in the same asyncio loop as the daemon. Anonymous clients are
allowed, there is no ``$SYS`` tree, and nothing is persisted: retained messages and sessions live only as
long as the process. A production home keeps its own broker (Mosquitto, the Home Assistant add-on).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

logger = logging.getLogger(__name__)

__all__ = ["broker_config", "embedded_broker"]

#: Loggers that amqtt logs through at INFO for every connection and state change ("transitions" is the
#: state-machine library amqtt builds on).
_NOISY_LOGGERS = ("amqtt", "transitions")


def broker_config(host: str, port: int) -> dict[str, Any]:
    """amqtt's configuration for one TCP listener on ``host:port`` with anonymous access and no ``$SYS`` topics.

    The plugins are given explicitly: amqtt's defaults add packet and event loggers and ``$SYS`` broadcasts
    every 20 s, and its top-level ``sys_interval`` key is deprecated (a ``DeprecationWarning``) in favour of
    plugin settings. Leaving the ``$SYS`` plugin out is ``sys_interval`` 0.
    """
    return {
        "listeners": {"default": {"type": "tcp", "bind": f"{_bind_host(host)}:{port}"}},
        "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}},
    }


@contextlib.asynccontextmanager
async def embedded_broker(host: str, port: int) -> AsyncIterator[None]:
    """Run an amqtt broker on ``host:port`` in the running event loop for the duration of the block.

    The listener accepts connections once the block is entered; on exit the broker disconnects its clients
    and closes the listener. amqtt's own loggers are set to WARNING.
    """
    for name in _NOISY_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    from amqtt.broker import Broker  # imported here: only --embedded-broker needs amqtt

    broker = Broker(broker_config(host, port))
    await broker.start()
    logger.debug("embedded amqtt broker started on %s:%s", host, port)
    try:
        yield
    finally:
        await broker.shutdown()
        logger.debug("embedded amqtt broker on %s:%s stopped", host, port)


def _bind_host(host: str) -> str:
    """``host`` as amqtt's ``bind`` wants it: IPv6 literals *without* brackets.

    amqtt splits ``bind`` at the last ``:``; a bracketed literal (``[::1]:1883``) keeps its brackets and fails
    to resolve, while ``::1:1883`` binds to ``::1``.
    """
    return host.removeprefix("[").removesuffix("]")
