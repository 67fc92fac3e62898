"""Issue 16 through the API handler: the caller's orders listed newest first, the order guard
(an option outside the customer's own terms needs ``accept_outside_terms``), the customer's
money (price, total, charge; never our GPU cost), a held order saying why and until when, and
errors that name what is wrong."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from infra.local.resources import Created
from subconscious.models import OrderState
from subconscious.services import Services
from tests.integration.api_helpers import (
    TENANT_A,
    accept,
    assert_error,
    call,
    create_quote,
    decimal_string,
    order_body,
    place_order,
    quote_body,
    writes,
)

pytestmark = pytest.mark.moto


def _orders(key: str, query: str = "") -> dict[str, Any]:
    status, page = call("GET", f"/v1/orders{query}", key=key)
    assert status == 200, page
    assert isinstance(page, dict)
    return page


def _place(key: str, n: int) -> str:
    return str(place_order(key, f"idem-key-{n:04d}")["order_id"])


# --- GET /v1/orders ---
def test_orders_are_listed_newest_first_and_only_the_callers(
    aws: Created, api_key: str, other_api_key: str
) -> None:
    placed = [_place(api_key, n) for n in range(3)]
    theirs = _place(other_api_key, 9)

    page = _orders(api_key)

    assert [o["order_id"] for o in page["orders"]] == placed[::-1]
    assert page["next_token"] is None
    assert page["orders"][0]["state"] == "accepted"
    assert "spend_usd" not in page["orders"][0]
    assert [o["order_id"] for o in _orders(other_api_key)["orders"]] == [theirs]


def test_pages_follow_next_token_to_the_end(aws: Created, api_key: str) -> None:
    placed = [_place(api_key, n) for n in range(5)]

    first = _orders(api_key, "?limit=2")
    second = _orders(api_key, f"?limit=2&next_token={first['next_token']}")
    third = _orders(api_key, f"?limit=2&next_token={second['next_token']}")

    assert [len(p["orders"]) for p in (first, second, third)] == [2, 2, 1]
    listed = [o["order_id"] for p in (first, second, third) for o in p["orders"]]
    assert listed == placed[::-1]
    assert third["next_token"] is None


def test_a_state_filter_lists_only_that_state(aws: Created, svc: Services, api_key: str) -> None:
    placed = [_place(api_key, n) for n in range(3)]
    assert call("DELETE", f"/v1/orders/{placed[1]}", key=api_key)[0] == 200
    assert svc.orders.transition(TENANT_A, placed[2], OrderState.RENDERING)

    assert [o["order_id"] for o in _orders(api_key, "?state=cancelled")["orders"]] == [placed[1]]
    assert [o["order_id"] for o in _orders(api_key, "?state=accepted")["orders"]] == [placed[0]]
    assert _orders(api_key, "?state=completed") == {"orders": [], "next_token": None}


@pytest.mark.parametrize(
    ("query", "field"),
    [("?state=done", "query.state"), ("?limit=0", "query.limit"), ("?limit=101", "query.limit")],
)
def test_a_bad_filter_is_a_422_naming_it(
    aws: Created, api_key: str, query: str, field: str
) -> None:
    assert_error(call("GET", f"/v1/orders{query}", key=api_key), 422, "validation_error", [field])


def test_a_token_this_api_did_not_give_is_a_400_naming_it(aws: Created, api_key: str) -> None:
    status, body = call("GET", "/v1/orders?next_token=Zm9vYmFy", key=api_key)
    assert_error((status, body), 400, "bad_request")
    assert "next_token" in body["error"]["message"]


# --- the order guard ---
def _over_budget_quote(key: str) -> dict[str, Any]:
    body = quote_body(constraints={"max_price_per_image_usd": "0.000001"})
    status, quote = call("POST", "/v1/quotes", body, key=key)
    assert status == 201, quote
    assert quote["options"][0]["meets_budget"] is False
    return dict(quote)


def _accept(key: str, quote: dict[str, Any], idem: str, **extra: Any) -> tuple[int, Any]:
    body = {**order_body(quote), **extra}
    return call("POST", "/v1/orders", body, key=key, headers={"Idempotency-Key": idem})


def test_an_option_over_the_price_cap_is_refused_and_nothing_is_ordered(
    aws: Created, api_key: str
) -> None:
    quote = _over_budget_quote(api_key)
    option = quote["options"][0]
    before = writes(aws)

    response = _accept(api_key, quote, "idem-key-0001")

    assert_error(response, 422, "outside_terms", ["accept_outside_terms"])
    message = response[1]["error"]["message"]
    assert f"${Decimal(option['price_per_image_usd'])}/image" in message
    assert "over your max_price_per_image_usd $0.000001" in message
    assert option["label"] in message and "accept_outside_terms=true" in message
    after = writes(aws)
    assert (after.orders, after.queued) == (before.orders, before.queued) == (0, 0)


def test_the_flag_accepts_it_even_under_the_key_that_was_refused(
    aws: Created, api_key: str
) -> None:
    quote = _over_budget_quote(api_key)
    assert _accept(api_key, quote, "idem-key-0001")[0] == 422

    status, order = _accept(api_key, quote, "idem-key-0001", accept_outside_terms=True)

    assert status == 201, order
    assert order["state"] == "accepted"


def test_an_option_past_the_deadline_is_refused_naming_both_times(
    aws: Created, api_key: str
) -> None:
    deadline = datetime.now(UTC) + timedelta(seconds=30)
    body = quote_body(constraints={"deadline": deadline.isoformat()})
    quote = call("POST", "/v1/quotes", body, key=api_key)[1]
    assert quote["options"][0]["meets_deadline"] is False

    response = _accept(api_key, quote, "idem-key-0001")

    assert_error(response, 422, "outside_terms", ["accept_outside_terms"])
    assert f"after your deadline {deadline:%Y-%m-%d %H:%M} UTC" in response[1]["error"]["message"]


def test_an_option_within_the_terms_needs_no_flag(aws: Created, api_key: str) -> None:
    status, order = accept(api_key, create_quote(api_key), "idem-key-0001")
    assert status == 201, order


# --- errors that name what is wrong ---
def test_a_mistyped_quote_id_is_blamed_on_the_quote_id(aws: Created, api_key: str) -> None:
    quote = create_quote(api_key)
    typo = {"quote_id": quote["quote_id"][:-1] + "x", "option_id": "cheapest"}

    response = call(
        "POST", "/v1/orders", typo, key=api_key, headers={"Idempotency-Key": "idem-key-0001"}
    )

    assert_error(response, 404, "not_found", ["quote_id"])
    assert typo["quote_id"] in response[1]["error"]["message"]


def test_quote_already_accepted_names_the_order(aws: Created, api_key: str) -> None:
    quote = create_quote(api_key)
    first = accept(api_key, quote, "idem-key-0001")[1]

    response = accept(api_key, quote, "idem-key-0002")

    assert_error(response, 409, "conflict", ["quote_id"])
    assert first["order_id"] in response[1]["error"]["message"]


# --- the customer's money and the hold ---
def test_the_customer_sees_price_total_and_charge_never_our_cost(
    aws: Created, svc: Services, api_key: str
) -> None:
    order = place_order(api_key)
    svc.orders.add_spend(TENANT_A, order["order_id"], 123_456)

    read = call("GET", f"/v1/orders/{order['order_id']}", key=api_key)[1]

    assert "spend_usd" not in read and "spend_micros" not in read
    assert decimal_string(read["charge_usd"]) == 0
    assert decimal_string(read["total_usd"]) == decimal_string(order["total_usd"])
    assert "0.123456" not in str(read)


def test_a_held_order_says_until_when_and_why(aws: Created, svc: Services, api_key: str) -> None:
    order = place_order(api_key)
    until = datetime.now(UTC).replace(microsecond=0) + timedelta(minutes=35)
    assert svc.orders.set_hold(TENANT_A, order["order_id"], until, "waiting to share a start-up")

    read = call("GET", f"/v1/orders/{order['order_id']}", key=api_key)[1]
    listed = _orders(api_key)["orders"][0]

    assert datetime.fromisoformat(read["held_until"]) == until
    assert read["held_reason"] == "waiting to share a start-up"
    assert (listed["held_until"], listed["held_reason"]) == (
        read["held_until"],
        read["held_reason"],
    )
    assert svc.orders.transition(TENANT_A, order["order_id"], OrderState.RENDERING)
    rendering = call("GET", f"/v1/orders/{order['order_id']}", key=api_key)[1]
    assert (rendering["held_until"], rendering["held_reason"]) == (None, None)
