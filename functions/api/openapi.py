"""Print the API's OpenAPI document (``make openapi`` writes it to docs/openapi.json).

A test fails when the checked-in document and the routes drift apart.
"""

from __future__ import annotations

import json
from typing import Any

from aws_lambda_powertools.event_handler.openapi.models import APIKey, APIKeyIn

from functions.api.handler import app
from subconscious import http_errors

# powertools' own error schemas: '{"detail": ...}' bodies this API never sends.
_POWERTOOLS_ERRORS = ("HTTPValidationError", "ValidationError", "ResponseValidationError")


def document() -> str:
    schema = app.get_openapi_json_schema(
        title="Subconscious Systems API",
        version="1.0.0",
        summary="Batch text-to-image, quoted against a deadline and a budget.",
        description=(
            "Ask for a quote (price per image, total, completion time and options), accept one "
            "option as an order, watch its progress and download its images through presigned "
            "links. Every request carries an API key in the `x-api-key` header. Errors are JSON: "
            '`{"error": {"code", "message", "details": [{"field", "message"}]}}`.'
        ),
        security_schemes={"apiKey": APIKey(name="x-api-key", **{"in": APIKeyIn.header})},
        security=[{"apiKey": []}],
    )
    return json.dumps(_with_error_schema(json.loads(schema)), indent=2, sort_keys=True) + "\n"


def _with_error_schema(spec: dict[str, Any]) -> dict[str, Any]:
    """Every error answer refers to the one ``Error`` schema (``http_errors.ErrorBody``).
    powertools writes its response-validation 500 over each route's own 500 after the routes'
    ``responses`` are read, so the route's is put back here."""
    error_ref = {"$ref": f"#/components/schemas/{http_errors.ERROR_SCHEMA}"}
    for operations in spec["paths"].values():
        for operation in operations.values():
            for status, answer in operation["responses"].items():
                if int(status) >= 400:
                    answer["content"] = {"application/json": {"schema": error_ref}}
            operation["responses"]["500"]["description"] = http_errors.EVERY_ROUTE[500]
    schemas = spec["components"]["schemas"]
    error = http_errors.ErrorBody.model_json_schema(ref_template="#/components/schemas/{model}")
    schemas.update(error.pop("$defs", {}))
    schemas[http_errors.ERROR_SCHEMA] = error
    for name in _POWERTOOLS_ERRORS:
        schemas.pop(name, None)
    text = json.dumps(spec)
    dangling = [name for name in _POWERTOOLS_ERRORS if f'/schemas/{name}"' in text]
    if dangling:
        raise RuntimeError(f"the document still refers to powertools' {dangling}")
    return spec


if __name__ == "__main__":
    print(document(), end="")
