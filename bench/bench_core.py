"""The fast core, before and after in one run: the bootstrap's wall time and peak memory, and the handler's events/s.

    .venv/bin/python bench/bench_core.py [--samples 1000000] [--holdout-samples 300000] [--baseline 8e2a06b]
                                         [--repeat 1] [--events 20000] [--devices 200] [--no-bootstrap]

Two code versions side by side, on the same seeds, in the same run: this working tree ("current") and the
``src/`` of a git revision ("baseline", ``--baseline``; default the commit before the fast core), exported with
``git archive`` into a temporary directory and put first on ``PYTHONPATH``. Everything else (the virtualenv, the
harness, the machine, the load) is shared, and the two alternate run by run so that load drifts hit both.

1. **Bootstrap**: ``python -m devintel.daemon.cli bootstrap --samples N --holdout-samples M --allow-low-quality``
   in a fresh process (one model directory per run). Wall time, CPU time (``ru_utime + ru_stime`` of the child,
   which covers its waited-for worker: less swayed by the machine's load than the wall), and peak resident memory
   three ways: the largest single process (``ru_maxrss`` of the child, which covers its waited-for workers), and
   the peaks of the whole process tree's summed ``VmRSS`` and summed ``Pss`` (sampled from ``/proc`` every 0.1 s: a
   worker process adds to them; ``VmRSS`` counts a page a forked worker shares with its parent in both, ``Pss``
   once). The held-out
   figures of the snapshot's manifest are printed beside them (F1, precision, recall, false alarms), so a speed-up
   that costs quality shows.
2. **Handler alone**: ``bench_live.handler_alone`` (the daemon's handler in process, no broker, validation to
   prediction and messages, ``publish_interval_s`` 0), in a subprocess per version, each with a toy snapshot
   bootstrapped by that version (``bench_live.prepare_models``); best of ``--repeat`` fresh handlers.

Medians over ``--repeat``; ratios current/baseline. Prints a Markdown table and writes ``bench/results/core.md``
and ``core.json``. No target is asserted: the table says where the figures stand against the issue's.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
RESULTS = BENCH / "results"
#: The commit the fast core starts from (issue 12's "today").
DEFAULT_BASELINE = "8e2a06b"
#: The handler's baseline: the oldest commit ``bench_live.handler_alone`` drives (8e2a06b has no
#: ``devintel.daemon.from_settings``), main before the compact per-device state.
DEFAULT_HANDLER_BASELINE = "7b1b5b3"
BOOTSTRAP_TARGET_S = 20.0
BOOTSTRAP_LIMIT_S = 60.0
RSS_TARGET_MB = 400.0
HANDLER_TARGET_RATIO = 5.0


def _git(*command: str) -> str:
    return subprocess.run(["git", "-C", str(ROOT), *command], check=True, capture_output=True, text=True).stdout.strip()


def short_revision(revision: str) -> str:
    """``revision``'s short commit hash."""
    return _git("rev-parse", "--short", revision)


def revisions(baseline: str) -> dict[str, Any]:
    """What a before-vs-after record says of its two versions and the machine: the baseline's and this tree's short
    revisions, whether ``src/`` has uncommitted changes, and the load average before the run."""
    return {
        "baseline_revision": short_revision(baseline),
        "current_revision": short_revision("HEAD"),
        "dirty": bool(_git("status", "--porcelain", "src")),
        "load_before": " ".join(f"{x:.2f}" for x in os.getloadavg()),
    }


def versions_line(record: dict[str, Any]) -> str:
    """The sentence of a results table that names its two versions (from :func:`revisions`)."""
    dirty = ", with uncommitted changes" if record["dirty"] else ""
    return (
        f"Baseline: `src/` of {record['baseline_revision']} (`git archive`); current: this working tree "
        f"({record['current_revision']}{dirty})."
    )


def write_results(stem: str, table: str, record: dict[str, Any]) -> None:
    """Print ``table`` and write it to ``bench/results/<stem>.md``, and ``record`` to ``<stem>.json``."""
    print(table)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{stem}.md").write_text(table + "\n", encoding="utf-8")
    (RESULTS / f"{stem}.json").write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")


