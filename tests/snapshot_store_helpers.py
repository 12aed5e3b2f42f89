"""Helpers of the snapshot store's tests (``test_models_snapshots*.py``): model files, manifests, refusals."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from devintel.models.snapshots import (
    SnapshotStore,
)

LOGGER = "devintel.models.snapshots"
GLOBAL = "models/global.pkl"
APARTMENT = "home_type/apartment.pkl"


def model_files(tag: str) -> dict[str, bytes]:
    """A small set of model files whose bytes differ with ``tag``."""
    return {
        GLOBAL: f"global-{tag}".encode() * 100,
        APARTMENT: f"apartment-{tag}".encode() * 50,
        "router.json": json.dumps({"apartment": "home_type"}).encode(),
    }


def write(store: SnapshotStore, tag: str, **extra: object) -> str:
    return store.write(model_files(tag), {"tag": tag, "threshold": 0.42, **extra})


def manifest_path(root: Path, version: str) -> Path:
    return root / version / "manifest.json"


def read_manifest(root: Path, version: str) -> dict[str, object]:
    loaded: dict[str, object] = json.loads(manifest_path(root, version).read_text())
    return loaded


def rewrite_manifest(root: Path, version: str, manifest: dict[str, object]) -> None:
    manifest_path(root, version).write_text(json.dumps(manifest, indent=2))


def flip_byte(path: Path, offset: int = 10) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


def tmp_entries(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir() if p.name.startswith(".tmp-"))


def refusal_messages(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == LOGGER and r.levelno >= logging.WARNING]
