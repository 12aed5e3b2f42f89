"""Giving freed memory back to the operating system between the bootstrap's phases.

A phase of the bootstrap (collecting the examples of half the training stream, learning, scoring a held-out stream)
allocates and frees many Python objects and numpy arrays. CPython and glibc's ``malloc`` keep much of what was freed
for reuse instead of returning it: measured on the default bootstrap's first half of the training stream, a process
that had freed its examples still held 69 MB more than after its imports, of which ``malloc_trim`` gave back 48 MB.
The next phase's peak then sits on top of that. :func:`release` collects garbage and, where the C library is
glibc, asks it to return its free heap (``malloc_trim(0)``; a few milliseconds). Elsewhere (musl, macOS) it only
collects garbage.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
from collections.abc import Callable
from functools import cache


@cache
def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim``, or None where the C library has none."""
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        trim: Callable[[int], int] = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):
        return None
    return trim


def release() -> bool:
    """Collect garbage and return the C library's free heap to the operating system; whether the heap was trimmed
    (False: no ``malloc_trim`` here, or nothing to return)."""
    gc.collect()
    trim = _malloc_trim()
    return bool(trim(0)) if trim is not None else False
