"""Webhooks end to end against moto (issue 16's acceptance): orders placed through the API with
a ``webhook_url``, completed, their events delivered by the webhooks function from SQS to a
real HTTP receiver on loopback that answers the first attempt 500.

The receiver must get exactly one accepted, signed ``order.completed`` per order (verified with
the tenant's secret from ``GET /v1/webhooks/secret``), after a retry, and never another
tenant's events; every attempt is recorded; nothing is POSTed from an API request."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from functions.webhooks.handler import lambda_handler as webhooks_handler
from infra import definitions as d
from infra.local.resources import Created
from infra.local.stack import context_for, deliver_batch
from subconscious.logic import lifecycle
from subconscious.logic.orders import render_tasks
from subconscious.market.fake import FakeProvider
from subconscious.models import Order
from subconscious.models.webhooks import DeliveryState, WebhookEvent
from subconscious.services import Services
from subconscious.webhook_signing import WebhookVerificationError, verify
from tests.conftest import install_services, load_event
from tests.integration.api_helpers import (
    TENANT_A,
    TENANT_B,
    assert_error,
    call,
    create_quote,
    order_body,
    queue_depth,
)
from tests.webhook_receiver import Receiver, receiving

pytestmark = pytest.mark.moto
WEBHOOKS_FUNCTION = next(f for f in d.FUNCTIONS if f.name == f"{d.PREFIX}-webhooks")


@pytest.fixture(autouse=True)
def _local_receivers(monkeypatch: pytest.MonkeyPatch) -> None:
    """The receivers here are http on loopback: allowed as the local stack allows them, and
    retried at once (no backoff) so the test does not wait."""
    monkeypatch.setenv("SUBC_ALLOW_HTTP_WEBHOOKS", "true")
    monkeypatch.setenv("SUBC_ALLOW_PRIVATE_WEBHOOK_ADDRESSES", "true")
    monkeypatch.setenv("SUBC_WEBHOOK_BACKOFF_S", "0")


@pytest.fixture
def receivers() -> Iterator[tuple[Receiver, Receiver]]:
    with receiving() as mine, receiving() as theirs:
        yield mine, theirs


def _order(key: str, url: str | None, **extra: Any) -> dict[str, Any]:
    quote = create_quote(key, {"prompts": [{"text": "a lighthouse", "count": 3}]})
    body: dict[str, Any] = {**order_body(quote), **extra}
    if url is not None:
        body["webhook_url"] = url
    status, order = call(
        "POST",
        "/v1/orders",
        body,
        key=key,
        headers={"Idempotency-Key": f"idem-{quote['quote_id']}"},
    )
    assert status == 201, order
    assert order["webhook_url"] == url
    return dict(order)


def _complete(svc: Services, tenant: str, order_id: str) -> None:
    """What the render steps do: every image delivered; then the dispatch tick's sweep ends it."""
    order = svc.orders.get(tenant, order_id)
    assert isinstance(order, Order)
    for task in render_tasks(tenant, order):
        for seed in task.seeds:
            svc.images.record(
                tenant,
                order_id,
                prompt_index=task.prompt_index,
                prompt=task.prompt,
                seed=seed,
                width=task.width,
                height=task.height,
                key=f"k/{order_id}/{seed}",
            )


def _drain_webhooks(aws: Created, rounds: int = 10) -> list[dict[str, Any]]:
    """Run the webhooks function on the queue as its SQS event source would, until it is empty;
    the batch responses it gave."""
    sqs = boto3.client("sqs")
    responses = []
    for _ in range(rounds):
        response = deliver_batch(sqs, aws.webhook_queue_url, webhooks_handler, WEBHOOKS_FUNCTION)
        if response is None:
            break
        responses.append(response)
    return responses


def _secret(key: str) -> str:
    status, body = call("GET", "/v1/webhooks/secret", key=key)
    assert status == 200, body
    assert body["secret"].startswith("whsec_")
    return str(body["secret"])


