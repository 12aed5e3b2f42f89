"""The cost of a device, before and after in one run: bytes per device with a day of waiting labels, and the
handler's events/s.

    .venv/bin/python bench/bench_devices.py [--baseline 2f9b53c] [--devices 10000] [--hours 24] [--repeat 1]
                                            [--events 20000] [--handler-devices 200]

Two code versions side by side on the same toy snapshot (bootstrapped once, by this tree: the snapshot format is
the same) and the same events: this working tree ("current") and the ``src/`` of a git revision ("baseline",
``--baseline``; default the commit before the device table), exported as ``bench_core`` does and put first on
``PYTHONPATH``. Each run is a fresh child process; the two versions alternate run by run.

1. **Memory per device**: the daemon's handler at the shipped settings (``label_interval_s`` 3600, publish interval
   300 s, every other setting at its default, ``live.max_devices`` raised to ``--devices``), fed ``--devices``
   devices that each report once an hour for ``--hours`` hours (so each holds a day of events waiting for a label,
   one an hour, at the default 24). The growth of the process's resident memory (``VmRSS``, after a full
   collection) from just before the first event: after the first hour (one report per device) and at the end,
   divided by the devices (``--tracemalloc``: the traced Python heap instead, exact but ten times slower).
2. **Handler alone**: ``bench_live.handler_alone`` (``--events`` events of ``--handler-devices`` devices, publish
   interval 0), as ``bench_core``'s row, in a fresh child process of its own.

Medians over ``--repeat``; ratios current/baseline. Prints a Markdown table and writes ``bench/results/devices.md``
and ``devices.json``. No target is asserted: the table says where the figures stand (issue 12: ≤ 2 KB per device
with a day of waiting labels).
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections import deque
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
RESULTS = BENCH / "results"
#: The commit before the device table.
DEFAULT_BASELINE = "2f9b53c"
PER_DEVICE_TARGET_KB = 2.0


def child(args: argparse.Namespace) -> int:
    """In a child process (``--child``): the memory run (``--devices`` > 0) or the handler run of the code first on
    the path."""
    sys.path.insert(0, str(BENCH))
    import bench_live
    import devintel

    workdir = Path(args.child)
    model_dir = bench_live.prepare_models(argparse.Namespace(model_dir=Path(args.model_dir)), workdir)
    if args.devices > 0:
        figures = memory_run(args, model_dir)
    else:
        figures = {
            "handler": bench_live.handler_alone(model_dir, Path(args.spec), args.events, args.handler_devices, 1)
        }
    figures["devintel"] = str(Path(devintel.__file__).parent)
    print(json.dumps(figures))
    return 0


def memory_run(args: argparse.Namespace, model_dir: Path) -> dict[str, Any]:
    """The memory figures of a handler fed ``--devices`` devices for ``--hours`` hours (see the module)."""
    import bench_live
    from devintel.daemon.from_settings import build_handler
    from devintel.daemon.settings import Settings
    from devintel.models.snapshots import SnapshotStore

    rows = json.loads(Path(args.spec).read_text())
    settings = Settings(model_dir=model_dir, topic_prefix="bench", live={"max_devices": max(args.devices, 10_000)})
    handler = build_handler(settings, SnapshotStore(model_dir).load())
    received = time.time()
    start = received - (args.hours + 1) * 3600.0
    step = 3600.0 / args.devices
    figures: dict[str, Any] = {}

    def held() -> int:
        gc.collect()
        if args.tracemalloc:
            return tracemalloc.get_traced_memory()[0]
        return rss_bytes()

    if args.tracemalloc:
        tracemalloc.start()
    base = held()
    began = time.perf_counter()
    for hour in range(args.hours):
        for d in range(args.devices):
            ts = start + hour * 3600.0 + d * step
            payload = bench_live.event_payload(rows[d % len(rows)], hour, ts)
            handler.handle(f"bench/events/dev{d:06d}", payload, received)
        if hour == 0 or hour == args.hours - 1:
            figures["first_hour" if hour == 0 else "end"] = {
                "bytes_per_device": (held() - base) / args.devices,
                "waiting_labels": handler.report()["labels"]["waiting"],  # type: ignore[index]
            }
    seconds = time.perf_counter() - began
    table = getattr(handler.live, "table", None)  # the device table (not in the baseline)
    if table is not None:
        figures["fields"] = field_sizes(table, [handler.live.learner.labels._expiry])
    if args.tracemalloc:
        tracemalloc.stop()
    events = args.hours * args.devices
    if handler.counters.events != events:
        raise RuntimeError(f"{handler.counters.events} of {events} events handled")
    figures["feed_events_per_s"] = events / seconds
    return figures


def deep_size(value: object, seen: set[int]) -> int:
    """Bytes of ``value`` and of what it holds (containers, slots, ``__dict__``), each object counted once."""
    if value is None or isinstance(value, (bool, type)) or id(value) in seen:
        return 0
    seen.add(id(value))
    size = sys.getsizeof(value)
    if isinstance(value, dict):
        size += sum(deep_size(k, seen) + deep_size(v, seen) for k, v in value.items())
    elif isinstance(value, (list, tuple, set, frozenset, deque)):
        size += sum(deep_size(item, seen) for item in value)
    elif hasattr(value, "__dict__"):
        size += deep_size(vars(value), seen)
    else:
        for cls in type(value).__mro__:
            for name in getattr(cls, "__slots__", ()):
                size += deep_size(getattr(value, name, None), seen)
    return size


def field_sizes(table: Any, shared: list[object]) -> dict[str, float]:
    """Bytes per device of each field of the device table's records (``getsizeof``, deep), and of the label
    buffer's expiry queue (``shared``: one entry per waiting event, outside the records)."""
    records = list(table.records.values())
    names = [name for name in dataclasses.fields(records[0])] if records else []
    seen: set[int] = set()
    sizes = {item.name: sum(deep_size(getattr(r, item.name), seen) for r in records) / len(records) for item in names}
    sizes["(label expiry queue)"] = sum(deep_size(item, seen) for item in shared) / max(len(records), 1)
    return sizes


