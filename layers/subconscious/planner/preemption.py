"""How often our own interruptible machines are being preempted: the rate the policy prices
an interruptible rental at. Pure.

A fixed rate (``DEFAULT_PREEMPTIONS_PER_HOUR``) is right for the markets it was read from
and wrong for the rest: on a market whose pools flip every few minutes the policy rented
interruptible machine after interruptible machine, each preempted before it paid its start-up
back, and an order quoted on an on-demand card cost more than its quote. What our own machines
lived through in the last day says better. The default enters as a prior worth
``PRIOR_HOURS`` machine-hours, so a few hours of evidence move the rate and one unlucky
preemption does not.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from subconscious.planner.costs import DEFAULT_PREEMPTIONS_PER_HOUR

WINDOW = timedelta(hours=24)
PRIOR_HOURS = 2.0


@dataclass(frozen=True)
class Spell:
    """One interruptible machine's life: rented, ended (None while live), preempted or not."""

    rented_at: datetime
    ended_at: datetime | None
    preempted: bool


def observed_rate(spells: Iterable[Spell], now: datetime) -> float:
    """Preemptions per machine-hour over the last ``WINDOW``, the default as a prior."""
    since = now - WINDOW
    hours = 0.0
    count = 0
    for spell in spells:
        end = now if spell.ended_at is None else min(spell.ended_at, now)
        start = max(spell.rented_at, since)
        if end <= start:
            continue
        hours += (end - start).total_seconds() / 3600
        count += spell.preempted and spell.ended_at is not None and spell.ended_at >= since
    return (count + DEFAULT_PREEMPTIONS_PER_HOUR * PRIOR_HOURS) / (hours + PRIOR_HOURS)
