"""The harness that tests/ and bench/ share: real components on free loopback ports.

- :mod:`harness.broker`: a real MQTT broker (mosquitto, else amqtt) in a subprocess, :func:`~harness.broker.free_port`
  and :func:`~harness.broker.accepts`;
- :mod:`harness.collector`: a subscriber that keeps every message, and a test device's event;
- :mod:`harness.daemon_env`: the environment of a ``devintel-daemon`` subprocess on its own topic namespace.

Tests import it as ``harness`` (pytest puts ``tests/`` on ``sys.path``, as for ``conftest.py``). The bench
scripts, run as ``.venv/bin/python bench/x.py`` from the repository root, and ``scripts/check_home_assistant.py``
put ``tests/`` on ``sys.path`` themselves and import the same modules. It is not part of the ``devintel``
package: the daemon never needs it.
"""