def export_revision(revision: str, into: Path) -> Path:
    """``src/`` of ``revision``, exported (``git archive``) under ``into``; returns the directory to import from."""
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", revision, "src"], check=True, capture_output=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into / "src"


def _pss_kb(pid: int) -> int:
    """A process's proportional set size (a page shared by n processes counts 1/n in each), in kB (0: unknown)."""
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def tree_memory_mb(root: int) -> tuple[float, float]:
    """The summed ``VmRSS`` and the summed proportional set size (``Pss``: shared pages counted once over the tree)
    of process ``root`` and all its descendants, in MB (0 when it is gone)."""
    parents: dict[int, int] = {}
    rss: dict[int, int] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            status = Path(entry.path, "status").read_text()
        except OSError:
            continue
        pid = int(entry.name)
        for line in status.splitlines():
            if line.startswith("PPid:"):
                parents[pid] = int(line.split()[1])
            elif line.startswith("VmRSS:"):
                rss[pid] = int(line.split()[1])
    tree = {root}
    grew = True
    while grew:
        grew = False
        for pid, parent in parents.items():
            if parent in tree and pid not in tree:
                tree.add(pid)
                grew = True
    return sum(rss.get(pid, 0) for pid in tree) / 1024, sum(_pss_kb(pid) for pid in tree if pid in rss) / 1024


def timed_process(command: list[str], env: dict[str, str], cwd: Path) -> dict[str, Any]:
    """Run ``command``; its exit status, wall time, the largest process's peak RSS and the process tree's peak
    summed RSS (sampled)."""
    peak = [0.0, 0.0]
    done = threading.Event()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        process = subprocess.Popen(command, env=env, cwd=cwd, stdout=out, stderr=err)

        def sample() -> None:
            while not done.is_set():
                rss, pss = tree_memory_mb(process.pid)
                peak[0], peak[1] = max(peak[0], rss), max(peak[1], pss)
                done.wait(0.1)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        _, status, usage = os.wait4(process.pid, 0)
        seconds = time.perf_counter() - started
        process.returncode = os.waitstatus_to_exitcode(status)
        done.set()
        sampler.join()
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(errors="replace"), err.read().decode(errors="replace")
    return {
        "returncode": process.returncode,
        "seconds": seconds,
        "max_process_rss_mb": usage.ru_maxrss / 1024,
        "cpu_seconds": usage.ru_utime + usage.ru_stime,
        "tree_peak_rss_mb": peak[0],
        "tree_peak_pss_mb": peak[1],
        "stdout": stdout[-3000:],
        "stderr": stderr[-3000:],
    }


def environment(src: Path | None) -> dict[str, str]:
    """The environment of a child running the code in ``src`` (None: this working tree, as installed)."""
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    if src is not None:
        env["PYTHONPATH"] = str(src)
    return env


def quality(model_dir: Path) -> dict[str, float]:
    """The held-out figures of the newest snapshot in ``model_dir`` (its manifest)."""
    current = (model_dir / "current").read_text().strip()
    manifest = json.loads((model_dir / current / "manifest.json").read_text())
    metrics, household = manifest["metrics"], manifest.get("household", {})
    return {
        "f1": float(metrics["f1"]),
        "precision": float(metrics["precision"]),
        "recall": float(metrics["recall"]),
        "accuracy": float(metrics["accuracy"]),
        "false_alarms_per_100_device_days": float(household.get("false_alarms_per_100_device_days", float("nan"))),
        "catch_rate": float(household.get("catch_rate", float("nan"))),
    }


def bootstrap_run(args: argparse.Namespace, src: Path | None, workdir: Path, tag: str) -> dict[str, Any]:
    """One bootstrap of the code in ``src`` in a fresh process; its time, memory and held-out quality."""
    model_dir = workdir / f"models-{tag}"
    command = [
        sys.executable, "-m", "devintel.daemon.cli", "bootstrap", "--samples", str(args.samples),
        "--holdout-samples", str(args.holdout_samples), "--days", str(args.days), "--seed", str(args.seed),
        "--model-dir", str(model_dir), "--allow-low-quality",
    ]  # fmt: skip
    result = timed_process(command, environment(src), workdir)
    if result["returncode"] != 0:
        raise RuntimeError(f"bootstrap ({tag}) exited {result['returncode']}:\n{result['stderr']}")
    result["quality"] = quality(model_dir)
    del result["stdout"], result["stderr"]
    return result


