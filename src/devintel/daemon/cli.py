"""The ``devintel`` command line: ``generate``, ``bootstrap``, ``replay``, ``models``, ``report``, ``healthcheck``.

Why one module of over 400 lines: one argparse tree whose subcommands share their options; each subcommand is a
thin function over the pure layers and ``from_settings``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from devintel.daemon.datasets import output_format, write_batches
from devintel.daemon.logs import configure_logging
from devintel.daemon.progress import Progress
from devintel.generators import HOME_TYPES, DatasetStats
from devintel.generators.api import (
    DEFAULT_DAYS,
    DEFAULT_FAILURE_RATE,
    DEFAULT_HORIZON_DAYS,
    DEFAULT_SAMPLES,
    GeneratorConfig,
)
from devintel.generators.stats import StatsAccumulator

if TYPE_CHECKING:
    from devintel.daemon.settings import Settings
    from devintel.models.snapshots import SnapshotStore

logger = logging.getLogger("devintel")


def _csv_list(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def _add_generate(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "generate",
        help="generate synthetic device telemetry",
        description="Generate a synthetic, event-time-ordered stream of device telemetry and write it to a file.",
    )
    p.add_argument("--samples", type=int, default=DEFAULT_SAMPLES, help="events (rows) to generate [%(default)s]")
    p.add_argument("--days", type=float, default=DEFAULT_DAYS, help="length of the observed span [%(default)s]")
    p.add_argument("--seed", type=int, default=0, help="random seed; same arguments, same bytes [%(default)s]")
    p.add_argument("--home-types", type=_csv_list, default=None, help="comma-separated home types [all]")
    p.add_argument("--device-types", type=_csv_list, default=None, help="comma-separated device types [all]")
    p.add_argument(
        "--failure-rate", type=float, default=DEFAULT_FAILURE_RATE, help="mean share of devices that fail [%(default)s]"
    )
    p.add_argument(
        "--horizon-days", type=float, default=DEFAULT_HORIZON_DAYS, help="label horizon in days [%(default)s]"
    )
    p.add_argument(
        "--variants",
        type=_csv_list,
        default=None,
        help="comma-separated world-variant families, one per home in turn (docs/synthetic-data.md) [reference]",
    )
    p.add_argument(
        "--per-home-type",
        action="store_true",
        help="write one dataset per home type (of --samples rows each); --out must contain {home_type}",
    )
    p.add_argument("--out", type=Path, default=None, help="output file: .parquet, .csv or .jsonl")
    p.add_argument("--summary-json", type=Path, default=None, help="also write the dataset summary as JSON")


def _add_bootstrap(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from devintel.models.bootstrap import BootstrapConfig

    defaults = BootstrapConfig()
    p = sub.add_parser(
        "bootstrap",
        help="train models from synthetic data, gate them on held-out homes, snapshot them",
        description="Generate, warm-start, validate, gate and snapshot the models (see devintel.models.bootstrap). "
        "The snapshot is signed when snapshot.signing_key is set (DEVINTEL_SNAPSHOT__SIGNING_KEY, or the file "
        "snapshot__signing_key in $CREDENTIALS_DIRECTORY).",
    )
    p.add_argument("--samples", type=int, help=f"training events [bootstrap.samples: {defaults.samples}]")
    p.add_argument(
        "--holdout-samples",
        type=int,
        help=f"validation and test events [bootstrap.holdout_samples: {defaults.holdout_samples}]",
    )
    p.add_argument("--days", type=float, help=f"length of the synthetic span [bootstrap.days: {defaults.days:g}]")
    p.add_argument("--seed", type=int, help="training seed; held-out homes use seed+1000, +2000 [bootstrap.seed: 0]")
    p.add_argument("--model-dir", type=Path, default=None, help="snapshot directory [model_dir: models]")
    p.add_argument("--keep", type=int, default=None, help="snapshots to keep [snapshot.keep: 5]")
    p.add_argument("--allow-low-quality", action="store_true", help="a failed gate warns instead of failing")
    p.add_argument(
        "--capture",
        type=Path,
        default=None,
        help="instead of synthetic data, adapt the newest snapshot of --model-dir to a recorded capture (JSON lines "
        "of ts, topic, payload, as devintel replay reads; MQTT topics and Home Assistant's $homeassistant-api/... "
        "registries, state changes and history) through the live path, and snapshot the result",
    )


def _run_capture_bootstrap(args: argparse.Namespace, settings: Settings) -> int:
    """``devintel bootstrap --capture FILE``: the capture through the live path (features, delayed labels from
    what later happened in it, learning) onto the newest snapshot, then a snapshot of what was learned."""
    from devintel.daemon.from_settings import build_handler, snapshot_store
    from devintel.daemon.replay import replay
    from devintel.models.live import snapshot_contents
    from devintel.models.snapshots import NoValidSnapshot

    if not args.capture.is_file():
        logger.error("capture %s does not exist", args.capture)
        return 2
    store = snapshot_store(settings)
    try:
        base = store.load()
    except NoValidSnapshot as error:
        logger.error("--capture adapts an existing snapshot, and %s has none (run devintel bootstrap first): %s",
                     settings.model_dir, error)  # fmt: skip
        return 2
    handler = build_handler(settings, base)
    with args.capture.open(encoding="utf-8") as lines, open(os.devnull, "wb") as sink:
        stats = replay(handler, lines, sink, learn=True)
    handler.live.tick()
    learned = handler.live.learner.learned
    files, manifest = snapshot_contents(handler.live, base.files, base.manifest)
    manifest["capture"] = {"file": args.capture.name, "lines": stats.lines, "events": handler.counters.events}
    version = store.write(files, manifest)
    print(
        f"capture {args.capture}: {stats.lines:,} lines, {handler.counters.events:,} events, "
        f"{handler.live.learner.resolved:,} labels resolved, {learned:,} learned; "
        f"rejected {dict(handler.counters.rejected)}, bad capture lines {stats.bad_lines}"
    )
    print(f"snapshot {version} in {settings.model_dir} (from {base.version})")
    return 0


def _run_bootstrap(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from devintel.daemon.from_settings import bootstrap_config, snapshot_store
    from devintel.daemon.settings import load_settings
    from devintel.models.bootstrap import bootstrap
    from devintel.models.gate import GateFailed

    try:
        # The settings (environment, .env, $CREDENTIALS_DIRECTORY) shape the gate, the horizon, the model directory
        # and the signing key (a daemon with a key refuses unsigned snapshots); the command line overrides the sizes,
        # the model directory and how many snapshots are kept.
        settings = load_settings()
        if args.model_dir is not None:
            settings = settings.model_copy(update={"model_dir": args.model_dir})
        if args.keep is not None:
            settings = settings.model_copy(
                update={"snapshot": settings.snapshot.model_copy(update={"keep": args.keep})}
            )
    except (ValidationError, ValueError, FileNotFoundError) as error:
        logger.error("invalid settings: %s", error)
        return 2
    if args.capture is not None:
        return _run_capture_bootstrap(args, settings)
    sizes = {key: getattr(args, key) for key in ("samples", "holdout_samples", "days", "seed")}
    config = bootstrap_config(settings, args.allow_low_quality, **sizes)
    try:
        result = bootstrap(config, snapshot_store(settings))
    except GateFailed as failed:
        print(failed.result.table())
        logger.error("quality gate failed on held-out homes; no snapshot written (use --allow-low-quality to keep it)")
        return 1
    print(result.gate.table())
    print(f"snapshot {result.version} in {settings.model_dir}")
    return 0


def _add_replay(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "replay",
        help="feed a recorded MQTT capture through the daemon's handler",
        description="Feed a capture (JSON lines of ts, topic, payload) through the same handler as the live broker, "
        "with the newest valid snapshot of model_dir, and write every message the daemon would have published.",
    )
    p.add_argument("capture", type=Path, help="capture file (.jsonl)")
    p.add_argument("--out", type=Path, required=True, help="where to write the published messages (.jsonl)")
    p.add_argument("--no-learn", action="store_true", help="predict only: learn nothing from resolved labels")
    p.add_argument("--config", type=Path, default=None, help="TOML settings file (model_dir, topics, ...)")


def _run_replay(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from devintel.daemon.from_settings import build_handler, snapshot_store
    from devintel.daemon.replay import replay
    from devintel.daemon.settings import load_settings
    from devintel.models.snapshots import NoValidSnapshot

    try:
        settings = load_settings(args.config)
        snapshot = snapshot_store(settings).load()
    except (ValidationError, ValueError, FileNotFoundError, NoValidSnapshot) as error:
        logger.error("%s", error)
        return 2
    if not args.capture.is_file():
        logger.error("capture %s does not exist", args.capture)
        return 2
    handler = build_handler(settings, snapshot)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    partial = args.out.with_name(args.out.name + ".partial")
    with args.capture.open(encoding="utf-8") as lines, partial.open("wb") as out:
        stats = replay(handler, lines, out, learn=not args.no_learn)
    partial.replace(args.out)
    counters = handler.counters
    print(
        f"replayed {stats.lines:,} lines with snapshot {snapshot.version}: {counters.events:,} events, "
        f"{stats.written:,} messages written to {args.out}; rejected {dict(counters.rejected)}, "
        f"skipped {dict(counters.skipped)}, bad capture lines {stats.bad_lines}, handling errors {stats.errors}"
    )
    return 0


def _add_snapshot_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    models = sub.add_parser(
        "models",
        help="list the snapshots of the model directory",
        description="List the snapshot versions of the model directory (the live one marked *), each with its "
        "models, decision thresholds, held-out quality and what it learned live; a snapshot that fails "
        "verification is listed with the reason.",
    )
    models.add_argument("--config", type=Path, default=None, help="TOML settings file (model_dir)")
    report = sub.add_parser(
        "report",
        help="print the production-readiness report of a snapshot",
        description="Print report/report.md of the live snapshot (or of --version), after verifying its hashes.",
    )
    report.add_argument("--config", type=Path, default=None, help="TOML settings file (model_dir)")
    report.add_argument("--version", default=None, help="snapshot version [the live one]")
    report.add_argument("--json", action="store_true", help="print report/report.json instead")


def _store(args: argparse.Namespace) -> SnapshotStore | None:
    from pydantic import ValidationError

    from devintel.daemon.from_settings import snapshot_store
    from devintel.daemon.settings import load_settings

    try:
        settings = load_settings(args.config)
    except (ValidationError, ValueError, FileNotFoundError) as error:
        logger.error("%s", error)
        return None
    return snapshot_store(settings)


def _run_models(args: argparse.Namespace) -> int:
    from devintel.models.snapshots import NoValidSnapshot

    store = _store(args)
    if store is None:
        return 2
    current = store.current_version()
    versions = store.versions()
    if not versions:
        print(f"no snapshot in {store.root}")
        return 1
    for version in versions:
        marker = "*" if version == current else " "
        try:
            manifest = store.load(version).manifest
        except NoValidSnapshot as refused:
            print(f"{marker} {version}  REFUSED: {refused}")
            continue
        metrics = manifest.get("metrics", {})
        thresholds = ", ".join(f"{name} {entry['threshold']:.3f}" for name, entry in manifest.get("models", {}).items())
        live = manifest.get("live")
        learned = f", {live['learned']:,} learned live" if isinstance(live, dict) else ""
        household = manifest.get("household")
        alarms = (
            f"; alarms: {household['false_alarms_per_100_device_days']:.2f} false per 100 device-days, "
            f"{household['catch_rate']:.0%} of failures caught >= 12 h ahead"
            if isinstance(household, dict)
            else ""
        )
        print(
            f"{marker} {version}  F1 {metrics.get('f1', float('nan')):.3f} precision "
            f"{metrics.get('precision', float('nan')):.3f} recall {metrics.get('recall', float('nan')):.3f} "
            f"(held-out homes){alarms}{learned}; thresholds: {thresholds}"
        )
        challenger = live.get("challenger") if isinstance(live, dict) else None
        if isinstance(challenger, dict):
            print(f"    serving vs live-learning challenger: {challenger.get('verdict')}")
    return 0


def _run_report(args: argparse.Namespace) -> int:
    from devintel.models.snapshots import NoValidSnapshot

    store = _store(args)
    if store is None:
        return 2
    try:
        snapshot = store.load(args.version)
    except NoValidSnapshot as missing:
        logger.error("%s", missing)
        return 2
    name = "report/report.json" if args.json else "report/report.md"
    text = snapshot.files.get(name)
    if text is None:
        logger.error("snapshot %s holds no %s", snapshot.version, name)
        return 2
    sys.stdout.write(text.decode("utf-8"))
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``devintel``."""
    parser = argparse.ArgumentParser(prog="devintel", description="devintel: device-failure prediction tools")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_generate(sub)
    _add_bootstrap(sub)
    _add_replay(sub)
    _add_snapshot_commands(sub)
    _add_healthcheck(sub)
    return parser


