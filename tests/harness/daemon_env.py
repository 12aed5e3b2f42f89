"""The environment a test gives ``devintel-daemon`` when it runs it as a subprocess."""

from __future__ import annotations

import os
from pathlib import Path

from harness.broker import Broker

#: Inherited variables a test daemon must not see (a developer's own settings, systemd's sockets).
_NOT_INHERITED = ("NOTIFY_SOCKET", "CREDENTIALS_DIRECTORY", "WATCHDOG_USEC", "WATCHDOG_PID")


def daemon_env(model_dir: Path, namespace: str, broker: Broker | None = None, /, **extra: str) -> dict[str, str]:
    """This process's environment without any ``DEVINTEL_*`` setting, plus: the test's model directory, its own
    topics under ``namespace`` (devintel's, Home Assistant's and Zigbee2MQTT's) and client id, the broker when
    given, the HTTP API off and a health report every 0.5 s; ``extra`` overrides any of them."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DEVINTEL_") and k not in _NOT_INHERITED}
    env.update(
        {
            "DEVINTEL_MODEL_DIR": str(model_dir),
            "DEVINTEL_TOPIC_PREFIX": namespace,
            "DEVINTEL_HA__PREFIX": f"{namespace}-ha",
            "DEVINTEL_ZIGBEE2MQTT__BASE_TOPIC": f"{namespace}-z2m",
            "DEVINTEL_MQTT__CLIENT_ID": f"devintel-{namespace}",
            "DEVINTEL_HTTP__PORT": "0",
            "DEVINTEL_LIVE__HEALTH_INTERVAL_S": "0.5",
        }
    )
    if broker is not None:
        env.update({"DEVINTEL_MQTT__HOST": broker.host, "DEVINTEL_MQTT__PORT": str(broker.port)})
    env.update(extra)
    return env
