"""The fleet trainer on a real cluster: the active trainer is killed (-9), the standby takes over from its
checkpoint, every example is learned exactly once, the workers switch to the published version, and the fleet
model, learning from every home, scores at least as well on held-out homes as a model that learned from one home's
examples (both start from the same snapshot).

Scaled for a 2-core machine: 40 training homes and 12 held-out homes of 600 events over 40 days each.
"""

from __future__ import annotations

import asyncio
import copy
import pickle
import time
from collections.abc import Iterator
from pathlib import Path

import nats
import orjson
import pytest
from nats.aio.client import Client as NatsClient

from devintel.daemon.from_settings import build_handler
from devintel.daemon.settings import load_settings
from devintel.fleet.cluster import EXAMPLES_STREAM
from devintel.fleet.codec import unseal
from devintel.fleet.homes import ExampleTap
from devintel.fleet.learning import Example, score
from devintel.fleet.trainer import CHECKPOINT, KIND
from devintel.models.live import GLOBAL
from devintel.models.snapshots import SnapshotStore
from fleet_support import FLEET_TESTS, fleet_cluster, wait_all_acked
from nats_cluster import (
    FleetProcess,
    Home,
    NatsCluster,
    payload_bytes,
    publish_homes,
    simulated_homes,
)

pytestmark = FLEET_TESTS


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[NatsCluster]:
    """A fresh three-node cluster."""
    yield from fleet_cluster(tmp_path)


