"""The webhook store on both backends: one secret per tenant, an event written once, attempts
appended in order with the delivery state."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from subconscious.dal.webhooks import record_row
from subconscious.models.webhooks import (
    DeliveryAttempt,
    DeliveryState,
    WebhookEvent,
    WebhookRecord,
)
from subconscious.services import Services
from tests.contract.stores.conftest import unique

NOW = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)


def _record(order_id: str, event: WebhookEvent = WebhookEvent.COMPLETED) -> WebhookRecord:
    return WebhookRecord(
        event_id=f"msg_{order_id}",
        tenant_id="tenant-a",
        order_id=order_id,
        event=event,
        url="https://hooks.example.com/x",
        body='{"type":"order.completed"}',
        created_at=NOW,
    )


def test_a_tenants_secret_is_made_once_and_is_its_own(stores: Services) -> None:
    tenant, other = unique("t-"), unique("t-")
    assert stores.webhooks.secret(tenant, lambda: "whsec_first") == "whsec_first"
    assert stores.webhooks.secret(tenant, lambda: "whsec_second") == "whsec_first"
    assert stores.webhooks.secret(other, lambda: "whsec_other") == "whsec_other"


def test_an_event_is_stored_once_per_order_and_event(stores: Services) -> None:
    order_id = unique("o-")
    assert stores.webhooks.add(_record(order_id))
    assert not stores.webhooks.add(_record(order_id).model_copy(update={"body": "{}"}))
    assert stores.webhooks.add(_record(order_id, WebhookEvent.CANCELED))
    stored = stores.webhooks.get("tenant-a", order_id, WebhookEvent.COMPLETED)
    assert stored == _record(order_id)  # the first body, pending, no attempt
    assert stores.webhooks.get("tenant-b", order_id, WebhookEvent.COMPLETED) is None


def test_attempts_are_appended_in_order_with_the_state(stores: Services) -> None:
    record = _record(unique("o-"))
    stores.webhooks.add(record)
    first = DeliveryAttempt(at=NOW, status_code=500, duration_ms=40)
    second = DeliveryAttempt(at=NOW + timedelta(seconds=30), error="timeout", duration_ms=10000)
    stores.webhooks.record_attempt(record, first, DeliveryState.PENDING)
    stores.webhooks.record_attempt(record, second, DeliveryState.FAILED)
    stored = stores.webhooks.get(record.tenant_id, record.order_id, record.event)
    assert stored is not None
    assert stored.attempts == [first, second]
    assert stored.state is DeliveryState.FAILED


def test_events_expire_after_thirty_days() -> None:
    row = record_row(_record("o-1"))
    assert row["expires"] == int((NOW + timedelta(days=30)).timestamp())
