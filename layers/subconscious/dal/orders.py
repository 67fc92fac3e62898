"""Orders, keyed by (tenant, order): a read with another tenant's id finds nothing.

The immutable part of an order is one JSON document; the fields that change (state, progress,
spend) are top-level attributes so conditions and atomic counters can work on them.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from subconscious import aws
from subconscious.dal._dynamo import is_condition_failure, now, scan_where_in
from subconscious.errors import BadRequest, QuoteAlreadyAccepted
from subconscious.models import (
    OPEN_STATES,
    TERMINAL_STATES,
    USUAL_REASON,
    EndReason,
    Order,
    OrderState,
    RunShare,
    sources_of,
)

# The index that lists a tenant's orders by creation time (infra/definitions.py declares it).
BY_CREATED = "by_created"
# A listing reads at most this many pages of the index per request (a state filter may skip
# many orders); past it the page is short and its token goes on from where the reads stopped.
MAX_READS_PER_PAGE = 10
_ORDER_ID = re.compile(r"^o-[0-9a-f]{32}$")
_SORT_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$")


def _order(item: dict[str, Any]) -> Order:
    order = Order.model_validate_json(item["doc"])
    ended_at = item.get("ended_at")
    held_until = item.get("held_until")
    return order.model_copy(
        update={
            "state": OrderState(item["state"]),
            "images_done": int(item.get("images_done", 0)),
            "images_failed": int(item.get("images_failed", 0)),
            "spend_micros": int(item.get("spend_micros", 0)),
            "aws_micros": int(item.get("aws_micros", 0)),
            "run_costs": {
                str(run): RunShare(gpu_micros=int(share["gpu"]), aws_micros=int(share["aws"]))
                for run, share in (item.get("run_costs") or {}).items()
            },
            "end_reason": EndReason(item["end_reason"]) if item.get("end_reason") else None,
            "ended_at": datetime.fromisoformat(ended_at) if ended_at else None,
            "updated_at": datetime.fromisoformat(item["updated_at"]),
            "held_until": datetime.fromisoformat(held_until) if held_until else None,
            "held_reason": str(item["held_reason"]) if item.get("held_reason") else None,
        }
    )


# Shared with the in-memory twin (dal/memory.py), so both sort and page alike.
def sort_time(at: datetime) -> str:
    """``created_at`` as the index sorts it: fixed width, so text order is time order."""
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def encode_token(created: str, order_id: str) -> str:
    return base64.urlsafe_b64encode(f"{created}|{order_id}".encode()).decode()


def decode_token(token: str) -> tuple[str, str]:
    """(sort time, order id) a page token stands for; BadRequest for one we did not give."""
    try:
        created, _, order_id = base64.urlsafe_b64decode(token.encode()).decode().partition("|")
    except (ValueError, UnicodeDecodeError) as error:
        raise BadRequest("next_token is not a token this API gave out") from error
    if not _SORT_TIME.match(created) or not _ORDER_ID.match(order_id):
        raise BadRequest("next_token is not a token this API gave out")
    return created, order_id


class OrderStore:
    def __init__(self, table_name: str, table: Any = None) -> None:
        self._table = table or aws.table(table_name)

    def create_or_resume(self, tenant_id: str, order: Order, accept_key: str) -> None:
        """Write a new order in state ``quoted``: the one conditional write that decides which
        acceptance of a quote wins (invariant 10). An order left in ``quoted`` by a crash
        between writing and queueing is resumed, untouched, by a retry of the same acceptance
        (same Idempotency-Key and option); any other acceptance of the quote is a conflict
        naming the order."""
        try:
            self._table.put_item(
                Item={
                    "tenant_id": tenant_id,
                    "order_id": order.order_id,
                    "state": OrderState.QUOTED.value,
                    "option_id": order.option_id,
                    "images_total": order.images_total,
                    "images_done": 0,
                    "spend_micros": 0,
                    "updated_at": order.updated_at.isoformat(),
                    "created_at": sort_time(order.created_at),
                    "accept_key": accept_key,
                    "doc": order.model_dump_json(),
                },
                ConditionExpression="attribute_not_exists(order_id)",
            )
            return
        except Exception as error:
            if not is_condition_failure(error):
                raise
        # It exists: resume it as it is (its counters may already have moved), or refuse.
        stored = self._acceptance(tenant_id, order.order_id)
        if stored == {"accept_key": accept_key, "option_id": order.option_id, "state": "quoted"}:
            return
        raise QuoteAlreadyAccepted(
            f"quote {order.quote_id} was already accepted as order {order.order_id}",
            order_id=order.order_id,
        )

    def accepted_with(self, tenant_id: str, order_id: str) -> tuple[str, str] | None:
        """(Idempotency-Key, option) of the acceptance that made the order, if it exists."""
        item = self._acceptance(tenant_id, order_id)
        return None if item is None else (item["accept_key"], item["option_id"])

    def _acceptance(self, tenant_id: str, order_id: str) -> dict[str, str] | None:
        item = self._table.get_item(
            Key={"tenant_id": tenant_id, "order_id": order_id},
            ProjectionExpression="accept_key, option_id, #s",
            ExpressionAttributeNames={"#s": "state"},
            ConsistentRead=True,
        ).get("Item")
        if item is None:
            return None
        return {k: str(item.get(k, "")) for k in ("accept_key", "option_id", "state")}

    def get(self, tenant_id: str, order_id: str) -> Order | None:
        item = self._table.get_item(Key={"tenant_id": tenant_id, "order_id": order_id}).get("Item")
        return _order(item) if item else None

    def transition(
        self, tenant_id: str, order_id: str, target: OrderState, reason: EndReason | None = None
    ) -> bool:
        """Move to ``target`` if the current state allows it; False if it did not. A terminal
        state records why and when the order ended."""
        sources = sorted(s.value for s in sources_of(target))
        names = {f":s{i}": s for i, s in enumerate(sources)}
        at = now().isoformat()
        update = "SET #s = :t, updated_at = :now"
        values: dict[str, Any] = {":t": target.value, ":now": at, **names}
        if target in TERMINAL_STATES:
            update += ", end_reason = :why, ended_at = :now"
            values[":why"] = (reason or USUAL_REASON[target]).value
        # no longer waiting for a start-up: rendering, or ended
        update += " REMOVE held_until, held_reason"
        condition = f"attribute_exists(order_id) AND #s IN ({', '.join(names)})"
        return self._update_if(tenant_id, order_id, update, condition, values)

    def set_hold(
        self, tenant_id: str, order_id: str, until: datetime | None, reason: str | None
    ) -> bool:
        """Record (or, with ``until`` None, clear) why an accepted order waits and when it
        starts at the latest; False if the order is no longer accepted (it moved on)."""
        if until is None:
            update = "REMOVE held_until, held_reason"
            values: dict[str, Any] = {":a": OrderState.ACCEPTED.value}
        else:
            update = "SET held_until = :u, held_reason = :r"
            values = {":a": OrderState.ACCEPTED.value, ":u": until.isoformat(), ":r": reason}
        condition = "attribute_exists(order_id) AND #s = :a"
        return self._update_if(tenant_id, order_id, update, condition, values)

    def _update_if(
        self, tenant_id: str, order_id: str, update: str, condition: str, values: dict[str, Any]
    ) -> bool:
        """One conditional update of an order (``#s`` names its state); False where the
        condition failed (the order moved on), any other error raised."""
        try:
            self._table.update_item(
                Key={"tenant_id": tenant_id, "order_id": order_id},
                UpdateExpression=update,
                ConditionExpression=condition,
                ExpressionAttributeNames={"#s": "state"},
                ExpressionAttributeValues=values,
            )
        except Exception as error:
            if is_condition_failure(error):
                return False
            raise
        return True

    def page(
        self, tenant_id: str, limit: int, token: str | None, state: OrderState | None = None
    ) -> tuple[list[Order], str | None]:
        """A page of the tenant's orders, newest first (``state``: only those in it), and the
        token of the next page (None on the last)."""
        kwargs: dict[str, Any] = {
            "IndexName": BY_CREATED,
            "KeyConditionExpression": "tenant_id = :t",
            "ExpressionAttributeValues": {":t": tenant_id},
            "ScanIndexForward": False,
            # one more than asked: a read that finds it knows another page exists
            "Limit": limit + 1,
        }
        if state is not None:
            kwargs["FilterExpression"] = "#s = :s"
            kwargs["ExpressionAttributeNames"] = {"#s": "state"}
            kwargs["ExpressionAttributeValues"][":s"] = state.value
        if token:
            created, order_id = decode_token(token)
            kwargs["ExclusiveStartKey"] = {
                "tenant_id": tenant_id,
                "order_id": order_id,
                "created_at": created,
            }
        items: list[dict[str, Any]] = []
        for _ in range(MAX_READS_PER_PAGE):
            read = self._table.query(**kwargs)
            items.extend(read.get("Items", []))
            last = read.get("LastEvaluatedKey")
            if len(items) > limit:
                kept = items[:limit]
                return [_order(i) for i in kept], _token_of(kept[-1])
            if last is None:
                return [_order(i) for i in items], None
            kwargs["ExclusiveStartKey"] = last
        return [_order(i) for i in items], _token_of(last)

    def add_spend(
        self, tenant_id: str, order_id: str, spend_micros: int, aws_micros: int = 0
    ) -> Order:
        """Charge GPU time (and AWS's charges, an estimate) to the order; returns it as it now
        stands. (Images are counted by ImageStore.record, in the same transaction that records
        them.)"""
        item = self._table.update_item(
            Key={"tenant_id": tenant_id, "order_id": order_id},
            UpdateExpression="ADD spend_micros :c, aws_micros :a SET updated_at = :now",
            ConditionExpression="attribute_exists(order_id)",
            ExpressionAttributeValues={
                ":c": spend_micros,
                ":a": aws_micros,
                ":now": now().isoformat(),
            },
            ReturnValues="ALL_NEW",
        )["Attributes"]
        return _order(item)

    def set_run_cost(
        self, tenant_id: str, order_id: str, run_id: str, gpu_micros: int, aws_micros: int
    ) -> None:
        """Set one finished run's overhead share on the order (SET, not ADD: a retried record
        writes the same figures again). Two updates: DynamoDB sets a map's key only once the
        map exists, and one expression may not touch both."""
        key = {"tenant_id": tenant_id, "order_id": order_id}
        try:
            self._table.update_item(
                Key=key,
                UpdateExpression="SET run_costs = :empty",
                ConditionExpression=(
                    "attribute_exists(order_id) AND attribute_not_exists(run_costs)"
                ),
                ExpressionAttributeValues={":empty": {}},
            )
        except Exception as error:
            if not is_condition_failure(error):
                raise
        self._table.update_item(
            Key=key,
            UpdateExpression="SET run_costs.#r = :share",
            ConditionExpression="attribute_exists(order_id)",
            ExpressionAttributeNames={"#r": run_id},
            ExpressionAttributeValues={":share": {"gpu": gpu_micros, "aws": aws_micros}},
        )

    def open_orders(self) -> Iterator[tuple[str, Order]]:
        """Every (tenant, order) not yet finished. A scan: the open set is small, and this runs
        once a minute from dispatch."""
        for item in scan_where_in(self._table, "state", (s.value for s in OPEN_STATES)):
            yield str(item["tenant_id"]), _order(item)


def _token_of(item: dict[str, Any]) -> str:
    return encode_token(str(item["created_at"]), str(item["order_id"]))
