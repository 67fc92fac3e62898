"""Webhook delivery (SQS → this Lambda): one signed POST per queued event, retried with backoff.

Each record is one event (``logic/webhooks.py``). A failed attempt leaves its message invisible
for the backoff and is reported as a batch item failure, so SQS hands it back then; the rest of
the batch is deleted (``ReportBatchItemFailures`` on the event source).
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.batch import (
    BatchProcessor,
    EventType,
    process_partial_response,
)
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import ValidationError

from subconscious.logic.webhooks import deliver
from subconscious.models.webhooks import WebhookMessage
from subconscious.observability import logger
from subconscious.services import services

# A batch whose every event failed is still a partial answer (each back after its own
# backoff), not an invocation error that would make SQS retry them all at once.
processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)


def record_handler(record: SQSRecord) -> None:
    try:
        message = WebhookMessage.model_validate_json(record.body)
    except ValidationError:
        # never deliverable: dropped (and logged) rather than retried into the dead letters
        logger.error("malformed webhook message dropped", message_id=record.message_id)
        return
    deliver(services(), message, record.receipt_handle)


@logger.inject_lambda_context
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    response = process_partial_response(
        event=event, record_handler=record_handler, processor=processor, context=context
    )
    return dict(response)
