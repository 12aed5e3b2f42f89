"""The alarms a household lives with, on homes and worlds the shipped models never saw, side by side in one run.

    .venv/bin/python bench/bench_alarms.py [--model-dir models] [--samples 100000] [--seed 5000]

Loads the serving snapshot of ``--model-dir`` (``scripts/run`` or ``devintel bootstrap`` writes it) and, for every
world variant family, generates ``--samples`` events of homes of a seed that no bootstrap uses (training, validation
and test use seed, seed + 1000 and seed + 2000), so every row is of homes the models never saw; families the snapshot
trained on are marked. For each it scores the routed models event by event and compares, on the same events:

- **plain flag**: ``needs_attention`` as the daemon published it before the decision layer (the probability
  against the model's event-level threshold);
- **decision**: the shipped alarm decision (persistence and hysteresis, tuned on validation homes).

Then it replays one unseen world (``on_change``, ``--replay-samples`` events, the world's failures as feedback)
through the daemon's handler twice, learning on and ``--no-learn``, and scores the alarms each published.
Prints a table and writes bench/results/alarms.{json,md}.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import time
from pathlib import Path

import orjson

from devintel.daemon.captures import flags_after_events, synthetic_capture
from devintel.daemon.from_settings import build_handler
from devintel.daemon.replay import replay
from devintel.daemon.settings import Settings
from devintel.generators import VARIANT_FAMILIES, generate
from devintel.models.bootstrap import alarm_flags, routed_scores, score_frame
from devintel.models.decision import DecisionParams
from devintel.models.heldout import StreamTruth
from devintel.models.household import HouseholdReport, household_report
from devintel.models.live import from_snapshot
from devintel.models.snapshots import SnapshotStore

RESULTS = Path(__file__).resolve().parent / "results"
HORIZON_S = 7 * 86_400.0


def _row(name: str, plain: HouseholdReport, decided: HouseholdReport) -> dict[str, object]:
    return {
        "world": name,
        "devices": decided.devices,
        "device_days": round(decided.device_days),
        "failures_with_precursor": decided.failures_with_precursor,
        "plain_false_alarms_per_100_dd": plain.false_alarms_per_100_device_days,
        "plain_catch_rate": plain.catch_rate,
        "plain_flag_changes_per_dd": plain.flag_changes_per_device_day,
        "false_alarms_per_100_dd": decided.false_alarms_per_100_device_days,
        "catch_rate": decided.catch_rate,
        "median_lead_h": decided.median_lead_h,
        "flag_changes_per_dd": decided.flag_changes_per_device_day,
    }


def _fmt(value: object, pattern: str) -> str:
    return "—" if value is None else pattern.format(value)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-dir", type=Path, default=Path("models"))
    parser.add_argument("--samples", type=int, default=100_000, help="events per variant family")
    parser.add_argument("--seed", type=int, default=5000, help="seed of the homes (unused by any bootstrap)")
    parser.add_argument("--replay-samples", type=int, default=60_000)
    args = parser.parse_args()
    loaded = SnapshotStore(args.model_dir).load()
    live = from_snapshot(loaded.files, loaded.manifest, loaded.version, HORIZON_S)
    assert live.decision is not None
    trained = set(loaded.manifest.get("training", {}).get("variants", []))
    started = time.perf_counter()
    rows = []
    for family in VARIANT_FAMILIES:
        frame = generate(samples=args.samples, seed=args.seed, variants=(family,))
        probability, _ = routed_scores(frame, score_frame(live.models, frame), live.thresholds, live.router)
        truth = StreamTruth.of(frame)
        plain_flags = alarm_flags(DecisionParams.plain(live.thresholds["global"]), truth.device, truth.ts, probability)
        flags = alarm_flags(live.decision, truth.device, truth.ts, probability)
        common = (truth.device, truth.ts)
        plain = household_report(*common, plain_flags, truth.failure_at, HORIZON_S, truth.visible)
        decided = household_report(*common, flags, truth.failure_at, HORIZON_S, truth.visible)
        name = f"{family} ({'trained on' if family in trained else 'unseen'})"
        rows.append(_row(name, plain, decided))
        print(f"  {name}: {len(frame):,} events scored", file=sys.stderr)

    world = generate(samples=args.replay_samples, seed=args.seed + 1, variants=("on_change",))
    capture = synthetic_capture(world)
    lines = [orjson.dumps(line).decode() for line in capture]
    failure_at = StreamTruth.of(world)
    replayed: dict[str, HouseholdReport] = {}
    for learn in (False, True):
        handler = build_handler(Settings(model_dir=args.model_dir), loaded)
        out = io.BytesIO()
        replay(handler, lines, out, learn=learn)
        flags = flags_after_events(capture, [orjson.loads(line) for line in out.getvalue().splitlines()])
        replayed["learning on" if learn else "--no-learn"] = household_report(
            failure_at.device, failure_at.ts, flags, failure_at.failure_at, HORIZON_S, failure_at.visible
        )
        print(f"  replay ({'learning' if learn else 'no learning'}): {handler.live.challenge()}", file=sys.stderr)

    header = (
        "| world (homes never seen) | devices | device-days | failures | plain: false alarms /100 dd | plain: caught "
        "| plain: flag changes /dd | decision: false alarms /100 dd | decision: caught >= 12 h | median lead h "
        "| flag changes /dd |"
    )
    lines_md = [header, "| --- |" + " ---: |" * 10]
    for r in rows:
        lines_md.append(
            f"| {r['world']} | {r['devices']} | {r['device_days']:,} | {r['failures_with_precursor']} "
            f"| {r['plain_false_alarms_per_100_dd']:.2f} | {r['plain_catch_rate']:.1%} "
            f"| {r['plain_flag_changes_per_dd']:.3f} | {r['false_alarms_per_100_dd']:.2f} | {r['catch_rate']:.1%} "
            f"| {_fmt(r['median_lead_h'], '{:.0f}')} | {r['flag_changes_per_dd']:.3f} |"
        )
    lines_md += [
        "",
        "| replay of an unseen world (on_change) | false alarms /100 dd | caught >= 12 h | median lead h |",
        "| --- | ---: | ---: | ---: |",
    ]
    for name, report in replayed.items():
        lines_md.append(
            f"| {name} | {report.false_alarms_per_100_device_days:.2f} | {report.catch_rate:.1%} "
            f"| {_fmt(report.median_lead_h, '{:.0f}')} |"
        )
    lines_md += [
        "",
        f"Snapshot {loaded.version} ({', '.join(sorted(trained)) or 'unknown'} trained on); homes of seed "
        f"{args.seed}, {args.samples:,} events per family; replay of {args.replay_samples:,} events (seed "
        f"{args.seed + 1}). {time.perf_counter() - started:.0f} s.",
    ]
    table = "\n".join(lines_md)
    print(table)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "alarms.md").write_text(table + "\n")
    payload = {"rows": rows, "replay": {k: v.as_dict() for k, v in replayed.items()}, "version": loaded.version}
    (RESULTS / "alarms.json").write_text(json.dumps(payload, indent=2, default=float) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
