"""River learners compared on the devintel online path, side by side in one run.

    python bench/bench_learners.py [--train 250000] [--test 150000]

Each registered learner (``devintel.models.learners.LEARNERS``; ``logistic`` is the one shipped) sees the
shipped model's inputs (``devintel.models.learners.model_inputs``), is warm-started through the real online
path (features, delayed labels with the synthetic failure times as evidence,
learning on resolution, negatives sampled at 20 %) on a training stream (seed 1), gets its decision
threshold from ``tune_threshold`` on a validation stream of other homes (seed 1001), and is scored on a
held-out stream of yet other homes (seed 2) against the ground-truth label. Also measured: events/s through
the online path, bare River ``learn_one`` on the same learned examples (precomputed features), pickle size
and load time. Prints a table and writes bench/results/learners.{json,md}.
"""

from __future__ import annotations

import argparse
import functools
import json
import pickle
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from devintel.generators import generate
from devintel.models.bootstrap import tune_threshold
from devintel.models.learners import LEARNERS
from devintel.models.metrics import binary_report
from devintel.models.online import Classifier, OnlineLearner, events, failure_times, warm_start

RESULTS = Path(__file__).resolve().parent / "results"
HORIZON_S = 7 * 86_400.0
REPORTED = ("accuracy", "precision", "recall", "f1", "mcc", "pr_auc")


#: The registered learners (devintel.models.learners.LEARNERS), each seeded with 1.
CANDIDATES: dict[str, Callable[[], Classifier]] = {
    name: functools.partial(learner.build, 1) for name, learner in LEARNERS.items()
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train", type=int, default=250_000)
    parser.add_argument("--test", type=int, default=150_000, help="events of the validation and test streams")
    parser.add_argument("--only", nargs="*", default=None)
    args = parser.parse_args()
    train = generate(samples=args.train, seed=1)
    validation = generate(samples=args.test, seed=1001)
    test = generate(samples=args.test, seed=2)
    train_events, test_events = list(events(train)), list(events(test))
    validation_events = list(events(validation))
    failures = failure_times(train)
    truth = test["fails_within_horizon"].to_numpy()
    rows = []
    for name, factory in CANDIDATES.items():
        if args.only and name not in args.only:
            continue
        examples: list[tuple[dict[str, float], bool]] = []

        def keep(
            _device: str, x: dict[str, float], y: bool, examples: list[tuple[dict[str, float], bool]] = examples
        ) -> None:
            examples.append((x, y))

        learner = OnlineLearner(model=factory(), horizon_s=HORIZON_S, on_learn=keep)
        start = time.perf_counter()
        warm_start(learner, train_events, failures)
        online_s = time.perf_counter() - start
        calibrator = OnlineLearner(model=learner.model, horizon_s=HORIZON_S, learn=False)
        calibration = np.array([calibrator.predict(calibrator.features.update(e)) for e in validation_events])
        threshold = tune_threshold(validation["fails_within_horizon"].to_numpy(), calibration)
        bare = factory()
        start = time.perf_counter()
        for x, y in examples:
            bare.learn_one(x, y)
        bare_s = time.perf_counter() - start
        scorer = OnlineLearner(model=learner.model, horizon_s=HORIZON_S, learn=False)
        start = time.perf_counter()
        probs = np.array([scorer.predict(scorer.features.update(e)) for e in test_events])
        predict_s = time.perf_counter() - start
        report = binary_report(truth, probs, threshold)
        blob = pickle.dumps(learner.model)
        start = time.perf_counter()
        pickle.loads(blob)
        load_s = time.perf_counter() - start
        rows.append(
            {
                "model": name,
                "online_events_per_s": len(train_events) / online_s,
                "learned": len(examples),
                "bare_learn_one_per_s": len(examples) / bare_s if bare_s else float("inf"),
                "predict_us": predict_s / len(test_events) * 1e6,
                "pickle_kb": len(blob) / 1024,
                "load_ms": load_s * 1000,
                "threshold": threshold,
                **{
                    k: round(float(v), 4)
                    for k, v in report.as_dict().items()
                    if k in ("accuracy", "precision", "recall", "f1", "mcc", "pr_auc")
                },
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    header = (
        "| model | accuracy | precision | recall | F1 | PR-AUC | online events/s | bare learn_one/s "
        "| predict µs | pickle KB | load ms |"
    )
    lines = [header, "| --- " + "| ---: " * 10 + "|"]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['accuracy']:.3f} | {r['precision']:.3f} | {r['recall']:.3f} | {r['f1']:.3f} | "
            f"{r['pr_auc']:.3f} | {r['online_events_per_s']:,.0f} | {r['bare_learn_one_per_s']:,.0f} | "
            f"{r['predict_us']:.0f} | {r['pickle_kb']:,.0f} | {r['load_ms']:.1f} |"
        )
    lines.append("")
    lines.append(
        f"Train: {args.train:,} events (seed 1); threshold tuned on {args.test:,} events of other homes (seed 1001); "
        f"held-out: {args.test:,} events of yet other homes (seed 2), scored against the ground-truth label."
    )
    table = "\n".join(lines)
    print(table)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "learners.md").write_text(table + "\n", encoding="utf-8")
    (RESULTS / "learners.json").write_text(json.dumps(rows, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
