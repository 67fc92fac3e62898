"""Quote → order → cancel through the API handler: what is answered, stored and queued."""

from __future__ import annotations

import re
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from infra.local.resources import Created
from subconscious.logic import orders as order_logic
from subconscious.models import OrderState
from subconscious.services import Services
from tests.integration.api_helpers import (
    ORDER_ID_PATTERN,
    TENANT_A,
    accept,
    assert_error,
    call,
    create_quote,
    decimal_string,
    job,
    place_order,
    queue_depth,
    quote_body,
    receive_all,
    table_rows,
    writes,
)

# handler tests: the API over moto's resources, as in AWS (tests/conftest.py's svc)
pytestmark = pytest.mark.moto

BATCH = 8  # SD 1.5 at 512x512 on the 24 GB card tasks are sized for


def _time(value: Any) -> datetime:
    assert isinstance(value, str)
    parsed = datetime.fromisoformat(value)
    assert parsed.tzinfo is not None, f"{value} is not timezone-aware"
    return parsed


# --- quotes ---
def test_quote_happy_path(aws: Created, api_key: str) -> None:
    status, quote = call("POST", "/v1/quotes", quote_body(), key=api_key)

    assert status == 201, quote
    assert re.fullmatch(r"q-[0-9a-f]{32}", quote["quote_id"])
    assert quote["job"]["prompts"] == job()["prompts"]
    assert quote["feasible_as_requested"] is True
    # the answer first, then faster at a higher price: several machines of the market's card
    assert [o["label"] for o in quote["options"]] == ["requested", "earliest"]
    option, earliest = quote["options"]
    assert _time(earliest["completes_at"]) < _time(option["completes_at"])
    assert decimal_string(earliest["price_per_image_usd"]) >= decimal_string(
        option["price_per_image_usd"]
    )
    assert earliest["machines"] > option["machines"]
    for each in quote["options"]:  # our expected finish, before the promise with its reserve
        assert _time(each["start_at"]) < _time(each["expected_completion_at"])
        assert _time(each["expected_completion_at"]) < _time(each["completes_at"])
    price = decimal_string(option["price_per_image_usd"])
    total = decimal_string(option["total_usd"])
    assert price > 0
    exponent = price.as_tuple().exponent
    assert isinstance(exponent, int) and exponent >= -6  # quoted to the micro-dollar
    assert abs(price * 25 - total) <= Decimal("0.000001")
    assert option["meets_deadline"] is True and option["meets_budget"] is True
    assert option["provider"] == "fake"
    created, expires = _time(quote["created_at"]), _time(quote["expires_at"])
    assert expires > created
    assert expires - created == timedelta(seconds=900)  # Settings.quote_ttl_s
    assert abs(created - datetime.now(UTC)) < timedelta(minutes=1)
    assert _time(option["completes_at"]) > _time(option["start_at"])
    rows = table_rows("quotes_table")
    assert [(r["tenant_id"], r["quote_id"]) for r in rows] == [(TENANT_A, quote["quote_id"])]
    assert queue_depth(aws.queue_url) == 0  # a quote queues nothing


def test_quote_over_budget_is_answered_with_the_cheapest_option(aws: Created, api_key: str) -> None:
    body = quote_body(constraints={"max_price_per_image_usd": "0.000001"})

    status, quote = call("POST", "/v1/quotes", body, key=api_key)

    assert status == 201, quote
    assert quote["feasible_as_requested"] is False
    option = quote["options"][0]
    assert option["meets_budget"] is False
    assert option["label"] == "cheapest"
    assert decimal_string(option["price_per_image_usd"]) > Decimal("0.000001")
    assert quote["constraints"]["max_price_per_image_usd"] == "0.000001"


def test_quote_that_misses_the_deadline_says_so(aws: Created, api_key: str) -> None:
    deadline = (datetime.now(UTC) + timedelta(seconds=30)).isoformat()

    status, quote = call(
        "POST", "/v1/quotes", quote_body(constraints={"deadline": deadline}), key=api_key
    )

    assert status == 201, quote
    assert quote["feasible_as_requested"] is False
    assert quote["options"][0]["meets_deadline"] is False
    assert _time(quote["options"][0]["completes_at"]) > _time(quote["constraints"]["deadline"])