def test_each_order_gets_one_signed_completed_event_after_a_retry_and_no_other_tenants(
    svc: Services,
    aws: Created,
    api_key: str,
    other_api_key: str,
    receivers: tuple[Receiver, Receiver],
) -> None:
    mine, theirs = receivers
    my_orders = [_order(api_key, mine.url)["order_id"] for _ in range(2)]
    their_order = _order(other_api_key, theirs.url)["order_id"]
    quiet_order = _order(api_key, None)["order_id"]  # asked for no webhook
    for order_id in [*my_orders, quiet_order]:
        _complete(svc, TENANT_A, order_id)
    _complete(svc, TENANT_B, their_order)
    assert mine.received == [] and theirs.received == []

    swept = lifecycle.sweep(svc)
    assert set(swept.ended) == {*my_orders, their_order, quiet_order}
    assert mine.received == []  # queued, not sent, by the tick that ended the orders
    first = _drain_webhooks(aws)
    lifecycle.sweep(svc)  # a later tick ends nothing and so announces nothing
    assert _drain_webhooks(aws) == []

    assert len(first[0]["batchItemFailures"]) == 3  # every first attempt answered 500
    my_secret, their_secret = _secret(api_key), _secret(other_api_key)
    assert my_secret != their_secret and _secret(api_key) == my_secret  # made once, then kept
    accepted = mine.accepted()
    assert len(accepted) == 2 and len(mine.received) == 4
    seen_orders = []
    for headers, body in mine.received:
        verify(my_secret, headers, body)
        with pytest.raises(WebhookVerificationError):
            verify(their_secret, headers, body)
    for headers, body in accepted:
        event = json.loads(body)
        assert event["type"] == "order.completed"
        assert event["data"]["state"] == "completed"
        assert event["data"]["images_done"] == 3
        assert headers["webhook-id"] == f"msg_{event['data']['order_id']}_completed"
        seen_orders.append(event["data"]["order_id"])
    assert sorted(seen_orders) == sorted(my_orders)
    # the retry is the same message: same id and body, signed again
    by_id: dict[str, list[bytes]] = {}
    for headers, body in mine.received:
        by_id.setdefault(headers["webhook-id"], []).append(body)
    assert all(len(bodies) == 2 and bodies[0] == bodies[1] for bodies in by_id.values())

    assert [json.loads(b)["data"]["order_id"] for _, b in theirs.accepted()] == [their_order]
    verify(their_secret, *theirs.accepted()[0])

    for tenant, order_id in [(TENANT_A, o) for o in my_orders] + [(TENANT_B, their_order)]:
        stored = svc.webhooks.get(tenant, order_id, WebhookEvent.COMPLETED)
        assert stored is not None and stored.state is DeliveryState.DELIVERED
        assert [a.status_code for a in stored.attempts] == [500, 200]
        assert all(a.error is None and a.duration_ms >= 0 for a in stored.attempts)
    assert svc.webhooks.get(TENANT_A, quiet_order, WebhookEvent.COMPLETED) is None


def test_a_cancel_queues_its_event_and_posts_nothing_from_the_request(
    svc: Services, aws: Created, api_key: str, receivers: tuple[Receiver, Receiver]
) -> None:
    mine, _ = receivers
    order_id = _order(api_key, mine.url)["order_id"]
    status, body = call("DELETE", f"/v1/orders/{order_id}", key=api_key)
    assert status == 200 and body["state"] == "cancelled", body
    assert mine.received == []
    assert queue_depth(aws.webhook_queue_url) == 1
    _drain_webhooks(aws)
    assert [json.loads(b)["type"] for _, b in mine.accepted()] == ["order.canceled"]


def test_the_event_filter_sends_only_the_events_asked_for(
    svc: Services, aws: Created, api_key: str, receivers: tuple[Receiver, Receiver]
) -> None:
    mine, _ = receivers
    failures_only = _order(api_key, mine.url, webhook_events=["order.failed"])["order_id"]
    cancels_only = _order(api_key, mine.url, webhook_events=["order.canceled"])["order_id"]
    _complete(svc, TENANT_A, failures_only)
    lifecycle.sweep(svc)
    call("DELETE", f"/v1/orders/{cancels_only}", key=api_key)
    _drain_webhooks(aws)
    events = [
        (json.loads(b)["type"], json.loads(b)["data"]["order_id"]) for _, b in mine.accepted()
    ]
    assert events == [("order.canceled", cancels_only)]


