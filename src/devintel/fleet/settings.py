"""``devintel-fleet``'s settings: one strict pydantic-settings model, configured like the daemon's.

Sources, highest priority first: keyword arguments, ``DEVINTEL_FLEET_*`` environment variables (nested with
``__``: ``DEVINTEL_FLEET_NATS__SERVERS='["nats://a:4222"]'``), a ``.env`` file, a TOML file (``--config``), secrets
from ``$CREDENTIALS_DIRECTORY`` (a file ``nats__password`` holds ``nats.password``), then the defaults. Unknown
keys are an error. Each home's handler is configured by the daemon's own settings (``daemon_config``, and the
``DEVINTEL_*`` environment), so a home behaves in the fleet as its own daemon would.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, SecretStr
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource

from devintel.daemon.settings import Settings, layered_sources, settings_config

_STRICT = ConfigDict(extra="forbid")
ENV_PREFIX = "DEVINTEL_FLEET_"


class NatsSettings(BaseModel):
    """How to reach the NATS cluster."""

    model_config = _STRICT
    servers: list[str] = Field(
        default_factory=lambda: ["nats://127.0.0.1:4222"], min_length=1, description="server URLs (any node)"
    )
    user: str | None = Field(None, description="user name, when the servers ask for one")
    password: SecretStr | None = Field(None, description="password (better from $CREDENTIALS_DIRECTORY)")
    token: SecretStr | None = Field(None, description="authentication token, instead of user and password")
    creds_file: Path | None = Field(None, description="a NATS credentials file (JWT and NKey seed)")
    tls: bool = Field(False, description="connect with TLS (also implied by tls:// server URLs)")
    ca_file: Path | None = Field(None, description="CA certificate file for TLS (default: the system's CAs)")
    cert_file: Path | None = Field(None, description="client certificate for mutual TLS")
    key_file: Path | None = Field(None, description="the client certificate's key")
    connect_timeout_s: float = Field(5.0, gt=0.0, description="timeout of one connection attempt, seconds")
    reconnect_wait_s: float = Field(1.0, gt=0.0, description="wait between reconnection attempts, seconds")


class TrainerSettings(BaseModel):
    """The fleet trainer: learning from every home's examples, gating, publishing versions."""

    model_config = _STRICT
    checkpoint_every: int = Field(2_000, ge=1, description="examples between two checkpoints (and gate checks)")
    checkpoint_interval_s: float = Field(10.0, gt=0.0, description="longest time between checkpoints, seconds")
    holdout_every: int = Field(5, ge=2, description="every n-th example (by stream sequence) is held out")
    holdout_kept: int = Field(20_000, ge=100, description="held-out examples kept (the newest)")
    min_holdout: int = Field(200, ge=1, description="held-out examples (and positives: a tenth) a gate needs")
    min_auc: float = Field(0.55, ge=0.0, le=1.0, description="ROC AUC a version needs on the held-out examples")
    tolerance: float = Field(0.0, ge=0.0, description="how much below the current version a new one may score")


class FleetSettings(BaseSettings):
    """Everything ``devintel-fleet`` can be configured with (see the module docstring for the sources)."""

    model_config = settings_config(ENV_PREFIX)
    toml_file: ClassVar[Path | None] = None

    nats: NatsSettings = Field(default_factory=NatsSettings, description="the NATS cluster")
    partitions: int = Field(12, ge=1, le=1024, description="partitions of the events stream (as the servers map)")
    replicas: int = Field(3, ge=1, le=5, description="replicas of the streams, buckets and object store")
    worker_id: str = Field(
        default_factory=lambda: f"{socket.gethostname()}-{os.getpid()}",
        pattern=r"^[A-Za-z0-9_-]{1,64}$",
        description="this process's name in leases (default: host name and process id)",
    )
    lease_ttl_s: float = Field(6.0, ge=1.0, description="a lease not renewed for this long expires, seconds")
    snapshot_every: int = Field(2_000, ge=1, description="messages of a partition between two state snapshots")
    snapshot_interval_s: float = Field(5.0, gt=0.0, description="longest time between two snapshots, seconds")
    fetch_batch: int = Field(256, ge=1, le=10_000, description="messages a partition fetches at a time")
    shutdown_timeout_s: float = Field(15.0, gt=0.0, description="bound of the final snapshots at shutdown, seconds")
    models_poll_s: float = Field(2.0, gt=0.0, description="how often a worker looks for a new model version")
    events_max_age_days: float = Field(14.0, gt=0.0, description="events stream retention (must exceed snapshots')")
    examples_max_age_days: float = Field(7.0, gt=0.0, description="examples stream retention")
    negative_rate: float = Field(0.2, gt=0.0, le=1.0, description="share of negative examples sent to the trainer")
    daemon_config: Path | None = Field(None, description="TOML settings of each home's handler, as the daemon's")
    trainer: TrainerSettings = Field(default_factory=TrainerSettings, description="the fleet trainer")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Keyword arguments, environment, .env, the TOML file, then systemd credentials."""
        return layered_sources(settings_cls, cls.toml_file, init_settings, env_settings, dotenv_settings)


def load_fleet_settings(config: Path | None = None, **overrides: Any) -> FleetSettings:
    """The fleet settings from every source, with ``config`` as the TOML file; raises on any invalid value."""
    if config is not None and not config.is_file():
        raise FileNotFoundError(f"config file {config} does not exist")

    class _Configured(FleetSettings):
        toml_file: ClassVar[Path | None] = config

    return _Configured(**overrides)


def load_home_settings(config: Path | None) -> Settings:
    """The daemon's settings of every home's handler: ``config`` (TOML), the ``DEVINTEL_*`` environment and ``.env``,
    as the daemon reads them, but not ``$CREDENTIALS_DIRECTORY``: that holds the fleet's secrets (``nats__password``),
    which the daemon's settings would refuse, and a home's handler needs none."""
    if config is not None and not config.is_file():
        raise FileNotFoundError(f"config file {config} does not exist")

    class _Home(Settings):
        @classmethod
        def settings_customise_sources(
            cls,
            settings_cls: type[BaseSettings],
            init_settings: PydanticBaseSettingsSource,
            env_settings: PydanticBaseSettingsSource,
            dotenv_settings: PydanticBaseSettingsSource,
            file_secret_settings: PydanticBaseSettingsSource,
        ) -> tuple[PydanticBaseSettingsSource, ...]:
            """Keyword arguments, environment, .env and the TOML file: no credentials directory."""
            return layered_sources(
                settings_cls, config, init_settings, env_settings, dotenv_settings, credentials=False
            )

    return _Home()
