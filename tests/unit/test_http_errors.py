"""Errors to HTTP: field paths and status codes."""

from __future__ import annotations

import json
from http import HTTPStatus
from typing import Any

import pytest

from subconscious import errors
from subconscious.http_errors import (
    EVERY_ROUTE,
    GATEWAY,
    ErrorBody,
    error_response,
    field_path,
    openapi_responses,
    proxy_response,
    status_of,
)


@pytest.mark.parametrize(
    ("loc", "path"),
    [
        (("body", "job", "prompts", 0, "count"), "job.prompts.0.count"),
        (["body", "job", "width"], "job.width"),
        (("body", "quote_id"), "quote_id"),
        (("body",), "body"),
        ((), "body"),
        (("query", "limit"), "query.limit"),
        (("header", "x-api-key"), "header.x-api-key"),
        (("path", "order_id"), "path.order_id"),
        (("job", "width"), "job.width"),
    ],
)
def test_field_path(loc: tuple[Any, ...] | list[Any], path: str) -> None:
    assert field_path(loc) == path


class OrderNotFound(errors.NotFound):
    code = "order_not_found"


class SpecialConflict(errors.Conflict):
    pass


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (errors.BadRequest, HTTPStatus.BAD_REQUEST),
        (errors.ValidationFailed, HTTPStatus.UNPROCESSABLE_ENTITY),
        (errors.PayloadTooLarge, HTTPStatus.REQUEST_ENTITY_TOO_LARGE),
        (errors.UnsupportedMediaType, HTTPStatus.UNSUPPORTED_MEDIA_TYPE),
        (errors.Unauthorized, HTTPStatus.UNAUTHORIZED),
        (errors.NotFound, HTTPStatus.NOT_FOUND),
        (errors.Conflict, HTTPStatus.CONFLICT),
        (errors.QuoteExpired, HTTPStatus.GONE),
        (errors.NoCapacity, HTTPStatus.SERVICE_UNAVAILABLE),
        (OrderNotFound, HTTPStatus.NOT_FOUND),
        (SpecialConflict, HTTPStatus.CONFLICT),
        (errors.SubconsciousError, HTTPStatus.INTERNAL_SERVER_ERROR),
        (errors.ProviderError, HTTPStatus.INTERNAL_SERVER_ERROR),
        (errors.OfferGone, HTTPStatus.INTERNAL_SERVER_ERROR),
        (errors.MachineGone, HTTPStatus.INTERNAL_SERVER_ERROR),
        (errors.RendererError, HTTPStatus.INTERNAL_SERVER_ERROR),
        (errors.RendererUnavailable, HTTPStatus.INTERNAL_SERVER_ERROR),
        (errors.RendererOutOfMemory, HTTPStatus.INTERNAL_SERVER_ERROR),
        (errors.BadImage, HTTPStatus.INTERNAL_SERVER_ERROR),
        (errors.MachineNotReady, HTTPStatus.INTERNAL_SERVER_ERROR),
    ],
)
def test_status_of(error: type[errors.SubconsciousError], status: HTTPStatus) -> None:
    assert status_of(error("boom")) == status


def test_every_error_class_has_a_status() -> None:
    seen: list[type[errors.SubconsciousError]] = []
    pending = [errors.SubconsciousError]
    while pending:
        cls = pending.pop()
        seen.append(cls)
        pending.extend(cls.__subclasses__())
    module_classes = [c for c in seen if c.__module__ == "subconscious.errors"]
    assert len(module_classes) >= 17
    customer_facing = (
        errors.BadRequest,
        errors.ValidationFailed,
        errors.PayloadTooLarge,
        errors.UnsupportedMediaType,
        errors.Unauthorized,
        errors.NotFound,
        errors.Conflict,
        errors.QuoteExpired,
    )
    for cls in module_classes:
        # status_of reads the class only; some errors take more than a message to build
        status = status_of(cls.__new__(cls))
        if issubclass(cls, customer_facing):
            assert 400 <= status < 500, cls
        elif issubclass(cls, errors.NoCapacity):
            assert status == HTTPStatus.SERVICE_UNAVAILABLE
        else:
            assert status == HTTPStatus.INTERNAL_SERVER_ERROR, cls


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (errors.SubconsciousError, "internal_error"),
        (errors.ValidationFailed, "validation_error"),
        (errors.QuoteExpired, "quote_expired"),
        (errors.NoCapacity, "no_capacity"),
        (errors.UnsupportedMediaType, "unsupported_media_type"),
        (errors.OfferGone, "offer_gone"),
        (errors.RendererOutOfMemory, "renderer_out_of_memory"),
    ],
)
def test_error_codes_are_stable(error: type[errors.SubconsciousError], code: str) -> None:
    assert error.code == code


def test_error_keeps_message_and_details() -> None:
    error = errors.ValidationFailed("bad", details=[{"field": "option_id", "message": "nope"}])
    assert (str(error), error.message, error.details) == (
        "bad",
        "bad",
        [{"field": "option_id", "message": "nope"}],
    )
    assert errors.NotFound("x").details == []


def test_error_response_shape() -> None:
    response = error_response(
        HTTPStatus.UNPROCESSABLE_ENTITY,
        "validation_error",
        "the request is invalid",
        [{"field": "job.width", "message": "too big"}],
    )
    assert response.status_code == 422
    assert json.loads(str(response.body)) == {
        "error": {
            "code": "validation_error",
            "message": "the request is invalid",
            "details": [{"field": "job.width", "message": "too big"}],
        }
    }


def test_error_response_without_details_and_401_challenge() -> None:
    response = error_response(HTTPStatus.UNAUTHORIZED, "unauthorized", "no key")
    assert json.loads(str(response.body)) == {
        "error": {"code": "unauthorized", "message": "no key"}
    }
    assert response.headers["WWW-Authenticate"] == 'ApiKey header="x-api-key"'
    other = error_response(HTTPStatus.NOT_FOUND, "not_found", "gone")
    assert "WWW-Authenticate" not in (other.headers or {})


def test_error_response_survives_a_malformed_detail() -> None:
    """An error answer is the last thing a request gets: a detail missing a key is filled in,
    never a crash that API Gateway would turn into a bare 502."""
    response = error_response(HTTPStatus.CONFLICT, "conflict", "taken", [{"message": "x"}])
    body = json.loads(str(response.body))
    assert body["error"]["details"] == [{"field": "body", "message": "x"}]


def test_error_answers_match_the_documented_error_schema() -> None:
    response = error_response(HTTPStatus.BAD_REQUEST, "bad_request", "no", [])
    assert ErrorBody.model_validate_json(str(response.body)).error.code == "bad_request"
    assert "details" not in json.loads(str(response.body))["error"]  # none: left out


def test_openapi_responses_list_every_route_answer_with_the_error_schema() -> None:
    answers = openapi_responses(201, "order", {409: "taken", 422: "unknown option"})

    assert set(answers) == {201, 409} | set(EVERY_ROUTE) | set(GATEWAY)
    assert answers[201] == {"description": "order"}  # schema from the route's return type
    for status in set(answers) - {201}:
        content: dict[str, Any] = dict(answers[status]["content"])
        assert content == {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    # a route's own reason for a status every route has is added, not substituted
    assert answers[422]["description"] == f"{EVERY_ROUTE[422]}; unknown option"


def test_an_unexpected_error_before_routing_is_a_json_500() -> None:
    response = proxy_response(RuntimeError("DynamoDB throttled the key lookup"))
    assert response["statusCode"] == 500
    assert '"internal_error"' in response["body"]
    assert "throttled" not in response["body"]
