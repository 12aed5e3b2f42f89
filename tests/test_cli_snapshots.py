"""``devintel models`` and ``devintel report`` on a real small snapshot, and on a corrupted one."""

from __future__ import annotations

import os
from pathlib import Path

import orjson
import pytest

from devintel.daemon.cli import main
from devintel.models.snapshots import SnapshotStore


@pytest.fixture
def model_dir_env(small_snapshot: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in list(os.environ):
        if name.startswith("DEVINTEL_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("DEVINTEL_MODEL_DIR", str(small_snapshot))
    return small_snapshot


def test_models_lists_the_live_snapshot_and_refuses_a_corrupted_one(
    model_dir_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = SnapshotStore(model_dir_env)
    (version,) = store.versions()
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"* {version}  F1 ")
    assert "global 0." in out
    (model_dir_env / version / "models" / "global.pkl").write_bytes(b"not the model")
    assert main(["models"]) == 0
    assert "REFUSED" in capsys.readouterr().out


def test_report_prints_the_snapshot_report(model_dir_env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report"]) == 0
    assert capsys.readouterr().out.startswith("# devintel production-readiness report")
    assert main(["report", "--json"]) == 0
    assert "gate" in orjson.loads(capsys.readouterr().out)
    assert main(["report", "--version", "20000101T000000Z-0001"]) == 2
