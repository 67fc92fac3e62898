"""Calling the real quote, and what a customer does with it.

The customer accepts the ``requested`` option when there is one, else the ``cheapest`` option
that meets the deadline; with neither, the order is declined (and is not "quoted-feasible").

The quote sees what production's quote sees (``logic.quotes.create_quote``): the open orders
(backlog), the live machines, the limits, the market history's outlook and the rate our
interruptible machines were preempted at.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from subconscious.errors import NoCapacity
from subconscious.models import Constraints, JobSpec, Offer, QuoteOption
from subconscious.models.spot import SpotOutlook
from subconscious.money import to_micros
from subconscious.planner.costs import DEFAULT_PREEMPTIONS_PER_HOUR, Rates
from subconscious.planner.policy import Limits, LiveMachine, OpenOrder
from subconscious.planner.quote import plan_quote

MARGIN_PERCENT = 30  # Settings.margin_percent's default


def quote(
    job: JobSpec,
    constraints: Constraints,
    offers: Sequence[Offer],
    now: datetime,
    rates: Rates,
    *,
    backlog: Sequence[OpenOrder] = (),
    machines: Sequence[LiveMachine] = (),
    limits: Limits | None = None,
    margin_percent: int = MARGIN_PERCENT,
    outlook: SpotOutlook | None = None,
    preemptions_per_hour: float = DEFAULT_PREEMPTIONS_PER_HOUR,
) -> list[QuoteOption]:
    """``plan_quote``; an empty list when the market cannot run the job."""
    try:
        return plan_quote(
            job,
            constraints,
            offers,
            now,
            margin_percent,
            rates,
            backlog=backlog,
            machines=machines,
            limits=limits or Limits(),
            outlook=outlook,
            preemptions_per_hour=preemptions_per_hour,
        )
    except NoCapacity:
        return []


def choose(options: Sequence[QuoteOption]) -> QuoteOption | None:
    requested = [o for o in options if o.label == "requested"]
    if requested:
        return requested[0]
    cheapest = [o for o in options if o.label == "cheapest" and o.meets_deadline]
    return cheapest[0] if cheapest else None


@dataclass(frozen=True)
class Acceptance:
    """What the customer accepted: the promise the simulator holds us to."""

    order_id: str
    label: str
    deadline_s: float  # the option's completes_at, seconds after the start
    quoted_micros: int  # the option's total
    price_per_image_micros: int
    interruptible: bool
    gpu: str
    latency_ms: float


def timed_quote(
    job: JobSpec,
    constraints: Constraints,
    offers: Sequence[Offer],
    now: datetime,
    rates: Rates,
    backlog: Sequence[OpenOrder],
    machines: Sequence[LiveMachine],
    limits: Limits,
    outlook: SpotOutlook | None = None,
    preemptions_per_hour: float = DEFAULT_PREEMPTIONS_PER_HOUR,
) -> tuple[list[QuoteOption], float]:
    start = time.perf_counter()
    options = quote(
        job,
        constraints,
        offers,
        now,
        rates,
        backlog=backlog,
        machines=machines,
        limits=limits,
        outlook=outlook,
        preemptions_per_hour=preemptions_per_hour,
    )
    return options, (time.perf_counter() - start) * 1000


def accept(order_id: str, option: QuoteOption, start: datetime, latency_ms: float) -> Acceptance:
    return Acceptance(
        order_id=order_id,
        label=option.label,
        deadline_s=(option.completes_at - start).total_seconds(),
        quoted_micros=to_micros(option.total_usd),
        price_per_image_micros=to_micros(option.price_per_image_usd),
        interruptible=option.interruptible,
        gpu=option.gpu,
        latency_ms=latency_ms,
    )
