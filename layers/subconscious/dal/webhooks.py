"""Webhooks' state: each tenant's signing secret, each order's events with every delivery
attempt (one table, keyed ``pk``), and the SQS queue of events to deliver.

Rows: ``secret#<tenant>`` holds the tenant's ``whsec_`` secret (created once, conditionally,
so two first calls agree); ``event#<tenant>#<order>#<event>`` holds one event: its record as
JSON (written once: a second emit of the same event finds it and adds nothing), its delivery
state, and its attempts appended one by one; it expires 30 days after the event.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

from subconscious import aws
from subconscious.dal._dynamo import epoch, is_condition_failure
from subconscious.models.webhooks import (
    DeliveryAttempt,
    DeliveryState,
    WebhookEvent,
    WebhookMessage,
    WebhookRecord,
)

# An event and its attempts are kept this long (DynamoDB's TTL deletes them, late), for support.
EVENT_KEPT = timedelta(days=30)


def secret_key(tenant_id: str) -> str:
    return f"secret#{tenant_id}"


def event_key(tenant_id: str, order_id: str, event: WebhookEvent) -> str:
    return f"event#{tenant_id}#{order_id}#{event.value}"


def record_row(record: WebhookRecord) -> dict[str, Any]:
    """The row first written for an event (no attempt yet)."""
    fixed = record.model_dump_json(exclude={"state", "attempts"})
    return {
        "pk": event_key(record.tenant_id, record.order_id, record.event),
        "doc": fixed,
        "state": record.state.value,
        "attempts": [a.model_dump_json() for a in record.attempts],
        "expires": epoch(record.created_at + EVENT_KEPT),
    }


def record_of(item: dict[str, Any]) -> WebhookRecord:
    record = WebhookRecord.model_validate_json(item["doc"])
    return record.model_copy(
        update={
            "state": DeliveryState(item["state"]),
            "attempts": [DeliveryAttempt.model_validate_json(a) for a in item.get("attempts", [])],
        }
    )


class WebhookStore:
    def __init__(self, table_name: str, table: Any = None) -> None:
        self._table = table or aws.table(table_name)

    def secret(self, tenant_id: str, create: Callable[[], str]) -> str:
        """The tenant's signing secret, made with ``create`` on first use."""
        key = {"pk": secret_key(tenant_id)}
        item = self._table.get_item(Key=key, ConsistentRead=True).get("Item")
        if item is not None:
            return str(item["secret"])
        try:
            self._table.put_item(
                Item={**key, "secret": create()}, ConditionExpression="attribute_not_exists(pk)"
            )
        except Exception as error:
            if not is_condition_failure(error):
                raise
        return str(self._table.get_item(Key=key, ConsistentRead=True)["Item"]["secret"])

    def add(self, record: WebhookRecord) -> bool:
        """Store a new event; False (and nothing written) if it was stored already."""
        try:
            self._table.put_item(
                Item=record_row(record), ConditionExpression="attribute_not_exists(pk)"
            )
        except Exception as error:
            if is_condition_failure(error):
                return False
            raise
        return True

    def get(self, tenant_id: str, order_id: str, event: WebhookEvent) -> WebhookRecord | None:
        item = self._table.get_item(
            Key={"pk": event_key(tenant_id, order_id, event)}, ConsistentRead=True
        ).get("Item")
        return record_of(item) if item else None

    def record_attempt(
        self, record: WebhookRecord, attempt: DeliveryAttempt, state: DeliveryState
    ) -> None:
        """Append ``attempt`` to the event's attempts and set its delivery state."""
        self._table.update_item(
            Key={"pk": event_key(record.tenant_id, record.order_id, record.event)},
            UpdateExpression="SET attempts = list_append(if_not_exists(attempts, :none), :a), "
            "#s = :s",
            ConditionExpression="attribute_exists(pk)",
            ExpressionAttributeNames={"#s": "state"},
            ExpressionAttributeValues={
                ":a": [attempt.model_dump_json()],
                ":none": [],
                ":s": state.value,
            },
        )


class WebhookQueue:
    """Events to deliver. A delivery that fails is made invisible for its backoff (SQS's
    ChangeMessageVisibility) and reported failed, so SQS hands it back then."""

    def __init__(self, queue_url: str, client: Any = None) -> None:
        self.url = queue_url
        self._sqs = client or aws.client("sqs")

    def send(self, message: WebhookMessage) -> None:
        self._sqs.send_message(QueueUrl=self.url, MessageBody=message.model_dump_json())

    def retry_later(self, receipt: str, seconds: int) -> None:
        self._sqs.change_message_visibility(
            QueueUrl=self.url, ReceiptHandle=receipt, VisibilityTimeout=seconds
        )
