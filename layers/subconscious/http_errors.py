"""The one place that turns errors into HTTP answers.

Every error body has the same shape, with a stable ``code`` clients may match on::

    {"error": {"code": "validation_error", "message": "...",
               "details": [{"field": "job.width", "message": "..."}]}}

Unexpected exceptions are logged with their traceback and answered 500 without one.
"""

from __future__ import annotations

import json
from http import HTTPStatus
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response, content_types
from aws_lambda_powertools.event_handler.exceptions import NotFoundError
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError

from subconscious import errors
from subconscious.observability import logger

STATUS: dict[type[errors.SubconsciousError], HTTPStatus] = {
    errors.BadRequest: HTTPStatus.BAD_REQUEST,
    errors.ValidationFailed: HTTPStatus.UNPROCESSABLE_ENTITY,
    errors.PayloadTooLarge: HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
    errors.Unauthorized: HTTPStatus.UNAUTHORIZED,
    errors.NotFound: HTTPStatus.NOT_FOUND,
    errors.Conflict: HTTPStatus.CONFLICT,
    errors.QuoteExpired: HTTPStatus.GONE,
    errors.NoCapacity: HTTPStatus.SERVICE_UNAVAILABLE,
}


def error_response(
    status: HTTPStatus, code: str, message: str, details: list[dict[str, str]] | None = None
) -> Response[str]:
    body: dict[str, Any] = {"code": code, "message": message}
    if details:
        body["details"] = details
    headers = {"WWW-Authenticate": 'ApiKey header="x-api-key"'} if status == 401 else None
    return Response(
        status_code=status,
        content_type=content_types.APPLICATION_JSON,
        body=json.dumps({"error": body}),
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
