"""Giving freed memory back to the operating system between the bootstrap's phases.

A phase of the bootstrap (collecting the examples of half the training stream, learning, scoring a held-out stream)
allocates and frees many Python objects and numpy arrays. CPython and glibc's ``malloc`` keep much of what was freed
for reuse instead of returning it: measured on the default bootstrap's first half of the training stream, a process
that had freed its examples still held 69 MB more than after its imports, of which ``malloc_trim`` gave back 48 MB.
The next phase's peak then sits on top of that. :func:`release` collects garbage and, where the C library is
glibc, asks it to return its free heap (``malloc_trim(0)``; a few milliseconds). Elsewhere (musl, macOS) it only
collects garbage.

glibc maps a block of 128 KB or more on its own, and raises that threshold (up to 32 MB) each time such a block is
freed: the bootstrap runs with that, as its many large arrays are then reused from the heap. Fixing the threshold
at 1 MB for the whole bootstrap made it ~10 % slower (each of the decision tuning's hundreds of 2.4 MB arrays a
fresh mapping with its page faults: the tuning took 4.6 s instead of 1.7 s) for 10-15 MB less at its peak. But a
daemon that bootstrapped and then served its simulated home held ~420 MB with the raised threshold against ~350
MB with 1 MB (its live arrays then stay on a fragmented heap), so :func:`map_large_blocks` fixes the threshold at
1 MB when a bootstrap ends, for what the process does next.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
from collections.abc import Callable
from functools import cache

#: glibc's ``mallopt`` parameter for the size from which a block is its own mapping (``M_MMAP_THRESHOLD``).
_M_MMAP_THRESHOLD = -3
#: Blocks from this size on are mapped on their own, and unmapped (returned) as soon as they are freed.
MMAP_THRESHOLD = 1 << 20


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


def map_large_blocks() -> bool:
    """Have glibc map every block of :data:`MMAP_THRESHOLD` or more on its own, for good (whether it could).

    By default glibc raises that threshold each time a mapped block is freed (up to 32 MB), after which the arrays of
    one batch land on the heap and stay there; with a fixed threshold they go back to the system when freed.
    Called when a bootstrap ends (see the module docstring)."""
    libc = _libc()
    if libc is None:
        return False
    try:
        return bool(libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD))
    except AttributeError:
        return False


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
