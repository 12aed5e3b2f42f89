"""The fleet's pure parts, without a server: subjects and the servers' mappings, sealed blobs, the trainer's ROC AUC
(against a brute-force oracle) and gate, the claim order, example sampling, partition snapshots (models written as
references, a restored state answers as the original would), and the settings' strictness."""

from __future__ import annotations

import itertools
import pickle
import random
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from devintel.daemon.from_settings import live_models
from devintel.daemon.settings import load_settings
from devintel.fleet import cli
from devintel.fleet.codec import CorruptBlobError, seal, unseal
from devintel.fleet.homes import HomeFactory, keep_negative, tap_of
from devintel.fleet.learning import gate, roc_auc
from devintel.fleet.modelset import ModelSet
from devintel.fleet.servers import NodeConfig, server_config
from devintel.fleet.settings import load_fleet_settings, load_home_settings
from devintel.fleet.state import PartitionState, decode_state, encode_state
from devintel.fleet.subjects import egress_subject, ingress_mappings, parse_ingress
from devintel.fleet.worker import claim_order
from devintel.models.snapshots import SnapshotStore
from nats_cluster import payload_bytes, simulated_homes


def test_ingress_subjects_parse_and_map_to_partitions() -> None:
    inbound = parse_ingress("devintel.in.3.homes.h0042.devintel.events.0x00124b")
    assert (inbound.partition, inbound.home_id, inbound.topic) == (3, "h0042", "devintel/events/0x00124b")
    assert parse_ingress("devintel.in.0.homes.h1.zigbee2mqtt.bridge.devices").topic == "zigbee2mqtt/bridge/devices"
    for bad in ("devintel.in.x.homes.h1.a", "devintel.in.1.flats.h1.a", "devintel.in.1.homes.h$1.a", "garbage", ""):
        with pytest.raises(ValueError, match=r"subject|partition|home"):
            parse_ingress(bad)
    mappings = ingress_mappings(12)
    assert mappings["homes.*.devintel.events.*"] == (
        "devintel.in.{{partition(12,1)}}.homes.{{wildcard(1)}}.devintel.events.{{wildcard(2)}}"
    )
    assert mappings["homes.*.zigbee2mqtt.>"] == "devintel.in.{{partition(12,1)}}.homes.{{wildcard(1)}}.zigbee2mqtt.>"
    assert mappings["fleet.out.homes.>"] == "homes.>"
    assert not any(source.startswith("homes.*.devintel.predictions") for source in mappings)  # output is no input
    assert egress_subject("h1", "homeassistant/sensor/devintel/x_risk/config") == (
        "fleet.out.homes.h1.homeassistant.sensor.devintel.x_risk.config"
    )
    with pytest.raises(ValueError, match="partition"):
        ingress_mappings(0)


def test_a_node_config_names_the_server_the_routes_and_the_mappings() -> None:
    text = server_config(
        NodeConfig("n2", "127.0.0.1", 4222, 6222, 1883, "/var/lib/nats", routes=("a:6222", "b:6222"), partitions=4)
    )
    assert 'server_name: "n2"' in text
    assert '"nats-route://a:6222", "nats-route://b:6222"' in text
    assert 'store_dir: "/var/lib/nats"' in text
    assert "mqtt {" in text
    assert '"homes.*.homeassistant.status": "devintel.in.{{partition(4,1)}}.homes.{{wildcard(1)}}' in text


