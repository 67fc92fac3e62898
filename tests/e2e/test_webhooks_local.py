"""Webhooks on the local stack (``make local``): an order placed over HTTP with a
``webhook_url`` ends, and its signed ``order.completed`` reaches the receiver through the
stack's webhook queue and function, after the receiver's first 500."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from infra.local.stack import LocalStack
from subconscious.webhook_signing import verify
from tests.local_stacks import running_stack
from tests.webhook_receiver import receiving

pytestmark = pytest.mark.e2e


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[LocalStack]:
    with running_stack(
        settings={"SUBC_WEBHOOK_BACKOFF_S": "1"}, machine_logs=tmp_path / "machines"
    ) as local:
        yield local


def test_an_order_placed_over_http_gets_its_signed_completed_event(stack: LocalStack) -> None:
    headers = {"x-api-key": stack.api_key}
    with receiving() as receiver, httpx.Client(base_url=stack.api_url, headers=headers) as api:
        job = {"prompts": [{"text": "a lighthouse", "count": 4}]}
        quote = api.post("/v1/quotes", json={"job": job}).json()
        placed = api.post(
            "/v1/orders",
            json={
                "quote_id": quote["quote_id"],
                "option_id": quote["options"][0]["option_id"],
                "webhook_url": receiver.url,
            },
            headers={"Idempotency-Key": "webhook-e2e-0001"},
        )
        assert placed.status_code == 201, placed.text
        order_id = placed.json()["order_id"]
        deadline = time.monotonic() + 90
        while not receiver.accepted() and time.monotonic() < deadline:
            time.sleep(0.3)
        secret = api.get("/v1/webhooks/secret").json()["secret"]

    assert receiver.answered == [500, 200]
    (accepted_headers, body) = receiver.accepted()[0]
    verify(secret, accepted_headers, body)
    event = json.loads(body)
    assert (event["type"], event["data"]["order_id"]) == ("order.completed", order_id)
    assert event["data"]["images_done"] == 4
