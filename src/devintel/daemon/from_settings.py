"""The settings mapped to the objects they configure, in one place.

Every object the settings shape is built here and nowhere else: the quality gate's thresholds, the bootstrap's
configuration, the live evidence rules, the window of believable event times, the handler's options (and the
handler with its adapters), the live models of a snapshot, the snapshot store, and the MQTT client (the daemon's
session and the simulated home's use the same host, port, credentials and TLS). The service, the command line
(``devintel bootstrap``, ``replay``), a refresh and the simulator all call these functions.

The objects' own defaults (the pure core's dataclasses, usable without settings) are the settings' defaults:
``tests/test_from_settings.py`` builds each object from default settings and compares it with the object's default,
so neither can drift from the other. (The settings do not import the dataclasses for their defaults: that would
load River and scipy into every ``devintel-healthcheck``, which must stay a fraction of a second.)
"""

from __future__ import annotations

import ssl
from dataclasses import replace
from importlib.metadata import version as package_version
from typing import TYPE_CHECKING, Any

from devintel.daemon.settings import MqttSettings, Settings
from devintel.ingest.outbound import Origin, Topics
from devintel.ingest.validation import TimeWindow

if TYPE_CHECKING:
    import aiomqtt

    from devintel.ingest.adapters.base import Adapter
    from devintel.ingest.handler import Handler, HandlerOptions
    from devintel.models.bootstrap import BootstrapConfig
    from devintel.models.gate import QualityThresholds
    from devintel.models.live import LiveEvidence, LiveModels
    from devintel.models.snapshots import LoadedSnapshot, SnapshotStore

DAY_S = 86_400.0


def quality_thresholds(settings: Settings) -> QualityThresholds:
    """The quality gate (``quality.*``)."""
    from devintel.models.gate import QualityThresholds

    return QualityThresholds(**settings.quality.model_dump())


def bootstrap_config(settings: Settings, allow_low_quality: bool, **sizes: Any) -> BootstrapConfig:
    """The bootstrap the settings ask for (``bootstrap.*``, ``horizon_days``, ``quality.*``); ``sizes`` (``samples``,
    ``holdout_samples``, ``days``, ``seed``) override the settings' where given and not ``None`` (the command line)."""
    from devintel.models.bootstrap import BootstrapConfig  # with pandas: only when a bootstrap runs

    config = BootstrapConfig(
        samples=settings.bootstrap.samples,
        holdout_samples=settings.bootstrap.holdout_samples,
        days=settings.bootstrap.days,
        seed=settings.bootstrap.seed,
        horizon_days=settings.horizon_days,
        thresholds=quality_thresholds(settings),
        allow_low_quality=allow_low_quality,
        workers=1,  # the second core: half the training homes, the home-type models, the test homes (bootstrap.Worker)
    )
    return replace(config, **{name: value for name, value in sizes.items() if value is not None})


def live_evidence(settings: Settings) -> LiveEvidence:
    """When live evidence counts as a failure (``labels.*``)."""
    from devintel.models.live import LiveEvidence

    return LiveEvidence(**settings.labels.model_dump())


def time_window(settings: Settings) -> TimeWindow:
    """How far event times may stray from their receipt (``live.max_future_s``, ``live.max_past_days``)."""
    return TimeWindow(max_future_s=settings.live.max_future_s, max_past_s=settings.live.max_past_days * DAY_S)


def origin(settings: Settings) -> Origin:
    """devintel as its discovery configs name it: its version, and where to read about it (``ha.support_url``,
    else the HTTP API's list of devices that need attention when the API is on)."""
    url = settings.ha.support_url
    if url is None and settings.http.port:
        host = settings.http.host if ":" not in settings.http.host else f"[{settings.http.host}]"
        url = f"http://{host}:{settings.http.port}/maintenance"
    return Origin(name="devintel", sw_version=package_version("devintel"), support_url=url or "")


def handler_options(settings: Settings) -> HandlerOptions:
    """How the handler publishes and what it keeps (``ha.discovery``, ``ha.remove_gone``, ``live.*``)."""
    from devintel.ingest.handler import HandlerOptions

    return HandlerOptions(
        discovery=settings.ha.discovery,
        remove_gone=settings.ha.remove_gone,
        publish_interval_s=settings.live.publish_interval_s,
        backlog_publish_interval_s=settings.live.backlog_publish_interval_s,
        retention_s=settings.live.retention_days * DAY_S,
        max_devices=settings.live.max_devices,
        origin=origin(settings),
    )


def topics(settings: Settings) -> Topics:
    """devintel's topic names (``topic_prefix``, ``ha.prefix``)."""
    return Topics(prefix=settings.topic_prefix, ha_prefix=settings.ha.prefix)


def adapters(settings: Settings) -> list[Adapter]:
    """One adapter of every registered kind (:data:`~devintel.ingest.adapters.registry.ADAPTERS`), configured by
    the settings (topics, default home type, time window)."""
    from devintel.ingest.adapters.registry import AdapterOptions, build_adapters

    return build_adapters(
        AdapterOptions(
            topic_prefix=settings.topic_prefix,
            zigbee2mqtt_base_topic=settings.zigbee2mqtt.base_topic,
            ha_prefix=settings.ha.prefix,
            default_home_type=settings.home_type,
            window=time_window(settings),
        )
    )


def live_models(settings: Settings, snapshot: LoadedSnapshot) -> LiveModels:
    """The live models of a verified snapshot, with the settings' horizon, evidence rules and label interval."""
    from devintel.models.live import from_snapshot

    return from_snapshot(
        snapshot.files,
        snapshot.manifest,
        snapshot.version,
        settings.horizon_days * DAY_S,
        live_evidence(settings),
        label_interval_s=settings.live.label_interval_s,
    )


def build_handler(settings: Settings, snapshot: LoadedSnapshot, live: LiveModels | None = None) -> Handler:
    """The handler the settings describe, serving ``snapshot`` (live ingest and replay build it alike); ``live``
    serves instead of the snapshot's own live models when given (the fleet shares one model set between homes)."""
    from devintel.ingest.handler import Handler

    served = live if live is not None else live_models(settings, snapshot)
    return Handler(served, adapters(settings), topics(settings), handler_options(settings))


def snapshot_store(settings: Settings) -> SnapshotStore:
    """The snapshot store of ``model_dir``: it keeps ``snapshot.keep`` versions, and signs and checks manifests
    when ``snapshot.signing_key`` is set."""
    from devintel.models.snapshots import SnapshotStore

    return SnapshotStore(
        settings.model_dir, keep=settings.snapshot.keep, signing_key=settings.snapshot.signing_key_bytes()
    )


def mqtt_client(settings: MqttSettings, identifier: str, **options: Any) -> aiomqtt.Client:
    """An MQTT client of the configured broker: host, port, user name and password, TLS verified against
    ``ca_file`` (or the system's CAs), keepalive; ``identifier`` names the client, ``options`` are more of
    :class:`aiomqtt.Client`'s arguments (a will, a persistent session)."""
    import aiomqtt

    tls = (
        ssl.create_default_context(cafile=str(settings.ca_file) if settings.ca_file else None) if settings.tls else None
    )
    return aiomqtt.Client(
        settings.host,
        settings.port,
        identifier=identifier,
        username=settings.username,
        password=settings.password.get_secret_value() if settings.password else None,
        keepalive=settings.keepalive_s,
        tls_context=tls,
        **options,
    )
