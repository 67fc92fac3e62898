"""Webhook logic on the in-memory twins: which orders announce what (once), the retry schedule,
and what one delivery attempt does to an event and its queue message."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from pydantic import ValidationError

from subconscious import services as services_module
from subconscious.dal.memory import MemoryWebhookQueue, MemoryWebhooks
from subconscious.errors import ValidationFailed
from subconscious.logic.orders import order_out
from subconscious.logic.webhooks import NotDeliveredYet, announce, check_request, deliver
from subconscious.models import (
    TERMINAL_STATES,
    Constraints,
    JobSpec,
    Order,
    OrderRequest,
    OrderState,
    WebhookEvent,
)
from subconscious.models.webhooks import (
    EVENT_OF_STATE,
    DeliveryAttempt,
    DeliveryState,
    WebhookMessage,
    retry_delay_s,
    wanted,
)
from subconscious.services import Services
from subconscious.settings import Settings
from subconscious.webhook_signing import verify
from tests.twins import memory_adapters

NOW = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
TENANT = "tenant-a"
URL = "https://hooks.example.com/subconscious"


class FakeHttp:
    """The sender: answers each POST with the next status (None: no answer, an error)."""

    def __init__(self, *statuses: int | None) -> None:
        self.statuses = list(statuses)
        self.posts: list[tuple[str, dict[str, str], str]] = []

    def post(self, url: str, headers: Mapping[str, str], body: str) -> DeliveryAttempt:
        self.posts.append((url, dict(headers), body))
        status = self.statuses.pop(0)
        return DeliveryAttempt(
            at=NOW,
            status_code=status,
            error=None if status is not None else "timeout",
            duration_ms=12,
        )


def services(http: FakeHttp | None = None, **settings: Any) -> Services:
    config = Settings(**settings)
    return services_module.build(config, **memory_adapters(config), webhook_http=http or FakeHttp())


def order(state: OrderState = OrderState.COMPLETED, **overrides: Any) -> Order:
    job = JobSpec.model_validate({"prompts": [{"text": "a lighthouse", "count": 4}]})
    fields: dict[str, Any] = {
        "order_id": "o-" + "a" * 32,
        "quote_id": "q-1",
        "option_id": "opt-1",
        "state": state,
        "job": job,
        "constraints": Constraints(),
        "price_per_image_usd": Decimal("0.002"),
        "total_usd": Decimal("0.008"),
        "images_total": 4,
        "images_done": 4 if state is OrderState.COMPLETED else 1,
        "seed_bases": [7],
        "gpu": "RTX 4090",
        "promised_at": NOW + timedelta(hours=1),
        "created_at": NOW - timedelta(minutes=5),
        "updated_at": NOW,
        "ended_at": NOW,
        "webhook_url": URL,
    }
    fields.update(overrides)
    return Order(**fields)


def _announce(svc: Services, ended: Order) -> Any:
    return announce(svc, TENANT, ended, order_out(ended, NOW), now=NOW)


def _queue(svc: Services) -> MemoryWebhookQueue:
    assert isinstance(svc.webhook_queue, MemoryWebhookQueue)
    return svc.webhook_queue


# --- the schedule and the filter ---
def test_retries_wait_four_times_longer_each_time_up_to_sqs_longest() -> None:
    assert [retry_delay_s(n, 30) for n in range(0, 9)] == [
        0,
        30,
        120,
        480,
        1920,
        7680,
        30720,
        43200,  # 12 h: SQS's longest invisibility
        43200,
    ]
    assert retry_delay_s(50, 30) == 43200
    assert retry_delay_s(3, 0) == 0  # the tests' immediate retries


def test_every_terminal_state_has_one_event_and_the_filter_keeps_only_those_asked() -> None:
    assert set(EVENT_OF_STATE) == TERMINAL_STATES
    assert set(EVENT_OF_STATE.values()) == set(WebhookEvent)
    assert EVENT_OF_STATE[OrderState.CANCELLED] is WebhookEvent.CANCELED
    assert all(wanted(e, None) for e in WebhookEvent)
    chosen = [WebhookEvent.FAILED, WebhookEvent.EXPIRED]
    assert [e for e in WebhookEvent if wanted(e, chosen)] == chosen


# --- the request ---
@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"webhook_url": "https://10.0.0.1/x"}, "webhook_url"),
        ({"webhook_url": "http://hooks.example.com/x"}, "webhook_url"),
        ({"webhook_events": ["order.completed"]}, "webhook_events"),
    ],
)
def test_a_receiver_we_would_never_call_is_refused_naming_the_field(
    body: dict[str, Any], field: str
) -> None:
    request = OrderRequest(quote_id="q", option_id="o", **body)
    with pytest.raises(ValidationFailed) as raised:
        check_request(Settings(), request)
    assert [d["field"] for d in raised.value.details] == [field]


def test_the_request_model_bounds_the_url_and_the_events() -> None:
    with pytest.raises(ValidationError, match="webhook_url"):
        OrderRequest(quote_id="q", option_id="o", webhook_url="https://x.example/" + "a" * 2040)
    with pytest.raises(ValidationError, match="webhook_events"):
        OrderRequest.model_validate(
            {"quote_id": "q", "option_id": "o", "webhook_events": ["order.started"]}
        )
    with pytest.raises(ValidationError, match="webhook_events"):
        OrderRequest.model_validate({"quote_id": "q", "option_id": "o", "webhook_events": []})
    check_request(Settings(), OrderRequest(quote_id="q", option_id="o", webhook_url=URL))


# --- announcing an order's end ---
def test_an_ended_order_is_announced_once_with_its_customer_view() -> None:
    svc = services()
    ended = order()
    record = _announce(svc, ended)
    assert record is not None and _announce(svc, ended) is not None
    assert _queue(svc).sent == [
        WebhookMessage(tenant_id=TENANT, order_id=ended.order_id, event=WebhookEvent.COMPLETED)
    ]
    body = json.loads(record.body)
    assert body["type"] == "order.completed"
    assert body["timestamp"] == NOW.isoformat()
    assert body["data"]["order_id"] == ended.order_id
    assert body["data"]["charge_usd"] == "0.008"
    assert body["data"]["webhook_url"] == URL
    assert record.event_id == f"msg_{ended.order_id}_completed"


@pytest.mark.parametrize(
    ("state", "event"),
    [
        (OrderState.PARTIALLY_COMPLETED, "order.partially_completed"),
        (OrderState.FAILED, "order.failed"),
        (OrderState.EXPIRED, "order.expired"),
        (OrderState.CANCELLED, "order.canceled"),
    ],
)
def test_each_end_has_its_event(state: OrderState, event: str) -> None:
    svc = services()
    record = _announce(svc, order(state))
    assert record is not None and json.loads(record.body)["type"] == event


def test_orders_without_a_url_an_unwanted_event_or_still_open_announce_nothing() -> None:
    svc = services()
    assert _announce(svc, order(webhook_url=None)) is None
    assert _announce(svc, order(webhook_events=[WebhookEvent.FAILED])) is None
    assert _announce(svc, order(OrderState.RENDERING)) is None
    assert _queue(svc).sent == []


def test_a_store_that_fails_is_logged_and_never_fails_the_caller_that_ended_the_order(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    svc = services()

    def broken(record: Any) -> bool:
        raise RuntimeError("throttled")

    monkeypatch.setattr(svc.webhooks, "add", broken)
    assert _announce(svc, order()) is None
    assert _queue(svc).sent == []


# --- delivering ---
def _queued(svc: Services) -> WebhookMessage:
    record = _announce(svc, order())
    assert record is not None
    (message,) = _queue(svc).sent
    return message


def test_a_2xx_delivers_signed_with_the_tenants_secret() -> None:
    http = FakeHttp(204)
    svc = services(http)
    message = _queued(svc)
    assert deliver(svc, message, "r-1", now=NOW) is DeliveryState.DELIVERED
    (url, headers, body) = http.posts[0]
    assert url == URL
    secret = svc.webhooks.secret(TENANT, lambda: "unused")
    verify(secret, headers, body, now=NOW)
    stored = svc.webhooks.get(TENANT, message.order_id, message.event)
    assert stored is not None and stored.state is DeliveryState.DELIVERED
    assert [a.status_code for a in stored.attempts] == [204]
    assert _queue(svc).delays == {}


def test_a_failed_attempt_is_recorded_and_the_message_waits_its_backoff() -> None:
    http = FakeHttp(500, None, 200)
    svc = services(http, webhook_backoff_s=30)
    message = _queued(svc)
    for receipt, delay in (("r-1", 30), ("r-2", 120)):
        with pytest.raises(NotDeliveredYet):
            deliver(svc, message, receipt, now=NOW)
        assert _queue(svc).delays[receipt] == delay
    assert deliver(svc, message, "r-3", now=NOW) is DeliveryState.DELIVERED
    stored = svc.webhooks.get(TENANT, message.order_id, message.event)
    assert stored is not None
    assert [(a.status_code, a.error) for a in stored.attempts] == [
        (500, None),
        (None, "timeout"),
        (200, None),
    ]
    # every attempt carries the same id and body, so the receiver can deduplicate
    assert len({(h["webhook-id"], b) for _, h, b in http.posts}) == 1


def test_the_last_attempt_gives_the_event_up_without_another_retry() -> None:
    http = FakeHttp(503, 503)
    svc = services(http, webhook_max_attempts=2)
    message = _queued(svc)
    with pytest.raises(NotDeliveredYet):
        deliver(svc, message, "r-1", now=NOW)
    assert deliver(svc, message, "r-2", now=NOW) is DeliveryState.FAILED
    assert "r-2" not in _queue(svc).delays
    # a duplicate message of a settled event sends nothing more
    assert deliver(svc, message, "r-3", now=NOW) is DeliveryState.FAILED
    assert len(http.posts) == 2


def test_a_message_naming_no_stored_event_is_dropped_without_a_post() -> None:
    http = FakeHttp()
    svc = services(http)
    message = WebhookMessage(tenant_id=TENANT, order_id="o-x", event=WebhookEvent.COMPLETED)
    assert deliver(svc, message, "r-1", now=NOW) is DeliveryState.FAILED
    assert http.posts == []


def test_each_tenant_has_its_own_secret_made_once() -> None:
    store = MemoryWebhooks()
    made = iter(["whsec_AAAA", "whsec_BBBB"])
    assert store.secret("a", lambda: next(made)) == "whsec_AAAA"
    assert store.secret("b", lambda: next(made)) == "whsec_BBBB"
    assert store.secret("a", lambda: next(made)) == "whsec_AAAA"  # no third secret is made
