"""World variant families: domain randomisation of how devices are *observed*, per home and per device.

A variant family is a named set of knob ranges. Each home of a dataset is assigned one family (cycling
through the requested families by home index), and each home and device draws its knobs within that
family's ranges from a generator of its own, made from ``(seed, 3, home index)``, separate from the
generator that draws the home's devices and their stories. So the fleet's stories (which devices fail,
when, in which mode, with which precursor) are the same whatever the family; only how they are observed
changes: noise, link jitter, lost reports, report cadence, battery reporting, the device's own
temperature, and the event timestamps.

The ``reference`` family's knobs are the identity: homes of that family are drawn and observed exactly as
before variants existed (the same bytes). Every knob is documented in docs/synthetic-data.md ("World
variants"), with its range and why.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final

Range = tuple[float, float]

#: The identity range of a multiplicative knob, and of an additive one.
ONE: Final[Range] = (1.0, 1.0)
ZERO: Final[Range] = (0.0, 0.0)


@dataclass(frozen=True, slots=True)
class VariantFamily:
    """A named family of world variants: the ranges its homes and devices draw their knobs from.

    Ranges are ``(low, high)``; a device draws uniformly within them (shares: a home draws its share, then
    each device is in with that probability). Identity values (scale 1, share or amount 0) leave the data
    exactly as the reference world has it.
    """

    name: str
    """The family's name (the ``variant`` column's value)."""
    description: str
    """One line: what this world looks like."""
    noise_scale: Range = ONE
    """Per device: factor on the measurement noise of every field."""
    link_jitter: Range = ONE
    """Per device: factor on the measurement noise of LQI and RSSI (instead of ``noise_scale``)."""
    extra_drop: Range = ZERO
    """Per device: share of reports lost, added to the base loss."""
    interval_battery: Range = ONE
    """Per device: factor on the report interval of battery devices."""
    interval_mains: Range = ONE
    """Per device: factor on the report interval of mains devices."""
    on_change_share: Range = ZERO
    """Per home: share of its devices that report on change (irregular gaps) instead of periodically."""
    on_change_spread: Range = (0.3, 0.3)
    """Per on-change device: largest shift of a report from its nominal time, in intervals (periodic: 0.3)."""
    on_change_silence: Range = ZERO
    """Per on-change device: share of nominal reports not sent (nothing changed): long gaps."""
    on_change_burst: Range = ZERO
    """Per on-change device: share of reports followed by a second one 30 s to 10 min later: bursts."""
    battery_cliff_power: Range = ONE
    """Per battery device: power ``p`` of the reported-charge curve ``1 - (1 - charge)^p`` (1: linear)."""
    battery_steps: tuple[float, ...] = ()
    """Per battery device: the step its percentage is reported in, one of these (empty: 1 %, as today)."""
    voltage_only_share: Range = ZERO
    """Per home: share of its battery devices that report voltage only (no ``battery_level``)."""
    load_heat_c: Range = ZERO
    """Per mains device reporting a temperature: °C it warms at its usual daily peak of use, from its load."""
    ts_delay_share: Range = ZERO
    """Per home: share of its devices whose payloads carry no timestamp (``ts`` is the receipt time)."""
    ts_delay_s: Range = ZERO
    """Per delayed device: largest delay between sending and receipt, in seconds (``ts`` in whole seconds)."""

    @property
    def is_identity(self) -> bool:
        """True when every knob is the identity: the family observes the world as ``reference`` does."""
        return self == VariantFamily(self.name, self.description)


#: Mild randomisation of the noise, the link jitter and the lost reports in every family but ``reference``
#: and ``noisy`` (which has its own, larger ranges).
MILD_NOISE: Final[Range] = (0.8, 1.3)
MILD_LINK_JITTER: Final[Range] = (0.8, 1.5)
MILD_EXTRA_DROP: Final[Range] = (0.0, 0.02)

#: The named variant families, in order. ``reference`` is today's world, unchanged.
VARIANT_FAMILIES: Final[Mapping[str, VariantFamily]] = MappingProxyType(
    {
        family.name: family
        for family in (
            VariantFamily("reference", "today's world, unchanged: the world the generator was built from"),
            VariantFamily(
                "noisy",
                "cheap radios and sensors: 1.5-3x measurement noise, 2-4x link jitter, 2-6 % more lost reports",
                noise_scale=(1.5, 3.0),
                link_jitter=(2.0, 4.0),
                extra_drop=(0.02, 0.06),
            ),
            VariantFamily(
                "sparse",
                "devices that report only every few hours: battery intervals x3-8, mains x2-4",
                interval_battery=(3.0, 8.0),
                interval_mains=(2.0, 4.0),
                noise_scale=MILD_NOISE,
                link_jitter=MILD_LINK_JITTER,
                extra_drop=MILD_EXTRA_DROP,
            ),
            VariantFamily(
                "on_change",
                "devices that report on change: irregular gaps, bursts minutes apart, long silences",
                on_change_share=(0.6, 1.0),
                on_change_spread=(0.6, 1.2),
                on_change_silence=(0.1, 0.3),
                on_change_burst=(0.05, 0.2),
                noise_scale=MILD_NOISE,
                link_jitter=MILD_LINK_JITTER,
                extra_drop=MILD_EXTRA_DROP,
            ),
            VariantFamily(
                "battery_cliff",
                "batteries reported flat then a cliff, in 10/20/25 % steps, or as a voltage only",
                battery_cliff_power=(2.0, 5.0),
                battery_steps=(10.0, 20.0, 25.0),
                voltage_only_share=(0.15, 0.4),
                noise_scale=MILD_NOISE,
                link_jitter=MILD_LINK_JITTER,
                extra_drop=MILD_EXTRA_DROP,
            ),
            VariantFamily(
                "load_heated",
                "mains devices warmed by their own load (several °C daily), timestamps from receipt time",
                load_heat_c=(4.0, 15.0),
                ts_delay_share=(0.3, 0.7),
                ts_delay_s=(5.0, 20.0),
                noise_scale=MILD_NOISE,
                link_jitter=MILD_LINK_JITTER,
                extra_drop=MILD_EXTRA_DROP,
            ),
        )
    }
)


def check_variants(variants: Sequence[str] | None) -> tuple[str, ...]:
    """The requested families as a tuple (``None``: ``("reference",)``; one name alone: that family).

    Unknown names, or none, raise a ``ValueError`` that names the valid ones.
    """
    if variants is None:
        return ("reference",)
    if isinstance(variants, str):
        variants = (variants,)
    names = tuple(variants)
    unknown = [v for v in names if v not in VARIANT_FAMILIES]
    if unknown or not names:
        raise ValueError(
            f"variants must be a non-empty sequence of names from {list(VARIANT_FAMILIES)}, got {unknown or []}"
        )
    return names
