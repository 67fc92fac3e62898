"""Quotes, scoped by tenant, expired by DynamoDB TTL (and checked on read: TTL deletes late)."""

from __future__ import annotations

from typing import Any

from subconscious import aws
from subconscious.dal._dynamo import epoch
from subconscious.models import Quote


class QuoteStore:
    def __init__(self, table_name: str, table: Any = None) -> None:
        self._table = table or aws.table(table_name)

    def put(self, tenant_id: str, quote: Quote) -> None:
        self._table.put_item(
            Item={
                "tenant_id": tenant_id,
                "quote_id": quote.quote_id,
                "doc": quote.model_dump_json(),
                # Kept a day past expiry so a late accept says "expired", not "not found".
                "ttl": epoch(quote.expires_at) + 86_400,
            }
        )

    def get(self, tenant_id: str, quote_id: str) -> Quote | None:
        item = self._table.get_item(Key={"tenant_id": tenant_id, "quote_id": quote_id}).get("Item")
        if not item:
            return None
        return Quote.model_validate_json(item["doc"])
