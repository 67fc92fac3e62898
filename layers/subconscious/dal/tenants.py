"""API keys → tenants. Keys are stored only as SHA-256 hashes."""

from __future__ import annotations

import hashlib
from typing import Any

from subconscious import aws


def hash_key(api_key: str) -> str:
    return hashlib.sha256(api_key.encode()).hexdigest()


class TenantStore:
    def __init__(self, table_name: str, table: Any = None) -> None:
        self._table = table or aws.table(table_name)

    def tenant_for_key(self, api_key: str) -> str | None:
        item = self._table.get_item(Key={"key_hash": hash_key(api_key)}).get("Item")
        if not item or item.get("disabled"):
            return None
        return str(item["tenant_id"])

    def add_key(self, tenant_id: str, api_key: str, name: str = "") -> None:
        self._table.put_item(
            Item={"key_hash": hash_key(api_key), "tenant_id": tenant_id, "name": name}
        )
