"""Who is calling, and is the request well-formed enough to look at.

Every request carries a key; an unknown one is a 401, never more. The body's size and JSON
shape are checked here too, before any parsing by the router.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from subconscious.errors import InvalidJson, PayloadTooLarge, Unauthorized, ValidationFailed
from subconscious.logic.services import Services

_MAX_KEY_LENGTH = 200
KEY_HEADER = "x-api-key"


def authenticate(services: Services, api_key: str | None) -> str:
    if not api_key or len(api_key) > _MAX_KEY_LENGTH:
        raise Unauthorized(f"a valid API key is required (header {KEY_HEADER})")
    tenant = services.tenants.tenant_for_key(api_key)
    if tenant is None:
        raise Unauthorized(f"a valid API key is required (header {KEY_HEADER})")
    return tenant


def guard_request(services: Services, event: dict[str, Any]) -> str:
    """The tenant of an API Gateway (REST) request, after its size and key are checked, and a
    body, if any, is a JSON object (a list, say, is refused rather than half read)."""
    body = _body(event)
    limit = services.settings.max_body_bytes
    if len(body) > limit:
        raise PayloadTooLarge(f"request body over {limit} bytes")
    headers = {k.lower(): v for k, v in (event.get("headers") or {}).items()}
    tenant_id = authenticate(services, headers.get(KEY_HEADER))
    if body.strip():
        try:
            parsed = json.loads(body)
        except (ValueError, RecursionError) as error:
            raise InvalidJson("the request body is not valid JSON") from error
        if not isinstance(parsed, dict):
            raise ValidationFailed(
                "the request body must be a JSON object",
                details=[{"field": "body", "message": "must be a JSON object"}],
            )
    return tenant_id


def _body(event: dict[str, Any]) -> bytes:
    raw = event.get("body") or ""
    if event.get("isBase64Encoded"):
        try:
            return base64.b64decode(raw, validate=True)
        except (binascii.Error, ValueError) as error:
            raise InvalidJson("the request body is not valid base64") from error
    return str(raw).encode()


def allow_policy(tenant_id: str, method_arn: str) -> dict[str, Any]:
    """API Gateway authorizer answer for a known key: every route of this API stage (the answer
    is cached per key, so it must not name one method), with the tenant as context."""
    api_arn, _, route = method_arn.partition("/")
    stage = route.split("/", 1)[0]
    if not api_arn.startswith("arn:") or not stage:
        raise ValueError("not an API Gateway method ARN")
    return {
        "principalId": tenant_id,
        "policyDocument": {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Action": "execute-api:Invoke",
                    "Effect": "Allow",
                    "Resource": f"{api_arn}/{stage}/*",
                }
            ],
        },
        "context": {"tenant_id": tenant_id},
    }
