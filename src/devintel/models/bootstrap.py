"""Bootstrap: generate, warm-start, validate, gate, snapshot.

1. **Generate** a training stream (``seed``) and two streams of other homes: validation
   (``seed + 1000``) and held-out test (``seed + 2000``). A different seed draws different homes.
2. **Warm-start** a global model on every training event through the online path (features, delayed
   labels with the synthetic failure times as evidence, learning on resolution), and one model per home
   type on the same learned examples of that type's devices (features are computed once per event).
3. **Calibrate and route** on the validation homes: each model's decision threshold is tuned there
   (:func:`tune_threshold`: where the lower of precision and recall is highest); a home type keeps its
   own model only where it beats the global model's F1 on that type, otherwise the global model serves
   it. Validation homes, not the tail of the warm start, calibrate the thresholds because they are what a
   deployment is: homes the models never saw.
4. **Gate** the routed predictions on the held-out test homes against the quality thresholds. A failed
   gate raises :class:`~devintel.models.gate.GateFailed` (nothing is written) unless
   ``allow_low_quality``, which writes the snapshot and records the failure in its manifest.
5. **Snapshot** the pickled models with a manifest (descriptor, thresholds, router, metrics, gate) and
   a report (Markdown and JSON) through the atomic :class:`~devintel.models.snapshots.SnapshotStore`.
"""

from __future__ import annotations

import json
import logging
import pickle
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Final

import numpy as np
import pandas as pd

from devintel.generators import HOME_TYPES, generate
from devintel.models.features import FeatureExtractor, Features
from devintel.models.gate import GateFailed, GateResult, QualityThresholds, evaluate_gate
from devintel.models.learners import default_model
from devintel.models.live import GLOBAL, MODELS_DIR
from devintel.models.metrics import BinaryReport, binary_report, lead_times, recall_by_group
from devintel.models.online import Classifier, OnlineLearner, events, failure_times, warm_start
from devintel.models.snapshots import SnapshotStore

logger = logging.getLogger(__name__)

VALIDATION_SEED_OFFSET: Final = 1000
TEST_SEED_OFFSET: Final = 2000


@dataclass(frozen=True, slots=True)
class BootstrapConfig:
    """What a bootstrap trains on and how it is judged."""

    samples: int = 1_000_000
    days: float = 180.0
    seed: int = 0
    holdout_samples: int = 300_000
    horizon_days: float = 7.0
    failure_rate: float = 0.45
    negative_rate: float = 0.2
    thresholds: QualityThresholds = field(default_factory=QualityThresholds)
    allow_low_quality: bool = False


@dataclass(frozen=True, slots=True)
class BootstrapResult:
    """What a bootstrap produced."""

    version: str | None
    gate: GateResult
    test: BinaryReport
    router: dict[str, str]
    report: dict[str, object]


def _synthetic(config: BootstrapConfig, samples: int, seed: int) -> pd.DataFrame:
    """A synthetic stream shaped by the bootstrap's settings (a different seed draws different homes)."""
    return generate(
        samples=samples,
        days=config.days,
        seed=seed,
        horizon_days=config.horizon_days,
        failure_rate=config.failure_rate,
    )


def tune_threshold(truth: np.ndarray, probability: np.ndarray) -> float:
    """The decision threshold at which the lower of precision and recall on (truth, probability) is highest
    (their break-even point): the quality gate asks for both, and the plain best F1 buys precision with
    recall. 0.5 when there is no positive example."""
    y = np.asarray(truth, dtype=bool)
    p = np.asarray(probability, dtype=np.float64)
    if not y.any():
        return 0.5
    order = np.argsort(-p, kind="stable")
    ranked = p[order]
    # Flag the top k for every k that ends a run of tied probabilities (a threshold cannot split a tie).
    ends = np.flatnonzero(np.append(ranked[1:] != ranked[:-1], True))
    true_positive = np.cumsum(y[order])[ends]
    flagged = ends + 1
    precision = true_positive / flagged
    recall = true_positive / y.sum()
    score = np.minimum(precision, recall)
    return float(ranked[ends[int(np.argmax(score))]])


