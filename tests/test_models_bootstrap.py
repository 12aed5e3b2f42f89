"""Bootstrap end to end on a small size: gate pass, gate fail, and --allow-low-quality, with real snapshots."""

from __future__ import annotations

import pickle
import re
import sys
from pathlib import Path

import numpy as np
import pytest

from devintel.daemon.cli import main as cli_main
from devintel.models.bootstrap import TEST_VARIANTS, TRAIN_VARIANTS, BootstrapConfig, bootstrap, tune_threshold
from devintel.models.decision import DecisionParams
from devintel.models.gate import GateFailed, QualityThresholds
from devintel.models.snapshots import SnapshotStore

PLOTS = (
    "catch_rate_by_failure_mode.png",
    "false_alarms_by_home_type.png",
    "false_alarms_by_variant.png",
    "lead_times.png",
    "precision_recall.png",
    "reliability.png",
)


def small(thresholds: QualityThresholds, allow_low_quality: bool = False) -> BootstrapConfig:
    """The small bootstrap of these tests (20,000 events, 40 days, seed 3) under ``thresholds``."""
    return BootstrapConfig(
        samples=20_000,
        holdout_samples=8_000,
        days=40.0,
        seed=3,
        thresholds=thresholds,
        allow_low_quality=allow_low_quality,
    )


IMPOSSIBLE = QualityThresholds(1.0, 1.0, 1.0, 1.0, 0.0, 1.0)
TRIVIAL = QualityThresholds(0.0, 0.0, 0.0, 0.0, 1e9, 0.0)


def test_failed_gate_writes_nothing(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path)
    with pytest.raises(GateFailed) as failed:
        bootstrap(small(IMPOSSIBLE), store)
    assert "FAIL" in str(failed.value)
    assert store.versions() == []


def test_allow_low_quality_writes_and_records_the_failure(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path)
    result = bootstrap(small(IMPOSSIBLE, allow_low_quality=True), store)
    loaded = store.load()
    assert loaded.version == result.version
    gate = loaded.manifest["quality_gate"]
    assert gate["passed"] is False
    assert gate["allowed_low_quality"] is True
    assert loaded.manifest["training"]["seed"] == 3
    assert {"report/report.md", "report/report.json", "models/global.pkl"} <= set(loaded.files)
    model = pickle.loads(loaded.files["models/global.pkl"])
    assert 0.0 <= model.predict_proba_one({"battery_level": 10.0}).get(True, 0.0) <= 1.0
    for name, spec in loaded.manifest["models"].items():
        assert f"models/{name}.pkl" in loaded.files
        assert 0.0 <= spec["threshold"] <= 1.0


def test_passing_gate_is_recorded(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path)
    result = bootstrap(small(TRIVIAL), store)
    assert result.gate.passed
    manifest = store.load().manifest
    assert manifest["quality_gate"]["passed"] is True
    assert manifest["quality_gate"]["allowed_low_quality"] is False
    assert set(manifest["router"]) <= set(manifest["models"])


