"""Both backends satisfy every Protocol: statically (mypy checks ``_static_checks``) and at
run time (``runtime_checkable`` sees each method)."""

from __future__ import annotations

import pytest

from subconscious.aws import AwsClients
from subconscious.dal import interfaces as i
from subconscious.dal import memory as m
from subconscious.dal.blobs import ImageBucket
from subconscious.dal.executions import RunExecutions
from subconscious.dal.idempotency import Idempotency, persistence_layer
from subconscious.dal.images import ImageStore
from subconscious.dal.orders import OrderStore
from subconscious.dal.prices import MarketHistory, PriceCache, ThroughputCorrections
from subconscious.dal.quotes import QuoteStore
from subconscious.dal.runs import RunStore
from subconscious.dal.tenants import TenantStore
from subconscious.dal.webhooks import WebhookQueue, WebhookStore
from subconscious.dal.work_queue import WorkQueue
from subconscious.services import Services


def _static_checks(client: object, orders: m.MemoryOrders) -> None:
    """Never called: mypy proves each twin and each store fits its Protocol."""
    tenants: list[i.TenantStoreProtocol] = [m.MemoryTenants(), TenantStore("t", client)]
    quotes: list[i.QuoteStoreProtocol] = [m.MemoryQuotes(), QuoteStore("t", client)]
    order_stores: list[i.OrderStoreProtocol] = [orders, OrderStore("t", client)]
    images: list[i.ImageStoreProtocol] = [m.MemoryImages(orders), ImageStore("t", "o", client)]
    runs: list[i.RunStoreProtocol] = [m.MemoryRuns(), RunStore("t", client)]
    queues: list[i.WorkQueueProtocol] = [m.MemoryQueue(), WorkQueue("u", client)]
    buckets: list[i.ImageBucketProtocol] = [m.MemoryBucket(), ImageBucket("b", client)]
    prices: list[i.PriceCacheProtocol] = [m.MemoryPrices(), PriceCache("t", client)]
    corrections: list[i.ThroughputCorrectionsProtocol] = [
        m.MemoryCorrections(),
        ThroughputCorrections("t", client),
    ]
    history: list[i.MarketHistoryProtocol] = [m.MemoryHistory(), MarketHistory("b", client)]
    executions: list[i.RunExecutionsProtocol] = [m.MemoryExecutions(), RunExecutions("a", client)]
    idempotency: list[i.IdempotencyProtocol] = [
        m.MemoryIdempotency(),
        Idempotency(lambda: persistence_layer("t", AwsClients().client("dynamodb"))),
    ]
    webhooks: list[i.WebhookStoreProtocol] = [m.MemoryWebhooks(), WebhookStore("t", client)]
    webhook_queues: list[i.WebhookQueueProtocol] = [
        m.MemoryWebhookQueue(),
        WebhookQueue("u", client),
    ]
    del tenants, quotes, order_stores, images, runs, queues, buckets, prices
    del corrections, history, executions, idempotency, webhooks, webhook_queues


PROTOCOLS = {
    "tenants": i.TenantStoreProtocol,
    "quotes": i.QuoteStoreProtocol,
    "orders": i.OrderStoreProtocol,
    "images": i.ImageStoreProtocol,
    "runs": i.RunStoreProtocol,
    "queue": i.WorkQueueProtocol,
    "dead_letters": i.WorkQueueProtocol,
    "bucket": i.ImageBucketProtocol,
    "prices": i.PriceCacheProtocol,
    "corrections": i.ThroughputCorrectionsProtocol,
    "history": i.MarketHistoryProtocol,
    "executions": i.RunExecutionsProtocol,
    "idempotency": i.IdempotencyProtocol,
    "webhooks": i.WebhookStoreProtocol,
    "webhook_queue": i.WebhookQueueProtocol,
    "webhook_http": i.WebhookHttpProtocol,
}


@pytest.mark.parametrize("field", sorted(PROTOCOLS))
def test_every_adapter_satisfies_its_protocol(stores: Services, field: str) -> None:
    assert isinstance(getattr(stores, field), PROTOCOLS[field])


def test_twins_are_not_the_boto3_stores(stores: Services, backend: str) -> None:
    assert isinstance(stores.orders, m.MemoryOrders) is (backend == "memory")
