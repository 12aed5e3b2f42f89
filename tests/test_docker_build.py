"""The Docker image's build, minus Docker: the Dockerfile's build and bake stages run on the host, then its
entrypoint (seeding an empty volume once, finishing an interrupted seeding, replacing a snapshot an upgrade cannot
load) and a seeded container's health and SIGTERM. Split from ``test_docker.py`` (lint and static checks); the
Dockerfile parser in ``dockerfile_parsing.py``.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from dockerfile_parsing import (
    ENTRYPOINT,
    REPO,
    TOY_BUILD_ARGS,
    Instruction,
    dockerignore_patterns,
    dockerignored,
    stage_args,
    stage_env,
    stage_runs,
)
from harness.broker import free_port

#: A venv built and a toy snapshot baked as the Dockerfile does (about 80 s in all): scripts/check-long runs these,
#: as their own CI step; scripts/test deselects them.
pytestmark = pytest.mark.image

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
