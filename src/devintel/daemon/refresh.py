"""A refresh (a re-bootstrap from synthetic data) as a child process that the daemon can end at any moment.

A bootstrap takes minutes of CPU in pure Python; in a thread it could not be stopped, so a SIGTERM during
``POST /models/refresh`` waited for it (longer than systemd's stop timeout). Here it runs in a child process of its
own session (``python -m devintel.daemon.refresh``, so its own process group, the bootstrap's worker process
included): the daemon writes the job (the bootstrap's configuration and the snapshot store's) on the child's
standard input (pickled), and reads the outcome (:class:`RefreshOutcome`, as JSON) from its standard output;
the child logs its progress to the daemon's standard error.

Cancelling :func:`run_refresh` (the daemon's shutdown does) ends the whole process group: SIGTERM, then SIGKILL
after :data:`TERMINATE_GRACE_S`. Should the daemon itself die, the child sees its standard input close and ends
its group too. A snapshot write cut short leaves only a ``.tmp-`` entry that the next write removes, and the lock
of the store is released by the kernel (:mod:`devintel.models.snapshots`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import pickle
import signal
import sys
import threading
import traceback
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import orjson

from devintel.daemon.logs import configure_logging

if TYPE_CHECKING:
    from devintel.models.bootstrap import BootstrapConfig

logger = logging.getLogger(__name__)

#: Seconds a cancelled refresh's processes get to end on SIGTERM before they are killed.
TERMINATE_GRACE_S = 1.0


@dataclass(frozen=True, slots=True)
class RefreshJob:
    """What the child process needs: the bootstrap to run and the snapshot store to write it to."""

    config: BootstrapConfig
    model_dir: Path
    keep: int
    signing_key: bytes | None


@dataclass(frozen=True, slots=True)
class RefreshOutcome:
    """How a refresh ended: ``passed`` with the ``version`` written, ``failed`` its quality gate (nothing written),
    or ``error`` (``detail`` holds the child's traceback). ``gate`` is the gate's result as a mapping, ``table`` as
    text."""

    status: Literal["passed", "failed", "error"]
    version: str | None = None
    gate: dict[str, Any] | None = None
    table: str = ""
    detail: str = ""


class RefreshError(RuntimeError):
    """The refresh's process failed (its traceback is the message) or ended without an outcome."""


class RefreshCancelledError(RuntimeError):
    """The refresh was cancelled because the daemon is shutting down (nothing of it is served)."""


async def run_refresh(job: RefreshJob) -> RefreshOutcome:
    """Run ``job`` in a child process and return its outcome; raises :class:`RefreshError` when the child fails.

    Cancelled, it ends the child's whole process group (bounded by :data:`TERMINATE_GRACE_S`, then SIGKILL) before
    it re-raises :class:`asyncio.CancelledError`."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        __name__,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        start_new_session=True,  # its own process group: the bootstrap's worker goes with it
    )
    assert process.stdin is not None
    assert process.stdout is not None
    logger.info("refresh: bootstrap running in process %d", process.pid)
    try:
        process.stdin.write(pickle.dumps(job))
        await process.stdin.drain()  # stdin stays open: its end tells the child that the daemon is gone
        output = await process.stdout.read()
        code = await process.wait()
    except BaseException:
        await _end_group(process)
        raise
    finally:
        process.stdin.close()
    if not output:
        raise RefreshError(f"the refresh process ended with code {code} and no outcome")
    try:
        outcome = RefreshOutcome(**orjson.loads(output))
    except (orjson.JSONDecodeError, TypeError) as error:
        raise RefreshError(f"the refresh process answered something else than an outcome: {error}") from None
    if outcome.status == "error":
        raise RefreshError(f"the refresh process failed:\n{outcome.detail}")
    return outcome


async def _end_group(process: asyncio.subprocess.Process) -> None:
    """End ``process`` and every process of its group: SIGTERM, then SIGKILL after the grace."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        try:
            await asyncio.wait_for(asyncio.shield(process.wait()), TERMINATE_GRACE_S)
        except TimeoutError:
            continue
        if sig is signal.SIGTERM:  # the leader is gone; its worker may not be
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
        return
    await process.wait()


def _outcome(job: RefreshJob) -> RefreshOutcome:
    from devintel.models.bootstrap import bootstrap
    from devintel.models.gate import GateFailed
    from devintel.models.snapshots import SnapshotStore

    store = SnapshotStore(job.model_dir, keep=job.keep, signing_key=job.signing_key)
    try:
        result = bootstrap(job.config, store)
    except GateFailed as failed:
        return RefreshOutcome("failed", gate=failed.result.as_dict(), table=failed.result.table())
    return RefreshOutcome("passed", version=result.version, gate=result.gate.as_dict(), table=result.gate.table())


def _end_with_the_daemon() -> None:
    """Wait for standard input to close (the daemon ended or gave up on this refresh), then end this group."""
    while os.read(0, 4096):  # the raw descriptor: no lock of sys.stdin held at the interpreter's exit
        pass
    os.killpg(os.getpgrp(), signal.SIGKILL)


def main() -> int:
    """The child process: read a :class:`RefreshJob` on standard input, write its :class:`RefreshOutcome` on
    standard output."""
    configure_logging()
    job = pickle.load(sys.stdin.buffer)  # from the daemon that started this process
    threading.Thread(target=_end_with_the_daemon, name="refresh-parent-watch", daemon=True).start()
    try:
        outcome = _outcome(job)
    except BaseException:
        outcome = RefreshOutcome("error", detail=traceback.format_exc())
    sys.stdout.buffer.write(orjson.dumps(asdict(outcome)))
    sys.stdout.buffer.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