def _score(models: dict[str, Classifier], frame: pd.DataFrame) -> dict[str, np.ndarray]:
    """The global model's probability for every event of ``frame``, and each home-type model's for the events
    of its home type (NaN elsewhere); features come from the frame's own history, computed once per event."""
    extractor = FeatureExtractor()
    out = {name: np.full(len(frame), np.nan) for name in models}
    home_types = frame["home_type"].astype(str).tolist()
    for i, event in enumerate(events(frame)):
        features = extractor.update(event)
        out[GLOBAL][i] = models[GLOBAL].predict_proba_one(features).get(True, 0.0)
        own = models.get(home_types[i])
        if own is not None:
            out[home_types[i]][i] = own.predict_proba_one(features).get(True, 0.0)
    return out


def _routed(
    frame: pd.DataFrame, scores: dict[str, np.ndarray], thresholds: dict[str, float], router: dict[str, str]
) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities and decisions of the routed model for every event of ``frame``."""
    home_types = frame["home_type"].astype(str).to_numpy()
    probability = scores[GLOBAL].copy()
    decision = probability >= thresholds[GLOBAL]
    for home_type, model in router.items():
        rows = home_types == home_type
        probability[rows] = scores[model][rows]
        decision[rows] = scores[model][rows] >= thresholds[model]
    return probability, decision


def bootstrap(
    config: BootstrapConfig,
    store: SnapshotStore,
    model_factory: Callable[[], Classifier] = default_model,
    progress: Callable[[str], None] | None = None,
) -> BootstrapResult:
    """Run the whole bootstrap (see the module docstring); return what it produced."""
    say = progress or (lambda message: logger.info("%s", message))
    horizon_s = config.horizon_days * 86_400.0
    say(f"generating {config.samples:,} training events (seed {config.seed})")
    train = _synthetic(config, config.samples, config.seed)
    models: dict[str, Classifier] = {name: model_factory() for name in [GLOBAL, *HOME_TYPES]}
    learned: dict[str, int] = dict.fromkeys(models, 0)
    home_type_of = dict(zip(train["device_id"].astype(str), train["home_type"].astype(str), strict=True))

    def teach_home_type_model(device_id: str, features: Features, label: bool) -> None:
        home_type = home_type_of[device_id]
        models[home_type].learn_one(features, label)
        learned[home_type] += 1

    learner = OnlineLearner(
        model=models[GLOBAL],
        horizon_s=horizon_s,
        negative_rate=config.negative_rate,
        seed=config.seed,
        on_learn=teach_home_type_model,
    )
    say(f"warm-starting the global model and {len(HOME_TYPES)} home-type models")
    warm_start(learner, events(train), failure_times(train))
    learned[GLOBAL] = learner.learned
    if learner.learned == 0:
        raise ValueError(
            f"no label resolved in {config.samples:,} training events over {config.days:g} days: "
            f"use more samples or days (a label resolves {config.horizon_days:g} days after its event)"
        )
    models = {name: model for name, model in models.items() if learned[name] > 0}

    say(f"validating on {config.holdout_samples:,} events of other homes")
    validation = _synthetic(config, config.holdout_samples, config.seed + VALIDATION_SEED_OFFSET)
    val_scores = _score(models, validation)
    val_truth = validation["fails_within_horizon"].to_numpy()
    val_types = validation["home_type"].astype(str).to_numpy()
    thresholds = {GLOBAL: tune_threshold(val_truth, val_scores[GLOBAL])}
    router: dict[str, str] = {}
    comparison: dict[str, dict[str, float]] = {}
    for home_type in HOME_TYPES:
        rows = val_types == home_type
        if home_type not in models or not val_truth[rows].any():
            continue
        thresholds[home_type] = tune_threshold(val_truth[rows], val_scores[home_type][rows])
        own = binary_report(val_truth[rows], val_scores[home_type][rows], thresholds[home_type]).f1
        shared = binary_report(val_truth[rows], val_scores[GLOBAL][rows], thresholds[GLOBAL]).f1
        comparison[home_type] = {"home_type_f1": own, "global_f1": shared}
        if own > shared:
            router[home_type] = home_type
    models = {name: model for name, model in models.items() if name in thresholds}

    say(f"testing on {config.holdout_samples:,} events of other homes")
    test = _synthetic(config, config.holdout_samples, config.seed + TEST_SEED_OFFSET)
    test_scores = _score(models, test)
    probability, decision = _routed(test, test_scores, thresholds, router)
    truth = test["fails_within_horizon"].to_numpy()
    # binary_report thresholds one probability array; routed decisions mix thresholds, so score them
    # as 0/1 "probabilities" at 0.5, and keep the probabilities for the ranking metrics.
    report = binary_report(truth, decision.astype(np.float64), 0.5)
    ranking = binary_report(truth, probability, 0.5)
    report = BinaryReport(**{**asdict(report), "pr_auc": ranking.pr_auc, "brier": ranking.brier})
    gate = evaluate_gate(report, config.thresholds)
    test_devices = test["device_id"].astype(str)
    failure_at = test_devices.map(failure_times(test)).to_numpy(dtype=np.float64)  # NaN: never fails
    lead = lead_times(test_devices.to_numpy(), test["ts"].to_numpy(), decision, 0.5, failure_at)
    details: dict[str, object] = {
        "test": report.as_dict(),
        "recall_by_failure_mode": recall_by_group(truth, decision, test["failure_mode"].astype(str).to_numpy()),
        "recall_by_home_type": recall_by_group(truth, decision, test["home_type"].astype(str).to_numpy()),
        "home_type_vs_global": comparison,
        "lead_time": asdict(lead),
        "rolling_warm_start": learner.rolling.history,
        "error_drifts_in_warm_start": len(learner.drifts),
        "gate": gate.as_dict(),
    }
    if not gate.passed and not config.allow_low_quality:
        raise GateFailed(gate)
    if not gate.passed:
        logger.warning("quality gate failed; writing the snapshot anyway (--allow-low-quality):\n%s", gate.table())

    manifest: dict[str, object] = {
        "training": {
            "generator": "devintel.generators",
            "seed": config.seed,
            "samples": config.samples,
            "days": config.days,
            "homes": int(train["home_id"].nunique()),
            "validation_seed": config.seed + VALIDATION_SEED_OFFSET,
            "test_seed": config.seed + TEST_SEED_OFFSET,
            "holdout_samples": config.holdout_samples,
            "threshold_calibration": "validation homes",
        },
        "settings": {
            "horizon_days": config.horizon_days,
            "failure_rate": config.failure_rate,
            "negative_rate": config.negative_rate,
        },
        "models": {name: {"threshold": thresholds[name], "learned": learned[name]} for name in models},
        "router": router,
        "quality_gate": {**gate.as_dict(), "allowed_low_quality": config.allow_low_quality and not gate.passed},
        "metrics": report.as_dict(),
        "python": sys.version.split()[0],
    }
    files = {f"{MODELS_DIR}/{name}.pkl": pickle.dumps(model) for name, model in models.items()}
    files["report/report.json"] = json.dumps(details, indent=2, default=float).encode()
    files["report/report.md"] = _markdown(config, report, gate, router, details).encode()
    version = store.write(files, manifest)
    say(f"snapshot {version} written")
    return BootstrapResult(version, gate, report, router, details)


def _lead_line(lead: object) -> str:
    values = dict(lead)  # type: ignore[call-overload]
    median = values["median_h"]
    warned = f"{values['warned']} of {values['failures']} failing devices warned (3 flagged events in a row)"
    return f"median {median:.0f} h before the failure; {warned}" if median is not None else warned


def _markdown(
    config: BootstrapConfig, report: BinaryReport, gate: GateResult, router: dict[str, str], details: dict[str, object]
) -> str:
    lines = [
        "# devintel production-readiness report",
        "",
        f"Trained on {config.samples:,} synthetic events (seed {config.seed}, {config.days:g} days); "
        f"validated and tested on {config.holdout_samples:,} events each of other homes "
        f"(seeds {config.seed + VALIDATION_SEED_OFFSET} and {config.seed + TEST_SEED_OFFSET}).",
        "",
        "## Quality gate (held-out test homes)",
        "",
        "```",
        gate.table(),
        "```",
        "",
        f"MCC {report.mcc:.3f}, PR-AUC {report.pr_auc:.3f}, Brier {report.brier:.4f}.",
        "",
        f"Lead time: {_lead_line(details['lead_time'])}",
        "",
        f"Drift (ADWIN on the warm start's decision errors): {details['error_drifts_in_warm_start']} detection(s).",
        "",
        "## Routing",
        "",
        "Home types served by their own model: " + (", ".join(sorted(router)) or "none (the global model serves all)"),
        "",
        "## Recall per failure mode",
        "",
        *(f"- {mode}: {value:.3f}" for mode, value in dict(details["recall_by_failure_mode"]).items()),  # type: ignore[call-overload]
    ]
    return "\n".join(lines) + "\n"
