"""Services built entirely from the in-memory twins of ``dal/memory.py``: no moto, no network.

``memory_services()`` answers what ``services.build`` answers over moto, with every store a
twin; install it with ``services.use`` as the ``svc`` fixture does. The twins satisfy the
Protocols ``Services`` is typed by, so a test written against ``svc`` runs on either.
"""

from __future__ import annotations

from typing import Any

from infra import definitions as d
from subconscious import services as services_module
from subconscious.dal.memory import (
    MemoryBucket,
    MemoryCorrections,
    MemoryExecutions,
    MemoryHistory,
    MemoryIdempotency,
    MemoryImages,
    MemoryOrders,
    MemoryPrices,
    MemoryQueue,
    MemoryQuotes,
    MemoryRuns,
    MemoryTenants,
    MemoryWebhookQueue,
    MemoryWebhooks,
)
from subconscious.market.base import Provider
from subconscious.services import Services
from subconscious.settings import Settings, load_settings

# What the resource settings say where the environment names none (no moto created them):
# the dead-letter drain runs only when its queue is named.
_PLACEHOLDERS = {
    "work_queue_url": "memory://queue/subc-work",
    "dead_letter_queue_url": "memory://queue/subc-work-dlq",
    "render_run_state_machine_arn": "arn:aws:states:us-east-1:123456789012:stateMachine:subc-run",
}


def memory_adapters(settings: Settings) -> dict[str, Any]:
    """A twin for every adapter ``services.build`` makes (for ``build(settings, **these)``)."""
    orders = MemoryOrders()
    dead_letters = MemoryQueue()
    return {
        "tenants": MemoryTenants(),
        "quotes": MemoryQuotes(),
        "orders": orders,
        "images": MemoryImages(orders),
        "runs": MemoryRuns(),
        "queue": MemoryQueue(dead_letters=dead_letters, max_receives=d.MAX_RECEIVE_COUNT),
        "dead_letters": dead_letters,
        "bucket": MemoryBucket(settings.images_bucket),
        "prices": MemoryPrices(),
        "corrections": MemoryCorrections(),
        "history": MemoryHistory(),
        "executions": MemoryExecutions(settings.render_run_state_machine_arn),
        "idempotency": MemoryIdempotency(),
        "webhooks": MemoryWebhooks(),
        "webhook_queue": MemoryWebhookQueue(),
    }


def memory_services(settings: Settings | None = None, *providers: Provider) -> Services:
    """Services of twins over ``settings`` (the environment's where None), with ``providers``
    used as given. Resource names the settings leave empty get placeholders."""
    settings = settings or load_settings()
    missing = {k: v for k, v in _PLACEHOLDERS.items() if not getattr(settings, k)}
    if missing:
        settings = settings.model_copy(update=missing)
    return services_module.build(
        settings, providers={p.name: p for p in providers}, **memory_adapters(settings)
    )


def install_memory_services(*providers: Provider) -> Services:
    """Twins over this test's environment's settings, with ``providers`` given, installed as
    what the handlers get (``tests/conftest.py``'s ``install_services``, without moto)."""
    built = memory_services(None, *providers)
    services_module.use(built)
    return built
