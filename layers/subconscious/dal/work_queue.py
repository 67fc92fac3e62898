"""The SQS work queue of render tasks (at-least-once: every consumer step is idempotent)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from subconscious import aws
from subconscious.models import RenderTask
from subconscious.observability import logger

_BATCH = 10  # SendMessageBatch/DeleteMessageBatch limit


@dataclass(frozen=True)
class Delivery:
    task: RenderTask
    receipt: str
    receive_count: int


class WorkQueue:
    def __init__(self, queue_url: str, client: Any = None) -> None:
        self.url = queue_url
        self._sqs = client or aws.client("sqs")

    def send(self, tasks: Sequence[RenderTask], delay_s: int = 0) -> None:
        """Enqueue every task or raise, each visible after ``delay_s`` (at most 900). Entries
        that fail inside a batch are sent again once."""
        for start in range(0, len(tasks), _BATCH):
            chunk = {str(i): t for i, t in enumerate(tasks[start : start + _BATCH])}
            for _attempt in range(3):
                response = self._sqs.send_message_batch(
                    QueueUrl=self.url,
                    Entries=[
                        {"Id": i, "MessageBody": t.model_dump_json(), "DelaySeconds": delay_s}
                        for i, t in chunk.items()
                    ],
                )
                failed = {f["Id"] for f in response.get("Failed", [])}
                chunk = {i: t for i, t in chunk.items() if i in failed}
                if not chunk:
                    break
            else:
                raise RuntimeError(f"SQS refused {len(chunk)} render tasks after 3 attempts")

    def receive(self, max_messages: int, wait_s: int, visibility_s: int) -> list[Delivery]:
        response = self._sqs.receive_message(
            QueueUrl=self.url,
            MaxNumberOfMessages=max(1, min(max_messages, _BATCH)),
            WaitTimeSeconds=wait_s,
            VisibilityTimeout=visibility_s,
            MessageSystemAttributeNames=["ApproximateReceiveCount"],
        )
        deliveries = []
        for m in response.get("Messages", []):
            try:
                task = RenderTask.model_validate_json(m["Body"])
            except ValidationError:
                # not a task of ours (or of an older version): it can never be rendered, and
                # left in place it would stop every consumer that reads it (invariant 9)
                logger.error("unreadable message removed", message_id=m.get("MessageId"))
                self._sqs.delete_message(QueueUrl=self.url, ReceiptHandle=m["ReceiptHandle"])
                continue
            deliveries.append(
                Delivery(
                    task=task,
                    receipt=m["ReceiptHandle"],
                    receive_count=int(m.get("Attributes", {}).get("ApproximateReceiveCount", 1)),
                )
            )
        return deliveries

    def delete(self, delivery: Delivery) -> None:
        self._sqs.delete_message(QueueUrl=self.url, ReceiptHandle=delivery.receipt)

    def set_visibility(self, delivery: Delivery, seconds: int) -> None:
        """Extend while a batch renders; 0 hands the task back at once (its machine failed)."""
        self._sqs.change_message_visibility(
            QueueUrl=self.url, ReceiptHandle=delivery.receipt, VisibilityTimeout=seconds
        )

    def depth(self) -> tuple[int, int]:
        """(waiting, in flight) — approximate, as SQS reports them. Waiting counts delayed
        messages too (a retried task kept off the machine it failed on): work that exists."""
        attributes = self._sqs.get_queue_attributes(
            QueueUrl=self.url,
            AttributeNames=[
                "ApproximateNumberOfMessages",
                "ApproximateNumberOfMessagesDelayed",
                "ApproximateNumberOfMessagesNotVisible",
            ],
        )["Attributes"]
        return (
            int(attributes["ApproximateNumberOfMessages"])
            + int(attributes.get("ApproximateNumberOfMessagesDelayed", 0)),
            int(attributes["ApproximateNumberOfMessagesNotVisible"]),
        )