def examples_of(homes: list[Home], model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> list[Example]:
    """Every resolved example of the homes' captures, as a worker computes them (all negatives kept)."""
    monkeypatch.setenv("DEVINTEL_MODEL_DIR", str(model_dir))
    settings = load_settings()
    snapshot = SnapshotStore(model_dir).load()
    out: list[Example] = []
    for home in homes:
        handler = build_handler(settings, snapshot)
        handler.live.learner.learn = False
        tap = ExampleTap(home.home_id, handler.live, negative_rate=1.0)
        for line in home.capture:
            handler.handle(str(line["topic"]), payload_bytes(line), float(line["ts"]))  # type: ignore[arg-type]
        handler.live.tick(handler.live.clock + 30 * 86_400.0)  # the horizon passes: the rest resolve
        for example in tap.drain():
            body = orjson.loads(example.body)
            out.append((body["x"], body["y"], body["home_type"]))
    return out


async def trainer_holder(nc: NatsClient) -> str | None:
    """Who holds the trainer lease."""
    kv = await nc.jetstream().key_value("devintel-leases")
    try:
        value = (await kv.get("trainer")).value
        return value.decode() if value is not None else None
    except nats.js.errors.KeyNotFoundError:
        return None


async def checkpoint(nc: NatsClient) -> dict[str, object] | None:
    """The trainer's checkpoint pointer."""
    kv = await nc.jetstream().key_value("devintel-state")
    try:
        return orjson.loads((await kv.get(CHECKPOINT)).value or b"")  # type: ignore[no-any-return]
    except nats.js.errors.KeyNotFoundError:
        return None


def test_the_standby_trainer_takes_over_and_the_fleet_model_beats_one_homes(
    cluster: NatsCluster, small_snapshot_master: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    homes = simulated_homes(40, 600, 40.0, seed=4000)
    held_out = simulated_homes(12, 600, 40.0, seed=5000)
    trainer_env = {
        "DEVINTEL_FLEET_TRAINER__CHECKPOINT_EVERY": "300",
        "DEVINTEL_FLEET_TRAINER__CHECKPOINT_INTERVAL_S": "1",
        "DEVINTEL_FLEET_TRAINER__MIN_HOLDOUT": "50",
        "DEVINTEL_FLEET_TRAINER__MIN_AUC": "0.0",
        "DEVINTEL_FLEET_TRAINER__TOLERANCE": "1.0",  # publish every checkpoint: the switch is what is tested here
        "DEVINTEL_FLEET_NEGATIVE_RATE": "0.3",
    }
    env = {**cluster.fleet_env("w1", small_snapshot_master), **trainer_env}
    worker = FleetProcess("worker", env, tmp_path / "w1.log").start()
    trainers = [
        FleetProcess("trainer", {**env, "DEVINTEL_FLEET_WORKER_ID": name}, tmp_path / f"{name}.log").start()
        for name in ("t1", "t2")
    ]

    async def scenario() -> None:
        async with await nats.connect(cluster.urls) as nc:
            while await trainer_holder(nc) is None:
                await asyncio.sleep(0.2)
            active = await trainer_holder(nc)
            first, second = homes[:20], homes[20:]
            sent = await publish_homes(first, cluster.mqtt_ports)
            await wait_all_acked(nc, cluster.partitions, sent)
            while (await checkpoint(nc) or {}).get("learned", 0) == 0:
                await asyncio.sleep(0.2)
            victim = trainers[0] if active == "t1" else trainers[1]
            victim.kill()
            killed = time.monotonic()
            while await trainer_holder(nc) in (None, active):
                assert time.monotonic() - killed < 10.0, "the standby did not take over within 10 s"
                await asyncio.sleep(0.1)
            print(f"the standby trainer took over {time.monotonic() - killed:.1f} s after the kill")
            sent += await publish_homes(second, cluster.mqtt_ports)
            await wait_all_acked(nc, cluster.partitions, sent)
            js = nc.jetstream()
            examples = (await js.stream_info(EXAMPLES_STREAM)).state.messages
            assert examples > 500
            deadline = time.monotonic() + 60
            while True:  # every example learned or held out once, none twice
                pointer = await checkpoint(nc) or {}
                taken = sum(int(str(pointer.get(key, 0))) for key in ("learned", "held_out", "skipped"))
                if taken >= examples and pointer.get("seq") == (await js.stream_info(EXAMPLES_STREAM)).state.last_seq:
                    break
                assert time.monotonic() < deadline, f"the trainer took {taken} of {examples} examples"
                await asyncio.sleep(0.5)
            assert taken == examples
            assert pointer["skipped"] == 0
            models_kv = await js.key_value("devintel-state")
            current = orjson.loads((await models_kv.get("models.current")).value or b"")
            deadline = time.monotonic() + 20
            while True:  # the worker switches to the newest version
                totals = [
                    orjson.loads((await models_kv.get(f"partition.{k}")).value or b"")["totals"] for k in range(6)
                ]
                if all(t["version"] == current["version"] for t in totals):
                    break
                assert time.monotonic() < deadline, f"the worker serves {[t['version'] for t in totals]}"
                await asyncio.sleep(1.0)
            blob = (await (await js.object_store("devintel")).get(str(pointer["object"]))).data or b""
            fleet_models = pickle.loads(unseal(KIND, blob))["learner"].models
        for trainer in trainers:
            trainer.stop()
        worker.stop()

        evaluation = examples_of(held_out, small_snapshot_master, monkeypatch)
        own = examples_of(homes[:1], small_snapshot_master, monkeypatch)
        monkeypatch.setenv("DEVINTEL_MODEL_DIR", str(small_snapshot_master))
        base = build_handler(load_settings(), SnapshotStore(small_snapshot_master).load()).live
        single = copy.deepcopy(base.models)
        for x, y, home_type in own:
            single[GLOBAL].learn_one(x, y)
            if home_type in single and home_type != GLOBAL:
                single[home_type].learn_one(x, y)
        router = dict(base.router)
        fleet_auc = score(fleet_models, router, evaluation)
        single_auc = score(single, router, evaluation)
        base_auc = score(base.models, router, evaluation)
        print(f"held-out ROC AUC: fleet {fleet_auc:.4f}, one home {single_auc:.4f}, snapshot {base_auc:.4f}")
        assert fleet_auc is not None
        assert single_auc is not None
        assert fleet_auc >= single_auc

    try:
        asyncio.run(scenario())
    finally:
        for process in (worker, *trainers):
            process.kill()
