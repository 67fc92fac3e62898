"""The adapters one process uses, built on first use from the settings and cached.

Tests build a :class:`Services` over moto (or fakes) and pass it in; handlers call
:func:`services`. Nothing here does I/O at import.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING

from subconscious.settings import Settings, get_settings

if TYPE_CHECKING:
    from subconscious.dal.blobs import ImageBucket
    from subconscious.dal.executions import RunExecutions
    from subconscious.dal.images import ImageStore
    from subconscious.dal.orders import OrderStore
    from subconscious.dal.prices import MarketHistory, PriceCache, ThroughputCorrections
    from subconscious.dal.quotes import QuoteStore
    from subconscious.dal.runs import RunStore
    from subconscious.dal.tenants import TenantStore
    from subconscious.dal.work_queue import WorkQueue
    from subconscious.market.base import Provider


@dataclass
class Services:
    settings: Settings

    @property
    def tenants(self) -> TenantStore:
        return _tenants(self.settings.tenants_table)

    @property
    def quotes(self) -> QuoteStore:
        return _quotes(self.settings.quotes_table)

    @property
    def orders(self) -> OrderStore:
        return _orders(self.settings.orders_table)

    @property
    def images(self) -> ImageStore:
        return _images(self.settings.images_table, self.settings.orders_table)

    @property
    def runs(self) -> RunStore:
        return _runs(self.settings.runs_table)

    @property
    def queue(self) -> WorkQueue:
        return _queue(self.settings.work_queue_url)

    @property
    def dead_letters(self) -> WorkQueue:
        """Tasks SQS gave up delivering: the dispatch tick settles them."""
        return _queue(self.settings.dead_letter_queue_url)

    @property
    def bucket(self) -> ImageBucket:
        return _bucket(self.settings.images_bucket)

    @property
    def prices(self) -> PriceCache:
        return _prices(self.settings.prices_table)

    @property
    def corrections(self) -> ThroughputCorrections:
        return _corrections(self.settings.prices_table, self.settings.worker)

    @property
    def history(self) -> MarketHistory:
        return _history(self.settings.history_bucket)

    @property
    def executions(self) -> RunExecutions:
        return _executions(self.settings.render_run_state_machine_arn)

    def provider(self, name: str) -> Provider:
        from subconscious.market import registry

        return registry.provider(name)

    def providers(self) -> list[Provider]:
        """Every enabled provider that can be built; one misconfigured (a missing key) is
        logged and left out rather than stopping the others."""
        from subconscious.errors import ConfigurationError, SubconsciousError
        from subconscious.observability import logger

        built = []
        for name in self.settings.providers:
            try:
                built.append(self.provider(name))
            except (ConfigurationError, SubconsciousError) as error:
                logger.error("provider not available", provider=name, error=str(error))
        return built


@cache
def _tenants(name: str) -> TenantStore:
    from subconscious.dal.tenants import TenantStore

    return TenantStore(name)


@cache
def _quotes(name: str) -> QuoteStore:
    from subconscious.dal.quotes import QuoteStore

    return QuoteStore(name)


@cache
def _orders(name: str) -> OrderStore:
    from subconscious.dal.orders import OrderStore

    return OrderStore(name)


@cache
def _images(name: str, orders_name: str) -> ImageStore:
    from subconscious.dal.images import ImageStore

    return ImageStore(name, orders_name)


@cache
def _runs(name: str) -> RunStore:
    from subconscious.dal.runs import RunStore

    return RunStore(name)


@cache
def _queue(url: str) -> WorkQueue:
    from subconscious.dal.work_queue import WorkQueue

    return WorkQueue(url)


@cache
def _bucket(name: str) -> ImageBucket:
    from subconscious.dal.blobs import ImageBucket

    return ImageBucket(name)


@cache
def _prices(name: str) -> PriceCache:
    from subconscious.dal.prices import PriceCache

    return PriceCache(name)


@cache
def _corrections(name: str, worker: str) -> ThroughputCorrections:
    from subconscious.dal.prices import ThroughputCorrections

    return ThroughputCorrections(name, scope=worker)


@cache
def _history(bucket: str) -> MarketHistory:
    from subconscious.dal.prices import MarketHistory

    return MarketHistory(bucket)


@cache
def _executions(arn: str) -> RunExecutions:
    from subconscious.dal.executions import RunExecutions

    return RunExecutions(arn)


def services() -> Services:
    return Services(get_settings())


def reset() -> None:
    """Forget every cached adapter (tests switch moto contexts and settings)."""
    from subconscious import aws
    from subconscious.logic import orders
    from subconscious.market import registry

    for cached in (
        _tenants,
        _quotes,
        _orders,
        _images,
        _runs,
        _queue,
        _bucket,
        _prices,
        _corrections,
        _history,
        _executions,
    ):
        cached.cache_clear()
    registry.uninstall_all()
    orders.idempotent_accept.cache_clear()
    get_settings.cache_clear()
    aws.reset()