def rss_bytes() -> int:
    """This process's resident memory (``VmRSS``)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def run_child(
    args: argparse.Namespace, src: Path | None, workdir: Path, model_dir: Path, spec: Path, memory: bool
) -> Any:
    """One child run of the code in ``src`` (None: this tree): the memory run, or the handler run."""
    from bench_core import environment

    workdir.mkdir(parents=True, exist_ok=True)
    command = [
        sys.executable, str(Path(__file__).resolve()), "--child", str(workdir), "--model-dir", str(model_dir),
        "--spec", str(spec), "--devices", str(args.devices if memory else 0), "--hours", str(args.hours),
        "--events", str(args.events),
        "--handler-devices", str(args.handler_devices), *(["--tracemalloc"] if args.tracemalloc else []),
    ]  # fmt: skip
    done = subprocess.run(command, env=environment(src), cwd=workdir, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"child exited {done.returncode}:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def report(args: argparse.Namespace, record: dict[str, Any]) -> str:
    """The Markdown table and the notes under it."""
    from bench_core import versions_line

    runs = record["runs"]

    def pick(name: str, *path: str) -> float:
        values = []
        for run in runs[name]:
            value = run
            for key in path:
                value = value[key]
            values.append(float(value))
        return float(statistics.median(values))

    lines = ["| measurement | baseline | current | current / baseline | target |", "| --- | ---: | ---: | ---: | --- |"]

    def row(label: str, path: tuple[str, ...], scale: float, fmt: str, target: str = "") -> None:
        b, c = pick("baseline", *path) * scale, pick("current", *path) * scale
        lines.append(f"| {label} | {format(b, fmt)} | {format(c, fmt)} | {c / b:.2f}x | {target} |")

    n = f"{args.devices:,} devices"
    row(f"KB per device after one report each ({n})", ("first_hour", "bytes_per_device"), 1 / 1024, ".2f")
    row(
        f"KB per device after {args.hours} hourly reports each ({n})",
        ("end", "bytes_per_device"),
        1 / 1024,
        ".2f",
        f"≤ {PER_DEVICE_TARGET_KB:g} KB",
    )
    row("… events waiting for a label, per device", ("end", "waiting_labels"), 1 / args.devices, ".1f")
    row("events/s of that feed", ("feed_events_per_s",), 1.0, ",.0f")
    row(
        f"handler alone, {args.events:,} events of {args.handler_devices} devices, events/s",
        ("handler", "rate"),
        1.0,
        ",.0f",
    )
    sizes = runs["current"][0].get("fields")
    if sizes:
        lines += ["", "Where a device's bytes go (current, the first run; `sys.getsizeof`, deep, per device):", ""]
        lines += ["| field of the record | bytes per device |", "| --- | ---: |"]
        lines += [f"| {name} | {size:,.0f} |" for name, size in sorted(sizes.items(), key=lambda kv: -kv[1])]
    lines.append("")
    lines.append(
        f"{versions_line(record)} Medians of {args.repeat} alternating run(s) each, a fresh child process for each "
        "measurement. Memory: "
        f"growth of {'the traced heap (tracemalloc)' if args.tracemalloc else 'VmRSS'} after `gc.collect()`, from just "
        f"before the first event, over the devices; shipped settings "
        f"(label interval 3600 s, publish interval 300 s). Python {platform.python_version()}, {platform.machine()}, "
        f"{os.cpu_count()} cores, load average {record['load_before']} before the run; the bench took "
        f"{record['seconds']:.0f} s."
    )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--baseline", default=DEFAULT_BASELINE, help="git revision to compare against")
    parser.add_argument("--devices", type=int, default=10_000, help="devices of the memory run")
    parser.add_argument("--hours", type=int, default=24, help="hourly reports of each device")
    parser.add_argument("--events", type=int, default=20_000, help="events of the handler run")
    parser.add_argument("--handler-devices", type=int, default=200, help="devices of the handler run")
    parser.add_argument("--repeat", type=int, default=1, help="runs of each version (medians)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tracemalloc", action="store_true", help="measure the traced heap instead of VmRSS")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--model-dir", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--spec", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        return child(args)
    sys.path.insert(0, str(BENCH))
    import bench_live
    from bench_core import export_revision, revisions, write_results

    began = time.perf_counter()
    record: dict[str, Any] = {
        **revisions(args.baseline),
        "args": {k: v for k, v in vars(args).items() if k not in ("child", "model_dir", "spec")},
    }
    with tempfile.TemporaryDirectory(prefix="devintel-bench-devices-") as tmp:
        workdir = Path(tmp)
        (workdir / "baseline").mkdir()
        sources: dict[str, Path | None] = {
            "baseline": export_revision(args.baseline, workdir / "baseline"),
            "current": None,
        }
        model_dir = bench_live.prepare_models(argparse.Namespace(model_dir=None), workdir)
        spec = workdir / "devices.json"
        spec.write_text(json.dumps(bench_live.device_rows(args.seed)))
        runs: dict[str, list[Any]] = {"baseline": [], "current": []}
        for rep in range(args.repeat):
            for name in ("baseline", "current") if rep % 2 == 0 else ("current", "baseline"):
                result = run_child(args, sources[name], workdir / f"{name}-{rep}", model_dir, spec, memory=True)
                result.update(
                    run_child(args, sources[name], workdir / f"{name}-{rep}-h", model_dir, spec, memory=False)
                )
                runs[name].append(result)
                print(
                    f"  {name} run {rep + 1}: {result['end']['bytes_per_device'] / 1024:.2f} KB per device, "
                    f"handler {result['handler']['rate']:,.0f} events/s",
                    file=sys.stderr,
                    flush=True,
                )
        record["runs"] = runs
    record["seconds"] = time.perf_counter() - began
    write_results("devices", report(args, record), record)
    return 0


if __name__ == "__main__":
    sys.exit(main())
