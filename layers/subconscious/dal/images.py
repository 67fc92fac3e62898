"""One row per stored image: the ledger that makes progress count each S3 key once."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

from subconscious import aws
from subconscious.dal._dynamo import is_condition_failure, now
from subconscious.errors import BadRequest


@dataclass(frozen=True)
class StoredImage:
    prompt_index: int
    prompt: str
    seed: int
    width: int
    height: int
    key: str


class ImageStore:
    """Images table, plus the order's ``images_done`` counter it moves in the same transaction."""

    def __init__(self, table_name: str, orders_table_name: str, table: Any = None) -> None:
        self._table = table or aws.table(table_name)
        self._orders_table_name = orders_table_name

    @staticmethod
    def _pk(tenant_id: str, order_id: str) -> str:
        return f"{tenant_id}#{order_id}"

    def record(
        self,
        tenant_id: str,
        order_id: str,
        *,
        prompt_index: int,
        prompt: str,
        seed: int,
        width: int,
        height: int,
        key: str,
    ) -> bool:
        """Record a stored image and count it on its order, atomically: True the first time,
        False for a re-render or a duplicate delivery (invariant 2: each key counted once, and
        never a row without its count or a count without its row, whatever crashes between)."""
        at = now().isoformat()
        item = {
            "order": self._pk(tenant_id, order_id),
            "image": image_sort_key(prompt_index, seed),
            "prompt_index": prompt_index,
            "prompt": prompt,
            "seed": seed,
            "width": width,
            "height": height,
            "key": key,
            "stored_at": at,
        }
        return self._settle(tenant_id, order_id, item, "images_done")

    def give_up(self, tenant_id: str, order_id: str, *, prompt_index: int, seed: int) -> bool:
        """Settle one image as failed (its task spent its attempts): True the first time.
        The image's row is the same one :meth:`record` writes, so each image ends exactly once,
        delivered or given up, never both, whatever order the two race in."""
        item = {
            "order": self._pk(tenant_id, order_id),
            "image": image_sort_key(prompt_index, seed),
            "prompt_index": prompt_index,
            "seed": seed,
            "failed": True,
            "stored_at": now().isoformat(),
        }
        return self._settle(tenant_id, order_id, item, "images_failed")

    def _settle(self, tenant_id: str, order_id: str, item: dict[str, Any], counter: str) -> bool:
        try:
            # the resource's client (un)marshals plain Python values, like the Table API
            self._table.meta.client.transact_write_items(
                TransactItems=[
                    {
                        "Put": {
                            "TableName": self._table.name,
                            "Item": item,
                            "ConditionExpression": "attribute_not_exists(#i)",
                            "ExpressionAttributeNames": {"#i": "image"},
                        }
                    },
                    {
                        "Update": {
                            "TableName": self._orders_table_name,
                            "Key": {"tenant_id": tenant_id, "order_id": order_id},
                            "UpdateExpression": f"ADD {counter} :one SET updated_at = :now",
                            "ConditionExpression": "attribute_exists(order_id)",
                            "ExpressionAttributeValues": {":one": 1, ":now": item["stored_at"]},
                        }
                    },
                ]
            )
        except Exception as error:
            if is_condition_failure(error):
                return False
            raise
        return True

    def page(
        self, tenant_id: str, order_id: str, limit: int, token: str | None
    ) -> tuple[list[StoredImage], str | None]:
        kwargs: dict[str, Any] = {
            "KeyConditionExpression": "#o = :o",
            "ExpressionAttributeNames": {"#o": "order", "#f": "failed"},
            "ExpressionAttributeValues": {":o": self._pk(tenant_id, order_id)},
            # images given up have a row too (so each image ends once); they are not listed.
            # Limit counts rows read, so a page can hold fewer images than asked.
            "FilterExpression": "attribute_not_exists(#f)",
            "Limit": limit,
        }
        if token:
            kwargs["ExclusiveStartKey"] = self._decode_token(tenant_id, order_id, token)
        page = self._table.query(**kwargs)
        records = [stored_image(i) for i in page.get("Items", [])]
        last = page.get("LastEvaluatedKey")
        return records, encode_token(str(last["image"])) if last else None

    def _decode_token(self, tenant_id: str, order_id: str, token: str) -> dict[str, str]:
        return {"order": self._pk(tenant_id, order_id), "image": decode_token(token)}


# Shared with the in-memory twin (dal/memory.py), so both read rows and tokens alike.
def image_sort_key(prompt_index: int, seed: int) -> str:
    return f"{prompt_index:03d}#{seed:010d}"


def stored_image(item: dict[str, Any]) -> StoredImage:
    return StoredImage(
        prompt_index=int(item["prompt_index"]),
        prompt=str(item["prompt"]),
        seed=int(item["seed"]),
        width=int(item["width"]),
        height=int(item["height"]),
        key=str(item["key"]),
    )


def encode_token(image: str) -> str:
    return base64.urlsafe_b64encode(image.encode()).decode()


def decode_token(token: str) -> str:
    """The image sort key a page token stands for; BadRequest for anything we did not give."""
    try:
        image = base64.urlsafe_b64decode(token.encode()).decode()
    except (ValueError, UnicodeDecodeError) as error:
        raise BadRequest("next_token is not a token this API gave out") from error
    if "#" not in image or not image.replace("#", "").isdigit():
        raise BadRequest("next_token is not a token this API gave out")
    return image
