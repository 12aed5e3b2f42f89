"""Progress reporting: a redrawn bar on a terminal, plain log lines everywhere else."""

from __future__ import annotations

import logging
import sys
import time
from typing import TextIO

logger = logging.getLogger(__name__)


class Progress:
    """Report ``done`` out of ``total`` units of work.

    On a terminal the bar is redrawn in place (at most ten times a second); otherwise (a pipe, a log
    file, systemd's journal) a plain log line is written at every tenth of the work, so logs stay short.
    """

    def __init__(self, total: int, label: str, unit: str = "rows", stream: TextIO | None = None) -> None:
        self.total = max(total, 1)
        self.label = label
        self.unit = unit
        self.stream = stream if stream is not None else sys.stderr
        self.tty = self.stream.isatty()
        self.done = 0
        self.started = time.monotonic()
        self._last_draw = 0.0
        self._next_log = 0.1

    def advance(self, amount: int) -> None:
        """Record ``amount`` more units done."""
        self.done = min(self.done + amount, self.total)
        share = self.done / self.total
        if self.tty:
            now = time.monotonic()
            if now - self._last_draw >= 0.1 or self.done == self.total:
                self._last_draw = now
                self._draw(share)
        elif share >= self._next_log or self.done == self.total:
            self._next_log = (int(share * 10) + 1) / 10
            logger.info(
                "%s: %d%% (%d/%d %s, %.1f s)", self.label, share * 100, self.done, self.total, self.unit, self.elapsed
            )

    @property
    def elapsed(self) -> float:
        """Seconds since the start."""
        return time.monotonic() - self.started

    def _draw(self, share: float) -> None:
        width = 30
        filled = int(share * width)
        bar = "#" * filled + "-" * (width - filled)
        self.stream.write(
            f"\r{self.label} [{bar}] {share:6.1%} {self.done:,}/{self.total:,} {self.unit} {self.elapsed:5.1f} s"
        )
        if self.done == self.total:
            self.stream.write("\n")
        self.stream.flush()