def handler_child(args: argparse.Namespace) -> int:
    """In a child process (``--child-handler``): a toy snapshot of this code, then ``bench_live.handler_alone`` on the
    events of ``devices.json`` in that directory (written by the parent, so that both versions replay the same)."""
    sys.path.insert(0, str(BENCH))
    import bench_live
    import devintel

    workdir = Path(args.child_handler)
    options = argparse.Namespace(model_dir=None)
    model_dir = bench_live.prepare_models(options, workdir)
    result = bench_live.handler_alone(model_dir, workdir / "devices.json", args.events, args.devices, args.repeat)
    result["devintel"] = str(Path(devintel.__file__).parent)
    print(json.dumps(result))
    return 0


def handler_run(args: argparse.Namespace, src: Path | None, workdir: Path, devices: str) -> dict[str, Any]:
    """``bench_live.handler_alone`` for the code in ``src``, in a child process, on ``devices`` (JSON of
    ``bench_live.device_rows``)."""
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "devices.json").write_text(devices)
    command = [
        sys.executable, str(Path(__file__).resolve()), "--child-handler", str(workdir), "--events", str(args.events),
        "--devices", str(args.devices), "--repeat", str(args.repeat), "--seed", str(args.seed),
    ]  # fmt: skip
    done = subprocess.run(command, env=environment(src), cwd=workdir, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"handler bench exited {done.returncode}:\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def median(values: list[float]) -> float:
    return float(statistics.median(values))


def report(args: argparse.Namespace, record: dict[str, Any]) -> str:
    """The Markdown table and the notes under it."""
    lines = ["| measurement | baseline | current | current / baseline | target |", "| --- | ---: | ---: | ---: | --- |"]
    boot = record.get("bootstrap")
    if boot:
        base, cur = boot["baseline"], boot["current"]

        def row(label: str, key: str, fmt: str, target: str, inner: str | None = None) -> None:
            def pick(runs: list[dict[str, Any]]) -> float:
                return median([r[inner][key] if inner else r[key] for r in runs])

            b, c = pick(base), pick(cur)
            ratio = f"{c / b:.2f}x" if b else "-"
            lines.append(f"| {label} | {format(b, fmt)} | {format(c, fmt)} | {ratio} | {target} |")

        size = f"{args.samples:,} + 2 x {args.holdout_samples:,} events"
        row(f"bootstrap wall time, s ({size})", "seconds", ".1f", f"≤ {BOOTSTRAP_TARGET_S:g} s at defaults")
        row("bootstrap CPU time, s (user + system, the worker included)", "cpu_seconds", ".1f", "")
        row("bootstrap peak RSS of the process tree, MB (summed)", "tree_peak_rss_mb", ".0f", "")
        row(
            "bootstrap peak PSS of the process tree, MB (summed: shared pages once)",
            "tree_peak_pss_mb",
            ".0f",
            f"≤ {RSS_TARGET_MB:g}",
        )
        row("bootstrap peak RSS of the largest process, MB", "max_process_rss_mb", ".0f", f"≤ {RSS_TARGET_MB:g}")
        for key, label in (
            ("f1", "held-out F1"),
            ("precision", "held-out precision"),
            ("recall", "held-out recall"),
            ("false_alarms_per_100_device_days", "false alarms per 100 device-days"),
            ("catch_rate", "catch rate (12 h ahead)"),
        ):
            row(label, key, ".4f", "no worse", inner="quality")
    handler = record.get("handler")
    if handler:
        b = median([r["rate"] for r in handler["baseline"]])
        c = median([r["rate"] for r in handler["current"]])
        lines.append(
            f"| handler alone, in process, {args.events:,} events of {args.devices} devices, events/s "
            f"(baseline: {record['handler_baseline_revision']}) "
            f"| {b:,.0f} | {c:,.0f} | {c / b:.2f}x | ≥ {HANDLER_TARGET_RATIO:g}x |"
        )
    lines.append("")
    lines.append(
        f"{versions_line(record)} Medians of {args.repeat} alternating run(s) each; seed {args.seed}, "
        f"{args.days:g} days. "
        f"Python {platform.python_version()}, {platform.machine()}, {os.cpu_count()} cores, load average "
        f"{record['load_before']} before the run; the whole bench took {record['seconds']:.0f} s."
    )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=1_000_000, help="training events of each bootstrap")
    parser.add_argument("--holdout-samples", type=int, default=300_000, help="validation and test events")
    parser.add_argument("--days", type=float, default=180.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--baseline", default=DEFAULT_BASELINE, help="git revision to compare against")
    parser.add_argument("--repeat", type=int, default=1, help="runs of each version (medians)")
    parser.add_argument(
        "--handler-baseline", default=DEFAULT_HANDLER_BASELINE, help="git revision the handler is compared against"
    )
    parser.add_argument("--events", type=int, default=20_000, help="events of the handler run")
    parser.add_argument("--devices", type=int, default=200, help="devices of the handler run")
    parser.add_argument("--no-bootstrap", action="store_true", help="only the handler")
    parser.add_argument("--no-handler", action="store_true", help="only the bootstrap")
    parser.add_argument("--child-handler", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child_handler is not None:
        return handler_child(args)
    began = time.perf_counter()
    record: dict[str, Any] = {
        **revisions(args.baseline),
        "args": {k: v for k, v in vars(args).items() if k != "child_handler"},
    }
    with tempfile.TemporaryDirectory(prefix="devintel-bench-core-") as tmp:
        workdir = Path(tmp)
        (workdir / "baseline").mkdir()
        sources: dict[str, Path | None] = {
            "baseline": export_revision(args.baseline, workdir / "baseline"),
            "current": None,
        }
        if not args.no_bootstrap:
            runs: dict[str, list[dict[str, Any]]] = {"baseline": [], "current": []}
            for rep in range(args.repeat):
                order = ("baseline", "current") if rep % 2 == 0 else ("current", "baseline")
                for name in order:
                    result = bootstrap_run(args, sources[name], workdir, f"{name}-{rep}")
                    runs[name].append(result)
                    print(
                        f"  bootstrap {name} run {rep + 1}: {result['seconds']:.1f} s, "
                        f"tree peak {result['tree_peak_rss_mb']:.0f} MB, "
                        f"largest process {result['max_process_rss_mb']:.0f} MB, F1 {result['quality']['f1']:.4f}",
                        file=sys.stderr,
                        flush=True,
                    )
            record["bootstrap"] = runs
        if not args.no_handler:
            handler: dict[str, list[dict[str, Any]]] = {"baseline": [], "current": []}
            handler_sources: dict[str, Path | None] = {"baseline": sources["baseline"], "current": None}
            if args.handler_baseline != args.baseline:
                (workdir / "handler-baseline").mkdir()
                handler_sources["baseline"] = export_revision(args.handler_baseline, workdir / "handler-baseline")
            record["handler_baseline_revision"] = short_revision(args.handler_baseline)
            sys.path.insert(0, str(BENCH))
            import bench_live

            devices = json.dumps(bench_live.device_rows(args.seed))  # this tree's events, for both versions
            for rep in range(args.repeat):
                order = ("baseline", "current") if rep % 2 == 0 else ("current", "baseline")
                for name in order:
                    result = handler_run(args, handler_sources[name], workdir / f"handler-{name}-{rep}", devices)
                    handler[name].append(result)
                    print(
                        f"  handler {name} run {rep + 1}: {result['rate']:,.0f} events/s", file=sys.stderr, flush=True
                    )
            record["handler"] = handler
    record["seconds"] = time.perf_counter() - began
    write_results("core", report(args, record), record)
    return 0


if __name__ == "__main__":
    sys.exit(main())
