"""devintel-daemon's start-up, as a real subprocess: settings, snapshot loading and the bootstrap flags."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from devintel.daemon.settings import load_settings
from devintel.models.snapshots import SnapshotStore

#: A bootstrap small enough for a test (the gate is judged in the README's full-size run, not here).
SMALL_BOOTSTRAP = {
    "DEVINTEL_BOOTSTRAP__SAMPLES": "20000",
    "DEVINTEL_BOOTSTRAP__HOLDOUT_SAMPLES": "8000",
    "DEVINTEL_BOOTSTRAP__DAYS": "40",
    "DEVINTEL_BOOTSTRAP__SEED": "3",
}
NO_GATE = {
    **{f"DEVINTEL_QUALITY__MIN_{m}": "0" for m in ("ACCURACY", "PRECISION", "RECALL", "F1", "CATCH_RATE")},
    "DEVINTEL_QUALITY__MAX_FALSE_ALARMS_PER_100_DEVICE_DAYS": "1000",
}
IMPOSSIBLE_GATE = {f"DEVINTEL_QUALITY__MIN_{m}": "1" for m in ("ACCURACY", "PRECISION", "RECALL", "F1")}


def _daemon(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("DEVINTEL_") and k != "CREDENTIALS_DIRECTORY"}
    clean.update({"DEVINTEL_MODEL_DIR": str(tmp_path / "models"), **(env or {})})
    return subprocess.run(
        [sys.executable, "-m", "devintel.daemon.service", *args],
        env=clean,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_no_snapshot_and_no_bootstrap_exits_non_zero_and_says_why(tmp_path: Path) -> None:
    run = _daemon(tmp_path, "--exit-after-bootstrap")
    assert run.returncode == 2
    assert "no valid snapshot" in run.stderr
    assert "--bootstrap-synthetic" in run.stderr


def test_bootstrap_then_load_the_snapshot(tmp_path: Path) -> None:
    first = _daemon(tmp_path, "--bootstrap-synthetic", "--exit-after-bootstrap", env={**SMALL_BOOTSTRAP, **NO_GATE})
    assert first.returncode == 0, first.stderr
    assert "PASS" in first.stdout
    store = SnapshotStore(tmp_path / "models")
    (version,) = store.versions()
    assert store.load().manifest["training"]["samples"] == 20_000
    # A second start finds the snapshot and does not train again.
    second = _daemon(tmp_path, "--bootstrap-synthetic", "--exit-after-bootstrap", env=SMALL_BOOTSTRAP)
    assert second.returncode == 0, second.stderr
    assert f"snapshot {version}" in second.stderr
    assert "bootstrapping" not in second.stderr
    assert store.versions() == [version]


def test_failed_gate_exits_1_with_the_table_and_writes_nothing(tmp_path: Path) -> None:
    env = {**SMALL_BOOTSTRAP, **IMPOSSIBLE_GATE}
    run = _daemon(tmp_path, "--bootstrap-synthetic", "--exit-after-bootstrap", env=env)
    assert run.returncode == 1
    assert "FAIL" in run.stdout
    assert not (tmp_path / "models").exists() or SnapshotStore(tmp_path / "models").versions() == []
    lenient = _daemon(tmp_path, "--bootstrap-synthetic", "--exit-after-bootstrap", "--allow-low-quality", env=env)
    assert lenient.returncode == 0, lenient.stderr
    assert SnapshotStore(tmp_path / "models").load().manifest["quality_gate"]["allowed_low_quality"] is True


def test_invalid_settings_exit_2(tmp_path: Path) -> None:
    assert _daemon(tmp_path, "--validate-config", env={"DEVINTEL_MQTT__PORT": "0"}).returncode == 2
    unknown = _daemon(tmp_path, "--validate-config", env={"DEVINTEL_MQTT_HOST": "x"})
    assert unknown.returncode == 2
    assert "DEVINTEL_MQTT_HOST" in unknown.stderr
    valid = _daemon(tmp_path, "--validate-config", env={"DEVINTEL_MQTT__PORT": "1884"})
    assert valid.returncode == 0
    assert '"port": 1884' in valid.stdout


def test_settings_sources(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("DEVINTEL_"):
            monkeypatch.delenv(name)
    config = tmp_path / "devintel.toml"
    config.write_text(
        'home_type = "apartment"\n[mqtt]\nhost = "broker.lan"\nport = 1884\nusername = "devintel"\n', encoding="utf-8"
    )
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    (credentials / "mqtt__password").write_text("s3cret\n", encoding="utf-8")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(credentials))
    monkeypatch.setenv("DEVINTEL_MQTT__PORT", "1885")  # the environment beats the file
    settings = load_settings(config)
    assert settings.home_type == "apartment"
    assert settings.mqtt.host == "broker.lan"
    assert settings.mqtt.port == 1885
    assert settings.mqtt.password is not None
    assert settings.mqtt.password.get_secret_value() == "s3cret"
    assert "s3cret" not in settings.model_dump_json()
    config.write_text('[mqtt]\nhots = "typo"\n', encoding="utf-8")
    with pytest.raises(ValueError, match="hots"):
        load_settings(config)
    config.write_text('home_type = "castle"\n[mqtt]\nusername = "devintel"\n', encoding="utf-8")
    with pytest.raises(ValueError, match="castle"):
        load_settings(config)
