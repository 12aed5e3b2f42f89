"""``devintel-daemon``: the service.

Start-up: load the newest valid snapshot from ``model_dir``, or, with ``--bootstrap-synthetic``, generate,
warm-start, validate, gate and snapshot first (``--force-bootstrap`` even when a snapshot exists;
``--exit-after-bootstrap`` stops there, as a Docker build or CI does; ``--seed-from DIR`` copies DIR's snapshot,
as the Docker image does with its baked models). Snapshots that cannot be loaded any more (after an upgrade) are
set aside and replaced when one of these is given (:func:`prepare_models`). Then the live service
(:mod:`devintel.daemon.runtime`) runs until SIGTERM or SIGINT: MQTT ingest, predictions, Home Assistant
discovery, health, snapshots and the HTTP API. ``--embedded-broker`` runs an MQTT broker in-process on the
configured host and port, ``--simulate`` publishes a simulated home's events to it, and
``--exit-after-simulation`` stops cleanly once they are handled (the README's main command).

Exit codes: 0 done, 1 quality gate failed (nothing written), 2 configuration or model error.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from pydantic import ValidationError

from devintel.daemon.attention import attention_table
from devintel.daemon.from_settings import bootstrap_config, live_models, snapshot_store
from devintel.daemon.logs import configure_logging
from devintel.daemon.runtime import Runtime, optional_broker
from devintel.daemon.settings import Settings, load_settings
from devintel.models.gate import GateFailed
from devintel.models.snapshots import LoadedSnapshot, NoValidSnapshot, SnapshotStore, is_version

logger = logging.getLogger("devintel.daemon")


def river_version() -> str:
    """The installed River release (what snapshots are checked against)."""
    from river.__version__ import __version__

    return str(__version__)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``devintel-daemon``."""
    p = argparse.ArgumentParser(prog="devintel-daemon", description="devintel: device-failure prediction service")
    p.add_argument("--config", type=Path, default=None, help="TOML settings file")
    p.add_argument(
        "--bootstrap-synthetic", action="store_true", help="with no valid snapshot, bootstrap from synthetic data"
    )
    p.add_argument("--force-bootstrap", action="store_true", help="bootstrap even when a valid snapshot exists")
    p.add_argument(
        "--seed-from",
        type=Path,
        default=None,
        metavar="DIR",
        help="with no loadable snapshot, copy the newest valid one of this model directory (the Docker image's "
        "baked models) instead of bootstrapping",
    )
    p.add_argument("--exit-after-bootstrap", action="store_true", help="stop once the models are ready")
    p.add_argument("--allow-low-quality", action="store_true", help="a failed quality gate warns instead of failing")
    p.add_argument("--validate-config", action="store_true", help="check the settings and exit")
    p.add_argument(
        "--embedded-broker", action="store_true", help="run an MQTT broker in-process (host and port of mqtt)"
    )
    p.add_argument("--simulate", action="store_true", help="publish a simulated home's live events to the broker")
    p.add_argument(
        "--exit-after-simulation", action="store_true", help="with --simulate: stop once its events are handled"
    )
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return p


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def insecure_settings(settings: Settings) -> list[str]:
    """What in the settings exposes the service beyond the defaults' protection (each logged as a warning at
    start): the HTTP API on a non-loopback address without a token, an MQTT password sent without TLS to another
    host."""
    found: list[str] = []
    if settings.http.port and settings.http.token is None and not _is_loopback(settings.http.host):
        found.append(
            f"the HTTP API listens on {settings.http.host}, not loopback, and no http.token is set: anyone who can "
            "reach it can write snapshots, re-bootstrap and score events (set http.token)"
        )
    if settings.mqtt.password and not settings.mqtt.tls and not _is_loopback(settings.mqtt.host):
        found.append(f"the MQTT password is sent in clear text to {settings.mqtt.host} (set mqtt.tls and mqtt.ca_file)")
    return found


def load_usable(settings: Settings, store: SnapshotStore, *, set_aside: bool) -> LoadedSnapshot:
    """The newest snapshot that verifies *and* unpickles into live models.

    A snapshot can pass verification (hashes, a compatible River release) and still fail to unpickle, when a
    release changed a class that it pickled. With ``set_aside``, such a snapshot is moved aside
    (:meth:`SnapshotStore.set_aside`) and the next one is tried; without, it is a :class:`NoValidSnapshot`."""
    while True:
        snapshot = store.load()
        try:
            live_models(settings, snapshot)  # unpickling runs arbitrary code paths: any error means unusable
        except Exception as error:
            reason = f"verified, but its models cannot be unpickled by this install ({type(error).__name__}: {error})"
            if not set_aside:
                raise NoValidSnapshot(
                    f"snapshot {snapshot.version} in {store.root}: {reason}", [(snapshot.version, reason)]
                ) from error
            store.set_aside({snapshot.version: reason})
            continue
        return snapshot