def test_deadline_in_another_timezone_is_stored_in_utc(aws: Created, api_key: str) -> None:
    body = quote_body(constraints={"deadline": "2099-01-01T12:00:00+02:00"})

    status, quote = call("POST", "/v1/quotes", body, key=api_key)

    assert status == 201, quote
    assert _time(quote["constraints"]["deadline"]) == datetime(2099, 1, 1, 10, tzinfo=UTC)
    assert quote["constraints"]["deadline"].endswith(("Z", "+00:00"))


# --- orders ---
def test_order_happy_path(aws: Created, svc: Services, api_key: str) -> None:
    quote = create_quote(api_key)
    option = quote["options"][0]

    status, order = accept(api_key, quote, "idem-key-0001")

    assert status == 201, order
    assert re.fullmatch(ORDER_ID_PATTERN, order["order_id"])
    assert order["state"] == "accepted"
    assert order["quote_id"] == quote["quote_id"]
    assert order["option_id"] == option["option_id"]
    assert order["images_total"] == 25
    assert order["images_done"] == 0
    assert decimal_string(order["price_per_image_usd"]) == decimal_string(
        option["price_per_image_usd"]
    )
    assert decimal_string(order["total_usd"]) == decimal_string(option["total_usd"])
    assert decimal_string(order["charge_usd"]) == 0
    assert "spend_usd" not in order  # our GPU cost is not the customer's business
    assert order["held_until"] is None and order["held_reason"] is None
    assert _time(order["promised_at"]) == _time(option["completes_at"])
    assert order["eta"] is not None
    # 20 images → 3 tasks (8, 8, 4), 5 images → 1 task
    assert queue_depth(aws.queue_url) == 4
    assert len(table_rows("orders_table")) == 1

    status, read = call("GET", f"/v1/orders/{order['order_id']}", key=api_key)
    assert status == 200, read
    assert read["state"] == "accepted"
    assert {
        k: read[k] for k in ("order_id", "quote_id", "option_id", "images_total", "total_usd")
    } == {k: order[k] for k in ("order_id", "quote_id", "option_id", "images_total", "total_usd")}

    status, images = call("GET", f"/v1/orders/{order['order_id']}/images", key=api_key)
    assert status == 200, images
    assert images == {"order_id": order["order_id"], "images": [], "next_token": None}


