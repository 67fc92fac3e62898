"""Secrets Manager: one JSON secret of string values (provider keys and the machine key)."""

from __future__ import annotations

import json
from typing import Any

from subconscious import aws
from subconscious.errors import ConfigurationError


def read_json_secret(secret_id: str, client: Any = None) -> dict[str, str]:
    """The secret's string values by name. Errors name the secret, never a value."""
    sm = client or aws.client("secretsmanager")
    raw = sm.get_secret_value(SecretId=secret_id).get("SecretString")
    try:
        parsed = json.loads(raw or "")
    except ValueError:
        parsed = None
    if not isinstance(parsed, dict):
        raise ConfigurationError(f"secret {secret_id} is not a JSON object")
    return {str(k): v for k, v in parsed.items() if isinstance(v, str)}
