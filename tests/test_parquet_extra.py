"""pyarrow is the ``parquet`` extra (not a dependency: the Docker image leaves it out): without it, writing Parquet
fails at once with a clear message, and CSV and JSON Lines still work."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

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
