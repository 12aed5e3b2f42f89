"""``devintel-fleet trainer``: one active trainer, the others standing by, learning from every home (I/O).

The active trainer holds the lease ``trainer``; a standby claims it once it expires (the active one died) and
resumes from the last checkpoint. The trainer consumes the examples stream through the durable consumer
``trainer`` (recreated to start right after its checkpoint's sequence), learns (:class:`~devintel.fleet.learning.
FleetLearner`), and every ``checkpoint_every`` examples or ``checkpoint_interval_s``: gates the candidate on the
held-out examples, publishes it as a new version when it passes (``models/<version>`` in the object store, then the
pointer ``models.current``, which the workers poll), writes its checkpoint (models, held-out examples, the sequence
it covers) with a compare-and-set of its pointer, and only then acknowledges the examples (ack policy "all").
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
import pickle
import time
from typing import Any

import nats.errors
import orjson
from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError, NotFoundError

from devintel.daemon.from_settings import live_models
from devintel.daemon.settings import Settings
from devintel.fleet.cluster import EXAMPLES_STREAM, LEASES, Cluster, open_with_retry
from devintel.fleet.codec import seal, unseal
from devintel.fleet.learning import FleetLearner, Verdict, gate, score
from devintel.fleet.leases import LeaseLostError, Leases
from devintel.fleet.modelset import ModelSet
from devintel.fleet.settings import FleetSettings
from devintel.fleet.subjects import EXAMPLES
from devintel.fleet.worker import BRIEF_S, CURRENT_MODELS, close, load_version
from devintel.models.snapshots import LoadedSnapshot

logger = logging.getLogger(__name__)

LEASE = "trainer"
#: The state bucket's key of the trainer's latest checkpoint.
CHECKPOINT = "trainer"
KIND = "trainer-checkpoint"


class TrainerSession:
    """One tenure of the trainer lease: resume, learn, gate, publish, checkpoint."""

    def __init__(self, cluster: Cluster, settings: FleetSettings, base: ModelSet) -> None:
        self.cluster = cluster
        self.settings = settings
        self.base = base
        self.stop = asyncio.Event()
        self.lost = False
        self.seq = 0
        self.pointer_revision = 0
        self.previous_object: str | None = None
        self.versions = 0
        self.serving: ModelSet = base
        self.serving_score: float | None = None
        self.last: Msg | None = None
        self.verdicts: list[str] = []
        t = settings.trainer
        self.learner = FleetLearner(
            copy.deepcopy(base.models), dict(base.router), holdout_every=t.holdout_every, holdout_kept=t.holdout_kept
        )

    async def resume(self) -> None:
        """The latest checkpoint (else the base models and the version that serves)."""
        self.serving = await load_version(self.cluster, self.base)
        try:
            entry = await self.cluster.state.get(CHECKPOINT)
        except KeyNotFoundError:
            self.learner.models = copy.deepcopy(self.serving.models)
            return
        self.pointer_revision = entry.revision or 0
        pointer = orjson.loads(entry.value or b"")
        name = str(pointer["object"])
        try:
            body = pickle.loads(unseal(KIND, await self.cluster.read_object(name)))  # the cluster's own
        except (nats.errors.TimeoutError, TimeoutError):
            raise
        except Exception as error:  # a damaged checkpoint: learn afresh from the serving version, from the start
            logger.error("trainer checkpoint %s does not read (%s); starting from the serving version", name, error)
            self.learner.models = copy.deepcopy(self.serving.models)
            return
        self.learner = body["learner"]
        self.seq = int(body["seq"])
        self.versions = int(body["versions"])
        self.serving_score = body["serving_score"]
        self.previous_object = name
        logger.info("trainer: resumed at examples sequence %d (%d learned)", self.seq, self.learner.learned)

    async def _consumer(self) -> Any:
        js = self.cluster.js
        with contextlib.suppress(NotFoundError):
            await js.delete_consumer(EXAMPLES_STREAM, "trainer")
        config = ConsumerConfig(
            durable_name="trainer",
            ack_policy=AckPolicy.ALL,
            deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
            opt_start_seq=self.seq + 1,
            filter_subject=f"{EXAMPLES}.>",
            max_ack_pending=max(10 * self.settings.trainer.checkpoint_every, 10_000),
            ack_wait=120.0,
        )
        return await js.pull_subscribe(f"{EXAMPLES}.>", durable="trainer", stream=EXAMPLES_STREAM, config=config)

    async def run(self) -> None:
        """Resume and learn until stopped or the lease is lost."""
        await self.resume()
        psub = await self._consumer()
        last_checkpoint = time.monotonic()
        taken_at_checkpoint = self.learner.seen()
        try:
            while not self.stop.is_set() and not self.lost:
                try:
                    messages = await psub.fetch(512, timeout=0.5)
                except (nats.errors.TimeoutError, TimeoutError):
                    messages = []
                for message in messages:
                    self._take(message)
                t = self.settings.trainer
                fresh = self.learner.seen() - taken_at_checkpoint
                if fresh and (
                    fresh >= t.checkpoint_every or time.monotonic() - last_checkpoint >= t.checkpoint_interval_s
                ):
                    await self.checkpoint()
                    last_checkpoint, taken_at_checkpoint = time.monotonic(), self.learner.seen()
            if not self.lost and self.learner.seen() > taken_at_checkpoint:
                try:  # bounded: with the cluster gone, the examples since the last checkpoint are taken again later
                    await asyncio.wait_for(self.checkpoint(), self.settings.shutdown_timeout_s)
                except TimeoutError:
                    logger.warning("trainer: the last checkpoint did not finish in time; the next trainer redoes it")
        finally:
            with contextlib.suppress(Exception):
                await psub.unsubscribe()

    def _take(self, message: Msg) -> None:
        seq = message.metadata.sequence.stream
        if seq <= self.seq:
            return
        self.seq, self.last = seq, message
        try:
            body = orjson.loads(message.data)
            x, y, home_type = body["x"], body["y"], body.get("home_type", "")
            if not isinstance(x, dict) or not isinstance(y, bool) or not isinstance(home_type, str):
                raise TypeError("not an example")
        except (orjson.JSONDecodeError, KeyError, TypeError):
            self.learner.skipped += 1
            return
        self.learner.add(seq, x, y, home_type)

    def judge(self) -> Verdict:
        """The gate on the held-out examples: the candidate against the serving version."""
        held = list(self.learner.holdout)
        candidate = score(self.learner.models, self.learner.router, held)
        self.serving_score = score(self.serving.models, self.serving.router, held)
        t = self.settings.trainer
        return gate(
            candidate,
            self.serving_score,
            len(held),
            sum(1 for _, y, _ in held if y),
            min_holdout=t.min_holdout,
            min_auc=t.min_auc,
            tolerance=t.tolerance,
        )

    async def checkpoint(self) -> None:
        """Gate (and maybe publish), write the checkpoint, then acknowledge the examples it covers."""
        verdict = await asyncio.to_thread(self.judge)
        self.verdicts.append(verdict.reason)
        if verdict.passed:
            await self._publish(verdict)
        body = {
            "learner": self.learner,
            "seq": self.seq,
            "versions": self.versions,
            "serving_score": self.serving_score,
            "verdict": verdict.reason,
        }
        name = f"trainer/{self.seq}"
        await self.cluster.objects.put(name, seal(KIND, pickle.dumps(body, protocol=pickle.HIGHEST_PROTOCOL)))
        pointer = orjson.dumps(
            {
                "object": name,
                "seq": self.seq,
                "learned": self.learner.learned,
                "held_out": self.learner.held,
                "skipped": self.learner.skipped,
                "verdict": verdict.reason,
                "serving": self.serving.version,
            }
        )
        try:
            if self.pointer_revision:
                self.pointer_revision = await self.cluster.state.update(CHECKPOINT, pointer, last=self.pointer_revision)
            else:
                self.pointer_revision = await self.cluster.state.create(CHECKPOINT, pointer)
        except KeyWrongLastSequenceError:
            self.lost = True
            raise LeaseLostError(CHECKPOINT) from None
        if self.last is not None:
            await self.last.ack()
        if self.previous_object not in (None, name):
            with contextlib.suppress(Exception):
                await self.cluster.objects.delete(str(self.previous_object))
        self.previous_object = name
        logger.info("trainer: checkpoint at %d: %s", self.seq, verdict.reason)

    async def _publish(self, verdict: Verdict) -> None:
        self.versions += 1
        version = f"fleet-{self.base.version}-{self.versions:05d}"
        models = copy.deepcopy(self.learner.models)
        meta = {"roc_auc": verdict.candidate, "examples": self.learner.learned, "seq": self.seq}
        candidate = ModelSet(
            version=version,
            models=models,
            thresholds=dict(self.serving.thresholds),
            router=dict(self.serving.router),
            decision=self.serving.decision,
            horizon_s=self.base.horizon_s,
            evidence=self.base.evidence,
            label_interval_s=self.base.label_interval_s,
            meta=meta,
        )
        name = f"models/{version}"
        await self.cluster.objects.put(name, candidate.encode())
        await self.cluster.state.put(CURRENT_MODELS, orjson.dumps({"version": version, "object": name, **meta}))
        self.serving, self.serving_score = candidate, verdict.candidate
        logger.info("trainer: published model version %s (%s)", version, verdict.reason)


class Trainer:
    """The trainer process: stand by until the lease is free, then run a session while it is held."""

    def __init__(self, settings: FleetSettings, daemon: Settings, snapshot: LoadedSnapshot, stop: asyncio.Event):
        self.settings = settings
        self.stop = stop
        self.base = ModelSet.from_live(live_models(daemon, snapshot))

    async def run(self) -> int:
        """Until stopped; returns the exit code."""
        cluster = await open_with_retry(self.settings, f"devintel-fleet-trainer-{self.settings.worker_id}", self.stop)
        if cluster is None:
            return 0
        leases = Leases(cluster.leases, self.settings.worker_id, cluster.js, LEASES)
        try:
            while not self.stop.is_set():
                try:
                    claimed = await leases.claim(LEASE)
                except Exception:
                    logger.warning("trainer: the lease bucket does not answer", exc_info=True)
                    claimed = False
                if claimed:
                    logger.info("trainer %s: active", self.settings.worker_id)
                    await self._tenure(cluster, leases)
                else:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self.stop.wait(), 1.0)
        finally:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(leases.release(LEASE), BRIEF_S)
            await close(cluster.nc)
        return 0

    async def _tenure(self, cluster: Cluster, leases: Leases) -> None:
        session = TrainerSession(cluster, self.settings, self.base)

        async def renew() -> None:
            while not session.stop.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.stop.wait(), self.settings.lease_ttl_s / 3.0)
                if self.stop.is_set():
                    session.stop.set()
                    return
                try:
                    await leases.renew(LEASE)
                except LeaseLostError:
                    logger.warning("trainer: the lease was lost; standing by")
                    session.lost = True
                    session.stop.set()
                except Exception:
                    logger.warning("trainer: renewing the lease failed", exc_info=True)

        try:
            async with asyncio.TaskGroup() as group:
                renewing = group.create_task(renew(), name="lease")
                group.create_task(self._learn(session, renewing), name="learn")
        finally:
            if session.lost:
                leases.forget(LEASE)
            else:
                with contextlib.suppress(Exception):
                    await leases.release(LEASE)

    async def _learn(self, session: TrainerSession, renewing: asyncio.Task[None]) -> None:
        try:
            await session.run()
        except LeaseLostError:
            logger.warning("trainer: another trainer checkpointed; standing by")
        except Exception:
            logger.exception("trainer: the session failed; the lease is given up")
        finally:
            session.stop.set()
            renewing.cancel()
