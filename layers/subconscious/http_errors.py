"""The one place that turns errors into HTTP answers.

Every error body has the same shape, with a stable ``code`` clients may match on::

    {"error": {"code": "validation_error", "message": "...",
               "details": [{"field": "job.width", "message": "..."}]}}

Unexpected exceptions are logged with their traceback and answered 500 without one.
The same module says, for the OpenAPI document, which answers a route can give
(:func:`openapi_responses`), so the document and the answers share one body schema.
"""

from __future__ import annotations

from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response, content_types
from aws_lambda_powertools.event_handler.exceptions import NotFoundError
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError
from aws_lambda_powertools.event_handler.openapi.types import OpenAPIResponse
from pydantic import BaseModel, ConfigDict, Field

from subconscious import errors
from subconscious.observability import logger

STATUS: dict[type[errors.SubconsciousError], HTTPStatus] = {
    errors.BadRequest: HTTPStatus.BAD_REQUEST,
    errors.ValidationFailed: HTTPStatus.UNPROCESSABLE_ENTITY,
    errors.OutsideTerms: HTTPStatus.UNPROCESSABLE_ENTITY,
    errors.PayloadTooLarge: HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
    errors.UnsupportedMediaType: HTTPStatus.UNSUPPORTED_MEDIA_TYPE,
    errors.Unauthorized: HTTPStatus.UNAUTHORIZED,
    errors.NotFound: HTTPStatus.NOT_FOUND,
    errors.Conflict: HTTPStatus.CONFLICT,
    errors.QuoteExpired: HTTPStatus.GONE,
    errors.NoCapacity: HTTPStatus.SERVICE_UNAVAILABLE,
}


class ErrorDetail(BaseModel):
    field: str = Field(description="where: 'job.width', 'query.limit', 'header.idempotency-key'")
    message: str


class ErrorInfo(BaseModel):
    code: str = Field(description="stable: clients may match on it ('validation_error', ...)")
    message: str = Field(description="for people; may change")
    details: list[ErrorDetail] = Field(
        default_factory=list, description="one entry per field at fault; left out when none"
    )


# Every error answer is serialised through this model, so the answers and the OpenAPI
# document's ``Error`` schema cannot differ. (The docstring is the schema's description.)
class ErrorBody(BaseModel):
    """Every error answer of this API."""

    model_config = ConfigDict(title="Error")

    error: ErrorInfo


ERROR_SCHEMA = "Error"  # the OpenAPI component every error answer refers to

# What any request may be answered, whatever its route: the guard (size, key, media type, JSON
# shape of a body, on every method), request validation, and our own failures.
EVERY_ROUTE: dict[int, str] = {
    400: "`invalid_json`: the body is not JSON, or not valid base64",
    401: "`unauthorized`: no valid API key in the `x-api-key` header",
    413: "`payload_too_large`: the body is over the size limit (64 KiB)",
    415: "`unsupported_media_type`: a body declared as anything but `application/json`",
    422: "`validation_error`: a body, path, query or header field is invalid (`details`)",
    500: "`internal_error`: our fault; the answer carries no internals",
}
# Answered by API Gateway itself, before the Lambda runs, in the same shape (the gateway
# responses of infra/cdk/api.py; tests/infra/test_template.py checks them).
GATEWAY: dict[int, str] = {429: "`throttled`: over the API's request rate; retry later"}


def openapi_responses(
    success: int, description: str, route_errors: Mapping[int, str] | None = None
) -> dict[int, OpenAPIResponse]:
    """A route's ``responses`` for the OpenAPI document: its success (schema from the route's
    return type) and every error it can answer, each with the ``Error`` schema. Replaces
    powertools' default 422 (``{"detail": ...}``), which is not what this API sends."""
    route_errors = route_errors or {}
    answers: dict[int, OpenAPIResponse] = {success: {"description": description}}
    for status in sorted(EVERY_ROUTE.keys() | GATEWAY.keys() | route_errors.keys()):
        why = [
            text
            for text in (EVERY_ROUTE.get(status), GATEWAY.get(status), route_errors.get(status))
            if text
        ]
        answers[status] = {
            "description": "; ".join(why),
            "content": {
                content_types.APPLICATION_JSON: {
                    "schema": {"$ref": f"#/components/schemas/{ERROR_SCHEMA}"}
                }
            },
        }
    return answers