def test_a_receiver_that_keeps_failing_is_given_up_after_the_last_attempt(
    svc: Services,
    aws: Created,
    api_key: str,
    market: FakeProvider,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SUBC_WEBHOOK_MAX_ATTEMPTS", "3")
    svc = install_services(market)
    # a closed port: connection refused on every attempt
    order_id = _order(api_key, "http://127.0.0.1:9/hooks")["order_id"]
    call("DELETE", f"/v1/orders/{order_id}", key=api_key)
    responses = _drain_webhooks(aws)
    assert [len(r["batchItemFailures"]) for r in responses] == [1, 1, 0]
    stored = svc.webhooks.get(TENANT_A, order_id, WebhookEvent.CANCELED)
    assert stored is not None and stored.state is DeliveryState.FAILED
    assert [a.status_code for a in stored.attempts] == [None, None, None]
    assert all((a.error or "").startswith("transport error") for a in stored.attempts)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"webhook_url": "ftp://example.com/hook"}, "webhook_url"),
        ({"webhook_url": "https://user:pw@example.com/hook"}, "webhook_url"),
        ({"webhook_url": "https://169.254.169.254/latest/meta-data"}, "webhook_url"),
        ({"webhook_url": "https://[::ffff:169.254.169.254]/x"}, "webhook_url"),
        ({"webhook_url": "https://example.com/" + "a" * 2048}, "webhook_url"),
        ({"webhook_events": ["order.completed"]}, "webhook_events"),
    ],
)
def test_a_bad_receiver_is_a_422_naming_the_field_and_nothing_is_queued(
    svc: Services, aws: Created, api_key: str, body: dict[str, Any], field: str
) -> None:
    quote = create_quote(api_key, {"prompts": [{"text": "a lighthouse", "count": 3}]})
    response = call(
        "POST",
        "/v1/orders",
        {**order_body(quote), **body},
        key=api_key,
        headers={"Idempotency-Key": "idem-bad-webhook"},
    )
    assert response[0] == 422, response
    assert field in json.dumps(response[1]["error"]["details"])
    assert queue_depth(aws.queue_url) == 0
    assert boto3.resource("dynamodb").Table("subc-orders").scan()["Items"] == []


def test_https_only_and_public_only_unless_the_settings_allow(
    svc: Services,
    aws: Created,
    api_key: str,
    market: FakeProvider,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SUBC_ALLOW_HTTP_WEBHOOKS", "false")
    monkeypatch.setenv("SUBC_ALLOW_PRIVATE_WEBHOOK_ADDRESSES", "false")
    install_services(market)
    quote = create_quote(api_key, {"prompts": [{"text": "a lighthouse", "count": 3}]})
    for url in ("http://example.com/hook", "https://10.0.0.7/hook", "https://localhost/hook"):
        response = call(
            "POST",
            "/v1/orders",
            {**order_body(quote), "webhook_url": url},
            key=api_key,
            headers={"Idempotency-Key": "idem-strict-1"},
        )
        assert_error(response, 422, "validation_error", ["webhook_url"])
    assert queue_depth(aws.queue_url) == 0


def test_a_malformed_message_is_dropped_not_retried_into_the_dead_letters(
    svc: Services, aws: Created
) -> None:
    boto3.client("sqs").send_message(QueueUrl=aws.webhook_queue_url, MessageBody='{"order": 1}')
    (response,) = _drain_webhooks(aws)
    assert response == {"batchItemFailures": []}
    assert queue_depth(aws.webhook_queue_url) == 0


def test_the_sample_event_names_an_event_never_stored_and_is_acknowledged(
    svc: Services, aws: Created
) -> None:
    response = webhooks_handler(
        load_event("sqs_webhook_event.json"), context_for(WEBHOOKS_FUNCTION)
    )
    assert response == {"batchItemFailures": []}
