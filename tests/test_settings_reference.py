"""The generated configuration reference: current, complete, and true to what ``load_settings`` accepts."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pydantic import BaseModel, SecretStr

from devintel.daemon.settings import Settings, load_settings
from devintel.daemon.settings_reference import REGENERATE, main, reference_markdown, setting_docs

DOC = Path(__file__).resolve().parents[1] / "docs" / "configuration.md"


def _leaves() -> list[tuple[str | None, str]]:
    """(section, field) of every leaf of Settings, walked here independently of the module under test."""
    leaves: list[tuple[str | None, str]] = []
    for name, field in Settings.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            leaves += [(name, leaf) for leaf in annotation.model_fields]
        else:
            leaves.append((None, name))
    return leaves


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    """No DEVINTEL_* variable, no credentials directory, and a working directory without a .env file."""
    for name in list(os.environ):
        if name.upper().startswith("DEVINTEL_") or name == "CREDENTIALS_DIRECTORY":
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    return monkeypatch


def test_committed_reference_is_current() -> None:
    assert DOC.is_file(), f"docs/configuration.md is missing; generate it with: {REGENERATE}"
    assert DOC.read_text(encoding="utf-8") == reference_markdown(), (
        f"docs/configuration.md is out of date with the Settings model; regenerate it with: {REGENERATE}"
    )


def test_main_prints_the_reference(capsys: pytest.CaptureFixture[str]) -> None:
    assert main() == 0
    assert capsys.readouterr().out == reference_markdown()


def test_every_setting_is_documented() -> None:
    text = reference_markdown()
    leaves = _leaves()
    documented = [(doc.section, doc.name) for doc in setting_docs()]
    assert sorted(documented, key=str) == sorted(leaves, key=str)
    for section, name in leaves:
        env = f"DEVINTEL_{name.upper()}" if section is None else f"DEVINTEL_{section.upper()}__{name.upper()}"
        toml = name if section is None else f"[{section}] {name}"
        assert f"| `{env}` | `{toml}` |" in text, f"{env} is not in the reference"
    for doc in setting_docs():
        assert doc.description, f"{doc.dotted} has no description"
        assert doc.description in text


def test_defaults_constraints_and_secrets() -> None:
    docs = {doc.dotted: doc for doc in setting_docs()}
    assert docs["mqtt.port"].default == "`1883`"
    assert docs["mqtt.port"].constraints == "≥ 1, ≤ 65535"
    assert docs["mqtt.host"].default == '`"localhost"`'
    assert docs["mqtt.tls"].default == "`false`"
    assert docs["mqtt.username"].default == "unset"
    assert docs["model_dir"].default == '`"models"`'
    assert docs["topic_prefix"].constraints == "at least 1 character"
    assert docs["live.shed_learning_at"].constraints == "> 0.0, ≤ 1.0"
    assert "`studio`" in docs["home_type"].constraints
    secrets = {
        f"{section}.{name}"
        for section, model in Settings.model_fields.items()
        if isinstance(model.annotation, type) and issubclass(model.annotation, BaseModel)
        for name, field in model.annotation.model_fields.items()
        if SecretStr in getattr(field.annotation, "__args__", (field.annotation,))
    }
    assert secrets == {"mqtt.password", "http.token", "snapshot.signing_key", "ha.api_token"}
    assert {name for name, doc in docs.items() if doc.secret} == secrets
    assert docs["mqtt.password"].credential_file == "mqtt__password"
    assert docs["ha.api_token"].credential_file == "ha__api_token"
    assert "**secret**" in reference_markdown()


def test_documented_env_names_take_effect(clean_env: pytest.MonkeyPatch) -> None:
    docs = {doc.dotted: doc for doc in setting_docs()}
    values = {
        "mqtt.host": ("broker.lan", "broker.lan"),
        "mqtt.port": ("1884", 1884),
        "mqtt.tls": ("true", True),
        "topic_prefix": ("house", "house"),
        "home_type": ("apartment", "apartment"),
        "horizon_days": ("5", 5.0),
        "quality.min_f1": ("0.7", 0.7),
        "live.queue_size": ("500", 500),
        "ha.prefix": ("ha", "ha"),
        "snapshot.keep": ("3", 3),
    }
    for dotted, (raw, _) in values.items():
        clean_env.setenv(docs[dotted].env, raw)
    clean_env.setenv(docs["http.token"].env, "t0ken")
    settings = load_settings()
    for dotted, (_, expected) in values.items():
        value: object = settings
        for part in dotted.split("."):
            value = getattr(value, part)
        assert value == expected, f"{docs[dotted].env}={values[dotted][0]} did not set {dotted}"
    assert settings.http.token is not None
    assert settings.http.token.get_secret_value() == "t0ken"


def test_every_documented_env_name_is_accepted(clean_env: pytest.MonkeyPatch) -> None:
    """Each documented name, set to its documented default, is accepted (none is an unknown setting)."""
    defaults = Settings().model_dump()
    for doc in setting_docs():
        value = defaults[doc.name] if doc.section is None else defaults[doc.section][doc.name]
        if value is None or isinstance(value, SecretStr):
            continue  # unset by default: nothing to spell
        clean_env.setenv(doc.env, str(value).lower() if isinstance(value, bool) else str(value))
    assert load_settings().model_dump() == defaults


def test_documented_credential_file_names_are_read(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    docs = {doc.dotted: doc for doc in setting_docs()}
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    (credentials / docs["mqtt.password"].credential_file).write_text("s3cret\n", encoding="utf-8")
    (credentials / docs["mqtt.username"].credential_file).write_text("devintel\n", encoding="utf-8")
    clean_env.setenv("CREDENTIALS_DIRECTORY", str(credentials))
    settings = load_settings()
    assert settings.mqtt.password is not None
    assert settings.mqtt.password.get_secret_value() == "s3cret"
    assert settings.mqtt.username == "devintel"


def test_misspelt_env_name_is_refused(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("DEVINTEL_MQTT_HOST", "x")  # one underscore: not a documented name
    with pytest.raises(ValueError, match="DEVINTEL_MQTT_HOST"):
        load_settings()
