"""Packaging: the wheel builds without a warning, requirements.lock pins every dependency, and pyarrow is the
``parquet`` extra (not a dependency: the Docker image leaves it out): without it, writing Parquet fails at once with
a clear message, and CSV and JSON Lines still work."""

from __future__ import annotations

import importlib.metadata
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def test_wheel_builds_without_a_warning(tmp_path: Path) -> None:
    """The build backend (setuptools at the lock's version, which scripts/setup installs) prints no warning: the
    license is an SPDX string, not the deprecated table. From a copy, so that no build/ lands in the checkout."""
    setuptools_version = importlib.metadata.version("setuptools")
    if int(setuptools_version.split(".")[0]) < 77:
        pytest.fail(f"setuptools {setuptools_version} in the venv; scripts/setup installs the lock's (>= 77)")
    source = tmp_path / "src-copy"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, source / name)
    shutil.copytree(REPO / "src", source / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--verbose", "-w", "dist", "."],
        cwd=source,
        # without PYTHONDONTWRITEBYTECODE, whose only effect here is distutils' "byte-compiling is disabled" notice
        env={k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    assert list((source / "dist").glob("devintel-*.whl"))
    ours = [line for line in output.splitlines() if re.search(r"warn", line, re.IGNORECASE) and "/opt/" not in line]
    assert ours == [], "\n".join(ours)


#: Runs ``devintel`` with pyarrow made unimportable (as in an install without the extra).
WITHOUT_PYARROW = "import sys; sys.modules['pyarrow'] = None; from devintel.daemon.cli import main; sys.exit(main())"


def _devintel_without_pyarrow(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DEVINTEL_")}
    return subprocess.run(
        [sys.executable, "-c", WITHOUT_PYARROW, *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_parquet_without_pyarrow_says_which_extra(tmp_path: Path) -> None:
    result = _devintel_without_pyarrow("generate", "--samples", "2000", "--out", "x.parquet", cwd=tmp_path)
    assert result.returncode == 2
    assert "writing Parquet needs pyarrow" in result.stderr
    assert "pip install 'devintel[parquet]'" in result.stderr
    assert list(tmp_path.iterdir()) == []  # failed before generating anything


def test_csv_without_pyarrow_works(tmp_path: Path) -> None:
    result = _devintel_without_pyarrow("generate", "--samples", "2000", "--out", "x.csv", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "x.csv").read_text(encoding="utf-8").count("\n") > 100


def test_lock_pins_every_dependency() -> None:
    """requirements.lock pins each runtime and extra dependency of pyproject.toml (scripts/lock refreshes it)."""
    import tomllib

    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    lines = [line for line in (REPO / "requirements.lock").read_text(encoding="utf-8").splitlines() if line.strip()]
    pins: dict[str, str] = {}
    for line in lines:
        if line.startswith("#"):
            continue
        assert re.fullmatch(r"[A-Za-z0-9_.-]+==[A-Za-z0-9_.+!-]+", line), f"not a pin: {line!r}"
        name, _, version = line.partition("==")
        pins[re.sub(r"[-_.]+", "-", name).lower()] = version
    wanted = list(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        wanted += extra
    for requirement in wanted:
        name = re.sub(r"[-_.]+", "-", re.split(r"[<>=!~\[; ]", requirement, maxsplit=1)[0]).lower()
        if name == "devintel":
            continue
        assert name in pins, f"{requirement} is not pinned in requirements.lock (run scripts/lock)"
    assert {"pip", "setuptools", "wheel"} <= set(pins)  # the build backend, pinned through PIP_CONSTRAINT