def test_sealed_blobs_refuse_another_kind_and_any_damage() -> None:
    blob = seal("partition", b"state" * 100)
    assert unseal("partition", blob) == b"state" * 100
    with pytest.raises(CorruptBlobError, match="not a"):
        unseal("trainer-checkpoint", blob)
    for position in (len(blob) - 1, len(blob) // 2, 30):
        damaged = bytearray(blob)
        damaged[position] ^= 0x01
        with pytest.raises(CorruptBlobError):
            unseal("partition", bytes(damaged))
    with pytest.raises(CorruptBlobError):
        unseal("partition", blob[:-5])


def test_roc_auc_equals_the_share_of_rightly_ordered_pairs() -> None:
    rng = random.Random(4)
    for _ in range(30):
        n = rng.randint(2, 40)
        labels = [rng.random() < 0.3 for _ in range(n)]
        scores = [round(rng.random(), 1) for _ in range(n)]  # ties on purpose
        pairs = [(p, q) for p, q in itertools.product(range(n), range(n)) if labels[p] and not labels[q]]
        if not pairs:
            assert roc_auc(labels, scores) is None
            continue
        oracle = sum(1.0 if scores[p] > scores[q] else 0.5 if scores[p] == scores[q] else 0.0 for p, q in pairs)
        assert roc_auc(labels, scores) == pytest.approx(oracle / len(pairs))


def test_the_gate_needs_held_out_evidence_a_minimum_and_no_loss() -> None:
    rules: dict[str, Any] = {"min_holdout": 100, "min_auc": 0.6, "tolerance": 0.01}
    assert not gate(0.9, 0.5, 50, 20, **rules).passed  # too few held out
    assert not gate(0.9, 0.5, 500, 3, **rules).passed  # too few positives
    assert not gate(0.55, None, 500, 50, **rules).passed  # below the minimum
    assert not gate(0.70, 0.72, 500, 50, **rules).passed  # worse than what serves
    assert gate(0.715, 0.72, 500, 50, **rules).passed  # within the tolerance
    assert gate(0.80, None, 500, 50, **rules).passed


def test_workers_try_partitions_in_their_own_order_and_negatives_are_sampled_by_identity() -> None:
    orders = {tuple(claim_order(f"w{i}", 12)) for i in range(8)}
    assert all(sorted(order) == list(range(12)) for order in orders)
    assert len({order[0] for order in orders}) > 1
    kept = [keep_negative("h1", f"d{i}", 1.7e9 + i, 0.2) for i in range(5000)]
    assert 0.17 < sum(kept) / len(kept) < 0.23
    assert kept == [keep_negative("h1", f"d{i}", 1.7e9 + i, 0.2) for i in range(5000)]


def test_a_restored_partition_answers_as_the_original_and_does_not_carry_the_models(
    small_snapshot_master: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DEVINTEL_MODEL_DIR", str(small_snapshot_master))
    settings, snapshot = load_settings(), SnapshotStore(small_snapshot_master).load()
    models = ModelSet.from_live(live_models(settings, snapshot))
    factory = HomeFactory(settings, snapshot, 0.2)
    homes = simulated_homes(3, 300, 20.0, seed=9000)
    state = PartitionState(0, version=models.version)
    for home in homes:
        state.homes[home.home_id] = factory.new(home.home_id, models)
    half = {home.home_id: len(home.capture) // 2 for home in homes}
    for home in homes:
        for line in home.capture[: half[home.home_id]]:
            state.homes[home.home_id].handle(str(line["topic"]), payload_bytes(line), float(line["ts"]))  # type: ignore[arg-type]
    blob = encode_state(state, models)
    assert b"river.compose.pipeline" in pickle.dumps(models.models)
    assert b"river.compose.pipeline" not in unseal("partition", blob)  # the models are references, not copies
    restored = decode_state(blob, models)
    for home in homes:
        original, copy = state.homes[home.home_id], restored.homes[home.home_id]
        assert copy.live.models is models.models
        assert tap_of(copy) is not None
        for line in home.capture[half[home.home_id] :]:
            args = (str(line["topic"]), payload_bytes(line), float(line["ts"]))  # type: ignore[arg-type]
            ours, theirs = original.handle(*args), copy.handle(*args)
            assert [m.as_record() for m in ours.messages] == [m.as_record() for m in theirs.messages]
        assert tap_of(original).drain() == tap_of(copy).drain()  # type: ignore[union-attr]
    state.layout -= 1  # the per-home state of another version: refused (the partition is rebuilt from the stream)
    with pytest.raises(ValueError, match="layout"):
        decode_state(encode_state(state, models), models)


def test_settings_are_strict_and_take_credentials_from_systemd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "fleet.toml"
    config.write_text('partitions = 24\n[nats]\nservers = ["tls://a:4222", "tls://b:4222"]\nuser = "fleet"\n')
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    (credentials / "nats__password").write_text("s3cret\n")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(credentials))
    settings = load_fleet_settings(config)
    assert settings.partitions == 24
    assert settings.nats.password is not None
    assert settings.nats.password.get_secret_value() == "s3cret"
    config.write_text("partitionz = 24\n")
    with pytest.raises(ValidationError):
        load_fleet_settings(config)
    monkeypatch.setenv("DEVINTEL_FLEET_PARTITIONS", "0")
    with pytest.raises(ValidationError):
        load_fleet_settings()
    monkeypatch.setenv("DEVINTEL_FLEET_PARTITIONS", "6")
    monkeypatch.setenv("DEVINTEL_HORIZON_DAYS", "5")
    assert load_home_settings(None).horizon_days == 5.0  # the homes' settings skip the fleet's credentials
    monkeypatch.delenv("CREDENTIALS_DIRECTORY")
    load_settings()  # the daemon's own settings let the fleet's environment be


def test_the_command_line_prints_a_node_config_from_the_fleet_settings(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DEVINTEL_FLEET_PARTITIONS", "32")
    argv = ["server-config", "--name", "n1", "--store-dir", "/srv/js", "--route", "n1:6222", "--route", "n2:6222"]
    assert cli.main(argv) == 0
    text = capsys.readouterr().out
    assert 'server_name: "n1"' in text
    assert "{{partition(32,1)}}" in text
