"""Webhooks: validate an order's receiver, announce its end once, deliver with retries.

- :func:`check_request` at acceptance, before anything is stored or queued: a bad
  ``webhook_url`` (not https, credentials in it, a private address written as an IP) or events
  without a URL is a 422 naming the field.
- :func:`announce` right after the one conditional transition that ended an order (the
  dispatch sweep, the render step, a cancel): the event's body is fixed then, stored under
  ``<tenant>#<order>#<event>`` (a second call adds nothing) and queued. Never a POST from
  there: the API request that cancels only queues.
- :func:`deliver`, from the webhooks function (SQS): sign with the tenant's secret, POST through
  the public-only sender, record the attempt; on failure the message stays invisible for the
  backoff (``retry_delay_s``) and comes back, until ``webhook_max_attempts``.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from subconscious import webhook_signing
from subconscious.errors import ValidationFailed
from subconscious.models import Order, OrderOut, OrderRequest
from subconscious.models.webhooks import (
    EVENT_OF_STATE,
    DeliveryState,
    WebhookMessage,
    WebhookRecord,
    WebhookSecret,
    event_id_for,
    retry_delay_s,
    wanted,
)
from subconscious.notify.webhook_http import url_refusal
from subconscious.observability import logger

if TYPE_CHECKING:  # a type only: services.py, the composition root, sits above logic
    from subconscious.services import Services
    from subconscious.settings import Settings


class NotDeliveredYet(Exception):
    """The attempt failed and another is due: the message comes back after its backoff."""


def check_request(settings: Settings, request: OrderRequest) -> None:
    """422 naming the field for a receiver we would never call."""
    if request.webhook_url is None:
        if request.webhook_events is not None:
            raise ValidationFailed(
                "webhook_events needs a webhook_url",
                details=[{"field": "webhook_events", "message": "given without webhook_url"}],
            )
        return
    why = url_refusal(
        request.webhook_url,
        allow_http=settings.allow_http_webhooks,
        allow_private=settings.allow_private_webhook_addresses,
    )
    if why is not None:
        raise ValidationFailed(
            f"webhook_url {why}", details=[{"field": "webhook_url", "message": why}]
        )


def secret_for(services: Services, tenant_id: str) -> WebhookSecret:
    """The tenant's signing secret, created on first call."""
    return WebhookSecret(secret=services.webhooks.secret(tenant_id, webhook_signing.new_secret))


def announce(
    services: Services, tenant_id: str, order: Order, view: OrderOut, now: datetime | None = None
) -> WebhookRecord | None:
    """Store and queue the event of ``order``'s end (``view``: the order as the customer sees
    it, the event's data), if it asked for one; the stored event, else None. Called by the one
    caller whose transition ended the order; a failure here is logged, never raised: the order
    has ended whatever happens to its notification."""
    if order.webhook_url is None:
        return None
    event = EVENT_OF_STATE.get(order.state)
    if event is None or not wanted(event, order.webhook_events):
        return None
    now = now or datetime.now(UTC)
    body = json.dumps(
        {"type": event.value, "timestamp": now.isoformat(), "data": view.model_dump(mode="json")},
        separators=(",", ":"),
    )
    record = WebhookRecord(
        event_id=event_id_for(order.order_id, event),
        tenant_id=tenant_id,
        order_id=order.order_id,
        event=event,
        url=order.webhook_url,
        body=body,
        created_at=now,
    )
    try:
        if services.webhooks.add(record):
            services.webhook_queue.send(
                WebhookMessage(tenant_id=tenant_id, order_id=order.order_id, event=event)
            )
    except Exception:  # the order has ended: its caller must not fail for this
        logger.exception("webhook event not queued", order_id=order.order_id, event=event.value)
        return None
    logger.info("webhook event queued", order_id=order.order_id, event=event.value)
    return record


def deliver(
    services: Services, message: WebhookMessage, receipt: str, now: datetime | None = None
) -> DeliveryState:
    """One attempt at ``message``'s event; its state after it. Raises :class:`NotDeliveredYet`
    (after making the message invisible for the backoff) when another attempt is due."""
    record = services.webhooks.get(message.tenant_id, message.order_id, message.event)
    if record is None:
        logger.error("webhook message names no stored event", order_id=message.order_id)
        return DeliveryState.FAILED
    if record.state is not DeliveryState.PENDING:
        return record.state  # a duplicate message of an event already settled
    secret = services.webhooks.secret(record.tenant_id, webhook_signing.new_secret)
    stamp = int((now or datetime.now(UTC)).timestamp())
    signed = webhook_signing.headers(secret, record.event_id, stamp, record.body)
    attempt = services.webhook_http.post(record.url, signed, record.body)
    made = len(record.attempts) + 1
    settings = services.settings
    if attempt.status_code is not None and 200 <= attempt.status_code < 300:
        state = DeliveryState.DELIVERED
    elif made >= settings.webhook_max_attempts:
        state = DeliveryState.FAILED
    else:
        state = DeliveryState.PENDING
    services.webhooks.record_attempt(record, attempt, state)
    logger.info(
        "webhook attempt",
        order_id=record.order_id,
        event=record.event.value,
        attempt=made,
        status_code=attempt.status_code,
        error=attempt.error,
        duration_ms=attempt.duration_ms,
        state=state.value,
    )
    if state is DeliveryState.PENDING:
        delay = retry_delay_s(made, settings.webhook_backoff_s)
        services.webhook_queue.retry_later(receipt, delay)
        raise NotDeliveredYet(f"attempt {made} failed; next in {delay}s")
    return state
