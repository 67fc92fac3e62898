"""What the logic layer may ask of each store: one Protocol per adapter that
:func:`subconscious.services.build` makes from ``dal/``.

Each lists only the methods the logic (and the local stack's tools) call, so a twin
(``dal/memory.py``) or a fake needs nothing more; the boto3-backed classes satisfy them
structurally (no inheritance). ``tests/contract/stores`` runs the same cases against both.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from subconscious.models.tenancy import Principal, Role

if TYPE_CHECKING:
    from subconscious.dal.images import StoredImage
    from subconscious.dal.prices import Freshness
    from subconscious.dal.runs import RunsRead
    from subconscious.dal.work_queue import Delivery
    from subconscious.models import (
        EndReason,
        Offer,
        Order,
        OrderState,
        Quote,
        RenderRun,
        RenderTask,
    )
    from subconscious.models.spot import SpotOutlook
    from subconscious.models.webhooks import (
        DeliveryAttempt,
        DeliveryState,
        WebhookEvent,
        WebhookMessage,
        WebhookRecord,
    )
    from subconscious.throughput_model import Correction


@runtime_checkable
class TenantStoreProtocol(Protocol):
    def tenant_for_key(self, api_key: str) -> str | None: ...

    def principal_for_key(self, api_key: str) -> Principal | None: ...

    def add_key(
        self, tenant_id: str, api_key: str, name: str = "", role: Role = Role.CUSTOMER
    ) -> None: ...


@runtime_checkable
class QuoteStoreProtocol(Protocol):
    def put(self, tenant_id: str, quote: Quote) -> None: ...

    def get(self, tenant_id: str, quote_id: str) -> Quote | None: ...


@runtime_checkable
class OrderStoreProtocol(Protocol):
    def create_or_resume(self, tenant_id: str, order: Order, accept_key: str) -> None: ...

    def accepted_with(self, tenant_id: str, order_id: str) -> tuple[str, str] | None: ...

    def get(self, tenant_id: str, order_id: str) -> Order | None: ...

    def transition(
        self, tenant_id: str, order_id: str, target: OrderState, reason: EndReason | None = None
    ) -> bool: ...

    def add_spend(
        self, tenant_id: str, order_id: str, spend_micros: int, aws_micros: int = 0
    ) -> Order: ...

    def set_run_cost(
        self, tenant_id: str, order_id: str, run_id: str, gpu_micros: int, aws_micros: int
    ) -> None: ...

    def set_hold(
        self, tenant_id: str, order_id: str, until: datetime | None, reason: str | None
    ) -> bool: ...

    def page(
        self, tenant_id: str, limit: int, token: str | None, state: OrderState | None = None
    ) -> tuple[list[Order], str | None]: ...

    def open_orders(self) -> Iterator[tuple[str, Order]]: ...


@runtime_checkable
class ImageStoreProtocol(Protocol):
    def record(
        self,
        tenant_id: str,
        order_id: str,
        *,
        prompt_index: int,
        prompt: str,
        seed: int,
        width: int,
        height: int,
        key: str,
    ) -> bool: ...

    def give_up(self, tenant_id: str, order_id: str, *, prompt_index: int, seed: int) -> bool: ...

    def page(
        self, tenant_id: str, order_id: str, limit: int, token: str | None
    ) -> tuple[list[StoredImage], str | None]: ...


@runtime_checkable
class RunStoreProtocol(Protocol):
    # ``put`` is used by tools and tests that seed a run; the logic writes under the lease
    def put(self, run: RenderRun) -> None: ...

    def put_under_lease(self, run: RenderRun, lease: str, holder: str, at: datetime) -> bool: ...

    def get(self, run_id: str) -> RenderRun | None: ...

    def save(self, run: RenderRun) -> None: ...

    def live(self) -> Iterator[RenderRun]: ...

    # live runs, runs ended since ``since`` and stop requests, from one scan
    def read(self, since: datetime) -> RunsRead: ...

    def orphans_first_seen(self, provider: str) -> dict[str, datetime]: ...

    def remember_orphan(self, provider: str, machine_id: str, at: datetime) -> None: ...

    def forget_orphan(self, provider: str, machine_id: str) -> None: ...

    def request_stop(self, run_id: str, reason: str, at: datetime) -> None: ...

    def stop_requested(self, run_id: str) -> bool: ...

    def acquire_lease(
        self, name: str, holder: str, seconds: int, at: datetime | None = None
    ) -> bool: ...

    def release_lease(self, name: str, holder: str) -> None: ...


@runtime_checkable
class WorkQueueProtocol(Protocol):
    """The work queue and its dead-letter queue (the same operations)."""

    def send(self, tasks: Sequence[RenderTask], delay_s: int = 0) -> None: ...

    def receive(self, max_messages: int, wait_s: int, visibility_s: int) -> list[Delivery]: ...

    def delete(self, delivery: Delivery) -> None: ...

    def set_visibility(self, delivery: Delivery, seconds: int) -> None: ...

    def depth(self) -> tuple[int, int]: ...


@runtime_checkable
class ImageBucketProtocol(Protocol):
    def put_png(self, key: str, body: bytes, metadata: dict[str, str]) -> None: ...

    def presign(self, key: str, expires_s: int) -> str: ...


@runtime_checkable
class PriceCacheProtocol(Protocol):
    def replace(self, provider: str, offers: list[Offer], at: datetime, ttl: timedelta) -> None: ...

    def mark_failed(self, provider: str, at: datetime, error: str) -> None: ...

    def read(self, provider: str) -> tuple[Freshness | None, list[Offer]]: ...

    def save_outlook(self, outlook: SpotOutlook) -> None: ...

    def load_outlook(self) -> SpotOutlook | None: ...


@runtime_checkable
class ThroughputCorrectionsProtocol(Protocol):
    def load(self) -> dict[str, Correction]: ...

    def replace(self, gpu: str, old: Correction, new: Correction) -> bool: ...


@runtime_checkable
class MarketHistoryProtocol(Protocol):
    def append(self, offers: list[Offer], at: datetime) -> str: ...

    def snapshots(
        self, until: datetime, days: int, per_day: int
    ) -> Iterator[tuple[datetime, list[Offer]]]: ...


@runtime_checkable
class RunExecutionsProtocol(Protocol):
    def start(self, run_id: str, payload: dict[str, Any]) -> str: ...

    def is_running(self, execution_arn: str) -> bool: ...

    def arn_for(self, run_id: str) -> str: ...


@runtime_checkable
class IdempotencyProtocol(Protocol):
    """powertools' idempotency config and persistence layer (both untyped there)."""

    @property
    def config(self) -> Any: ...

    @property
    def persistence(self) -> Any: ...


@runtime_checkable
class WebhookStoreProtocol(Protocol):
    def secret(self, tenant_id: str, create: Callable[[], str]) -> str: ...

    def add(self, record: WebhookRecord) -> bool: ...

    def get(self, tenant_id: str, order_id: str, event: WebhookEvent) -> WebhookRecord | None: ...

    def record_attempt(
        self, record: WebhookRecord, attempt: DeliveryAttempt, state: DeliveryState
    ) -> None: ...


@runtime_checkable
class WebhookQueueProtocol(Protocol):
    def send(self, message: WebhookMessage) -> None: ...

    def retry_later(self, receipt: str, seconds: int) -> None: ...


@runtime_checkable
class WebhookHttpProtocol(Protocol):
    """POSTs one signed webhook (``notify/webhook_http.py``); never raises for the receiver."""

    def post(self, url: str, headers: Mapping[str, str], body: str) -> DeliveryAttempt: ...
