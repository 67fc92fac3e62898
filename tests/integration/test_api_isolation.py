"""Invariant 5: every read and write is scoped by the tenant of the API key; another tenant's
order or quote is a 404, indistinguishable from one that does not exist."""

from __future__ import annotations

from typing import Any

import pytest

from infra.local.resources import Created
from subconscious.models import OrderState, image_key
from subconscious.services import Services
from tests.integration.api_helpers import (
    TENANT_A,
    TENANT_B,
    UNKNOWN_ORDER,
    accept,
    assert_error,
    call,
    create_quote,
    place_order,
    table_rows,
    writes,
)

# handler tests: the API over moto's resources, as in AWS (tests/conftest.py's svc)
pytestmark = pytest.mark.moto


@pytest.fixture
def a_order(svc: Services, api_key: str) -> dict[str, Any]:
    """Tenant A's accepted order, with one stored image."""
    order = place_order(api_key)
    key = image_key(TENANT_A, order["order_id"], 0, 7)
    svc.bucket.put_png(key, b"\x89PNG a's image", {})
    svc.images.record(
        TENANT_A,
        order["order_id"],
        prompt_index=0,
        prompt="p",
        seed=7,
        width=512,
        height=512,
        key=key,
    )
    return order


@pytest.mark.parametrize(
    ("method", "suffix"),
    [("GET", ""), ("GET", "/images"), ("GET", "/images?limit=1"), ("DELETE", "")],
    ids=["get", "images", "images-page", "delete"],
)
def test_another_tenants_order_is_a_404_and_stays_unchanged(
    aws: Created,
    svc: Services,
    api_key: str,
    other_api_key: str,
    a_order: dict[str, Any],
    method: str,
    suffix: str,
) -> None:
    order_id = a_order["order_id"]
    before = writes(aws)

    status, body = call(method, f"/v1/orders/{order_id}{suffix}", key=other_api_key)
    unknown_status, unknown = call(method, f"/v1/orders/{UNKNOWN_ORDER}{suffix}", key=other_api_key)

    assert_error((status, body), 404, "not_found")
    # the same answer as for an order that does not exist (only the id in the message differs)
    assert unknown_status == 404
    assert body["error"]["message"].replace(order_id, UNKNOWN_ORDER) == unknown["error"]["message"]
    assert TENANT_A not in str(body)
    assert writes(aws) == before
    stored = svc.orders.get(TENANT_A, order_id)
    assert stored is not None and stored.state is OrderState.ACCEPTED
    status, read = call("GET", f"/v1/orders/{order_id}", key=api_key)
    assert (status, read["state"]) == (200, "accepted")


def test_another_tenant_cannot_use_a_next_token_on_an_order_it_does_not_own(
    aws: Created, svc: Services, api_key: str, other_api_key: str, a_order: dict[str, Any]
) -> None:
    key = image_key(TENANT_A, a_order["order_id"], 0, 8)
    svc.images.record(
        TENANT_A,
        a_order["order_id"],
        prompt_index=0,
        prompt="p",
        seed=8,
        width=512,
        height=512,
        key=key,
    )
    page = call("GET", f"/v1/orders/{a_order['order_id']}/images?limit=1", key=api_key)[1]
    assert page["next_token"] is not None
    path = f"/v1/orders/{a_order['order_id']}/images?limit=1&next_token={page['next_token']}"

    assert_error(call("GET", path, key=other_api_key), 404, "not_found")


def test_another_tenant_cannot_accept_a_quote_it_does_not_own(
    aws: Created, api_key: str, other_api_key: str
) -> None:
    quote = create_quote(api_key)
    before = writes(aws)

    response = accept(other_api_key, quote, "idem-key-0001")

    assert_error(response, 404, "not_found")
    assert writes(aws) == before
    # and A's quote is still A's to accept
    status, order = accept(api_key, quote, "idem-key-0001")
    assert status == 201, order
    assert [(r["tenant_id"], r["order_id"]) for r in table_rows("orders_table")] == [
        (TENANT_A, order["order_id"])
    ]


def test_idempotency_keys_are_per_tenant(aws: Created, api_key: str, other_api_key: str) -> None:
    a_status, a = accept(api_key, create_quote(api_key), "shared-key-0001")
    b_status, b = accept(other_api_key, create_quote(other_api_key), "shared-key-0001")

    assert (a_status, b_status) == (201, 201), (a, b)
    assert a["order_id"] != b["order_id"]
    assert sorted(r["tenant_id"] for r in table_rows("orders_table")) == [TENANT_A, TENANT_B]


def test_each_tenant_reads_only_its_own_orders(
    aws: Created, api_key: str, other_api_key: str
) -> None:
    a = place_order(api_key, "idem-key-000a")
    b = place_order(other_api_key, "idem-key-000b")

    assert call("GET", f"/v1/orders/{a['order_id']}", key=api_key)[0] == 200
    assert call("GET", f"/v1/orders/{b['order_id']}", key=other_api_key)[0] == 200
    assert_error(call("GET", f"/v1/orders/{b['order_id']}", key=api_key), 404, "not_found")
    assert_error(call("GET", f"/v1/orders/{a['order_id']}", key=other_api_key), 404, "not_found")
    assert call("DELETE", f"/v1/orders/{b['order_id']}", key=other_api_key)[0] == 200
    assert call("GET", f"/v1/orders/{a['order_id']}", key=api_key)[1]["state"] == "accepted"
