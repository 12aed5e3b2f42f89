"""Sealed blobs: what the fleet writes to the object store, with a kind, a checksum, and compression (pure).

A blob is ``DEVINTEL/<kind>/1\\n`` + the SHA-256 of the compressed body + the zlib-compressed body. :func:`unseal`
checks all three and raises :class:`CorruptBlobError` on any mismatch, so a truncated or altered snapshot is never
unpickled. The checksum finds corruption, not tampering: the object store is as trusted as the cluster's
credentials (docs/fleet.md, "Trust").
"""

from __future__ import annotations

import hashlib
import zlib
from typing import Final

_DIGEST: Final = 32


class CorruptBlobError(ValueError):
    """A blob that is not what it claims to be (wrong kind, checksum, or compression)."""


def _header(kind: str) -> bytes:
    return f"DEVINTEL/{kind}/1\n".encode()


def seal(kind: str, body: bytes, level: int = 1) -> bytes:
    """``body`` sealed as a blob of ``kind``."""
    packed = zlib.compress(body, level)
    return _header(kind) + hashlib.sha256(packed).digest() + packed


def unseal(kind: str, blob: bytes) -> bytes:
    """The body of a blob of ``kind``; :class:`CorruptBlobError` when it is not one, or not intact."""
    header = _header(kind)
    if not blob.startswith(header) or len(blob) < len(header) + _DIGEST:
        raise CorruptBlobError(f"not a {kind} blob")
    digest, packed = blob[len(header) : len(header) + _DIGEST], blob[len(header) + _DIGEST :]
    if hashlib.sha256(packed).digest() != digest:
        raise CorruptBlobError(f"{kind} blob: checksum mismatch")
    try:
        return zlib.decompress(packed)
    except zlib.error as error:
        raise CorruptBlobError(f"{kind} blob: {error}") from None
