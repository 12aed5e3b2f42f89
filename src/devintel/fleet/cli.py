"""``devintel-fleet``: ``worker``, ``trainer``, ``status`` and ``server-config``."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from devintel.daemon.logs import configure_logging

logger = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    """The command line."""
    parser = argparse.ArgumentParser(prog="devintel-fleet", description="devintel for many homes on NATS JetStream")
    parser.add_argument("--config", type=Path, default=None, help="TOML fleet settings (DEVINTEL_FLEET_* too)")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("worker", help="lease partitions and serve their homes")
    sub.add_parser("trainer", help="learn from every home's examples (one active, the others stand by)")
    status = sub.add_parser("status", help="partitions, leases, model versions and streams, then exit")
    status.add_argument("--json", action="store_true", help="as JSON")
    server = sub.add_parser("server-config", help="print one nats-server node's configuration")
    server.add_argument("--name", required=True, help="server_name of this node")
    server.add_argument("--host", default="0.0.0.0", help="address to listen on")
    server.add_argument("--client-port", type=int, default=4222)
    server.add_argument("--cluster-port", type=int, default=6222)
    server.add_argument("--mqtt-port", type=int, default=1883)
    server.add_argument("--store-dir", required=True, help="JetStream store directory")
    server.add_argument("--route", action="append", default=[], help="host:port of a node's cluster port (repeat)")
    return parser


async def _serve(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from devintel.fleet.settings import load_fleet_settings, load_home_settings
    from devintel.fleet.worker import Worker, install_signals
    from devintel.models.snapshots import NoValidSnapshot, SnapshotStore

    try:
        settings = load_fleet_settings(args.config)
        daemon = load_home_settings(settings.daemon_config)
        store = SnapshotStore(
            daemon.model_dir, keep=daemon.snapshot.keep, signing_key=daemon.snapshot.signing_key_bytes()
        )
        snapshot = store.load()
    except (ValidationError, ValueError, FileNotFoundError, NoValidSnapshot) as error:
        logger.error("%s", error)
        return 2
    stop = asyncio.Event()
    install_signals(stop)
    if args.command == "worker":
        return await Worker(settings, daemon, snapshot, stop).run()
    from devintel.fleet.trainer import Trainer

    return await Trainer(settings, daemon, snapshot, stop).run()


def _status(args: argparse.Namespace) -> int:
    from devintel.fleet.settings import load_fleet_settings
    from devintel.fleet.status import fleet_status, format_status

    settings = load_fleet_settings(args.config)
    report = asyncio.run(fleet_status(settings))
    if args.json:
        import orjson

        sys.stdout.write(orjson.dumps(report, option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        sys.stdout.write(format_status(report))
    return 0


def _server_config(args: argparse.Namespace) -> int:
    from devintel.fleet.servers import NodeConfig, server_config
    from devintel.fleet.settings import load_fleet_settings

    settings = load_fleet_settings(args.config)
    node = NodeConfig(
        name=args.name,
        host=args.host,
        client_port=args.client_port,
        cluster_port=args.cluster_port,
        mqtt_port=args.mqtt_port,
        store_dir=args.store_dir,
        routes=tuple(args.route),
        partitions=settings.partitions,
    )
    sys.stdout.write(server_config(node))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``devintel-fleet``."""
    args = build_parser().parse_args(argv)
    configure_logging(args.verbose)
    if not args.verbose:  # a worker serves thousands of homes: each home's device-level lines are debug here
        logging.getLogger("devintel.ingest.handler").setLevel(logging.WARNING)
    try:
        import nats  # noqa: F401
    except ImportError:
        logger.error("devintel-fleet needs the NATS client: pip install 'devintel[fleet]'")
        return 2
    if args.command in ("worker", "trainer"):
        return asyncio.run(_serve(args))
    if args.command == "status":
        return _status(args)
    return _server_config(args)


if __name__ == "__main__":
    sys.exit(main())
