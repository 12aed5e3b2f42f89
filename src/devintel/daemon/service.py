"""``devintel-daemon``: the live service. Not built yet: this entry point says so and exits non-zero."""

from __future__ import annotations

import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``devintel-daemon``. Until the live daemon lands it refuses to start, loudly."""
    del argv
    print(
        "devintel-daemon: the live daemon is not part of this release yet; "
        "use `devintel generate` for synthetic telemetry.",
        file=sys.stderr,
    )
    return 2


if __name__ == "__main__":
    sys.exit(main())
