"""Print the API's OpenAPI document (``make openapi`` writes it to docs/openapi.json).

A test fails when the checked-in document and the routes drift apart.
"""

from __future__ import annotations

import json

from aws_lambda_powertools.event_handler.openapi.models import APIKey, APIKeyIn

from functions.api.handler import app


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
    return json.dumps(json.loads(schema), indent=2, sort_keys=True) + "\n"


if __name__ == "__main__":
    print(document(), end="")
