"""The composition root: one object holding the settings and every adapter built from them.

A handler calls :func:`services` (built once per cold start, from the environment); nothing
else in the package reads the environment or keeps an adapter in a module-level cache. Tests
and tools build their own with :func:`build` (over moto, twins or fakes) and install it with
:func:`use`. Building costs no I/O: every AWS client is created on first use.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from subconscious.aws import AwsClients
from subconscious.dal.idempotency import Idempotency, persistence_layer
from subconscious.settings import Settings, load_settings

if TYPE_CHECKING:
    from subconscious.dal.interfaces import (
        IdempotencyProtocol,
        ImageBucketProtocol,
        ImageStoreProtocol,
        MarketHistoryProtocol,
        OrderStoreProtocol,
        PriceCacheProtocol,
        QuoteStoreProtocol,
        RunExecutionsProtocol,
        RunStoreProtocol,
        TenantStoreProtocol,
        ThroughputCorrectionsProtocol,
        WebhookHttpProtocol,
        WebhookQueueProtocol,
        WebhookStoreProtocol,
        WorkQueueProtocol,
    )
    from subconscious.market.base import Provider
    from subconscious.models.webhooks import DeliveryAttempt


class Providers:
    """The enabled providers, each built from the settings on first use (an adapter imports
    its HTTP or AWS client then); ``given`` ones (fakes, a tool's own) are used as they are."""

    def __init__(self, settings: Settings, given: Mapping[str, Provider] | None = None) -> None:
        self._settings = settings
        self._built: dict[str, Provider] = dict(given or {})
        self._lock = threading.Lock()

    def get(self, name: str) -> Provider:
        with self._lock:
            if name not in self._built:
                from subconscious.market.registry import build_provider

                self._built[name] = build_provider(name, self._settings)
            return self._built[name]

    def add(self, provider: Provider) -> None:
        """Use this provider object under its name (tests and tools inject fakes this way)."""
        with self._lock:
            self._built[provider.name] = provider

    def enabled(self, names: Iterable[str]) -> list[Provider]:
        """Each of ``names`` that can be built; one misconfigured (a missing key) is logged
        and left out rather than stopping the others."""
        from subconscious.errors import ConfigurationError, SubconsciousError
        from subconscious.observability import logger

        built = []
        for name in names:
            try:
                built.append(self.get(name))
            except (ConfigurationError, SubconsciousError) as error:
                logger.error("provider not available", provider=name, error=str(error))
        return built


class _LazyWebhookHttp:
    """The webhook sender, built (httpx imported) on the first POST: only the webhooks
    function sends, and no other handler should pay for its imports at cold start."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._inner: WebhookHttpProtocol | None = None

    def post(self, url: str, headers: Mapping[str, str], body: str) -> DeliveryAttempt:
        if self._inner is None:
            from subconscious.notify.webhook_http import WebhookHttp

            self._inner = WebhookHttp(
                allow_private=self._settings.allow_private_webhook_addresses,
                timeout_s=self._settings.webhook_timeout_s,
            )
        return self._inner.post(url, headers, body)


@dataclass(frozen=True)
class Services:
    """Every adapter one process uses, each behind its interface (``dal/interfaces.py``):
    the boto3-backed stores, or their in-memory twins (``dal/memory.py``). Build it with
    :func:`build`."""

    settings: Settings
    tenants: TenantStoreProtocol
    quotes: QuoteStoreProtocol
    orders: OrderStoreProtocol
    images: ImageStoreProtocol
    runs: RunStoreProtocol
    queue: WorkQueueProtocol
    # Tasks SQS gave up delivering: the dispatch tick settles them.
    dead_letters: WorkQueueProtocol
    bucket: ImageBucketProtocol
    prices: PriceCacheProtocol
    corrections: ThroughputCorrectionsProtocol
    history: MarketHistoryProtocol
    executions: RunExecutionsProtocol
    idempotency: IdempotencyProtocol
    # Orders' end events: their store (secrets, events, attempts), queue, and sender.
    webhooks: WebhookStoreProtocol
    webhook_queue: WebhookQueueProtocol
    webhook_http: WebhookHttpProtocol
    providers_by_name: Providers = field(repr=False)
    aws: AwsClients = field(repr=False)

    def provider(self, name: str) -> Provider:
        return self.providers_by_name.get(name)

    def providers(self) -> list[Provider]:
        """Every enabled provider that can be built (a misconfigured one is logged, skipped)."""
        return self.providers_by_name.enabled(self.settings.providers)


def build(
    settings: Settings,
    *,
    providers: Mapping[str, Provider] | None = None,
    aws: AwsClients | None = None,
    **adapters: Any,
) -> Services:
    """Services from ``settings``: the boto3-backed stores, unless ``adapters`` names some
    (``orders=twin``: anything satisfying that field's Protocol, such as the twins of
    ``dal/memory.py``); ``providers`` are used instead of building those names."""
    from subconscious.dal.blobs import ImageBucket
    from subconscious.dal.executions import RunExecutions
    from subconscious.dal.images import ImageStore
    from subconscious.dal.orders import OrderStore
    from subconscious.dal.prices import MarketHistory, PriceCache, ThroughputCorrections
    from subconscious.dal.quotes import QuoteStore
    from subconscious.dal.runs import RunStore
    from subconscious.dal.tenants import TenantStore
    from subconscious.dal.webhooks import WebhookQueue, WebhookStore
    from subconscious.dal.work_queue import WorkQueue

    clients = aws or AwsClients()
    s = settings
    parts: dict[str, Any] = {
        "tenants": lambda: TenantStore(s.tenants_table, table=clients.table(s.tenants_table)),
        "quotes": lambda: QuoteStore(s.quotes_table, table=clients.table(s.quotes_table)),
        "orders": lambda: OrderStore(s.orders_table, table=clients.table(s.orders_table)),
        "images": lambda: ImageStore(
            s.images_table, s.orders_table, table=clients.table(s.images_table)
        ),
        "runs": lambda: RunStore(s.runs_table, table=clients.table(s.runs_table)),
        "queue": lambda: WorkQueue(s.work_queue_url, client=clients.client("sqs")),
        "dead_letters": lambda: WorkQueue(s.dead_letter_queue_url, client=clients.client("sqs")),
        "bucket": lambda: ImageBucket(s.images_bucket, client=clients.client("s3")),
        "prices": lambda: PriceCache(s.prices_table, table=clients.table(s.prices_table)),
        "corrections": lambda: ThroughputCorrections(
            s.prices_table, table=clients.table(s.prices_table), scope=s.worker
        ),
        "history": lambda: MarketHistory(s.history_bucket, client=clients.client("s3")),
        "executions": lambda: RunExecutions(
            s.render_run_state_machine_arn, client=clients.client("stepfunctions")
        ),
        "idempotency": lambda: Idempotency(
            lambda: persistence_layer(s.idempotency_table, clients.client("dynamodb"))
        ),
        "webhooks": lambda: WebhookStore(s.webhooks_table, table=clients.table(s.webhooks_table)),
        "webhook_queue": lambda: WebhookQueue(s.webhook_queue_url, client=clients.client("sqs")),
        "webhook_http": lambda: _LazyWebhookHttp(s),
    }
    unknown = set(adapters) - set(parts)
    if unknown:
        raise TypeError(f"no such adapter: {', '.join(sorted(unknown))}")
    built = {name: adapters[name] if name in adapters else make() for name, make in parts.items()}
    return Services(
        settings=settings,
        providers_by_name=Providers(settings, providers),
        aws=clients,
        **built,
    )


_current: Services | None = None
_current_lock = threading.Lock()


def services() -> Services:
    """This process's services: built from the environment on first call (a cold start),
    then the same object for every warm invocation."""
    global _current
    with _current_lock:
        if _current is None:
            _current = build(load_settings())
        return _current


def use(installed: Services | None) -> None:
    """Make ``installed`` what :func:`services` answers (tests, the local stack's tools);
    ``None`` forgets it, so the next call builds anew from the environment."""
    global _current
    with _current_lock:
        _current = installed


def reset() -> None:
    """Forget this process's services (tests that switch moto contexts or settings)."""
    use(None)
