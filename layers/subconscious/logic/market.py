"""GET /v1/market: the cached offers grouped by GPU model, priced per image."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime
from decimal import Decimal

from subconscious.catalogue import canonical
from subconscious.logic.services import Services
from subconscious.logic.throughput import current_model
from subconscious.models import ModelFamily, Offer
from subconscious.models.market_view import GpuGroup, MarketOffer, MarketView, ProviderFreshness
from subconscious.money import MICROS_PER_USD, to_usd
from subconscious.throughput_model import REFERENCE_PIXELS, REFERENCE_STEPS, ThroughputModel


def usd_per_image(
    model: ThroughputModel, usd_per_hour: Decimal, offer: Offer, family: ModelFamily
) -> Decimal:
    """At the family's reference size and 20 steps, at the best batch that fits the card."""
    side = int(REFERENCE_PIXELS[family] ** 0.5)
    batch = model.best_batch(offer.gpu, family, side, side, offer.gpu_memory_gb)
    per_second = model.images_per_second(offer.gpu, family, side, side, REFERENCE_STEPS, batch)
    per_second *= offer.gpu_count
    micros = usd_per_hour * MICROS_PER_USD / 3600 / per_second
    return to_usd(int(micros.to_integral_value()) or 1)


def market_view(services: Services, now: datetime | None = None) -> MarketView:
    now = now or datetime.now(UTC)
    model = current_model(services)
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
            groups[canonical(offer.gpu)].append(_priced(model, offer))
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


def _priced(model: ThroughputModel, offer: Offer) -> MarketOffer:
    bid = offer.min_bid_usd_per_hour if offer.interruptible else None
    return MarketOffer(
        provider=offer.provider,
        offer_id=offer.offer_id,
        gpu=offer.gpu,
        usd_per_hour=offer.usd_per_hour,
        interruptible_usd_per_hour=bid,
        usd_per_image_sd15=usd_per_image(model, offer.usd_per_hour, offer, ModelFamily.SD15),
        usd_per_image_sdxl=usd_per_image(model, offer.usd_per_hour, offer, ModelFamily.SDXL),
        location=offer.location,
    )
