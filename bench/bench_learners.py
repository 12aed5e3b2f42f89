"""River learners compared on the devintel online path, side by side in one run.

    python bench/bench_learners.py [--train 200000] [--test 100000]

Each learner is warm-started through the real online path (features, delayed labels with the synthetic
failure times as evidence, learning on resolution, negatives sampled at 20 %) on a training stream (seed
1), its decision threshold tuned for F1 on the last fifth of its resolved predictions, then scored on a
held-out stream of other homes (seed 2) against the ground-truth label. Also measured: events/s through
the online path, bare River ``learn_one`` on the same learned examples (precomputed features), pickle size
and load time. Prints a table and writes bench/results/learners.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import pickle
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from river import forest, linear_model, naive_bayes, optim, preprocessing, tree

from devintel.generators import generate
from devintel.models.bootstrap import tune_threshold
from devintel.models.metrics import binary_report
from devintel.models.online import OnlineLearner, events, failure_times, warm_start

RESULTS = Path(__file__).resolve().parent / "results"
HORIZON_S = 7 * 86_400.0
REPORTED = ("accuracy", "precision", "recall", "f1", "mcc", "pr_auc")

CANDIDATES: dict[str, Callable[[], object]] = {
    "HoeffdingTree": lambda: tree.HoeffdingTreeClassifier(grace_period=100, delta=1e-5),
    "HoeffdingAdaptiveTree": lambda: tree.HoeffdingAdaptiveTreeClassifier(grace_period=100, delta=1e-5, seed=1),
    "ARF (3 trees)": lambda: forest.ARFClassifier(n_models=3, seed=1),
    "LogisticRegression": lambda: (
        preprocessing.StandardScaler() | linear_model.LogisticRegression(optimizer=optim.SGD(0.01))
    ),
    "GaussianNB": lambda: naive_bayes.GaussianNB(),
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train", type=int, default=200_000)
    parser.add_argument("--test", type=int, default=100_000)
    parser.add_argument("--only", nargs="*", default=None)
    args = parser.parse_args()
    train = generate(samples=args.train, seed=1)
    test = generate(samples=args.test, seed=2)
    train_events, test_events = list(events(train)), list(events(test))
    failures = failure_times(train)
    truth = test["fails_within_horizon"].to_numpy()
    rows = []
    for name, factory in CANDIDATES.items():
        if args.only and name not in args.only:
            continue
        learner = OnlineLearner(model=factory(), horizon_s=HORIZON_S, keep_examples=True)  # type: ignore[arg-type]
        examples = learner.examples
        start = time.perf_counter()
        warm_start(learner, train_events, failures)
        online_s = time.perf_counter() - start
        threshold = tune_threshold(learner.outcomes)
        bare = factory()
        start = time.perf_counter()
        for x, y in examples:
            bare.learn_one(x, y)  # type: ignore[attr-defined]
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
        f"Train: {args.train:,} events (seed 1); held-out: {args.test:,} events of other homes (seed 2), scored "
        "against the ground-truth label with the threshold tuned on the last fifth of the warm start."
    )
    table = "\n".join(lines)
    print(table)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "learners.md").write_text(table + "\n", encoding="utf-8")
    (RESULTS / "learners.json").write_text(json.dumps(rows, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
