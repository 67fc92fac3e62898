"""Issue 13, finding 5: a body this API cannot read is a 415 ``unsupported_media_type``, as
data (an INFO line), never a 500 with a traceback. Media types are matched as RFC 9110 says:
case-insensitively, parameters aside. A body sent without a Content-Type is read as JSON."""

from __future__ import annotations

import json
from typing import Any

import pytest

from functions.api.handler import lambda_handler
from infra.local.resources import Created
from infra.local.stack import api_gateway_event, context_for
from tests.integration.api_helpers import (
    API_FUNCTION,
    UNKNOWN_ORDER,
    Writes,
    assert_error,
    call,
    captured_logs,
    create_quote,
    order_body,
    quote_body,
    writes,
)

# handler tests: the API over moto's resources, as in AWS (tests/conftest.py's svc)
pytestmark = pytest.mark.moto

NOTHING = Writes(quotes=0, orders=0, images=0, idempotency=0, queued=0)

UNSUPPORTED = [
    "text/plain",
    "text/plain; charset=utf-8",
    "application/xml",
    "multipart/form-data",  # no boundary: powertools raised ValueError on it (a 500)
    "multipart/form-data; boundary=----x",
    "application/x-www-form-urlencoded",  # powertools would parse it as a form
    "application/jsonx",  # powertools matches by prefix; a prefix is not the type
    "text/json",
    "application/json, text/plain",  # two types folded into one header
]

ACCEPTED_AS_JSON = [
    "application/json",
    "APPLICATION/JSON",
    "Application/Json; charset=UTF-8",
    "application/json;charset=utf-8",
    "  application/json  ",
    "",  # an empty header says nothing: the body is read as JSON
    None,  # no header at all (curl -d without -H): read as JSON, as most APIs do
]


def _assert_415(response: tuple[int, Any], received: str) -> None:
    assert_error(response, 415, "unsupported_media_type")
    message = response[1]["error"]["message"]
    assert repr(received) in message and "application/json" in message, message


@pytest.mark.parametrize("content_type", UNSUPPORTED)
def test_a_quote_body_of_another_type_is_a_415_and_writes_nothing(
    aws: Created, api_key: str, content_type: str
) -> None:
    response = call("POST", "/v1/quotes", quote_body(), key=api_key, content_type=content_type)

    _assert_415(response, content_type.split(";")[0].strip().lower())
    assert writes(aws) == NOTHING


def test_an_order_body_of_another_type_is_a_415_and_queues_nothing(
    aws: Created, api_key: str
) -> None:
    quote = create_quote(api_key)
    before = writes(aws)

    response = call(
        "POST",
        "/v1/orders",
        order_body(quote),
        key=api_key,
        headers={"Idempotency-Key": "idem-key-0415"},
        content_type="text/plain",
    )

    _assert_415(response, "text/plain")
    assert writes(aws) == before


@pytest.mark.parametrize("content_type", ACCEPTED_AS_JSON)
def test_json_in_any_spelling_or_undeclared_is_read(
    aws: Created, api_key: str, content_type: str | None
) -> None:
    status, body = call("POST", "/v1/quotes", quote_body(), key=api_key, content_type=content_type)

    assert status == 201, body
    assert body["job"]["width"] == 512


def test_json_in_upper_case_is_read_by_the_order_route_too(aws: Created, api_key: str) -> None:
    """The router validates the Idempotency-Key header and the body after the media type was
    respelled: both still arrive."""
    quote = create_quote(api_key)
    status, body = call(
        "POST",
        "/v1/orders",
        order_body(quote),
        key=api_key,
        headers={"Idempotency-Key": "idem-key-upper"},
        content_type="APPLICATION/JSON; charset=utf-8",
    )
    assert status == 201, body
    assert body["quote_id"] == quote["quote_id"]


def test_the_header_name_is_case_insensitive(aws: Created, api_key: str) -> None:
    response = call(
        "POST",
        "/v1/quotes",
        quote_body(),
        key=api_key,
        content_type=None,
        headers={"content-type": "text/plain"},
    )
    _assert_415(response, "text/plain")


def test_a_second_value_in_the_multi_value_headers_is_seen(aws: Created, api_key: str) -> None:
    """API Gateway keeps only the last value in ``headers``; ``multiValueHeaders`` has all."""
    event = api_gateway_event(
        "POST",
        "/v1/quotes",
        {"Content-Type": "application/json", "x-api-key": api_key},
        json.dumps(quote_body()),
    )
    event["multiValueHeaders"]["Content-Type"] = ["application/xml", "application/json"]

    result = lambda_handler(event, context_for(API_FUNCTION))

    _assert_415((int(result["statusCode"]), json.loads(result["body"])), "application/xml")


def test_an_empty_post_of_another_type_is_a_415_not_a_500(aws: Created, api_key: str) -> None:
    """The router parses a POST's body by its type even when there is none."""
    _assert_415(call("POST", "/v1/quotes", key=api_key, content_type="text/plain"), "text/plain")


def test_the_type_is_checked_before_the_body_is_parsed(aws: Created, api_key: str) -> None:
    """'hello' sent as text is refused for its type, not blamed as broken JSON."""
    response = call("POST", "/v1/quotes", "hello", key=api_key, content_type="text/plain")
    _assert_415(response, "text/plain")


def test_without_a_key_the_type_is_not_looked_at(aws: Created) -> None:
    assert_error(
        call("POST", "/v1/quotes", quote_body(), key=None, content_type="text/plain"),
        401,
        "unauthorized",
    )


def test_an_oversized_body_of_another_type_is_a_413(aws: Created, api_key: str) -> None:
    response = call("POST", "/v1/quotes", "x" * 70_000, key=api_key, content_type="text/plain")
    assert_error(response, 413, "payload_too_large")


def test_a_get_without_a_body_may_carry_any_content_type(aws: Created, api_key: str) -> None:
    """Some clients send their default Content-Type on every request: harmless without a body."""
    status, body = call("GET", f"/v1/orders/{UNKNOWN_ORDER}", key=api_key, content_type="text/xml")
    assert status == 404, body
    status, body = call("GET", "/v1/market", key=api_key, content_type="text/plain")
    assert status == 200, body


def test_a_get_with_a_body_of_another_type_is_a_415(aws: Created, api_key: str) -> None:
    response = call("GET", "/v1/market", "<market/>", key=api_key, content_type="application/xml")
    _assert_415(response, "application/xml")


def test_a_415_is_logged_as_a_refused_request_never_as_an_error(aws: Created, api_key: str) -> None:
    with captured_logs() as lines:
        call("POST", "/v1/quotes", quote_body(), key=api_key, content_type="multipart/form-data")

    assert [line["level"] for line in lines if line["level"] not in ("INFO", "DEBUG")] == []
    (refused,) = [line for line in lines if line["message"] == "request refused"]
    assert (refused["level"], refused["code"], refused["status"]) == (
        "INFO",
        "unsupported_media_type",
        415,
    )
    assert not any("exception" in line or "Traceback" in json.dumps(line) for line in lines)
