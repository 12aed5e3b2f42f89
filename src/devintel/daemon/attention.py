"""What the daemon says at its end: a one-line summary, and the table of devices that need attention that
``--exit-after-simulation`` prints (the README's main command)."""

from __future__ import annotations

from typing import Any

from devintel.daemon.api import needing_attention
from devintel.ingest.handler import Handler


def summary(handler: Handler) -> str:
    """One line on what the service did: events, predictions, and the devices that need attention."""
    counters = handler.counters
    flagged = needing_attention(handler)
    top = ", ".join(f"{p['device_id']} {p['failure_probability']:.2f}" for p in flagged[:5])
    rejected = sum(counters.rejected.values())
    dropped = sum(counters.dropped_values.values())
    return (
        f"{counters.events} events ({rejected} messages rejected, {dropped} values dropped as bad input), "
        f"{counters.published} predictions "
        f"published for {len(handler.devices)} devices, {len(flagged)} need attention" + (f" ({top})" if top else "")
    )


def attention_table(handler: Handler, top: int = 10) -> str:
    """A plain-text table of the devices that need attention: the latest prediction of each, and how long it has
    been silent (a device that stopped reporting has most likely failed already; one still reporting is the
    warning), after the :func:`summary` line."""
    clock = handler.live.clock

    def silent_days(prediction: dict[str, Any]) -> float:
        return (clock - handler.devices[prediction["device_id"]].last_heard) / 86_400.0

    # Still reporting first (the warnings), then the silent ones (most likely failed already).
    flagged = sorted(needing_attention(handler), key=lambda p: (silent_days(p) >= 1.0, -p["failure_probability"]))
    lines = [summary(handler), ""]
    if flagged:
        lines.append(f"{'device':<24} {'probability':>11}  {'risk':<8}  {'last report':<15}  signals")
        for p in flagged[:top]:
            days = silent_days(p)
            heard = "in the last day" if days < 1.0 else f"{days:.0f} days ago"
            signals = ", ".join(p["reasons"]) or "-"
            lines.append(
                f"{p['device_id']:<24} {p['failure_probability']:>11.2f}  {p['risk_level']:<8}  {heard:<15}  {signals}"
            )
    return "\n".join(lines)
