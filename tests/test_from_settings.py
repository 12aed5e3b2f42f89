"""The settings mapped once (``devintel.daemon.from_settings``): each object built from default settings is the
object's own default, a setting changed reaches its object, and the checks across fields fail fast."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from devintel.daemon import from_settings
from devintel.daemon.settings import MqttSettings, Settings
from devintel.ingest.handler import HandlerOptions
from devintel.ingest.validation import TimeWindow
from devintel.models.bootstrap import BootstrapConfig
from devintel.models.gate import QualityThresholds
from devintel.models.live import LiveEvidence


@pytest.fixture
def defaults(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Settings:
    """Settings at their defaults: no ``DEVINTEL_*`` variable, no ``.env``, no credentials directory."""
    for name in [name for name in os.environ if name.startswith("DEVINTEL_")]:
        monkeypatch.delenv(name)
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    monkeypatch.chdir(tmp_path)
    return Settings()


def _bootstrap(settings: Settings) -> BootstrapConfig:
    return from_settings.bootstrap_config(settings, allow_low_quality=False)


#: Each object the settings configure, with its builder and what the settings deliberately set otherwise.
TWINS: dict[str, tuple[Callable[[Settings], Any], Any, set[str]]] = {
    "quality": (from_settings.quality_thresholds, QualityThresholds(), set()),
    "bootstrap": (_bootstrap, BootstrapConfig(), {"workers"}),  # the service uses the second core
    "labels": (from_settings.live_evidence, LiveEvidence(), set()),
    "live window": (from_settings.time_window, TimeWindow(), set()),
    "handler options": (from_settings.handler_options, HandlerOptions(), {"origin"}),  # the installed version
}


@pytest.mark.parametrize("twin", TWINS)
def test_an_object_built_from_default_settings_is_the_objects_default(defaults: Settings, twin: str) -> None:
    build, default, differs = TWINS[twin]
    built = build(defaults)
    assert type(built) is type(default)
    for spec in fields(default):
        if spec.name not in differs:
            assert getattr(built, spec.name) == getattr(default, spec.name), f"{twin}: {spec.name}"


def test_a_setting_changed_reaches_its_object(defaults: Settings) -> None:
    changed = Settings(
        horizon_days=5.0,
        quality={"min_f1": 0.0, "max_false_alarms_per_100_device_days": 9.0},
        bootstrap={"samples": 1234, "seed": 3},
        labels={"gone_for_good_s": 60.0},
        live={"max_past_days": 2.0, "max_devices": 7, "retention_days": 1.0},
        ha={"discovery": False},
    )
    config = from_settings.bootstrap_config(changed, allow_low_quality=True, samples=None, days=9.0)
    assert (config.samples, config.seed, config.days, config.horizon_days) == (1234, 3, 9.0, 5.0)
    assert config.allow_low_quality is True
    assert config.thresholds == from_settings.quality_thresholds(changed)
    assert asdict(config.thresholds)["min_f1"] == 0.0
    assert config.thresholds.max_false_alarms_per_100_device_days == 9.0
    assert from_settings.live_evidence(changed).gone_for_good_s == 60.0
    assert from_settings.time_window(changed).max_past_s == 2 * 86_400.0
    options = from_settings.handler_options(changed)
    assert (options.max_devices, options.retention_s, options.discovery) == (7, 86_400.0, False)
    assert from_settings.snapshot_store(changed).keep == defaults.snapshot.keep


async def test_the_mqtt_client_reads_the_ca_file(tmp_path: Path) -> None:
    """The CA file is read when the client is made: a missing one is an error, never silently the system's CAs
    (the simulator's TLS connection to a real broker is in tests/test_security.py)."""
    from_settings.mqtt_client(MqttSettings(tls=True), "system-cas")
    with pytest.raises(FileNotFoundError):
        from_settings.mqtt_client(MqttSettings(tls=True, ca_file=tmp_path / "missing.crt"), "sim")


@pytest.mark.parametrize(
    ("section", "values", "message"),
    [
        ("mqtt", {"ca_file": "/etc/ssl/ca.crt"}, "mqtt.ca_file is set but mqtt.tls is off"),
        ("mqtt", {"password": "secret"}, "mqtt.password is set without mqtt.username"),
        (None, {"home_type": "castle"}, "home_type 'castle' is not one of"),
    ],
)
def test_checks_across_fields_fail_fast(
    defaults: Settings, section: str | None, values: dict[str, object], message: str
) -> None:
    arguments: dict[str, Any] = {section: values} if section is not None else values
    with pytest.raises((ValidationError, ValueError), match=message):
        Settings(**arguments)


def test_tls_with_a_ca_file_and_a_user_with_a_password_are_accepted(defaults: Settings, tmp_path: Path) -> None:
    settings = Settings(mqtt={"tls": True, "ca_file": tmp_path / "ca.crt", "username": "u", "password": "p"})
    assert settings.mqtt.ca_file == tmp_path / "ca.crt"