def test_cli_exits_non_zero_on_a_failed_gate(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["bootstrap", "--samples", "15000", "--holdout-samples", "6000", "--days", "30"]
    code = cli_main([*args, "--model-dir", str(tmp_path / "strict")])
    out = capsys.readouterr().out
    # At this toy size the gate may pass or fail (the README's full-size run is what is judged); either way
    # the exit code and the table must agree, and nothing is written on failure.
    if code == 1:
        assert "Quality gate FAILED" in out
        assert SnapshotStore(tmp_path / "strict").versions() == []
    else:
        assert code == 0
        assert "PASS" in out
    assert cli_main([*args, "--model-dir", str(tmp_path / "lenient"), "--allow-low-quality"]) == 0
    assert len(SnapshotStore(tmp_path / "lenient").versions()) == 1


def test_too_little_data_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no label resolved"):
        bootstrap(
            BootstrapConfig(samples=300, holdout_samples=300, days=3.0, failure_rate=0.0), SnapshotStore(tmp_path)
        )


def test_threshold_is_the_break_even_of_precision_and_recall() -> None:
    """Checked against a brute-force search over every threshold, on data with ties."""
    rng = np.random.default_rng(0)
    truth = rng.random(5_000) < 0.05
    probability = np.round(np.clip(rng.normal(0.3 + 0.4 * truth, 0.15), 0.0, 1.0), 2)
    best, chosen = -1.0, tune_threshold(truth, probability)
    for t in np.unique(probability):
        flagged = probability >= t
        precision = (flagged & truth).sum() / flagged.sum()
        recall = (flagged & truth).sum() / truth.sum()
        best = max(best, min(precision, recall))
    flagged = probability >= chosen
    chosen_score = min((flagged & truth).sum() / flagged.sum(), (flagged & truth).sum() / truth.sum())
    assert chosen_score == best
    assert tune_threshold(np.zeros(10, dtype=bool), np.linspace(0, 1, 10)) == 0.5


def test_report_has_household_measures_per_variant_the_decision_and_plots(tmp_path: Path) -> None:
    result = bootstrap(small(TRIVIAL), SnapshotStore(tmp_path))
    household = result.report["household"]
    assert isinstance(household, dict)
    overall = household["overall"]
    assert overall["failures"] >= overall["failures_with_precursor"] >= overall["caught"] >= 0
    assert set(household["by_variant"]) <= set(TEST_VARIANTS)
    assert set(result.report["household_validation"]["by_variant"]) <= set(TRAIN_VARIANTS)  # type: ignore[index]
    assert isinstance(result.report["error_drifts_in_test"], int)
    assert result.report["rolling_test"]
    loaded = SnapshotStore(tmp_path).load()
    assert DecisionParams.from_dict(loaded.manifest["decision"]) == result.decision
    assert loaded.manifest["training"]["test_variants"] == list(TEST_VARIANTS)
    markdown = loaded.files["report/report.md"].decode()
    for heading in ("What a household lives with", "Per world variant", "The alarm decision", "ADWIN"):
        assert heading in markdown
    pngs = {name for name in loaded.files if name.endswith(".png")}
    assert pngs == {f"report/{name}" for name in PLOTS}
    assert all(loaded.files[name].startswith(b"\x89PNG") for name in pngs)
    assert all(f"![{name}]({name})" in markdown for name in PLOTS)


def test_without_matplotlib_the_report_keeps_its_tables_and_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib now fails
    bootstrap(small(TRIVIAL), SnapshotStore(tmp_path))
    loaded = SnapshotStore(tmp_path).load()
    assert not [name for name in loaded.files if name.endswith(".png")]
    markdown = loaded.files["report/report.md"].decode()
    assert "No plots: matplotlib is not installed" in markdown
    assert "What a household lives with" in markdown


def test_cli_bootstrap_gates_with_the_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`devintel bootstrap` reads DEVINTEL_QUALITY__* (it used to gate at the defaults whatever they said)."""
    args = ["bootstrap", "--samples", "15000", "--holdout-samples", "6000", "--days", "30"]
    for name in ("ACCURACY", "PRECISION", "RECALL", "F1", "CATCH_RATE"):
        monkeypatch.setenv(f"DEVINTEL_QUALITY__MIN_{name}", "0")
    monkeypatch.setenv("DEVINTEL_QUALITY__MAX_FALSE_ALARMS_PER_100_DEVICE_DAYS", "1000")
    assert cli_main([*args, "--model-dir", str(tmp_path / "open")]) == 0
    monkeypatch.setenv("DEVINTEL_QUALITY__MIN_F1", "1")
    assert cli_main([*args, "--model-dir", str(tmp_path / "closed")]) == 1
    assert SnapshotStore(tmp_path / "closed").versions() == []


def test_long_work_says_how_far_it_got(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import devintel.models.bootstrap as bootstrap_module

    monkeypatch.setattr(bootstrap_module, "PROGRESS_S", 0.0)  # a line at every chance (every batch or chunk)
    lines: list[str] = []
    bootstrap(small(TRIVIAL), SnapshotStore(tmp_path), progress=lines.append)
    for what in ("warm start", "validation", "test"):
        said = [line for line in lines if re.fullmatch(rf"{what}: [\d,]+ of [\d,]+ events \(\d+%\)", line)]
        assert said, what
    assert sum(line.startswith("warm start: ") for line in lines) > 5  # a line per batch
