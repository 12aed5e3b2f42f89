"""``devintel-daemon``: the service.

Today it does the start-up half of the service: load the newest valid snapshot from ``model_dir``, or, with
``--bootstrap-synthetic``, generate, warm-start, validate, gate and snapshot first (``--force-bootstrap``
even when a snapshot exists; ``--exit-after-bootstrap`` stops there, as a Docker build or CI does). The
live MQTT loop is not built yet: without ``--exit-after-bootstrap`` the daemon says so and exits 2 once the
models are ready, rather than pretend to run.

Exit codes: 0 done, 1 quality gate failed (nothing written), 2 configuration or model error.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from pydantic import ValidationError

from devintel.daemon.settings import Settings, load_settings
from devintel.models.bootstrap import BootstrapConfig, bootstrap
from devintel.models.gate import GateFailed, QualityThresholds
from devintel.models.snapshots import LoadedSnapshot, NoValidSnapshot, SnapshotStore

logger = logging.getLogger("devintel.daemon")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``devintel-daemon``."""
    p = argparse.ArgumentParser(prog="devintel-daemon", description="devintel: device-failure prediction service")
    p.add_argument("--config", type=Path, default=None, help="TOML settings file")
    p.add_argument(
        "--bootstrap-synthetic", action="store_true", help="with no valid snapshot, bootstrap from synthetic data"
    )
    p.add_argument("--force-bootstrap", action="store_true", help="bootstrap even when a valid snapshot exists")
    p.add_argument("--exit-after-bootstrap", action="store_true", help="stop once the models are ready")
    p.add_argument("--allow-low-quality", action="store_true", help="a failed quality gate warns instead of failing")
    p.add_argument("--validate-config", action="store_true", help="check the settings and exit")
    p.add_argument("--embedded-broker", action="store_true", help="run an MQTT broker in-process (not built yet)")
    p.add_argument("--simulate", action="store_true", help="publish a simulated home's events (not built yet)")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return p


def bootstrap_config(settings: Settings, allow_low_quality: bool) -> BootstrapConfig:
    """The bootstrap the settings ask for."""
    return BootstrapConfig(
        samples=settings.bootstrap.samples,
        holdout_samples=settings.bootstrap.holdout_samples,
        days=settings.bootstrap.days,
        seed=settings.bootstrap.seed,
        horizon_days=settings.horizon_days,
        thresholds=QualityThresholds(**settings.quality.model_dump()),
        allow_low_quality=allow_low_quality,
    )


def prepare_models(settings: Settings, args: argparse.Namespace) -> LoadedSnapshot:
    """The snapshot to serve: the newest valid one, or a fresh bootstrap where the flags allow it.

    Raises :class:`NoValidSnapshot` when there is none and no bootstrap is allowed, and
    :class:`GateFailed` when a bootstrap fails its quality gate (unless ``--allow-low-quality``)."""
    store = SnapshotStore(settings.model_dir, keep=settings.snapshot.keep)
    if not args.force_bootstrap:
        try:
            return store.load()
        except NoValidSnapshot as missing:
            if not args.bootstrap_synthetic:
                raise
            logger.info("no valid snapshot (%s); bootstrapping from synthetic data", missing)
    result = bootstrap(bootstrap_config(settings, args.allow_low_quality), store)
    print(result.gate.table(), flush=True)
    return store.load(result.version)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``devintel-daemon``."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        settings = load_settings(args.config)
    except (ValidationError, ValueError, FileNotFoundError) as invalid:
        logger.error("invalid settings: %s", invalid)
        return 2
    if args.validate_config:
        print(settings.model_dump_json(indent=2))
        return 0
    try:
        snapshot = prepare_models(settings, args)
    except NoValidSnapshot as missing:
        logger.error("%s; start with --bootstrap-synthetic to train models from synthetic data", missing)
        return 2
    except GateFailed as failed:
        print(failed.result.table(), flush=True)
        logger.error("quality gate failed on held-out homes; no snapshot written (--allow-low-quality keeps it)")
        return 1
    logger.info("models ready: snapshot %s in %s", snapshot.version, settings.model_dir)
    if args.exit_after_bootstrap:
        return 0
    logger.error("the live MQTT service is not built yet; use --exit-after-bootstrap (see the README's status)")
    return 2


if __name__ == "__main__":
    sys.exit(main())