@pytest.mark.parametrize(
    "counts",
    [[20, 5], [8], [9], [1, 1, 1], [100], [7, 8, 9, 16, 17]],
    ids=lambda counts: "+".join(map(str, counts)),
)
def test_queue_holds_one_task_per_batch_of_8_with_the_orders_seeds(
    aws: Created, svc: Services, api_key: str, counts: list[int]
) -> None:
    prompts = [{"text": f"prompt number {i}", "count": c} for i, c in enumerate(counts)]
    quote = create_quote(api_key, job(prompts=prompts))

    status, order = accept(api_key, quote, "idem-key-0001")

    assert status == 201, order
    assert order["images_total"] == sum(counts)
    expected_tasks = sum(-(-c // BATCH) for c in counts)
    assert queue_depth(aws.queue_url) == expected_tasks
    stored = svc.orders.get(TENANT_A, order["order_id"])
    assert stored is not None and stored.state is OrderState.ACCEPTED
    tasks = receive_all(aws.queue_url)
    assert len(tasks) == expected_tasks
    by_prompt: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for task in tasks:
        assert task["tenant_id"] == TENANT_A
        assert task["order_id"] == order["order_id"]
        assert (task["width"], task["height"], task["steps"]) == (512, 512, 20)
        by_prompt[task["prompt_index"]].append(task)
    assert sorted(by_prompt) == list(range(len(counts)))
    for index, count in enumerate(counts):
        batch = sorted(by_prompt[index], key=lambda t: int(t["seed"]))
        base = stored.seed_bases[index]
        assert [t["seed"] for t in batch] == list(range(base, base + count, BATCH))
        assert sum(t["batch_size"] for t in batch) == count
        assert all(t["batch_size"] <= BATCH for t in batch)
        assert {t["prompt"] for t in batch} == {f"prompt number {index}"}


def test_fixed_seed_policy_starts_every_prompt_at_the_base(
    aws: Created, svc: Services, api_key: str
) -> None:
    quote = create_quote(api_key, job(seed={"kind": "fixed", "base": 1000}))

    status, order = accept(api_key, quote, "idem-key-0001")

    assert status == 201, order
    seeds = sorted((t["prompt_index"], t["seed"]) for t in receive_all(aws.queue_url))
    assert seeds == [(0, 1000), (0, 1008), (0, 1016), (1, 1000)]


# --- idempotency ---
def test_same_key_and_body_twice_is_one_order(aws: Created, api_key: str) -> None:
    quote = create_quote(api_key)
    first_status, first = accept(api_key, quote, "idem-key-0001")
    depth = queue_depth(aws.queue_url)

    second_status, second = accept(api_key, quote, "idem-key-0001")

    assert (first_status, second_status) == (201, 201), (first, second)
    assert second["order_id"] == first["order_id"]
    assert second == first
    assert depth == 4
    assert queue_depth(aws.queue_url) == depth
    assert len(table_rows("orders_table")) == 1


def test_same_key_with_another_quote_is_a_409_idempotency_key_reused(
    aws: Created, api_key: str
) -> None:
    first_quote, other_quote = create_quote(api_key), create_quote(api_key)
    status, first = accept(api_key, first_quote, "idem-key-0001")
    assert status == 201, first
    before = writes(aws)

    response = accept(api_key, other_quote, "idem-key-0001")

    assert_error(response, 409, "idempotency_key_reused")
    assert writes(aws) == before
    assert [r["order_id"] for r in table_rows("orders_table")] == [first["order_id"]]


def test_same_key_with_another_option_is_a_409_idempotency_key_reused(
    aws: Created, api_key: str
) -> None:
    quote = create_quote(api_key)
    assert accept(api_key, quote, "idem-key-0001")[0] == 201
    before = writes(aws)

    response = accept(api_key, quote, "idem-key-0001", option_id="opt-000000000000")

    assert_error(response, 409, "idempotency_key_reused")
    assert writes(aws) == before


def test_another_key_on_an_accepted_quote_is_a_409_conflict(aws: Created, api_key: str) -> None:
    quote = create_quote(api_key)
    status, order = accept(api_key, quote, "idem-key-0001")
    assert status == 201, order
    before = writes(aws)

    response = accept(api_key, quote, "idem-key-0002")

    assert_error(response, 409, "conflict")
    assert writes(aws) == before
    read = call("GET", f"/v1/orders/{order['order_id']}", key=api_key)[1]
    assert read["state"] == "accepted"


def test_a_concurrent_retry_with_the_same_key_is_a_409_request_in_progress(
    aws: Created, api_key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While the first acceptance runs, a retry with its key is told to come back later."""
    quote = create_quote(api_key)
    original = order_logic._accept
    retries: list[tuple[int, Any]] = []

    def accept_with_a_retry_inside(
        services: Services, acceptance: order_logic.Acceptance, now: datetime | None = None
    ) -> Any:
        if not retries:
            retries.append(accept(api_key, quote, "idem-key-0001"))
        return original(services, acceptance, now)

    monkeypatch.setattr(order_logic, "_accept", accept_with_a_retry_inside)

    status, order = accept(api_key, quote, "idem-key-0001")

    assert_error(retries[0], 409, "request_in_progress")
    assert status == 201, order
    assert queue_depth(aws.queue_url) == 4


def test_replaying_an_acceptance_after_cancel_does_not_requeue_or_reopen(
    aws: Created, api_key: str
) -> None:
    quote = create_quote(api_key)
    order = accept(api_key, quote, "idem-key-0001")[1]
    assert call("DELETE", f"/v1/orders/{order['order_id']}", key=api_key)[0] == 200
    before = writes(aws)

    status, replay = accept(api_key, quote, "idem-key-0001")

    assert status == 201, replay  # the stored answer to the first request
    assert replay["order_id"] == order["order_id"]
    assert writes(aws) == before
    assert call("GET", f"/v1/orders/{order['order_id']}", key=api_key)[1]["state"] == "cancelled"


def test_an_expired_quote_is_a_410_and_queues_nothing(
    aws: Created, svc: Services, api_key: str
) -> None:
    quote = create_quote(api_key)
    stored = svc.quotes.get(TENANT_A, quote["quote_id"])
    assert stored is not None
    past = datetime.now(UTC) - timedelta(seconds=1)
    svc.quotes.put(TENANT_A, stored.model_copy(update={"expires_at": past}))
    before = writes(aws)

    response = accept(api_key, quote, "idem-key-0001")

    assert_error(response, 410, "quote_expired")
    assert writes(aws) == before
    assert before.orders == 0 and before.queued == 0


def test_a_quote_is_expired_at_its_expiry_instant(
    aws: Created, api_key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    quote = create_quote(api_key)
    expires_at = _time(quote["expires_at"])

    class AtExpiry(datetime):
        @classmethod
        def now(cls, tz: Any = None) -> AtExpiry:
            return cls.fromtimestamp(expires_at.timestamp(), tz)

    monkeypatch.setattr(order_logic, "datetime", AtExpiry)

    assert_error(accept(api_key, quote, "idem-key-0001"), 410, "quote_expired")
    assert queue_depth(aws.queue_url) == 0
    assert table_rows("orders_table") == []


def test_a_quote_can_be_accepted_just_before_it_expires(
    aws: Created, api_key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    quote = create_quote(api_key)
    just_before = _time(quote["expires_at"]) - timedelta(milliseconds=1)

    class JustBefore(datetime):
        @classmethod
        def now(cls, tz: Any = None) -> JustBefore:
            return cls.fromtimestamp(just_before.timestamp(), tz)

    monkeypatch.setattr(order_logic, "datetime", JustBefore)

    status, order = accept(api_key, quote, "idem-key-0001")
    assert status == 201, order
    assert queue_depth(aws.queue_url) == 4


# --- cancel ---
def test_cancel_is_200_and_idempotent(aws: Created, api_key: str) -> None:
    order = place_order(api_key)
    path = f"/v1/orders/{order['order_id']}"

    status, cancelled = call("DELETE", path, key=api_key)

    assert status == 200, cancelled
    assert cancelled["state"] == "cancelled"
    assert cancelled["eta"] is None
    assert cancelled["order_id"] == order["order_id"]
    assert call("GET", path, key=api_key)[1]["state"] == "cancelled"

    status, again = call("DELETE", path, key=api_key)

    assert status == 200, again
    assert again == cancelled
    rows = table_rows("orders_table")
    assert [(r["order_id"], r["state"]) for r in rows] == [(order["order_id"], "cancelled")]


def test_cancel_while_rendering_is_allowed(aws: Created, svc: Services, api_key: str) -> None:
    order = place_order(api_key)
    assert svc.orders.transition(TENANT_A, order["order_id"], OrderState.RENDERING)

    status, cancelled = call("DELETE", f"/v1/orders/{order['order_id']}", key=api_key)

    assert status == 200, cancelled
    assert cancelled["state"] == "cancelled"


@pytest.mark.parametrize(
    "path",
    [
        [OrderState.COMPLETED],
        [OrderState.EXPIRED],
        [OrderState.RENDERING, OrderState.FAILED],
        [OrderState.RENDERING, OrderState.PARTIALLY_COMPLETED],
    ],
    ids=["completed", "expired", "failed", "partially_completed"],
)
def test_cancel_of_a_finished_order_is_a_409(
    aws: Created, svc: Services, api_key: str, path: list[OrderState]
) -> None:
    order = place_order(api_key)
    for state in path:
        assert svc.orders.transition(TENANT_A, order["order_id"], state)

    response = call("DELETE", f"/v1/orders/{order['order_id']}", key=api_key)

    assert_error(response, 409, "conflict")
    read = call("GET", f"/v1/orders/{order['order_id']}", key=api_key)[1]
    assert read["state"] == path[-1].value
