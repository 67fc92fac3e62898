"""GET /v1/market: the cached offers grouped by GPU model, priced per image."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime
from decimal import Decimal

from subconscious.logic.services import Services
from subconscious.models import ModelFamily, Offer
from subconscious.models.market_view import GpuGroup, MarketOffer, MarketView, ProviderFreshness
from subconscious.money import MICROS_PER_USD, to_usd
from subconscious.throughput import canonical_gpu, rate

_REFERENCE = {ModelFamily.SD15: (512, 512, 20), ModelFamily.SDXL: (1024, 1024, 20)}


def usd_per_image(usd_per_hour: Decimal, gpu: str, family: ModelFamily) -> Decimal:
    width, height, steps = _REFERENCE[family]
    per_second = rate(gpu, family, width, height, steps)
    micros = usd_per_hour * MICROS_PER_USD / 3600 / per_second
    return to_usd(int(micros.to_integral_value()) or 1)


def market_view(services: Services, now: datetime | None = None) -> MarketView:
    now = now or datetime.now(UTC)
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
            groups[canonical_gpu(offer.gpu)].append(_priced(offer))
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


def _priced(offer: Offer) -> MarketOffer:
    return MarketOffer(
        provider=offer.provider,
        offer_id=offer.offer_id,
        gpu=offer.gpu,
        usd_per_hour=offer.usd_per_hour,
        interruptible_usd_per_hour=offer.min_bid_usd_per_hour if offer.interruptible else None,
        usd_per_image_sd15=usd_per_image(offer.usd_per_hour, offer.gpu, ModelFamily.SD15),
        usd_per_image_sdxl=usd_per_image(offer.usd_per_hour, offer.gpu, ModelFamily.SDXL),
        location=offer.location,
    )
