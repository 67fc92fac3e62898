"""Webhooks: the events an order's end sends, what is stored per event, and the retry schedule.

An order that asked for a ``webhook_url`` gets one event when it reaches a terminal state (the
one conditional transition that ends it decides, so once per order). The event is stored (its
id, body and every delivery attempt) and queued; the webhooks function signs and POSTs it,
retrying on the schedule of :func:`retry_delay_s` until ``max_attempts``.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import AwareDatetime, BaseModel, Field

from subconscious.models.commerce import OrderState
from subconscious.models.commerce import WebhookEvent as WebhookEvent  # defined by the order

# The longest a webhook URL may be (browsers and most servers stop near 8 KB; this is ours).
MAX_WEBHOOK_URL_LENGTH = 2048
# SQS holds a message invisible for at most 12 hours (ChangeMessageVisibility).
MAX_RETRY_DELAY_S = 12 * 3600


# The event of each terminal state ("canceled": the spelling Stripe, Replicate and most
# webhook senders use, though the order state is spelled "cancelled").
EVENT_OF_STATE: dict[OrderState, WebhookEvent] = {
    OrderState.COMPLETED: WebhookEvent.COMPLETED,
    OrderState.PARTIALLY_COMPLETED: WebhookEvent.PARTIALLY_COMPLETED,
    OrderState.FAILED: WebhookEvent.FAILED,
    OrderState.EXPIRED: WebhookEvent.EXPIRED,
    OrderState.CANCELLED: WebhookEvent.CANCELED,
}


def wanted(event: WebhookEvent, events: list[WebhookEvent] | None) -> bool:
    """Whether an order that asked for ``events`` (None: every event) gets ``event``."""
    return events is None or event in events


def retry_delay_s(attempts_made: int, base_s: int) -> int:
    """How long to wait after ``attempts_made`` failed attempts: ``base_s`` x 4^(n-1), so with
    a 30 s base 30 s, 2 min, 8 min, 32 min, ~2 h, ~8.5 h, then 12 h (SQS's longest
    invisibility)."""
    if attempts_made < 1:
        return 0
    return int(min(MAX_RETRY_DELAY_S, base_s * 4 ** min(attempts_made - 1, 16)))


class DeliveryState(StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"  # every attempt spent without a 2xx


class DeliveryAttempt(BaseModel):
    at: AwareDatetime
    status_code: int | None = Field(default=None, description="the receiver's answer, if any")
    error: str | None = Field(default=None, description="why no answer (refused, timeout...)")
    duration_ms: int


class WebhookRecord(BaseModel):
    """One event of one order, as stored: what is sent, and every attempt to send it."""

    event_id: str = Field(description="webhook-id: the same on every attempt")
    tenant_id: str
    order_id: str
    event: WebhookEvent
    url: str
    body: str = Field(description="the JSON sent, fixed when the event happened")
    created_at: AwareDatetime
    state: DeliveryState = DeliveryState.PENDING
    attempts: list[DeliveryAttempt] = Field(default_factory=list)


class WebhookMessage(BaseModel):
    """The queued message: which stored event to deliver."""

    tenant_id: str
    order_id: str
    event: WebhookEvent


class WebhookSecret(BaseModel):
    secret: str = Field(description="whsec_<base64>: verify each delivery's webhook-signature")


def event_id_for(order_id: str, event: WebhookEvent) -> str:
    """The event's id (``webhook-id``), derived so a retried emit names the same event."""
    return f"msg_{order_id}_{event.value.removeprefix('order.')}"
