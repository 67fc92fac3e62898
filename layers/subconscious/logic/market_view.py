"""GET /v1/market: the cached offers grouped by GPU model, priced per image."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime
from decimal import Decimal
from functools import cache
from typing import TYPE_CHECKING

from subconscious.catalogue import canonical
from subconscious.logic.throughput import current_rates
from subconscious.models import JobSpec, ModelFamily, Offer
from subconscious.models.market_view import GpuGroup, MarketOffer, MarketView, ProviderFreshness
from subconscious.money import MICROS_PER_USD, to_usd
from subconscious.planner.costs import Rates
from subconscious.throughput_model import REFERENCE_PIXELS, REFERENCE_STEPS

if TYPE_CHECKING:  # a type only: services.py, the composition root, sits above logic
    from subconscious.services import Services


@cache  # asked twice per offer of the market view: validated once per family
def reference_job(family: ModelFamily) -> JobSpec:
    side = int(REFERENCE_PIXELS[family] ** 0.5)
    return JobSpec.model_validate(
        {
            "prompts": [{"text": "reference", "count": 1}],
            "model_family": family,
            "width": side,
            "height": side,
            "steps": REFERENCE_STEPS,
        }
    )


def usd_per_image(
    rates: Rates, usd_per_hour: Decimal, offer: Offer, family: ModelFamily
) -> Decimal:
    """At the family's reference size and 20 steps, at the rate quotes count on (the batch
    that fits the card, the server our machines run)."""
    per_second = Decimal(repr(rates.speed(offer, reference_job(family)).images_per_s))
    micros = usd_per_hour * MICROS_PER_USD / 3600 / per_second
    return to_usd(int(micros.to_integral_value()) or 1)


def market_view(services: Services, now: datetime | None = None) -> MarketView:
    now = now or datetime.now(UTC)
    rates = current_rates(services)
    providers = []
    groups: dict[str, list[MarketOffer]] = defaultdict(list)
    for name in services.settings.providers:
        freshness, offers = services.prices.read(name)
        fetched = freshness.fetched_at if freshness else None
        age_s = int((now - fetched).total_seconds()) if fetched else None
        stale = age_s is None or age_s > services.settings.price_max_age_s
        providers.append(
            ProviderFreshness(
                provider=name,
                fetched_at=fetched,
                age_s=age_s,
                ok=bool(freshness and freshness.ok),
                stale=stale,
                # a code (the refresh stores only codes), never the provider's own words
                error=freshness.error if freshness else "never_fetched",
            )
        )
        if stale:
            continue
        for offer in offers:
            groups[canonical(offer.gpu)].append(_priced(rates, offer))
    return MarketView(
        as_of=now,
        providers=providers,
        gpus=[
            GpuGroup(gpu=gpu, offers=sorted(offers, key=lambda o: o.usd_per_image_sd15))
            for gpu, offers in sorted(
                groups.items(), key=lambda item: min(o.usd_per_image_sd15 for o in item[1])
            )
        ],
    )


def _priced(rates: Rates, offer: Offer) -> MarketOffer:
    bid = offer.min_bid_usd_per_hour if offer.interruptible else None
    return MarketOffer(
        provider=offer.provider,
        offer_id=offer.offer_id,
        gpu=offer.gpu,
        usd_per_hour=offer.usd_per_hour,
        interruptible_usd_per_hour=bid,
        usd_per_image_sd15=usd_per_image(rates, offer.usd_per_hour, offer, ModelFamily.SD15),
        usd_per_image_sdxl=usd_per_image(rates, offer.usd_per_hour, offer, ModelFamily.SDXL),
        location=offer.location,
    )
