"""Who is calling, and is the request well-formed enough to look at.

Every request carries a key; an unknown one is a 401, never more. The body's size, media type
and JSON shape are checked here too, before any parsing by the router.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import TYPE_CHECKING, Any

from subconscious.errors import (
    InvalidJson,
    PayloadTooLarge,
    Unauthorized,
    UnsupportedMediaType,
    ValidationFailed,
)
from subconscious.logic.console import is_console_path
from subconscious.models.tenancy import Principal

if TYPE_CHECKING:  # a type only: services.py, the composition root, sits above logic
    from subconscious.services import Services

_MAX_KEY_LENGTH = 200
KEY_HEADER = "x-api-key"
JSON_MEDIA_TYPE = "application/json"
# Methods whose routes read a body: the router parses it by its Content-Type even when empty.
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


def authenticate(services: Services, api_key: str | None) -> str:
    return authenticate_principal(services, api_key).tenant_id


def authenticate_principal(services: Services, api_key: str | None) -> Principal:
    """The key's tenant and role; Unauthorized for a missing, oversized or unknown key."""
    if not api_key or len(api_key) > _MAX_KEY_LENGTH:
        raise Unauthorized(f"a valid API key is required (header {KEY_HEADER})")
    principal = services.tenants.principal_for_key(api_key)
    if principal is None:
        raise Unauthorized(f"a valid API key is required (header {KEY_HEADER})")
    return principal


def is_public_request(event: dict[str, Any]) -> bool:
    """The web console's page and assets (``GET /console...``): served without a key, as they
    hold no one's data (the page asks for a key and sends it with its own calls). Every other
    request goes through :func:`guard_principal`."""
    return is_console_path(str(event.get("httpMethod", "")), str(event.get("path", "")))


def guard_request(services: Services, event: dict[str, Any]) -> str:
    """The tenant of an API Gateway (REST) request (see :func:`guard_principal`)."""
    return guard_principal(services, event).tenant_id


def guard_principal(services: Services, event: dict[str, Any]) -> Principal:
    """The tenant and role of an API Gateway (REST) request, after its size and key are
    checked, and a body, if any, is declared as JSON (or not declared) and is a JSON object (a
    list, say, is refused rather than half read)."""
    body = _body(event)
    limit = services.settings.max_body_bytes
    if len(body) > limit:
        raise PayloadTooLarge(f"request body over {limit} bytes")
    headers = {k.lower(): v for k, v in (event.get("headers") or {}).items()}
    principal = authenticate_principal(services, headers.get(KEY_HEADER))
    if body.strip() or str(event.get("httpMethod", "")).upper() in _BODY_METHODS:
        _require_json_media_type(event)
    if body.strip():
        try:
            # UTF-8 only (RFC 8259 §8.1): json.loads(bytes) would also take UTF-16 and UTF-32,
            # which the router then fails to decode (a 500, found by test_api_fuzz.py)
            parsed = json.loads(body.decode("utf-8"))
        except (ValueError, RecursionError) as error:
            raise InvalidJson("the request body is not valid JSON") from error
        if not isinstance(parsed, dict):
            raise ValidationFailed(
                "the request body must be a JSON object",
                details=[{"field": "body", "message": "must be a JSON object"}],
            )
    return principal


def _content_types(event: dict[str, Any]) -> list[str]:
    """Every Content-Type value of the request, single- and multi-value headers alike."""
    values = [
        str(v) for k, v in (event.get("headers") or {}).items() if k.lower() == "content-type"
    ]
    for name, many in (event.get("multiValueHeaders") or {}).items():
        if name.lower() == "content-type":
            values.extend(str(v) for v in many or [])
    return values


def media_type(content_type: str) -> str:
    """'Application/JSON; charset=utf-8' → 'application/json': media types are case-insensitive
    and their parameters do not change what the body is (RFC 9110 §8.3.1)."""
    return content_type.split(";", 1)[0].strip().lower()


def _unsupported_media_types(event: dict[str, Any]) -> list[str]:
    # No Content-Type (or an empty one) is read as JSON, as curl -d and most clients expect.
    return sorted({media_type(value) for value in _content_types(event)} - {"", JSON_MEDIA_TYPE})


def _require_json_media_type(event: dict[str, Any]) -> None:
    unsupported = _unsupported_media_types(event)
    if unsupported:
        received = unsupported[0][:100]  # a header is the caller's text: keep the echo short
        raise UnsupportedMediaType(
            f"the request body is declared as {received!r}; this API reads {JSON_MEDIA_TYPE}"
        )


def with_json_content_type(event: dict[str, Any]) -> dict[str, Any]:
    """The event with every Content-Type header spelled exactly ``application/json``, once
    :func:`guard_request` has accepted it as JSON. The router matches the header literally
    (case and all) and would take 'APPLICATION/JSON' for a type it cannot read."""
    if not _content_types(event) or _unsupported_media_types(event):
        return event  # nothing to respell, or a request without a body that did not need JSON
    headers = {k: v for k, v in (event.get("headers") or {}).items() if k.lower() != "content-type"}
    multi = {
        k: v
        for k, v in (event.get("multiValueHeaders") or {}).items()
        if k.lower() != "content-type"
    }
    headers["Content-Type"] = JSON_MEDIA_TYPE
    multi["Content-Type"] = [JSON_MEDIA_TYPE]
    return {**event, "headers": headers, "multiValueHeaders": multi}


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
