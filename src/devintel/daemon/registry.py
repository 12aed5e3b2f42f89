"""The known-device registry on disk: every device devintel knows outlives a restart, so that Home Assistant's
birth message re-announces all of them, not only those heard since the restart.

One JSON file, ``<model_dir>/devices.json`` (what :meth:`devintel.ingest.handler.Handler.registry` returns),
written atomically: a temporary file in the same directory, fsynced, renamed over the old one, and the directory
fsynced. A file that does not read is logged and ignored (devintel then knows the devices it hears again).
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
from pathlib import Path
from typing import Final

import orjson

logger = logging.getLogger(__name__)

#: The registry's file name inside the model directory (not a snapshot version: the snapshot store ignores it).
REGISTRY_FILE: Final = "devices.json"


def registry_path(model_dir: Path) -> Path:
    """Where the registry of a model directory lives."""
    return model_dir / REGISTRY_FILE


def load_registry(path: Path) -> object | None:
    """The saved registry, or None when there is none or it does not read (logged)."""
    try:
        registry: object = orjson.loads(path.read_bytes())
    except FileNotFoundError:
        return None
    except (OSError, orjson.JSONDecodeError) as error:
        logger.warning("device registry %s not read, starting without it: %s", path, error)
        return None
    return registry


def save_registry(path: Path, registry: object) -> None:
    """Write the registry atomically (temporary file, fsync, rename, fsync of the directory); raises OSError."""
    data = orjson.dumps(registry)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        with contextlib.suppress(OSError):  # some file systems cannot fsync a directory
            os.fsync(directory)
    finally:
        os.close(directory)