def _add_healthcheck(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from devintel.daemon import healthcheck

    p = sub.add_parser(
        "healthcheck",
        help="exit 0 when the running daemon's /health answers 200 (the daemon's own settings)",
        description="Ask the running daemon's GET /health, at the address its own settings give (environment, "
        ".env, and its --config, found from its command line); exit 0 when healthy, 1 otherwise. The Docker "
        "image's HEALTHCHECK runs the same check as python -m devintel.daemon.healthcheck.",
    )
    healthcheck.add_arguments(p)


def format_summary(stats: DatasetStats, title: str) -> str:
    """A plain-text table of a dataset's statistics."""
    lines = [
        title,
        f"  rows                 {stats.rows:,}",
        f"  devices / homes      {stats.devices:,} / {stats.homes:,}",
        f"  span                 {stats.span_days:.1f} days",
        f"  positive rate        {stats.positive_rate:.2%} (fails within the horizon)",
        f"  undetectable         {stats.undetectable_share:.1%} of positives (no precursor: recall ceiling "
        f"{1 - stats.undetectable_share:.1%})",
        f"  severity ceiling     F1 {stats.severity_f1:.3f} for a threshold on the hidden precursor severity",
        f"  missing values       {stats.missing_share:.2%} of reported fields",
        f"  out-of-range values  {stats.out_of_range:,}",
        "  homes per type       " + ", ".join(f"{k} {v}" for k, v in stats.homes_per_type.items()),
        "  failures per mode    " + ", ".join(f"{k} {v}" for k, v in stats.failures_per_mode.items()),
    ]
    return "\n".join(lines)


def _observed(
    batches: Iterator[pd.DataFrame], accumulator: StatsAccumulator, progress: Progress
) -> Iterator[pd.DataFrame]:
    for batch in batches:
        accumulator.update(batch)
        progress.advance(len(batch))
        yield batch


def _run_generate(args: argparse.Namespace) -> int:
    targets: list[tuple[str, list[str] | None]]
    if args.per_home_type:
        if args.out is None or "{home_type}" not in str(args.out):
            logger.error("--per-home-type needs --out with a {home_type} placeholder, e.g. data/{home_type}.parquet")
            return 2
        targets = [(h, [h]) for h in (args.home_types or list(HOME_TYPES))]
    else:
        targets = [("all", args.home_types)]
    summaries: dict[str, dict[str, object]] = {}
    for name, home_types in targets:
        try:
            config = GeneratorConfig.from_arguments(
                samples=args.samples,
                days=args.days,
                seed=args.seed,
                home_types=home_types,
                device_types=args.device_types,
                failure_rate=args.failure_rate,
                horizon_days=args.horizon_days,
                start=None,
                variants=args.variants,
            )
            out = Path(str(args.out).format(home_type=name)) if args.out is not None else None
            if out is not None:
                output_format(out)
        except ValueError as exc:
            logger.error("%s", exc)
            return 2
        progress = Progress(config.samples, f"generate {name}")
        accumulator = StatsAccumulator()
        batches = _observed(config.batches(), accumulator, progress)
        if out is None:
            for _ in batches:
                pass
        else:
            rows = write_batches(batches, out)
            logger.info("wrote %d rows to %s in %.1f s", rows, out, progress.elapsed)
        stats = accumulator.result()
        summaries[name] = stats.as_dict()
        print(format_summary(stats, f"dataset {name} (seed {config.seed}, {config.days:g} days)"), flush=True)
    if args.summary_json is not None:
        args.summary_json.parent.mkdir(parents=True, exist_ok=True)
        args.summary_json.write_text(json.dumps(summaries, indent=2) + "\n", encoding="utf-8")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``devintel`` command."""
    args = build_parser().parse_args(argv)
    configure_logging(args.verbose)
    if args.command == "generate":
        return _run_generate(args)
    if args.command == "bootstrap":
        return _run_bootstrap(args)
    if args.command == "replay":
        return _run_replay(args)
    if args.command == "models":
        return _run_models(args)
    if args.command == "report":
        return _run_report(args)
    if args.command == "healthcheck":
        from devintel.daemon import healthcheck

        return healthcheck.run(args)
    raise AssertionError(f"unhandled command {args.command}")  # argparse rejects unknown commands


if __name__ == "__main__":
    sys.exit(main())
