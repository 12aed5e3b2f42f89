"""``models/memory.release``: garbage collected, and glibc's free heap handed back where there is one."""

from __future__ import annotations

import gc
import platform
import subprocess
import sys
import weakref
from pathlib import Path

import numpy as np
import pytest

from devintel.models import memory


class _Node:
    def __init__(self) -> None:
        self.other: _Node | None = None


def test_release_collects_reference_cycles() -> None:
    first, second = _Node(), _Node()
    first.other, second.other = second, first
    gone = weakref.ref(first)
    del first, second
    gc.disable()  # only release may collect the cycle
    try:
        assert gone() is not None
        memory.release()
        assert gone() is None
    finally:
        gc.enable()


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="malloc_trim is glibc's")
def test_release_returns_freed_heap_to_the_system() -> None:
    """Blocks freed between blocks still in use stay with the process (free() gives back only the heap's top) until
    release() trims them: 64 MB of holes."""
    blocks = [np.ones(8_000) for _ in range(2_000)]  # 64 KB each, below glibc's mapping threshold: on the heap
    kept = blocks[1::2]
    del blocks
    holding = _rss_mb()
    memory.release()
    assert holding - _rss_mb() > 32
    del kept


_FREED_BY_MAPPED_BLOCKS = """
import numpy as np
from pathlib import Path
from devintel.models import memory

def rss():
    line = next(l for l in Path("/proc/self/status").read_text().splitlines() if l.startswith("VmRSS:"))
    return int(line.split()[1]) / 1024

np.ones(2_097_152).sum()  # a freed 16 MB mapping: glibc's own threshold rises to 16 MB (unless it is fixed)
assert memory.map_large_blocks()
large, small = [], []
for _ in range(16):
    large.append(np.ones(524_288))  # 4 MB
    small.append(np.ones(8_000))  # 64 KB, kept: the large blocks are not the heap's top
holding = rss()
large.clear()
print(holding - rss())
"""


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
def test_large_blocks_go_back_when_freed_once_mapped_apart() -> None:
    """In a fresh interpreter (a heap with no free blocks left by other tests to serve the large ones)."""
    done = subprocess.run([sys.executable, "-c", _FREED_BY_MAPPED_BLOCKS], capture_output=True, text=True, check=True)
    assert float(done.stdout) > 48  # of 64 MB: each its own mapping, unmapped when freed
