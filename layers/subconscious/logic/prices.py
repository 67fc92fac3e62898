"""Reading the GPU market: the scheduled refresh (every provider in parallel, one failing never
stops the others), and the offers quotes and dispatch use (cached when fresh, else live)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from subconscious.errors import SubconsciousError
from subconscious.market.base import Provider
from subconscious.models import Offer
from subconscious.observability import logger
from subconscious.planner.forecast import outlook

if TYPE_CHECKING:  # a type only: services.py, the composition root, sits above logic
    from subconscious.services import Services


@dataclass
class RefreshReport:
    offers: dict[str, int] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)
    history_key: str | None = None
    outlook_snapshots: int | None = None  # set when the forecast was recomputed


def refresh(services: Services, now: datetime | None = None) -> RefreshReport:
    now = now or datetime.now(UTC)
    providers = services.providers()
    report = RefreshReport()

    def fetch(provider: Provider) -> list[Offer]:
        return provider.list_offers()

    ttl = timedelta(seconds=services.settings.price_max_age_s * 4)
    snapshot: list[Offer] = []
    with ThreadPoolExecutor(max_workers=max(1, len(providers))) as pool:
        futures = {p.name: pool.submit(fetch, p) for p in providers}
        for name, future in futures.items():
            try:
                offers = future.result()
            except Exception as error:
                code = error.code if isinstance(error, SubconsciousError) else "unexpected"
                services.prices.mark_failed(name, now, code)
                report.failed[name] = code
                logger.warning("prices: provider failed", provider=name, code=code)
                continue
            services.prices.replace(name, offers, now, ttl)
            report.offers[name] = len(offers)
            snapshot.extend(offers)
    if snapshot:
        report.history_key = services.history.append(snapshot, now)
    report.outlook_snapshots = refresh_outlook(services, now)
    logger.info("prices refreshed", offers=report.offers, failed=report.failed)
    return report


def refresh_outlook(services: Services, now: datetime) -> int | None:
    """Recompute the history's spot outlook when the stored one is older than
    ``forecast_refresh_s``; how many snapshots it read, or None if it was fresh."""
    settings = services.settings
    try:  # the prices are cached already: a failure here keeps the old outlook, nothing more
        stored = services.prices.load_outlook()
        age_limit = timedelta(seconds=settings.forecast_refresh_s)
        if stored and stored.computed_at and now - stored.computed_at < age_limit:
            return None
        snapshots = services.history.snapshots(
            now, settings.forecast_days, settings.forecast_snapshots_per_day
        )
        computed = outlook(snapshots, computed_at=now)
        services.prices.save_outlook(computed)
    except Exception as error:
        logger.warning("spot outlook not refreshed", error=type(error).__name__)
        return None
    logger.info("spot outlook refreshed", snapshots=computed.snapshots, gpus=len(computed.shares))
    return computed.snapshots


def current_offers(services: Services, now: datetime | None = None) -> list[Offer]:
    """Every enabled provider's offers: from the cache when its last good fetch is fresh,
    else asked live (a provider that fails live is skipped, the others still count)."""
    now = now or datetime.now(UTC)
    max_age = timedelta(seconds=services.settings.price_max_age_s)
    offers: list[Offer] = []
    for provider in services.providers():
        freshness, cached = services.prices.read(provider.name)
        if freshness and freshness.fetched_at and now - freshness.fetched_at <= max_age:
            offers.extend(cached)
            continue
        if freshness and not freshness.ok and now - freshness.attempted_at <= max_age:
            continue  # it failed moments ago: asking again live would only stall the caller
        try:
            offers.extend(provider.list_offers())
        except SubconsciousError as error:
            logger.warning("provider offers unavailable", provider=provider.name, code=error.code)
    startup = services.settings.startup_s_by_provider
    if not startup:
        return offers
    return [
        o.model_copy(update={"startup_s": startup[o.provider]}) if o.provider in startup else o
        for o in offers
    ]
