"""API keys → tenant. Every request carries a key; an unknown one is a 401, never more."""

from __future__ import annotations

from subconscious.errors import Unauthorized
from subconscious.logic.services import Services

_MAX_KEY_LENGTH = 200


def authenticate(services: Services, api_key: str | None) -> str:
    if not api_key or len(api_key) > _MAX_KEY_LENGTH:
        raise Unauthorized("a valid API key is required (header x-api-key)")
    tenant = services.tenants.tenant_for_key(api_key)
    if tenant is None:
        raise Unauthorized("a valid API key is required (header x-api-key)")
    return tenant
