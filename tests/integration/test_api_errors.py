"""Routes that do not exist, failures inside logic, and no capacity: always a JSON error with a
stable code, and never a stack trace."""

from __future__ import annotations

import json
from typing import Any

import pytest

from infra.local.resources import Created
from subconscious.logic import orders as order_logic
from subconscious.logic import quotes as quote_logic
from subconscious.market.fake import FakeProvider
from tests.integration.api_helpers import (
    UNKNOWN_ORDER,
    accept,
    assert_error,
    call,
    create_quote,
    invoke,
    place_order,
    queue_depth,
    quote_body,
    response_headers,
    table_rows,
    writes,
)

# handler tests: the API over moto's resources, as in AWS (tests/conftest.py's svc)
pytestmark = pytest.mark.moto

SECRET = "db password hunter2 at /work/main/layers"


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v1/nope"),
        ("GET", "/"),
        ("PUT", "/v1/orders"),  # GET lists the orders (issue 16)
        ("GET", "/v1/quotes"),
        ("DELETE", "/v1/quotes"),
        ("PUT", f"/v1/orders/{UNKNOWN_ORDER}"),
        ("PATCH", f"/v1/orders/{UNKNOWN_ORDER}"),
        ("POST", f"/v1/orders/{UNKNOWN_ORDER}"),
        ("GET", f"/v1/orders/{UNKNOWN_ORDER}/images/extra"),
        ("GET", "/v2/quotes"),
    ],
)
def test_unknown_route_is_a_json_404_route_not_found(
    aws: Created, api_key: str, method: str, path: str
) -> None:
    result = invoke(method, path, key=api_key)

    assert_error((int(result["statusCode"]), json.loads(result["body"])), 404, "route_not_found")
    assert response_headers(result)["content-type"] == "application/json"


def test_unknown_route_without_a_key_is_a_401(aws: Created) -> None:
    """The key check runs for every request, so routes cannot be probed without a key."""
    assert_error(call("GET", "/v1/nope", key=None), 401, "unauthorized")


def _boom(*args: Any, **kwargs: Any) -> Any:
    raise RuntimeError(SECRET)


def _assert_no_internals(result: dict[str, Any]) -> None:
    body = str(result["body"])
    response = (int(result["statusCode"]), json.loads(body))
    assert_error(response, 500, "internal_error")
    for leak in ("Traceback", "RuntimeError", "hunter2", "/work", 'File "', "line "):
        assert leak not in body
    assert response_headers(result)["content-type"] == "application/json"


@pytest.mark.parametrize(
    ("target", "name", "method", "suffix"),
    [
        (order_logic, "get_order", "GET", ""),
        (order_logic, "list_images", "GET", "/images"),
        (order_logic, "cancel_order", "DELETE", ""),
        (order_logic, "order_out", "GET", ""),
    ],
    ids=["get-order", "list-images", "cancel-order", "order-out"],
)
def test_unexpected_error_in_order_logic_is_a_bare_500(
    aws: Created,
    api_key: str,
    monkeypatch: pytest.MonkeyPatch,
    target: Any,
    name: str,
    method: str,
    suffix: str,
) -> None:
    order = place_order(api_key)
    with monkeypatch.context() as patch:
        patch.setattr(target, name, _boom)

        result = invoke(method, f"/v1/orders/{order['order_id']}{suffix}", key=api_key)

    _assert_no_internals(result)
    assert call("GET", f"/v1/orders/{order['order_id']}", key=api_key)[1]["state"] == "accepted"


def test_unexpected_error_while_quoting_is_a_bare_500_and_stores_no_quote(
    aws: Created, api_key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(quote_logic, "plan_quote", _boom)

    result = invoke("POST", "/v1/quotes", quote_body(), key=api_key)

    _assert_no_internals(result)
    assert table_rows("quotes_table") == []


def test_unexpected_error_while_accepting_is_a_bare_500_and_the_retry_succeeds(
    aws: Created, api_key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A crash mid-acceptance queues nothing and does not burn the Idempotency-Key: the client's
    retry with the same key completes the order, with each task queued once."""
    quote = create_quote(api_key)
    with monkeypatch.context() as patch:
        patch.setattr(order_logic, "render_tasks", _boom)

        result = invoke(
            "POST",
            "/v1/orders",
            {"quote_id": quote["quote_id"], "option_id": quote["options"][0]["option_id"]},
            key=api_key,
            headers={"Idempotency-Key": "idem-key-0001"},
        )

    _assert_no_internals(result)
    assert queue_depth(aws.queue_url) == 0
    assert table_rows("idempotency_table") == []

    status, order = accept(api_key, quote, "idem-key-0001")

    assert status == 201, order
    assert order["state"] == "accepted"
    assert queue_depth(aws.queue_url) == 4


@pytest.mark.parametrize("outage", ["no-offers", "provider-down"])
def test_no_capacity_is_a_503_no_capacity_and_stores_no_quote(
    aws: Created, api_key: str, market: FakeProvider, outage: str
) -> None:
    if outage == "no-offers":
        market.offers = []
    else:
        market.fail_offers = True

    response = call("POST", "/v1/quotes", quote_body(), key=api_key)

    assert_error(response, 503, "no_capacity")
    assert writes(aws).quotes == 0