def seed_from(store: SnapshotStore, source_dir: Path) -> str:
    """Copy the newest valid snapshot of ``source_dir`` into ``store`` as a new version; return that version.

    The copy is a regular write (atomic, signed when the store has a key, ``current`` moved last); its manifest
    records where it came from. Raises :class:`NoValidSnapshot` when ``source_dir`` has no valid snapshot."""
    source = SnapshotStore(source_dir).load()
    manifest = dict(source.manifest) | {"seeded_from": {"dir": str(source_dir), "version": source.version}}
    version = store.write(source.files, manifest)
    logger.info("serving snapshot %s: a copy of %s from %s", version, source.version, source_dir)
    return version


def prepare_models(settings: Settings, args: argparse.Namespace) -> LoadedSnapshot:
    """The snapshot to serve: the newest usable one, or a replacement where the flags allow it.

    With a way to replace them (``--seed-from DIR`` or ``--bootstrap-synthetic``), snapshots that cannot be
    loaded (refused after an upgrade: another River minor release, damaged, wrongly signed; or failing to unpickle)
    are set aside under ``model_dir/refused/`` (kept, never deleted) and replaced: by a copy of the newest valid
    snapshot of DIR, else by a fresh bootstrap. So an upgrade never leaves a box in a restart loop.

    Raises :class:`NoValidSnapshot` when there is none and no replacement is allowed, and
    :class:`GateFailed` when a bootstrap fails its quality gate (unless ``--allow-low-quality``)."""
    store = snapshot_store(settings)
    seed_dir: Path | None = getattr(args, "seed_from", None)  # callers with older flag sets have none
    can_replace = args.bootstrap_synthetic or seed_dir is not None
    if not args.force_bootstrap:
        try:
            return load_usable(settings, store, set_aside=can_replace)
        except NoValidSnapshot as missing:
            if not can_replace:
                raise
            unusable = {version: reason for version, reason in missing.refusals if is_version(version)}
            if unusable:
                aside = store.set_aside(unusable)
                logger.warning(
                    "no snapshot in %s can be loaded by this install (River %s); the %d unusable one(s) were moved "
                    "to %s; replacing them with %s",
                    settings.model_dir,
                    river_version(),
                    len(unusable),
                    aside,
                    f"a copy of the snapshot in {seed_dir}" if seed_dir is not None else "a fresh bootstrap",
                )
            if seed_dir is not None:
                try:
                    return store.load(seed_from(store, seed_dir))
                except NoValidSnapshot as no_seed:
                    if not args.bootstrap_synthetic:
                        raise
                    logger.warning("cannot seed from %s (%s); bootstrapping from synthetic data", seed_dir, no_seed)
            else:
                logger.info("no valid snapshot (%s); bootstrapping from synthetic data", missing)
    from devintel.models.bootstrap import bootstrap  # with pandas: only when a bootstrap runs

    result = bootstrap(bootstrap_config(settings, args.allow_low_quality), store)
    print(result.gate.table(), flush=True)
    return store.load(result.version)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``devintel-daemon``."""
    args = build_parser().parse_args(argv)
    configure_logging(args.verbose)
    try:
        settings = load_settings(args.config)
    except (ValidationError, ValueError, FileNotFoundError) as invalid:
        logger.error("invalid settings: %s", invalid)
        return 2
    if args.validate_config:
        print(settings.model_dump_json(indent=2))
        return 0
    for warning in insecure_settings(settings):
        logger.warning("%s", warning)
    try:
        snapshot = prepare_models(settings, args)
    except NoValidSnapshot as missing:
        logger.error(
            "%s; start with --bootstrap-synthetic to train models from synthetic data (or --seed-from DIR)", missing
        )
        return 2
    except OSError as error:
        logger.error("cannot write the bootstrapped snapshot to %s: %s", settings.model_dir, error)
        return 2
    except GateFailed as failed:
        print(failed.result.table(), flush=True)
        logger.error("quality gate failed on held-out homes; no snapshot written (--allow-low-quality keeps it)")
        return 1
    logger.info("models ready: snapshot %s in %s", snapshot.version, settings.model_dir)
    if args.exit_after_bootstrap:
        return 0
    return asyncio.run(serve(settings, snapshot, args))


async def serve(settings: Settings, snapshot: LoadedSnapshot, args: argparse.Namespace) -> int:
    """Run the live service on ``snapshot`` until a signal (or the end of the simulation, when asked)."""
    store = snapshot_store(settings)
    async with optional_broker(args.embedded_broker, settings.mqtt.host, settings.mqtt.port):
        runtime = Runtime(
            settings, store, snapshot, simulate=args.simulate, exit_after_simulation=args.exit_after_simulation
        )
        code = await runtime.run()
    if args.exit_after_simulation:
        print(attention_table(runtime.handler), flush=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
