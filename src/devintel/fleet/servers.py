"""A nats-server configuration for one node of the fleet's cluster (pure: returns the text).

Every node has a ``server_name`` (JetStream clustering and the MQTT listener need one), JetStream with its own
store directory, a cluster block routing to every node, the MQTT listener (which needs JetStream) and the account
mappings of :func:`~devintel.fleet.subjects.ingress_mappings`. ``devintel-fleet server-config`` prints it; the test
harness, the benchmark and the compose file all use it, so the partition count of the servers and of the workers
come from the same setting.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field

from devintel.fleet.subjects import ingress_mappings


@dataclass(frozen=True, slots=True)
class NodeConfig:
    """One node: its name, ports, store directory, and the routes of the whole cluster."""

    name: str
    host: str
    client_port: int
    cluster_port: int
    mqtt_port: int
    store_dir: str
    routes: Sequence[str] = field(default_factory=tuple)
    """``host:port`` of every node's cluster listener (this node's own included: the server skips itself)."""
    cluster_name: str = "devintel"
    partitions: int = 12
    max_file_store: str = "4GB"
    max_memory_store: str = "256MB"
    http_port: int | None = None
    """The monitoring port (``/varz``, ``/jsz``), None for none."""


def _q(text: str) -> str:
    return json.dumps(text)  # a double-quoted string as nats-server's config parser reads it


def server_config(node: NodeConfig) -> str:
    """The configuration text of ``node``."""
    routes = ", ".join(_q(f"nats-route://{route}") for route in node.routes)
    mappings = "\n".join(f"  {_q(src)}: {_q(dst)}" for src, dst in ingress_mappings(node.partitions).items())
    lines = [
        f"server_name: {_q(node.name)}",
        f"listen: {_q(f'{node.host}:{node.client_port}')}",
    ]
    if node.http_port is not None:
        lines.append(f"http: {_q(f'{node.host}:{node.http_port}')}")
    lines += [
        "jetstream {",
        f"  store_dir: {_q(node.store_dir)}",
        f"  max_file_store: {node.max_file_store}",
        f"  max_memory_store: {node.max_memory_store}",
        "}",
        "cluster {",
        f"  name: {_q(node.cluster_name)}",
        f"  listen: {_q(f'{node.host}:{node.cluster_port}')}",
        f"  routes: [{routes}]",
        "}",
        "mqtt {",
        f"  listen: {_q(f'{node.host}:{node.mqtt_port}')}",
        "}",
        "mappings = {",
        mappings,
        "}",
    ]
    return "\n".join(lines) + "\n"
