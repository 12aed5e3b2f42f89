"""The examples in the package's docstrings run (``>>>``): every module of ``devintel`` whose source holds one is
imported and its doctests run, one test per module, so a stale example fails the suite."""

from __future__ import annotations

import doctest
import importlib
from pathlib import Path

import pytest

import devintel

PACKAGE = Path(devintel.__file__).parent
#: Modules (dotted names) whose source holds a doctest example.
WITH_EXAMPLES = sorted(
    ".".join(("devintel", *path.relative_to(PACKAGE).with_suffix("").parts)).removesuffix(".__init__")
    for path in PACKAGE.rglob("*.py")
    if ">>> " in path.read_text(encoding="utf-8")
)


def test_examples_are_found() -> None:
    assert {"devintel.contract", "devintel.generators"} <= set(WITH_EXAMPLES)


@pytest.mark.parametrize("name", WITH_EXAMPLES)
def test_docstring_examples_run(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS, verbose=False)
    assert result.attempted > 0, f"{name}: no example ran"
    assert result.failed == 0, f"{name}: {result.failed} of {result.attempted} examples failed"
