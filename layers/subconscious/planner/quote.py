"""A first quote: the cheapest offer, started now, priced with our margin.

The real planner (frontier of price and completion time, counter-proposals, shared backlog) is
its own issue; it replaces :func:`plan_quote` and keeps its signature.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta
from decimal import Decimal

from subconscious.errors import NoCapacity
from subconscious.models import Constraints, JobSpec, Offer, QuoteOption
from subconscious.money import ceil_div, cost_micros, to_micros, to_usd
from subconscious.throughput import images_per_second, max_batch

# Time from "accepted" to "a run picked it up": one dispatch tick plus state machine start.
DISPATCH_LATENCY_S = 90
# Completion promises carry slack for retries after a lost machine.
SAFETY = Decimal("1.25")
MIN_MEMORY_GB = {"sd15": 8, "sdxl": 12}


def render_seconds(offer: Offer, job: JobSpec) -> Decimal:
    return Decimal(job.total_images) / images_per_second(offer.gpu, job)


def machine_cost_micros(offer: Offer, job: JobSpec) -> int:
    """Start-up (paid while the machine boots) plus rendering, at the offer's hourly price."""
    return cost_micros(offer.usd_per_hour, offer.startup_s + render_seconds(offer, job))


def usable(offers: list[Offer], job: JobSpec) -> list[Offer]:
    need = MIN_MEMORY_GB[job.model_family.value]
    return [o for o in offers if o.gpu_memory_gb >= need and max_batch(job, o.gpu_memory_gb) >= 1]


def cheapest_offer(offers: list[Offer], job: JobSpec) -> Offer:
    candidates = usable(offers, job)
    if not candidates:
        raise NoCapacity("no GPU on the market can run this job right now")
    return min(candidates, key=lambda o: (machine_cost_micros(o, job), o.offer_id))


def plan_quote(
    job: JobSpec, constraints: Constraints, offers: list[Offer], now: datetime, margin_percent: int
) -> list[QuoteOption]:
    offer = cheapest_offer(offers, job)
    cost = machine_cost_micros(offer, job)
    price_micros = ceil_div(cost * (100 + margin_percent), 100 * job.total_images)
    total_micros = price_micros * job.total_images
    duration = (DISPATCH_LATENCY_S + offer.startup_s + render_seconds(offer, job)) * SAFETY
    completes_at = now + timedelta(seconds=float(duration.to_integral_value()))
    budget = constraints.max_price_per_image_usd
    meets_budget = budget is None or price_micros <= to_micros(budget)
    meets_deadline = constraints.deadline is None or completes_at <= constraints.deadline
    digest = hashlib.sha256(f"{offer.provider}/{offer.offer_id}/{now.isoformat()}".encode())
    return [
        QuoteOption(
            option_id=f"opt-{digest.hexdigest()[:12]}",
            label="requested" if meets_budget and meets_deadline else "cheapest",
            provider=offer.provider,
            gpu=offer.gpu,
            start_at=now,
            completes_at=completes_at,
            price_per_image_usd=to_usd(price_micros),
            total_usd=to_usd(total_micros),
            meets_deadline=meets_deadline,
            meets_budget=meets_budget,
        )
    ]
