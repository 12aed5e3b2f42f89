"""Giving freed memory back to the operating system between the bootstrap's phases.

A phase of the bootstrap (collecting the examples of half the training stream, learning, scoring a held-out stream)
allocates and frees many Python objects and numpy arrays. CPython and glibc's ``malloc`` keep much of what was freed
for reuse instead of returning it: measured on the default bootstrap's first half of the training stream, a process
that had freed its examples still held 69 MB more than after its imports, of which ``malloc_trim`` gave back 48 MB.
The next phase's peak then sits on top of that. :func:`release` collects garbage and, where the C library is
glibc, asks it to return its free heap (``malloc_trim(0)``; a few milliseconds). Elsewhere (musl, macOS) it only
collects garbage.

glibc's own threshold for mapping large blocks apart is left as it is. Fixing it at 1 MB (every large array its own
mapping, returned when freed) lowered the largest process's peak by 10-15 MB (351 against 360-366 MB) but made the
bootstrap 8-10 % slower in wall time: each of the decision tuning's hundreds of 2.4 MB arrays then costs a fresh
mapping and its page faults (the tuning alone took 4.6 s instead of 1.7 s).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
from collections.abc import Callable
from functools import cache


@cache
def _libc() -> ctypes.CDLL | None:
    """The C library, or None where it cannot be found."""
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        return ctypes.CDLL(name)
    except OSError:
        return None


@cache
def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim``, or None where the C library has none."""
    libc = _libc()
    if libc is None:
        return None
    try:
        trim: Callable[[int], int] = libc.malloc_trim
    except AttributeError:
        return None
    return trim


def release() -> bool:
    """Collect garbage and return the C library's free heap to the operating system; whether the heap was trimmed
    (False: no ``malloc_trim`` here, or nothing to return)."""
    gc.collect()
    trim = _malloc_trim()
    return bool(trim(0)) if trim is not None else False
