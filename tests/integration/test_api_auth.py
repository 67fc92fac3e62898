"""Every route needs a valid API key (header ``x-api-key``); keys are stored only as hashes."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import boto3
import pytest

from infra.local.resources import Created
from subconscious.services import Services
from tests.integration.api_helpers import (
    REGION,
    TABLE,
    TENANT_A,
    assert_error,
    call,
    create_quote,
    invoke,
    order_body,
    place_order,
    quote_body,
    response_headers,
    table_rows,
    writes,
)

# handler tests: the API over moto's resources, as in AWS (tests/conftest.py's svc)
pytestmark = pytest.mark.moto

UNKNOWN_KEY = "sk_test_nobody_0123456789"
ROUTES = ["post-quote", "post-order", "get-order", "get-images", "delete-order"]
BAD_KEYS = {
    "no-key": None,
    "empty-key": "",
    "unknown-key": UNKNOWN_KEY,
    "500-char-key": "k" * 500,
    "other-case": "SK_TEST_TENANT_A_0123456789",  # keys are case-sensitive
}


def _request(route: str, api_key: str) -> tuple[str, str, Any, dict[str, str]]:
    """A request to ``route`` that would succeed with ``api_key`` (its owner's order/quote)."""
    if route == "post-quote":
        return "POST", "/v1/quotes", quote_body(), {}
    if route == "post-order":
        quote = create_quote(api_key)
        return "POST", "/v1/orders", order_body(quote), {"Idempotency-Key": "idem-key-0001"}
    order_id = place_order(api_key, "idem-key-setup")["order_id"]
    method, suffix = {
        "get-order": ("GET", ""),
        "get-images": ("GET", "/images"),
        "delete-order": ("DELETE", ""),
    }[route]
    return method, f"/v1/orders/{order_id}{suffix}", None, {}


@pytest.mark.parametrize("bad_key", list(BAD_KEYS.values()), ids=list(BAD_KEYS))
@pytest.mark.parametrize("route", ROUTES)
def test_every_route_needs_a_valid_key(
    aws: Created, api_key: str, route: str, bad_key: str | None
) -> None:
    method, path, body, headers = _request(route, api_key)
    before = writes(aws)
    orders_before = table_rows("orders_table")

    result = invoke(method, path, body, key=bad_key, headers=headers)

    response = (int(result["statusCode"]), json.loads(result["body"]))
    assert_error(response, 401, "unauthorized")
    assert "details" not in response[1]["error"]
    assert response_headers(result)["www-authenticate"] == 'ApiKey header="x-api-key"'
    assert writes(aws) == before
    assert table_rows("orders_table") == orders_before  # DELETE cancelled nothing


def test_a_missing_and_an_unknown_key_get_the_same_answer(aws: Created, api_key: str) -> None:
    missing = call("POST", "/v1/quotes", quote_body(), key=None)
    unknown = call("POST", "/v1/quotes", quote_body(), key=UNKNOWN_KEY)
    too_long = call("POST", "/v1/quotes", quote_body(), key="k" * 500)

    assert missing == unknown == too_long
    assert missing[0] == 401


def test_the_key_header_name_is_case_insensitive(aws: Created, api_key: str) -> None:
    status, body = call(
        "POST", "/v1/quotes", quote_body(), key=None, headers={"X-Api-Key": api_key}
    )

    assert status == 201, body


def test_a_registered_key_over_200_chars_is_still_refused(svc: Services) -> None:
    long_key = "k" * 500
    svc.tenants.add_key("tenant-long", long_key)

    assert_error(call("POST", "/v1/quotes", quote_body(), key=long_key), 401, "unauthorized")


def test_a_disabled_key_is_refused(svc: Services, api_key: str) -> None:
    boto3.client("dynamodb", region_name=REGION).update_item(
        TableName=TABLE["tenants_table"],
        Key={"key_hash": {"S": hashlib.sha256(api_key.encode()).hexdigest()}},
        UpdateExpression="SET disabled = :t",
        ExpressionAttributeValues={":t": {"BOOL": True}},
    )

    assert_error(call("POST", "/v1/quotes", quote_body(), key=api_key), 401, "unauthorized")


def test_keys_are_stored_only_as_sha256_hashes(
    svc: Services, api_key: str, other_api_key: str
) -> None:
    rows = table_rows("tenants_table")

    assert len(rows) == 2
    stored = json.dumps(rows, default=str)
    for raw in (api_key, other_api_key):
        assert raw not in stored
        assert raw.lower() not in stored.lower()
    assert sorted(row["key_hash"] for row in rows) == sorted(
        hashlib.sha256(k.encode()).hexdigest() for k in (api_key, other_api_key)
    )
    assert {row["tenant_id"] for row in rows} == {TENANT_A, "tenant-b"}


def test_the_size_limit_is_checked_before_the_key(aws: Created) -> None:
    """By design (handler._guard): an oversized body is a 413 even without a key."""
    raw = json.dumps(quote_body()) + " " * (64 * 1024)

    assert_error(call("POST", "/v1/quotes", raw, key=None), 413, "payload_too_large")


# A bad request per route: without a key it must still be a 401 (the key comes first).
UNAUTHENTICATED_BAD_REQUESTS = [
    pytest.param("POST", "/v1/quotes", "{not json", {}, id="post-quote-not-json"),
    pytest.param("POST", "/v1/quotes", quote_body({"width": 1}), {}, id="post-quote-invalid"),
    pytest.param("POST", "/v1/orders", [], {}, id="post-order-no-idempotency-key-list-body"),
    pytest.param("GET", "/v1/orders/not-an-order", None, {}, id="get-order-bad-id"),
    pytest.param("GET", "/v1/orders/o-123/images?limit=0", None, {}, id="get-images-bad-query"),
    pytest.param("DELETE", "/v1/orders/not-an-order", None, {}, id="delete-order-bad-id"),
]


# Regression (found by this suite): powertools validated requests before the key check ran,
# so an unauthenticated client got 400/422 with field details instead of 401.
@pytest.mark.parametrize(("method", "path", "body", "headers"), UNAUTHENTICATED_BAD_REQUESTS)
def test_401_comes_before_validation(
    aws: Created, method: str, path: str, body: Any, headers: dict[str, str]
) -> None:
    response = call(method, path, body, key=None, headers=headers)

    assert_error(response, 401, "unauthorized")


@pytest.mark.parametrize(
    ("method", "path", "body", "headers"),
    [
        pytest.param("POST", "/v1/quotes", quote_body(), {}, id="post-quote"),
        pytest.param(
            "POST",
            "/v1/orders",
            {"quote_id": "q-1", "option_id": "opt-1"},
            {"Idempotency-Key": "idem-key-0001"},
            id="post-order",
        ),
        pytest.param("GET", "/v1/orders/o-" + "0" * 32, None, {}, id="get-order"),
        pytest.param("GET", "/v1/orders/o-" + "0" * 32 + "/images", None, {}, id="get-images"),
        pytest.param("DELETE", "/v1/orders/o-" + "0" * 32, None, {}, id="delete-order"),
    ],
)
def test_401_comes_before_lookups(
    aws: Created, method: str, path: str, body: Any, headers: dict[str, str]
) -> None:
    """A well-formed request for something that does not exist is a 401 without a key, not a
    404 (an unauthenticated client learns nothing about what exists)."""
    assert_error(call(method, path, body, key=None, headers=headers), 401, "unauthorized")
