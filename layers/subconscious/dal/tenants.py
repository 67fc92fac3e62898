"""API keys → tenants. Keys are stored only as SHA-256 hashes."""

from __future__ import annotations

import hashlib
from typing import Any

from subconscious import aws
from subconscious.models.tenancy import Principal, Role


def hash_key(api_key: str) -> str:
    return hashlib.sha256(api_key.encode()).hexdigest()


class TenantStore:
    def __init__(self, table_name: str, table: Any = None) -> None:
        self._table = table or aws.table(table_name)

    def tenant_for_key(self, api_key: str) -> str | None:
        principal = self.principal_for_key(api_key)
        return None if principal is None else principal.tenant_id

    def principal_for_key(self, api_key: str) -> Principal | None:
        """The key's tenant and role (a record may carry ``role: "operator"``)."""
        item = self._table.get_item(Key={"key_hash": hash_key(api_key)}).get("Item")
        return principal_of(item)

    def add_key(
        self, tenant_id: str, api_key: str, name: str = "", role: Role = Role.CUSTOMER
    ) -> None:
        self._table.put_item(
            Item={
                "key_hash": hash_key(api_key),
                "tenant_id": tenant_id,
                "name": name,
                "role": role.value,
            }
        )


def principal_of(item: dict[str, Any] | None) -> Principal | None:
    """A tenant record read (shared with the in-memory twin); None for none or a disabled
    key."""
    if not item or item.get("disabled"):
        return None
    return Principal(str(item["tenant_id"]), Role.of(item.get("role")))
