"""Snapshot store: versioned, verified, atomically written model directories.

Layout of the model directory (``root``)::

    root/
      20261122T021500Z-0001/    one version: the model files (subdirectories allowed) and manifest.json
      20261122T021500Z-0002/
      current                   a small text file naming the live version
      .lock                     taken by writers (one writer at a time, across processes)
      .tmp-...                  a write, or a deletion, in progress (or left by a crash; removed by the next write)
      refused/<when>/           snapshots this install cannot load, set aside (never deleted) with a REASON file

A version is the UTC time it was written plus a counter (``YYYYMMDDTHHMMSSZ-NNNN``), unique and increasing
even within one second or when the clock steps back, so versions sort chronologically.

A write is atomic: every file goes into a temporary directory inside ``root`` and is fsynced, then
``manifest.json`` (the caller's fields plus version, created, River and Python versions, and the sha256 and
size of every file) is written and fsynced, the directory is renamed to its version and ``root`` fsynced, and
only then is ``current`` replaced (temporary file, fsync, ``os.replace``, fsync of ``root``). A process killed
at any moment leaves either the previous snapshot or the new one complete: never a half-written one under a
version name. Old versions are pruned by renaming them to ``.tmp-...`` first, so a deletion cut short never
leaves a partial version either.

Threat model. Model files are pickles, and unpickling runs code: whoever controls a pickle's bytes controls
the process that loads it. :meth:`SnapshotStore.load` therefore returns the bytes of each file only after
checking them against the manifest (size and sha256 of the very bytes returned, no file missing, no unlisted
file, a River version of the running one's minor release), so callers must unpickle only what ``load``
returned and never read a model file from disk themselves. Hashes alone detect corruption, a partial copy or a
swapped file, but not an attacker who can write the model directory: they can rewrite the manifest too. When a
signing key is configured, the manifest carries an HMAC-SHA256 signature over its canonical JSON and a
snapshot with a missing or wrong signature is refused; this protects against someone who can write the model
directory but cannot read the key (keep the key outside the model directory, e.g. in a systemd credential). It
does not protect against someone who can read the key or write the code, and it does not prevent rollback to
an older snapshot signed with the same key.

Why one module of over 400 lines: atomic writes, verified loads, pruning, signing and setting aside share one
on-disk layout and one lock, and the threat model is argued once, here.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import hmac
import json
import logging
import os
import platform
import re
import secrets
import shutil
import stat
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

from river.__version__ import __version__ as _river_version

__all__ = [
    "CURRENT_FILE",
    "MANIFEST_FILE",
    "REFUSED_DIR",
    "LoadedSnapshot",
    "NoValidSnapshot",
    "SnapshotStore",
    "canonical_json",
    "is_version",
    "river_compatible",
]

logger = logging.getLogger(__name__)

#: Name of the manifest inside each version directory (reserved: not allowed as a model file name).
MANIFEST_FILE: Final = "manifest.json"
#: Name of the pointer file in the model directory.
CURRENT_FILE: Final = "current"
#: Prefix of temporary entries (writes and deletions in progress) in the model directory.
TMP_PREFIX: Final = ".tmp-"
#: Writers hold an exclusive lock on this file while they write and prune.
LOCK_FILE: Final = ".lock"
#: Fields the store writes into every manifest; they override the caller's fields of the same name.
STORE_FIELDS: Final[frozenset[str]] = frozenset(
    {"version", "created", "river_version", "python_version", "files", "signature"}
)

_VERSION_RE: Final = re.compile(r"^(\d{8}T\d{6}Z)-(\d{4,9})$")
_TS_FORMAT: Final = "%Y%m%dT%H%M%SZ"
_MAX_COUNTER: Final = 9999
_SHA256_RE: Final = re.compile(r"^[0-9a-f]{64}$")
_CHUNK: Final = 1 << 20
_RIVER_VERSION_RE: Final = re.compile(r"^(\d+)\.(\d+)(?:\.\d+)?(?:[.+-]?[0-9A-Za-z.+-]*)?$")
#: Snapshots that can no longer be loaded are moved under this subdirectory (see :meth:`SnapshotStore.set_aside`).
REFUSED_DIR: Final = "refused"
_MAX_CURRENT_BYTES: Final = 256


def _running_river_version() -> str:
    return str(_river_version)


def _river_minor(version: object) -> tuple[int, int] | None:
    """``(major, minor)`` of a River version string (``"0.26.1"`` -> ``(0, 26)``), ``None`` if it is not one."""
    if not isinstance(version, str):
        return None
    match = _RIVER_VERSION_RE.match(version)
    return (int(match.group(1)), int(match.group(2))) if match is not None else None


def _minor_label(version: str) -> str:
    minor = _river_minor(version)
    return f"{minor[0]}.{minor[1]}.x" if minor is not None else version


def river_compatible(written_by: object, running: str) -> bool:
    """Whether a snapshot written under River ``written_by`` may be unpickled under River ``running``.

    Compatible means the same major and minor release (``0.26.0`` and ``0.26.1``, not ``0.25.x`` or ``0.27.x``).
    A pickle holds each object's class by its import path and its attributes by name, so it loads wherever those
    are unchanged. River (0.x) moves, renames and re-parameterises estimators in minor releases (with deprecations
    announced in its changelog), while its patch releases are bug fixes that keep classes and attributes; refusing
    patch releases as well made every ``pip install -U`` of a bug fix strand all the snapshots of a box. A version
    that cannot be parsed is compatible only when it is identical. A patch release that did change a pickled
    class would fail at unpickling, which the daemon treats as a refusal too (``devintel.daemon.service``).
    """
    if written_by == running:
        return True
    written, current = _river_minor(written_by), _river_minor(running)
    return written is not None and written == current


def _utcnow() -> datetime:
    """The wall clock in UTC (a function so that tests can move it)."""
    return datetime.now(UTC)


def canonical_json(obj: object) -> bytes:
    """The canonical JSON encoding of ``obj``, the bytes a manifest signature covers.

    Keys sorted, no whitespace, UTF-8, non-ASCII kept as is; NaN and infinities are rejected
    (``ValueError``), as JSON has no spelling for them.
    """
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode("utf-8")


def is_version(name: str) -> bool:
    """Whether ``name`` looks like a snapshot version (``YYYYMMDDTHHMMSSZ-NNNN``)."""
    match = _VERSION_RE.match(name)
    if match is None:
        return False
    try:
        datetime.strptime(match.group(1), _TS_FORMAT)
    except ValueError:
        return False
    return True


def _version_key(version: str) -> tuple[str, int]:
    match = _VERSION_RE.match(version)
    assert match is not None  # callers filter with is_version
    return match.group(1), int(match.group(2))


def _sign(key: bytes, manifest: Mapping[str, object]) -> str:
    unsigned = {k: v for k, v in manifest.items() if k != "signature"}
    return hmac.new(key, canonical_json(unsigned), hashlib.sha256).hexdigest()


def _check_file_name(name: object) -> str:
    """``name`` if it is an acceptable model file name, else ``ValueError``."""
    if not isinstance(name, str):
        raise ValueError(f"file name {name!r} is not a string")
    if not name:
        raise ValueError("empty file name")
    if "\x00" in name or "\\" in name:
        raise ValueError(f"file name {name!r} holds a NUL or a backslash")
    if name.startswith("/"):
        raise ValueError(f"file name {name!r} is absolute; use a path relative to the snapshot")
    parts = name.split("/")
    if any(part in ("", ".", "..") for part in parts):
        raise ValueError(f"file name {name!r} has an empty, '.' or '..' component")
    if name == MANIFEST_FILE:
        raise ValueError(f"{MANIFEST_FILE!r} is reserved for the snapshot's manifest")
    return name


class NoValidSnapshot(Exception):  # noqa: N818 (name fixed by the design contract)
    """No snapshot in the model directory passed verification.

    ``refusals`` lists ``(version, reason)`` for each version tried, in the order tried.
    """

    def __init__(self, message: str, refusals: list[tuple[str, str]] | None = None) -> None:
        super().__init__(message)
        self.refusals: list[tuple[str, str]] = list(refusals or [])


class _RefusedError(Exception):
    """A version failed verification; the message is the reason."""


@dataclass(frozen=True)
class LoadedSnapshot:
    """A verified snapshot: its version, directory, parsed manifest and the verified bytes of every file.

    ``files`` maps each relative file name (``"home_type/apartment.pkl"``) to the bytes whose sha256 was
    checked against the manifest. Unpickle these bytes, never the files on disk.
    """

    version: str
    path: Path
    manifest: dict[str, Any]
    files: dict[str, bytes]


def _fsync_dir(path: Path) -> None:
    """fsync a directory so that entries created, renamed or removed in it are durable."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        if sys.platform == "win32":  # directories cannot be opened there; nothing to do
            return
        raise
    try:
        os.fsync(fd)
    except OSError as exc:  # some file systems do not support fsync on directories
        if exc.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EBADF):
            raise
    finally:
        os.close(fd)


