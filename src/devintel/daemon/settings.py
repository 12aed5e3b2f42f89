"""devintel's settings: one strict pydantic-settings model, every field described.

Sources, highest priority first: keyword arguments (the command line), ``DEVINTEL_*`` environment variables
(nested with ``__``: ``DEVINTEL_MQTT__HOST``), a ``.env`` file in the working directory, a TOML file
(``--config``), secrets from ``$CREDENTIALS_DIRECTORY`` (systemd's ``LoadCredential=``: a file named
``mqtt__password`` holds ``mqtt.password``), then the defaults. Unknown keys are an error, so a typo fails
at start instead of being ignored.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, SecretStr
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from devintel.contract import HOME_TYPES

_STRICT = ConfigDict(extra="forbid")
ENV_PREFIX = "DEVINTEL_"


class CredentialsSource(PydanticBaseSettingsSource):
    """Settings from the files of a credentials directory (systemd's ``$CREDENTIALS_DIRECTORY``): the file
    ``mqtt__password`` holds ``mqtt.password``, nested with ``__`` as the environment is. A trailing newline
    is dropped; files of other names than settings are an error, as unknown keys are."""

    def __init__(self, settings_cls: type[BaseSettings], directory: Path) -> None:
        super().__init__(settings_cls)
        self.directory = directory

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        """Unused: :meth:`__call__` reads the whole directory at once."""
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        """The settings the directory holds, as a nested mapping."""
        values: dict[str, Any] = {}
        for path in sorted(self.directory.iterdir()):
            if not path.is_file():
                continue
            *parents, leaf = path.name.lower().split("__")
            node = values
            for part in parents:
                node = node.setdefault(part, {})
            node[leaf] = path.read_text(encoding="utf-8").rstrip("\n")
        return values


class MqttSettings(BaseModel):
    """The MQTT broker devintel subscribes to and publishes on."""

    model_config = _STRICT
    host: str = Field("localhost", description="broker host name or address")
    port: int = Field(1883, ge=1, le=65535, description="broker port")
    username: str | None = Field(None, description="user name, when the broker asks for one")
    password: SecretStr | None = Field(
        None, description="password, with a username (better from $CREDENTIALS_DIRECTORY)"
    )
    tls: bool = Field(False, description="connect with TLS")
    client_id: str = Field("devintel", min_length=1, description="fixed client id (a persistent session)")
    ca_file: Path | None = Field(
        None, description="CA certificate file for TLS, with tls on (default: the system's CAs)"
    )
    keepalive_s: int = Field(60, ge=5, le=3600, description="MQTT keepalive, seconds")
    reconnect_max_s: float = Field(
        5.0, gt=0.0, description="longest wait between reconnection attempts, seconds (back within this of the broker)"
    )
    connect_timeout_s: float = Field(
        3.0,
        gt=0.0,
        description="longest wait for the broker's answer (CONNACK) to a connection attempt, seconds, before retrying",
    )

    def model_post_init(self, context: Any, /) -> None:
        """Check what field constraints cannot express: a CA file needs TLS, a password needs a user name."""
        if self.ca_file is not None and not self.tls:
            raise ValueError("mqtt.ca_file is set but mqtt.tls is off, so it would be ignored: set mqtt.tls = true")
        if self.password is not None and self.password.get_secret_value() and not self.username:
            # (an empty password is none: the systemd unit's default credential is an empty file)
            raise ValueError("mqtt.password is set without mqtt.username: set both, or neither")


class Zigbee2MqttSettings(BaseModel):
    """Where Zigbee2MQTT publishes."""

    model_config = _STRICT
    base_topic: str = Field("zigbee2mqtt", min_length=1, description="Zigbee2MQTT's base topic")


class HomeAssistantSettings(BaseModel):
    """Home Assistant: MQTT discovery of devintel's entities, and HA's websocket API as a source."""

    model_config = _STRICT
    discovery: bool = Field(True, description="publish discovery configs for every device")
    prefix: str = Field("homeassistant", min_length=1, description="Home Assistant's discovery prefix")
    remove_gone: bool = Field(
        True, description="remove a device's entities (empty retained configs) once it is evicted or leaves"
    )
    api_url: str | None = Field(
        None,
        description="Home Assistant's websocket API as a source of devices and readings, e.g. "
        "ws://127.0.0.1:8123/api/websocket (an http:// or https:// URL of HA works too); off when unset",
    )
    api_token: SecretStr | None = Field(
        None, description="a long-lived access token of HA (better from $CREDENTIALS_DIRECTORY as ha__api_token)"
    )
    reconnect_max_s: float = Field(
        60.0, gt=0.0, description="longest wait between reconnection attempts to HA's websocket API, seconds"
    )
    history_days: float = Field(
        10.0,
        ge=0.0,
        description="on the first connection (and after a gap) read this many days of HA's recorded history of the "
        "mapped entities through the same path as live readings (0: no backfill)",
    )
    history_max_states: int = Field(
        500_000, ge=0, description="recorded states read at most per backfill (bounds its time and memory)"
    )
    support_url: str | None = Field(
        None,
        description="the support_url of devintel's discovery origin, shown in Home Assistant (default: the "
        "HTTP API's /maintenance page when the API is on)",
    )


class QualitySettings(BaseModel):
    """The quality gate on held-out homes (positive class: fails within the horizon)."""

    model_config = _STRICT
    min_accuracy: float = Field(0.85, ge=0.0, le=1.0, description="minimum held-out accuracy")
    min_precision: float = Field(0.80, ge=0.0, le=1.0, description="minimum held-out precision")
    min_recall: float = Field(0.80, ge=0.0, le=1.0, description="minimum held-out recall")
    min_f1: float = Field(0.80, ge=0.0, le=1.0, description="minimum held-out F1")
    max_false_alarms_per_100_device_days: float = Field(
        0.5, ge=0.0, description="maximum held-out false-alarm episodes per 100 device-days (the decision's flags)"
    )
    min_catch_rate: float = Field(
        0.85, ge=0.0, le=1.0, description="minimum held-out share of failures with a precursor flagged >= 12 h ahead"
    )


class BootstrapSettings(BaseModel):
    """The synthetic warm start."""

    model_config = _STRICT
    samples: int = Field(1_000_000, ge=100, description="training events generated")
    holdout_samples: int = Field(300_000, ge=100, description="events of the validation and of the test homes each")
    days: float = Field(180.0, gt=0.0, description="span of the synthetic stream, in days")
    seed: int = Field(0, ge=0, description="training seed; validation and test homes use seed + 1000 and + 2000")


class LabelSettings(BaseModel):
    """Live evidence of failure: what turns waiting events into labels."""

    model_config = _STRICT
    offline_grace_s: float = Field(
        3600.0, gt=0.0, description="offline longer than this (stream time): suspected, its events wait for the verdict"
    )
    silence_factor: float = Field(
        10.0, gt=1.0, description="silent longer than this many usual intervals: suspected, as offline"
    )
    min_silence_s: float = Field(6 * 3600.0, gt=0.0, description="silence shorter than this is never suspected")
    gone_for_good_s: float = Field(
        72 * 3600.0,
        gt=0.0,
        description="offline or silent this long (stream time): a failure, dated when it went away; a device that "
        "comes back sooner was no failure",
    )


class LiveSettings(BaseModel):
    """The live loop: intake, publishing, and the bounds on what it keeps."""

    model_config = _STRICT
    queue_size: int = Field(10_000, ge=10, description="messages waiting for the processing worker at most")
    shed_learning_at: float = Field(
        0.5, gt=0.0, le=1.0, description="queue fill (share) above which learning is shed before prediction"
    )
    publish_interval_s: float = Field(
        300.0, ge=0.0, description="a device's unchanged prediction is republished at most this often (stream s)"
    )
    backlog_publish_interval_s: float = Field(
        1.0,
        ge=0.0,
        description="while catching up on a backlog (100 or more received messages waiting), a device's prediction is "
        "published at most this often (wall s), and its latest once the backlog is handled; 0: as without a backlog",
    )
    health_interval_s: float = Field(60.0, gt=0.0, description="seconds between health messages")
    label_interval_s: float = Field(
        3600.0, ge=0.0, description="a device's events wait for a label at most once per this much stream time"
    )
    max_devices: int = Field(10_000, ge=1, description="devices tracked at most (the least recently heard go first)")
    retention_days: float = Field(30.0, gt=0.0, description="a device silent this long (stream time) is evicted")
    max_future_s: float = Field(86_400.0, gt=0.0, description="event times further ahead of receipt are rejected")
    max_past_days: float = Field(400.0, gt=0.0, description="event times further behind receipt are rejected")
    shutdown_timeout_s: float = Field(
        10.0,
        gt=0.0,
        description="each shutdown step (drain the queue, final snapshot, publish) waits at most this long",
    )


class SimulateSettings(BaseModel):
    """``--simulate``: a synthetic home publishing live events at accelerated time."""

    model_config = _STRICT
    samples: int = Field(20_000, ge=100, description="events the simulated home publishes")
    days: float = Field(60.0, gt=0.0, description="span of the simulated stream, in days (ending now)")
    seed: int = Field(4242, ge=0, description="seed of the simulated home (not a training or held-out seed)")
    rate: float = Field(1000.0, gt=0.0, description="events published per second")


class HttpSettings(BaseModel):
    """The small HTTP API."""

    model_config = _STRICT
    host: str = Field("127.0.0.1", description="listen address (loopback by default)")
    port: int = Field(8019, ge=0, le=65535, description="listen port (0: HTTP API off)")
    token: SecretStr | None = Field(None, description="bearer token required by changing endpoints")


class SnapshotSettings(BaseModel):
    """Model snapshots."""

    model_config = _STRICT
    interval_s: float = Field(300.0, gt=0.0, description="seconds between periodic snapshots")
    keep: int = Field(5, ge=1, description="snapshots kept")
    signing_key: SecretStr | None = Field(
        None,
        min_length=1,
        description="HMAC-SHA256 key for snapshot manifests: snapshots written are signed, unsigned or wrongly "
        "signed ones are refused (best from $CREDENTIALS_DIRECTORY as snapshot__signing_key, never in model_dir)",
    )

    def signing_key_bytes(self) -> bytes | None:
        """The signing key as the snapshot store takes it (UTF-8 bytes), or ``None`` when none is configured."""
        return self.signing_key.get_secret_value().encode("utf-8") if self.signing_key is not None else None


def settings_config(env_prefix: str) -> SettingsConfigDict:
    """The pydantic-settings configuration of devintel's settings classes (the daemon's and the fleet's): variables
    under ``env_prefix`` with ``__`` between nested names, also from ``.env``, unknown names refused."""
    return SettingsConfigDict(
        env_prefix=env_prefix,
        env_nested_delimiter="__",
        env_file=".env",
        extra="forbid",
        nested_model_default_partial_update=True,
    )


class Settings(BaseSettings):
    """Everything devintel can be configured with (see the module docstring for the sources)."""

    model_config = settings_config(ENV_PREFIX)
    toml_file: ClassVar[Path | None] = None

    mqtt: MqttSettings = Field(default_factory=MqttSettings, description="MQTT broker")
    zigbee2mqtt: Zigbee2MqttSettings = Field(default_factory=Zigbee2MqttSettings, description="Zigbee2MQTT")
    ha: HomeAssistantSettings = Field(default_factory=HomeAssistantSettings, description="Home Assistant")
    topic_prefix: str = Field("devintel", min_length=1, description="prefix of devintel's own topics")
    model_dir: Path = Field(Path("models"), description="directory of the model snapshots")
    home_type: str = Field("single_family_house", description="home type of events that do not name one")
    horizon_days: float = Field(7.0, gt=0.0, description="a failure within this many days makes an event positive")
    quality: QualitySettings = Field(default_factory=QualitySettings, description="quality gate")
    bootstrap: BootstrapSettings = Field(default_factory=BootstrapSettings, description="synthetic warm start")
    http: HttpSettings = Field(default_factory=HttpSettings, description="HTTP API")
    snapshot: SnapshotSettings = Field(default_factory=SnapshotSettings, description="snapshots")
    labels: LabelSettings = Field(default_factory=LabelSettings, description="live evidence of failure")
    live: LiveSettings = Field(default_factory=LiveSettings, description="live loop")
    simulate: SimulateSettings = Field(default_factory=SimulateSettings, description="simulated home")

    def model_post_init(self, context: Any, /) -> None:
        """Check what field constraints cannot express."""
        if self.home_type not in HOME_TYPES:
            raise ValueError(f"home_type {self.home_type!r} is not one of {', '.join(HOME_TYPES)}")

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


def layered_sources(
    settings_cls: type[BaseSettings],
    toml_file: Path | None,
    init_settings: PydanticBaseSettingsSource,
    env_settings: PydanticBaseSettingsSource,
    dotenv_settings: PydanticBaseSettingsSource,
    credentials: bool = True,
) -> tuple[PydanticBaseSettingsSource, ...]:
    """The sources of devintel's settings classes, first wins: keyword arguments, environment, .env, the TOML file
    ``toml_file`` (when set), then systemd credentials (``$CREDENTIALS_DIRECTORY``, unless ``credentials`` is
    False)."""
    sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings, dotenv_settings]
    if toml_file is not None:
        sources.append(TomlConfigSettingsSource(settings_cls, toml_file=toml_file))
    directory = os.environ.get("CREDENTIALS_DIRECTORY") if credentials else None
    if directory:
        sources.append(CredentialsSource(settings_cls, Path(directory)))
    return tuple(sources)


def load_settings(config: Path | None = None) -> Settings:
    """The settings from every source, with ``config`` as the TOML file; raises on any invalid value."""
    if config is not None and not config.is_file():
        raise FileNotFoundError(f"config file {config} does not exist")
    unknown = sorted(
        name
        for name in os.environ
        if name.upper().startswith(ENV_PREFIX)
        and not name.upper().startswith(f"{ENV_PREFIX}FLEET_")  # devintel-fleet's own (devintel.fleet.settings)
        and name[len(ENV_PREFIX) :].lower().split("__")[0] not in Settings.model_fields
    )
    if unknown:
        raise ValueError(f"unknown setting(s) in the environment: {', '.join(unknown)}")

    class _Configured(Settings):
        toml_file: ClassVar[Path | None] = config

    return _Configured()
