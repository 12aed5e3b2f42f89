"""``--simulate``: a synthetic home that publishes its devices' telemetry through the broker, as a bridge would.

The home comes from the same generator as the warm start, with its own seed (``simulate.seed``, neither a
training nor a held-out seed) and the configured home type; its event times are shifted so that the stream
ends now, and it is published at ``simulate.rate`` events per second (accelerated time: 60 days in about
20 seconds at the defaults) as canonical events on ``<prefix>/events/<device_id>`` over a connection of its own
to the daemon's broker, with its credentials and TLS (:func:`~devintel.daemon.from_settings.mqtt_client`).
The daemon sees nothing that a real installation would not send: no label, no failure time.
"""

from __future__ import annotations

import asyncio
import logging
import time

import orjson

from devintel.daemon.from_settings import mqtt_client
from devintel.daemon.settings import Settings
from devintel.generators import generate
from devintel.models.online import events

logger = logging.getLogger(__name__)

#: Events published per burst (the rate is kept by sleeping between bursts).
BURST = 50


def simulated_events(settings: Settings, now: float) -> list[dict[str, object]]:
    """The simulated home's events, time-shifted to end at ``now``, without ground truth."""
    frame = generate(
        samples=settings.simulate.samples,
        days=settings.simulate.days,
        seed=settings.simulate.seed,
        home_types=[settings.home_type],
        horizon_days=settings.horizon_days,
    )
    shift = now - float(frame["ts"].max())
    out = []
    for event in events(frame):
        event["ts"] = round(float(event["ts"]) + shift, 3)  # type: ignore[arg-type]
        event.pop("home_id", None)
        out.append(event)
    return out


async def simulate_home(settings: Settings) -> int:
    """Publish the simulated home's events to the configured broker; return how many were published."""
    stream = await asyncio.to_thread(simulated_events, settings, time.time())
    devices = len({e["device_id"] for e in stream})
    logger.info(
        "simulated %s: %d devices, %d events over %.0f days, published at %.0f events/s",
        settings.home_type,
        devices,
        len(stream),
        settings.simulate.days,
        settings.simulate.rate,
    )
    async with mqtt_client(settings.mqtt, f"{settings.mqtt.client_id}-simulator") as client:
        started = time.monotonic()
        for i in range(0, len(stream), BURST):
            for event in stream[i : i + BURST]:
                topic = f"{settings.topic_prefix}/events/{event['device_id']}"
                await client.publish(topic, orjson.dumps(event), qos=1)
            ahead = (i + BURST) / settings.simulate.rate - (time.monotonic() - started)
            if ahead > 0:
                await asyncio.sleep(ahead)
    return len(stream)
