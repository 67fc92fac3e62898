"""POST /v1/quotes: price a job against the live market and remember the promise."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from subconscious.logic.planning import (
    backlog,
    limits,
    machines,
    open_orders,
    preemption_rate,
    read_runs,
)
from subconscious.logic.throughput import current_rates
from subconscious.models import Constraints, Offer, Quote, QuoteOut, QuoteRequest
from subconscious.models.spot import SpotOutlook
from subconscious.observability import logger
from subconscious.planner.quote import plan_quote

if TYPE_CHECKING:  # a type only: services.py, the composition root, sits above logic
    from subconscious.services import Services


def market_offers(services: Services) -> list[Offer]:
    """The offers to quote on: cached when fresh, else live (see logic.prices)."""
    from subconscious.logic.prices import current_offers

    return current_offers(services)


def spot_outlook(services: Services) -> SpotOutlook | None:
    """The history's outlook, or today's listing alone if it cannot be read: a quote is never
    refused for want of a forecast."""
    try:
        return services.prices.load_outlook()
    except Exception as error:
        logger.warning("spot outlook unavailable; quoting on today's market", error=str(error))
        return None


def create_quote(
    services: Services, tenant_id: str, request: QuoteRequest, now: datetime | None = None
) -> QuoteOut:
    now = now or datetime.now(UTC)
    constraints = Constraints.model_validate(request.constraints.model_dump())
    orders = open_orders(services)
    runs = read_runs(services, now)
    options = plan_quote(
        request.job,
        constraints,
        market_offers(services),
        now,
        services.settings.margin_percent,
        current_rates(services),
        backlog=backlog(orders),
        machines=machines(runs.live, runs.stopping, now),
        limits=limits(services),
        outlook=spot_outlook(services),
        preemptions_per_hour=preemption_rate(runs.live, runs.ended, now),
    )
    quote = Quote(
        quote_id=f"q-{uuid.uuid4().hex}",
        job=request.job,
        constraints=constraints,
        options=options,
        created_at=now,
        expires_at=now + timedelta(seconds=services.settings.quote_ttl_s),
    )
    services.quotes.put(tenant_id, quote)
    logger.info(
        "quoted",
        quote_id=quote.quote_id,
        images=request.job.total_images,
        options=len(options),
        feasible=quote.feasible,
    )
    return QuoteOut(**quote.model_dump(), feasible_as_requested=quote.feasible)