def error_response(
    status: HTTPStatus, code: str, message: str, details: list[dict[str, str]] | None = None
) -> Response[str]:
    body = ErrorBody(
        error=ErrorInfo(
            code=code,
            message=message,
            # read key by key: a malformed detail must not turn an error answer into a crash
            details=[
                ErrorDetail(field=str(d.get("field", "body")), message=str(d.get("message", "")))
                for d in details or []
            ],
        )
    )
    headers = {"WWW-Authenticate": 'ApiKey header="x-api-key"'} if status == 401 else None
    return Response(
        status_code=status,
        content_type=content_types.APPLICATION_JSON,
        body=body.model_dump_json(exclude_defaults=True),
        headers=headers,
    )


def proxy_response(error: Exception) -> dict[str, Any]:
    """The same answer as a route would give, for errors raised before the router runs."""
    if isinstance(error, errors.SubconsciousError):
        status = status_of(error)
        logger.info("request refused", code=error.code, status=int(status))
        response = error_response(status, error.code, error.message, error.details)
    else:
        logger.exception("unexpected error before routing")
        status = HTTPStatus.INTERNAL_SERVER_ERROR
        response = error_response(status, "internal_error", "something went wrong on our side")
    headers = {"Content-Type": content_types.APPLICATION_JSON, **(response.headers or {})}
    return {
        "statusCode": int(status),
        "headers": {k: str(v) for k, v in headers.items()},
        "body": response.body,
        "isBase64Encoded": False,
    }


def status_of(error: errors.SubconsciousError) -> HTTPStatus:
    for cls in type(error).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return HTTPStatus.INTERNAL_SERVER_ERROR


def field_path(loc: tuple[Any, ...] | list[Any]) -> str:
    """('body', 'job', 'prompts', 0, 'count') → 'job.prompts.0.count'."""
    parts = [str(p) for p in loc]
    if parts and parts[0] in ("body", "query", "path", "header"):
        origin, parts = parts[0], parts[1:]
        if origin != "body" and parts:
            return f"{origin}.{'.'.join(parts)}"
    return ".".join(parts) or "body"


def register(app: APIGatewayRestResolver) -> None:
    @app.exception_handler(errors.SubconsciousError)
    def _ours(error: errors.SubconsciousError) -> Response[str]:
        status = status_of(error)
        if status >= 500:
            logger.exception("request failed", code=error.code)
        else:
            logger.info("request refused", code=error.code, status=int(status))
        return error_response(status, error.code, error.message, error.details)

    @app.exception_handler(RequestValidationError)
    def _invalid(error: RequestValidationError) -> Response[str]:
        problems = error.errors()
        if any(p.get("type") == "json_invalid" for p in problems):
            return error_response(
                HTTPStatus.BAD_REQUEST, "invalid_json", "the request body is not valid JSON"
            )
        details = [
            {"field": field_path(p.get("loc", ())), "message": str(p.get("msg", "invalid"))}
            for p in problems
        ]
        logger.info("request invalid", fields=[d["field"] for d in details])
        return error_response(
            HTTPStatus.UNPROCESSABLE_ENTITY, "validation_error", "the request is invalid", details
        )

    @app.not_found
    def _no_route(_: NotFoundError) -> Response[str]:
        return error_response(HTTPStatus.NOT_FOUND, "route_not_found", "no such route")

    @app.exception_handler(Exception)
    def _unexpected(error: Exception) -> Response[str]:
        logger.exception("unexpected error")
        return error_response(
            HTTPStatus.INTERNAL_SERVER_ERROR, "internal_error", "something went wrong on our side"
        )
