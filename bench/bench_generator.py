"""Generator speed and memory, side by side with a baseline, in one run.

    python bench/bench_generator.py [--events 1000000] [--stream-events 10000000] [--repeat 3]

Measures, each in a fresh child process pinned to one CPU core (so peak memory and timings are not
polluted by each other):

* ``generate()`` of N events into a DataFrame, against the floor it is compared with: numpy merely
  filling arrays of the same shape (the generator's float, code and label blocks) with random numbers;
* ``generate()`` of 1,000 events (the requirement is under 30 s per 1,000 samples);
* streaming 10,000,000 events through ``iter_batches()`` (peak resident memory must stay under 1 GB).

Prints a table and writes ``bench/results/generator.json`` and ``generator.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def _child(mode: str, events: int, repeat: int) -> dict[str, float]:
    """Run one measurement in this process and return its figures."""
    import resource

    import numpy as np

    from devintel.generators import generate, iter_batches
    from devintel.generators.stream import CODE_COLUMNS, FLOAT_COLUMNS

    def best_of(fn: object) -> float:
        times = []
        for _ in range(repeat):
            start = time.perf_counter()
            fn()  # type: ignore[operator]
            times.append(time.perf_counter() - start)
        return min(times)

    out: dict[str, float] = {}
    if mode == "generate":
        out["seconds"] = best_of(lambda: generate(samples=events, seed=1))
    elif mode == "numpy_fill":

        def fill() -> None:
            rng = np.random.default_rng(1)
            floats = np.empty((len(FLOAT_COLUMNS), events))
            rng.random(out=floats)
            codes = rng.integers(0, 1000, size=(len(CODE_COLUMNS), events))
            positive = rng.random(events) < 0.02
            del floats, codes, positive

        out["seconds"] = best_of(fill)
    elif mode == "stream":
        start = time.perf_counter()
        rows = sum(len(batch) for batch in iter_batches(samples=events, seed=1))
        out["seconds"] = time.perf_counter() - start
        out["rows"] = rows
    else:
        raise ValueError(mode)
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out


def _measure(mode: str, events: int, repeat: int) -> dict[str, float]:
    cmd = [sys.executable, __file__, "--child", mode, "--events", str(events), "--repeat", str(repeat)]
    if hasattr(os, "sched_setaffinity"):
        cpu = sorted(os.sched_getaffinity(0))[-1]
        cmd = ["taskset", "-c", str(cpu), *cmd] if _has_taskset() else cmd
    done = subprocess.run(cmd, check=True, capture_output=True, text=True)
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def _has_taskset() -> bool:
    from shutil import which

    return which("taskset") is not None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--stream-events", type=int, default=10_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(_child(args.child, args.events, args.repeat)))
        return 0

    ours = _measure("generate", args.events, args.repeat)
    floor = _measure("numpy_fill", args.events, args.repeat)
    small = _measure("generate", 1_000, args.repeat)
    stream = _measure("stream", args.stream_events, 1)
    rows = [
        ("generate() into a DataFrame", args.events, ours["seconds"], ours["peak_rss_mb"]),
        ("numpy fills the same arrays with random numbers", args.events, floor["seconds"], floor["peak_rss_mb"]),
        ("generate() of 1,000 events", 1_000, small["seconds"], small["peak_rss_mb"]),
        ("iter_batches() streamed and dropped", args.stream_events, stream["seconds"], stream["peak_rss_mb"]),
    ]
    ratio = ours["seconds"] / floor["seconds"]
    lines = [
        "| measurement | events | seconds | events/s | peak RSS (MB) |",
        "| --- | ---: | ---: | ---: | ---: |",
        *(f"| {name} | {n:,} | {s:.3f} | {n / s:,.0f} | {m:,.0f} |" for name, n, s, m in rows),
        "",
        f"generate() / numpy fill: **{ratio:.1f}x** (target: within 10x); "
        f"1,000,000 events in {ours['seconds'] * 1_000_000 / args.events:.2f} s (target: under 2 s); "
        f"streaming {args.stream_events:,} events peaks at {stream['peak_rss_mb']:,.0f} MB (target: under 1,024 MB).",
        "",
        f"One CPU core each (taskset), best of {args.repeat}; Python {platform.python_version()}, "
        f"{platform.machine()}, {os.cpu_count()} cores.",
    ]
    table = "\n".join(lines)
    print(table)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "generator.md").write_text(table + "\n", encoding="utf-8")
    record = {
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "python": platform.python_version(),
        "events": args.events,
        "generate": ours,
        "numpy_fill": floor,
        "ratio_generate_over_numpy_fill": ratio,
        "generate_1000": small,
        "stream": {"events": args.stream_events, **stream},
    }
    (RESULTS / "generator.json").write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
