"""Shared, session-scoped datasets for the generator tests.

Each dataset is generated once per test session: the default-size one (the size the daemon bootstraps
from, about 1.5 s), a small one for cheap contract checks, one per home type for comparisons between
home types, and the fleet (the hidden per-device stories) behind the default-size one.

For the MQTT integration tests: ``mqtt_broker``, a real broker (mosquitto, else amqtt) in a subprocess per
test (see ``mqtt_broker.py``), and ``topic_namespace``, a topic prefix unique to the test.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import numpy as np
import numpy.typing as npt
import pandas as pd
import pytest

from devintel.generators import DatasetStats, generate, summarize
from devintel.generators.api import GeneratorConfig
from devintel.generators.fleet import Fleet
from dockerfile_parsing import dockerfile  # noqa: F401 (the Docker tests' fixture)
from harness.broker import Broker, describe_broker
from security_helpers import daemons  # noqa: F401 (the security tests' fixture)
from snapshot_fixtures import small_snapshot, small_snapshot_master  # noqa: F401 (fixtures shared by the live tests)

#: Arguments of the default-size dataset: generate()'s defaults with a fixed seed.
DEFAULT_SAMPLES = 1_500_000
DEFAULT_SEED = 7
#: Arguments of the small dataset.
SMALL_SAMPLES = 20_000
SMALL_DAYS = 60.0
SMALL_SEED = 11
#: Size and seed of the per-home-type datasets.
HOME_TYPE_SAMPLES = 150_000
HOME_TYPE_SEED = 3


@pytest.fixture(scope="session")
def default_frame() -> pd.DataFrame:
    """``generate(samples=1_500_000, seed=7)``: every other argument at its default."""
    return generate(samples=DEFAULT_SAMPLES, seed=DEFAULT_SEED)


@pytest.fixture(scope="session")
def default_stats(default_frame: pd.DataFrame) -> DatasetStats:
    """``summarize`` of the default-size dataset."""
    return summarize(default_frame)


@pytest.fixture(scope="session")
def default_fleet() -> Fleet:
    """The fleet (homes, devices and their hidden stories) behind the default-size dataset."""
    return GeneratorConfig.from_arguments(
        samples=DEFAULT_SAMPLES,
        seed=DEFAULT_SEED,
    ).fleet()


@pytest.fixture(scope="session")
def default_fleet_index(default_frame: pd.DataFrame, default_fleet: Fleet) -> npt.NDArray[np.int64]:
    """For every row of the default-size dataset, the index of its device in ``default_fleet``."""
    position = {device_id: i for i, device_id in enumerate(default_fleet.device_ids)}
    categories = default_frame["device_id"].cat.categories
    lookup = np.array([position.get(str(c), -1) for c in categories], dtype=np.int64)
    index: npt.NDArray[np.int64] = lookup[default_frame["device_id"].cat.codes.to_numpy()]
    return index


@pytest.fixture(scope="session")
def small_frame() -> pd.DataFrame:
    """A small dataset (20,000 events over 60 days) for cheap checks."""
    return generate(samples=SMALL_SAMPLES, days=SMALL_DAYS, seed=SMALL_SEED)


@pytest.fixture(scope="session")
def home_type_frame() -> Callable[[str], pd.DataFrame]:
    """``home_type_frame(name)``: a dataset of homes of that one type only, generated on first use."""
    cache: dict[str, pd.DataFrame] = {}

    def get(home_type: str) -> pd.DataFrame:
        if home_type not in cache:
            frame = generate(samples=HOME_TYPE_SAMPLES, home_types=[home_type], seed=HOME_TYPE_SEED)
            cache[home_type] = frame
        return cache[home_type]

    return get


# --- MQTT integration tests: a real broker per test, one topic namespace per test -------------------------


def pytest_report_header(config: pytest.Config) -> str:
    """Which broker the MQTT integration tests run against (mosquitto, or the embedded amqtt)."""
    return describe_broker()


@pytest.fixture
def mqtt_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    """A fresh, running MQTT broker on a free loopback port for this test; stopped afterwards, even on failure."""
    broker = Broker(tmp_path_factory.mktemp("mqtt-broker"))
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture
def topic_namespace() -> str:
    """A topic prefix unique to this test (``t`` and 8 hex digits), so tests never see each other's messages."""
    return f"t{uuid.uuid4().hex[:8]}"
