"""The operator's view of an order (GET /v1/orders/{id}?tenant_id=...) and the customer's,
which never shows what an order costs us: through the API handler, over moto."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from infra.local.stack import api_gateway_event
from subconscious.logic.auth import guard_principal, guard_request
from subconscious.models.tenancy import Principal, Role
from subconscious.services import Services
from tests.integration.api_helpers import (
    TENANT_A,
    UNKNOWN_ORDER,
    assert_error,
    call,
    create_quote,
    place_order,
)

pytestmark = pytest.mark.moto

OPERATOR = "ops"


@pytest.fixture
def operator_key(svc: Services) -> str:
    key = "sk_test_operator_0123456789"
    svc.tenants.add_key(OPERATOR, key, name="operator", role=Role.OPERATOR)
    return key


def _keys(value: Any) -> set[str]:
    """Every key of a JSON document, at any depth."""
    if isinstance(value, dict):
        return set(value) | {k for v in value.values() for k in _keys(v)}
    if isinstance(value, list):
        return {k for v in value for k in _keys(v)}
    return set()


def _money(value: Any) -> Decimal:
    return Decimal(str(value))


def test_the_operator_sees_any_tenants_order_with_its_costs(
    svc: Services, api_key: str, operator_key: str
) -> None:
    order = place_order(api_key)
    order_id = order["order_id"]
    # as rendering and a finished run would have charged it
    svc.orders.add_spend(TENANT_A, order_id, 1_000, aws_micros=500)
    svc.orders.set_run_cost(TENANT_A, order_id, "r-1", 200, 100)

    status, body = call("GET", f"/v1/orders/{order_id}?tenant_id={TENANT_A}", key=operator_key)

    assert status == 200, body
    assert body["order_id"] == order_id and body["tenant_id"] == TENANT_A
    costs = body["costs"]
    assert _money(costs["gpu_cost_usd"]) == Decimal("0.0012")
    assert _money(costs["aws_cost_usd"]) == Decimal("0.0006")
    assert _money(costs["cost_usd"]) == Decimal("0.0018")
    assert _money(costs["quoted_total_usd"]) == _money(order["total_usd"])
    # nothing delivered yet: nothing charged, so the margin so far is minus the cost
    assert _money(costs["margin_usd"]) == _money(body["charge_usd"]) - Decimal("0.0018")
    # the customer's fields are all there beside the costs
    _, customer = call("GET", f"/v1/orders/{order_id}", key=api_key)
    assert set(customer) <= set(body)


def test_the_operator_naming_no_tenant_reads_its_own_orders(operator_key: str) -> None:
    assert_error(call("GET", f"/v1/orders/{UNKNOWN_ORDER}", key=operator_key), 404, "not_found")
    response = call("GET", f"/v1/orders/{UNKNOWN_ORDER}?tenant_id={TENANT_A}", key=operator_key)
    assert_error(response, 404, "not_found")


def test_a_customer_never_sees_costs_even_naming_itself(api_key: str) -> None:
    order_id = place_order(api_key)["order_id"]
    for path in (f"/v1/orders/{order_id}", f"/v1/orders/{order_id}?tenant_id={TENANT_A}"):
        status, body = call("GET", path, key=api_key)
        assert status == 200, body
        assert "costs" not in body and "tenant_id" not in body


def test_a_customer_naming_another_tenant_learns_nothing(api_key: str, other_api_key: str) -> None:
    """404, word for word the answer for an order that does not exist: whether tenant-a has
    such an order is not given away."""
    order_id = place_order(api_key)["order_id"]
    seen = call("GET", f"/v1/orders/{order_id}?tenant_id={TENANT_A}", key=other_api_key)
    missing = call("GET", f"/v1/orders/{order_id}", key=other_api_key)
    assert_error(seen, 404, "not_found")
    assert seen[1]["error"]["message"] == missing[1]["error"]["message"]
    assert "costs" not in str(seen[1])


def test_an_empty_tenant_id_is_refused_naming_it(operator_key: str) -> None:
    response = call("GET", f"/v1/orders/{UNKNOWN_ORDER}?tenant_id=", key=operator_key)
    assert response[0] == 422, response
    assert "tenant_id" in str(response[1])


# --- the customer's view never carries our cost ---
def _customer_answers(api_key: str) -> list[Any]:
    quote = create_quote(api_key)
    order = place_order(api_key, "idem-key-0002")
    order_id = order["order_id"]
    answers = [quote, order]
    for method, path in (
        ("GET", f"/v1/orders/{order_id}"),
        ("GET", f"/v1/orders/{order_id}?tenant_id={TENANT_A}"),
        ("GET", f"/v1/orders/{order_id}/images"),
        ("DELETE", f"/v1/orders/{order_id}"),
    ):
        status, body = call(method, path, key=api_key)
        assert status == 200, body
        answers.append(body)
    return answers


def test_no_customer_answer_carries_a_cost_or_margin(svc: Services, api_key: str) -> None:
    answers = _customer_answers(api_key)
    keys = set().union(*(_keys(a) for a in answers))
    assert keys, "no answers looked at"
    assert not {k for k in keys if "cost" in k.lower() or "margin" in k.lower()}, keys


def test_no_customer_answer_carries_our_spend(svc: Services, api_key: str) -> None:
    keys = set().union(*(_keys(a) for a in _customer_answers(api_key)))
    assert not {k for k in keys if "spend" in k.lower()}, keys


def test_a_request_carries_its_keys_tenant_and_role(
    svc: Services, api_key: str, operator_key: str
) -> None:
    def event(key: str) -> dict[str, Any]:
        return api_gateway_event("GET", "/v1/market", {"x-api-key": key}, None)

    assert guard_request(svc, event(api_key)) == TENANT_A
    assert guard_principal(svc, event(api_key)) == Principal(TENANT_A, Role.CUSTOMER)
    assert guard_principal(svc, event(operator_key)) == Principal(OPERATOR, Role.OPERATOR)
