"""How devintel's commands log: one line format, to standard error (journald and Docker keep it)."""

from __future__ import annotations

import logging
import sys
from typing import Final

#: The line format of every devintel command and process.
LOG_FORMAT: Final = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def configure_logging(verbose: bool = False) -> None:
    """Log at INFO (DEBUG when ``verbose``) in :data:`LOG_FORMAT` to standard error."""
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format=LOG_FORMAT, stream=sys.stderr)
