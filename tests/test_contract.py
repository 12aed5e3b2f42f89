"""The contract (``devintel.contract``) is the one definition of the canonical event: the generator's templates
hold to it (checked at import), live parsing reads it and not the synthetic templates, and its doctests run."""

from __future__ import annotations

import doctest
import importlib
import pkgutil
import subprocess
import sys
from dataclasses import replace

import pytest

import devintel
from devintel import contract
from devintel.generators import templates
from devintel.ingest.adapters.zigbee2mqtt import Zigbee2MqttAdapter


def test_the_templates_are_the_contracts_vocabularies() -> None:
    assert tuple(templates.HOME_TYPES) == contract.HOME_TYPES
    assert tuple(templates.DEVICE_TYPES) == contract.DEVICE_TYPES
    assert templates.METRIC_FIELDS is contract.METRIC_FIELDS
    assert set(contract.VALID_RANGES) == set(contract.METRIC_FIELDS)
    assert {t.power_source for t in templates.DEVICE_TYPES.values()} <= set(contract.POWER_SOURCES)
    assert contract.DEFAULT_HOME_TYPE in contract.HOME_TYPES


def test_a_template_that_breaks_the_contract_fails_at_import(monkeypatch: pytest.MonkeyPatch) -> None:
    lock = templates.DEVICE_TYPES["lock"]
    monkeypatch.setitem(templates.DEVICE_TYPES, "lock", replace(lock, fields=lock.fields | {"temperature"}))
    with pytest.raises(ValueError, match="temperature"):
        templates._check_templates()


@pytest.mark.parametrize(("device_type", "reported"), [("motion_sensor", 21.5), ("lock", None), (None, 21.5)])
def test_live_parsing_does_not_change_with_a_synthetic_template(
    monkeypatch: pytest.MonkeyPatch, device_type: str | None, reported: float | None
) -> None:
    """Which device types report a temperature is the contract's: changing the synthetic templates (a lock that
    reports one, a motion sensor that does not) changes nothing in how a bridge's message is read."""
    state = {"temperature": 21.5}
    assert Zigbee2MqttAdapter._temperature(device_type, state) == reported
    for name in ("lock", "motion_sensor"):
        template = templates.DEVICE_TYPES[name]
        monkeypatch.setitem(
            templates.DEVICE_TYPES, name, replace(template, fields=template.fields ^ {"temperature", "value"})
        )
    assert Zigbee2MqttAdapter._temperature(device_type, state) == reported


def test_the_live_path_imports_no_generator() -> None:
    """Adapters, validation, the handler and the settings know the contract, not the synthetic world."""
    code = (
        "import sys, devintel.ingest.handler, devintel.daemon.settings, devintel.ingest.adapters.homeassistant_api;"
        "print(sorted(m for m in sys.modules if m.startswith('devintel.generators')))"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert run.stdout.strip() == "[]"


def _modules_with_examples() -> list[str]:
    names = []
    for info in pkgutil.walk_packages(devintel.__path__, "devintel."):
        module = importlib.import_module(info.name)
        own = [value for value in vars(module).values() if getattr(value, "__module__", None) == info.name]
        if ">>>" in (module.__doc__ or "") or any(">>>" in (getattr(value, "__doc__", None) or "") for value in own):
            names.append(info.name)
    return names


@pytest.mark.parametrize("name", _modules_with_examples())
def test_doctests(name: str) -> None:
    failed, tried = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert tried > 0
    assert failed == 0