def _write_file(path: Path, data: bytes | bytearray | memoryview) -> None:
    """Create ``path`` (which must not exist), write ``data`` and fsync it."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o666)
    try:
        view = memoryview(data).cast("B")
        while view:
            written = os.write(fd, view)
            view = view[written:]
        os.fsync(fd)
    finally:
        os.close(fd)


def _remove(path: Path) -> None:
    """Remove a file, a symlink or a directory tree."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


@contextlib.contextmanager
def _exclusive_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive advisory lock on ``path`` (released by the kernel if the process dies)."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o666)
    try:
        if sys.platform != "win32":
            import fcntl

            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


class SnapshotStore:
    """Versioned model snapshots in ``root``: atomic writes, verified loads, the newest ``keep`` kept.

    ``signing_key``, when given, signs every manifest written (HMAC-SHA256) and makes :meth:`load` refuse
    any snapshot whose signature is missing or wrong. One store object is cheap; it holds no open files.
    """

    def __init__(self, root: Path, keep: int = 5, signing_key: bytes | None = None) -> None:
        if keep < 1:
            raise ValueError(f"keep must be at least 1, got {keep}")
        if signing_key is not None and not signing_key:
            raise ValueError("signing_key is empty; pass None to disable signing")
        self.root = Path(root)
        self.keep = keep
        self._key = signing_key

    @property
    def signing_key(self) -> bytes | None:
        """The key manifests are signed and checked with, or ``None`` (a store for another process takes it)."""
        return self._key

    def __repr__(self) -> str:
        signed = "signed" if self._key is not None else "unsigned"
        return f"SnapshotStore({str(self.root)!r}, keep={self.keep}, {signed})"

    # ----------------------------------------------------------------------------------------- reading

    def versions(self) -> list[str]:
        """The version directories present (valid-looking names; contents not verified), oldest first."""
        try:
            entries = list(os.scandir(self.root))
        except FileNotFoundError:
            return []
        names = [e.name for e in entries if is_version(e.name) and e.is_dir()]
        return sorted(names, key=_version_key)

    def current_version(self) -> str | None:
        """The version ``current`` names, or ``None`` when it is missing or does not hold a version.

        The named version is not checked to exist or be valid; :meth:`load` does that.
        """
        name = self._read_current()
        return name if name is not None and is_version(name) else None

    def _read_current(self) -> str | None:
        try:
            with open(self.root / CURRENT_FILE, "rb") as fh:
                raw = fh.read(_MAX_CURRENT_BYTES)
        except FileNotFoundError:
            return None
        except OSError as exc:
            logger.warning("cannot read %s: %s", self.root / CURRENT_FILE, exc)
            return None
        return raw.decode("utf-8", errors="replace").strip()

    def load(self, version: str | None = None) -> LoadedSnapshot:
        """Verify and read a snapshot; raise :class:`NoValidSnapshot` when none passes.

        With ``version``, only that version is verified. Without, the version ``current`` names is tried
        first, then every other version newest first; each refusal is logged with its reason, and loading
        an older version than ``current`` names is logged as a warning. Verification happens before the
        bytes are returned: manifest parses (and its signature matches, when a key is configured), every
        listed file exists with the listed size and sha256, no unlisted file is present, and the manifest's
        River version is of the running one's minor release (:func:`river_compatible`).
        """
        if version is not None:
            if not is_version(version):
                raise ValueError(f"{version!r} is not a snapshot version (YYYYMMDDTHHMMSSZ-NNNN)")
            if not (self.root / version).is_dir():
                raise NoValidSnapshot(
                    f"snapshot {version} does not exist in {self.root}", [(version, "does not exist")]
                )
            try:
                return self._load_one(version)
            except _RefusedError as exc:
                logger.warning("snapshot %s refused: %s", version, exc)
                raise NoValidSnapshot(
                    f"snapshot {version} in {self.root} refused: {exc}", [(version, str(exc))]
                ) from None

        present = self.versions()
        candidates = list(reversed(present))
        pointer = self._read_current()
        named: str | None = None
        refusals: list[tuple[str, str]] = []
        if pointer is None:
            if candidates:
                logger.warning("%s has no %r pointer; trying snapshots newest first", self.root, CURRENT_FILE)
        elif not is_version(pointer):
            reason = f"{CURRENT_FILE!r} holds {pointer[:64]!r}, not a snapshot version"
            logger.warning("%s: %s; trying snapshots newest first", self.root, reason)
            refusals.append((CURRENT_FILE, reason))
        elif pointer not in present:
            reason = f"{CURRENT_FILE!r} names {pointer}, which does not exist"
            logger.warning("%s: %s; trying snapshots newest first", self.root, reason)
            refusals.append((CURRENT_FILE, reason))
        else:
            named = pointer
            candidates.remove(pointer)
            candidates.insert(0, pointer)

        for i, candidate in enumerate(candidates):
            try:
                loaded = self._load_one(candidate)
            except _RefusedError as exc:
                refusals.append((candidate, str(exc)))
                tail = "trying the previous one" if i + 1 < len(candidates) else "no other snapshot to try"
                logger.warning("snapshot %s: %s; %s", candidate, exc, tail)
                continue
            if refusals:
                wanted = named or (pointer if pointer is not None and is_version(pointer) else None)
                logger.warning(
                    "loaded snapshot %s instead of %s (%d refused: %s)",
                    candidate,
                    wanted or "the newest",
                    len(refusals),
                    "; ".join(f"{v}: {r}" for v, r in refusals),
                )
            else:
                logger.info("loaded snapshot %s from %s", candidate, self.root)
            return loaded

        raise NoValidSnapshot(self._nothing_valid_message(present, refusals), refusals)

    def _nothing_valid_message(self, present: list[str], refusals: list[tuple[str, str]]) -> str:
        if not self.root.exists():
            return f"no valid snapshot: model directory {self.root} does not exist (no snapshot has been written)"
        if not present:
            extra = f"; {refusals[0][1]}" if refusals else ""
            return f"no valid snapshot: model directory {self.root} is empty (no snapshot has been written){extra}"
        lines = "\n".join(f"  - {v}: {r}" for v, r in refusals)
        return f"no valid snapshot in {self.root}; every one was refused:\n{lines}"

    def _load_one(self, version: str) -> LoadedSnapshot:
        path = self.root / version
        manifest, files = self._verify(path, version, keep_bytes=True)
        return LoadedSnapshot(version=version, path=path, manifest=manifest, files=files)

    def _verify(self, path: Path, version: str, *, keep_bytes: bool) -> tuple[dict[str, Any], dict[str, bytes]]:
        """Check one version directory; ``_RefusedError`` with the reason if it fails.

        Returns the manifest and, with ``keep_bytes``, the bytes of every file (the bytes that were hashed).
        """
        manifest = self._read_manifest(path)
        if self._key is not None:
            signature = manifest.get("signature")
            if signature is None:
                raise _RefusedError("manifest is not signed but a signing key is configured (unsigned or altered)")
            if not isinstance(signature, str) or not hmac.compare_digest(signature, _sign(self._key, manifest)):
                raise _RefusedError("manifest signature does not match (manifest altered, or signed with another key)")
        if manifest.get("version") != version:
            raise _RefusedError(f"manifest names version {manifest.get('version')!r}, not its directory {version}")
        written_by = manifest.get("river_version")
        running = _running_river_version()
        if not river_compatible(written_by, running):
            raise _RefusedError(
                f"written by River {written_by}, this is River {running} (pickles are portable only within one "
                f"River minor release, {_minor_label(running)})"
            )

        listed = self._listed_files(manifest)
        present = self._present_files(path)
        unlisted = sorted(present - set(listed) - {MANIFEST_FILE})
        if unlisted:
            raise _RefusedError(f"unlisted file {unlisted[0]} present (not in the manifest; {len(unlisted)} in all)")
        files: dict[str, bytes] = {}
        for name, (sha256, size) in sorted(listed.items()):
            if name not in present:
                raise _RefusedError(f"{name} is missing")
            data = self._check_file(path / name, name, sha256, size, keep_bytes=keep_bytes)
            if keep_bytes:
                files[name] = data
        return manifest, files

    def _read_manifest(self, path: Path) -> dict[str, Any]:
        def no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
            result: dict[str, Any] = {}
            for key, value in pairs:
                if key in result:
                    raise ValueError(f"duplicate key {key!r}")
                result[key] = value
            return result

        try:
            raw = (path / MANIFEST_FILE).read_bytes()
        except FileNotFoundError:
            raise _RefusedError(f"{MANIFEST_FILE} is missing") from None
        except OSError as exc:
            raise _RefusedError(f"{MANIFEST_FILE} cannot be read ({exc.strerror or exc})") from None
        try:
            manifest = json.loads(raw.decode("utf-8"), object_pairs_hook=no_duplicates)
        except (UnicodeDecodeError, ValueError) as exc:
            raise _RefusedError(f"{MANIFEST_FILE} is not valid JSON ({exc})") from None
        if not isinstance(manifest, dict):
            raise _RefusedError(f"{MANIFEST_FILE} is not a JSON object")
        return manifest

    @staticmethod
    def _listed_files(manifest: Mapping[str, Any]) -> dict[str, tuple[str, int]]:
        entries = manifest.get("files")
        if not isinstance(entries, dict):
            raise _RefusedError(f"{MANIFEST_FILE} has no 'files' table")
        listed: dict[str, tuple[str, int]] = {}
        for name, entry in entries.items():
            try:
                _check_file_name(name)
            except ValueError as exc:
                raise _RefusedError(f"{MANIFEST_FILE} lists a bad file name: {exc}") from None
            sha256 = entry.get("sha256") if isinstance(entry, dict) else None
            size = entry.get("bytes") if isinstance(entry, dict) else None
            if not isinstance(sha256, str) or not _SHA256_RE.match(sha256):
                raise _RefusedError(f"{MANIFEST_FILE} has no valid sha256 for {name}")
            if not isinstance(size, int) or isinstance(size, bool) or size < 0:
                raise _RefusedError(f"{MANIFEST_FILE} has no valid size for {name}")
            listed[name] = (sha256, size)
        return listed

    @staticmethod
    def _present_files(path: Path) -> set[str]:
        """Relative names of every non-directory entry under ``path`` (symlinks to directories included)."""
        present: set[str] = set()
        for dirpath, dirnames, filenames in os.walk(path, followlinks=False):
            rel = Path(dirpath).relative_to(path)
            for name in filenames:
                present.add((rel / name).as_posix())
            for name in dirnames:
                if (Path(dirpath) / name).is_symlink():
                    present.add((rel / name).as_posix())
        return present

    @staticmethod
    def _check_file(path: Path, name: str, sha256: str, size: int, *, keep_bytes: bool) -> bytes:
        try:
            st = os.lstat(path)
        except OSError as exc:
            raise _RefusedError(f"{name} cannot be read ({exc.strerror or exc})") from None
        if not stat.S_ISREG(st.st_mode):
            raise _RefusedError(f"{name} is not a regular file (symlinks are not accepted)")
        if st.st_size != size:
            raise _RefusedError(f"{name} is {st.st_size} bytes, the manifest says {size} (file changed or truncated)")
        digest = hashlib.sha256()
        chunks: list[bytes] = []
        try:
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0))
            with os.fdopen(fd, "rb") as fh:
                while chunk := fh.read(_CHUNK):
                    digest.update(chunk)
                    if keep_bytes:
                        chunks.append(chunk)
        except OSError as exc:
            raise _RefusedError(f"{name} cannot be read ({exc.strerror or exc})") from None
        if not hmac.compare_digest(digest.hexdigest(), sha256):
            raise _RefusedError(f"{name} sha256 mismatch (file changed or corrupted)")
        data = b"".join(chunks)
        if keep_bytes and len(data) != size:  # changed while being read
            raise _RefusedError(f"{name} changed while being read")
        return data

    # ----------------------------------------------------------------------------------------- setting aside

    def set_aside(self, reasons: Mapping[str, str]) -> Path | None:
        """Move the versions in ``reasons`` (version -> why it cannot be used) out of the way; return where.

        For snapshots that this install cannot load (refused after an upgrade, or failing to unpickle): they go,
        whole, into a new ``refused/<UTC time>-<random>/`` directory of ``root``, with a ``REASON`` file listing
        why, and ``current`` goes with them when it names one of them (or nothing valid). Nothing is deleted: a
        snapshot set aside can be moved back by hand, e.g. to run it with the River release that wrote it. Each
        move is a rename within ``root`` (atomic, same file system), under the writers' lock. Names that are not
        versions present in ``root`` are skipped; ``None`` when nothing was moved.
        """
        wanted = {v: r for v, r in reasons.items() if is_version(v) and (self.root / v).is_dir()}
        if not wanted:
            return None
        with _exclusive_lock(self.root / LOCK_FILE):
            stamp = _utcnow().strftime(_TS_FORMAT)
            aside = self.root / REFUSED_DIR / f"{stamp}-{secrets.token_hex(4)}"
            aside.mkdir(parents=True)
            lines = [f"{version}: {reason}" for version, reason in sorted(wanted.items())]
            pointer = self._read_current()
            move_current = pointer is not None and (pointer in wanted or pointer not in self.versions())
            if move_current:
                lines.append(f"current: named {(pointer or '')[:64]}")
            text = "Set aside by devintel: this install cannot load these snapshots.\n" + "\n".join(lines) + "\n"
            _write_file(aside / "REASON", text.encode("utf-8"))
            for version in sorted(wanted):
                os.rename(self.root / version, aside / version)
            if move_current:
                os.rename(self.root / CURRENT_FILE, aside / CURRENT_FILE)
            _fsync_dir(aside)
            _fsync_dir(self.root / REFUSED_DIR)
            _fsync_dir(self.root)
        logger.warning(
            "set aside %d snapshot(s) that cannot be loaded (%s) in %s: kept, not deleted",
            len(wanted),
            "; ".join(lines[: len(wanted)]),
            aside,
        )
        return aside

    # ----------------------------------------------------------------------------------------- writing

    def write(self, files: Mapping[str, bytes], manifest: Mapping[str, object]) -> str:
        """Write a new snapshot atomically, point ``current`` at it, prune old versions; return its version.

        ``files`` maps relative names (subdirectories allowed: ``"home_type/apartment.pkl"``) to bytes;
        absolute names, ``..``, empty components and ``manifest.json`` are rejected (``ValueError``), as is
        a manifest that is not JSON-serialisable (NaN included). The manifest written is the caller's
        ``manifest`` plus ``version``, ``created`` (ISO 8601 UTC), ``river_version``, ``python_version``,
        ``files`` (``{name: {"sha256", "bytes"}}``) and, with a signing key, ``signature``; these store
        fields override caller fields of the same name.

        Stale ``.tmp-*`` entries (left by a crash) are removed first. After the write, the newest ``keep``
        valid versions are kept and older ones removed; the version ``current`` names is never removed.
        Writers are serialised by a lock file, so two processes may share a directory. On an error (disk
        full, read-only directory) the exception propagates, the temporary directory is removed as far as
        possible, and ``current`` and the existing versions are untouched.
        """
        checked = self._check_inputs(files, manifest)
        self.root.mkdir(parents=True, exist_ok=True)
        with _exclusive_lock(self.root / LOCK_FILE):
            self._remove_stale_tmp()
            version = self._write_version(checked, manifest)
            self._set_current(version)
            self._prune()
        return version

    @staticmethod
    def _check_inputs(
        files: Mapping[str, bytes], manifest: Mapping[str, object]
    ) -> dict[str, bytes | bytearray | memoryview]:
        checked: dict[str, bytes | bytearray | memoryview] = {}
        for name, data in files.items():
            _check_file_name(name)
            if not isinstance(data, bytes | bytearray | memoryview):
                raise TypeError(f"file {name!r}: expected bytes, got {type(data).__name__}")
            checked[name] = data
        names = set(checked)
        for name in names:
            parts = name.split("/")
            for i in range(1, len(parts)):
                prefix = "/".join(parts[:i])
                if prefix in names:
                    raise ValueError(f"file name {prefix!r} is also a directory of {name!r}")
                if i == 1 and prefix == MANIFEST_FILE:
                    raise ValueError(f"{MANIFEST_FILE!r} is reserved and cannot be a directory ({name!r})")
        for key in manifest:
            if not isinstance(key, str):
                raise ValueError(f"manifest keys must be strings, got {key!r}")
        try:
            canonical_json(dict(manifest))
        except (TypeError, ValueError) as exc:
            raise ValueError(f"manifest is not JSON-serialisable (finite numbers only): {exc}") from exc
        return checked

    def _next_version(self, now: datetime) -> str:
        taken = self.versions()
        pointer = self.current_version()
        if pointer is not None:
            taken.append(pointer)
        stamp = now.strftime(_TS_FORMAT)
        if not taken:
            return f"{stamp}-0001"
        newest_stamp, newest_counter = max(_version_key(v) for v in taken)
        if newest_stamp < stamp:
            return f"{stamp}-0001"
        if newest_counter < _MAX_COUNTER:
            return f"{newest_stamp}-{newest_counter + 1:04d}"
        following = datetime.strptime(newest_stamp, _TS_FORMAT) + timedelta(seconds=1)
        return f"{following.strftime(_TS_FORMAT)}-0001"

    def _write_version(self, files: Mapping[str, bytes | bytearray | memoryview], extra: Mapping[str, object]) -> str:
        tmp = self.root / f"{TMP_PREFIX}{secrets.token_hex(8)}"
        tmp.mkdir()
        try:
            entries: dict[str, dict[str, object]] = {}
            total = 0
            subdirs = {d for name in files for d in (tmp / name).parents if tmp in d.parents}
            for directory in sorted(subdirs, key=lambda d: len(d.parts)):
                directory.mkdir()
            for name, data in sorted(files.items()):
                _write_file(tmp / name, data)
                size = memoryview(data).nbytes
                entries[name] = {"sha256": hashlib.sha256(data).hexdigest(), "bytes": size}
                total += size
            for directory in subdirs:
                _fsync_dir(directory)

            now = _utcnow()
            version = self._next_version(now)
            body: dict[str, object] = {k: v for k, v in extra.items() if k not in STORE_FIELDS}
            body.update(
                version=version,
                created=now.isoformat(timespec="milliseconds"),
                river_version=_running_river_version(),
                python_version=platform.python_version(),
                files=entries,
            )
            if self._key is not None:
                body["signature"] = _sign(self._key, body)
            text = json.dumps(body, indent=2, sort_keys=True, ensure_ascii=False, allow_nan=False) + "\n"
            _write_file(tmp / MANIFEST_FILE, text.encode("utf-8"))
            _fsync_dir(tmp)

            final = self.root / version
            os.rename(tmp, final)  # atomic; fails if the version exists (never replaces a snapshot)
        except BaseException:
            with contextlib.suppress(OSError):
                _remove(tmp)
            raise
        _fsync_dir(self.root)
        logger.info(
            "wrote snapshot %s (%d files, %d bytes) to %s",
            version,
            len(entries),
            total,
            self.root,
        )
        return version

    def _set_current(self, version: str) -> None:
        """Point ``current`` at ``version`` atomically (temporary file, fsync, replace, fsync of root)."""
        tmp = self.root / f"{TMP_PREFIX}{CURRENT_FILE}-{secrets.token_hex(8)}"
        try:
            _write_file(tmp, f"{version}\n".encode())
            os.replace(tmp, self.root / CURRENT_FILE)
        except BaseException:
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)
            raise
        _fsync_dir(self.root)

    def _remove_stale_tmp(self) -> None:
        """Remove ``.tmp-*`` entries: under the writers' lock, none belongs to a write in progress."""
        removed = 0
        for entry in os.scandir(self.root):
            if entry.name.startswith(TMP_PREFIX):
                try:
                    _remove(Path(entry.path))
                    removed += 1
                except OSError as exc:
                    logger.warning("cannot remove stale %s: %s", entry.path, exc)
        if removed:
            logger.info("removed %d stale temporary entr%s from %s", removed, "y" if removed == 1 else "ies", self.root)
            _fsync_dir(self.root)

    def _prune(self) -> None:
        """Keep the newest ``keep`` valid versions and anything newer; never remove the current one."""
        pointer = self.current_version()
        valid = 0
        doomed: list[str] = []
        for version in reversed(self.versions()):
            if valid >= self.keep:
                if version != pointer:
                    doomed.append(version)
                continue
            try:
                self._verify(self.root / version, version, keep_bytes=False)
            except _RefusedError as exc:
                logger.debug("prune: snapshot %s does not count as valid: %s", version, exc)
                continue
            valid += 1
        for version in doomed:
            # Rename first (atomic), then delete: a deletion cut short leaves a .tmp- entry, not a partial version.
            trash = self.root / f"{TMP_PREFIX}del-{version}-{secrets.token_hex(4)}"
            try:
                os.rename(self.root / version, trash)
                _fsync_dir(self.root)
                _remove(trash)
            except OSError as exc:
                logger.warning("cannot remove old snapshot %s: %s", version, exc)
                continue
            logger.info("removed old snapshot %s (keeping %d)", version, self.keep)
