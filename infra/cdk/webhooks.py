"""Webhooks: the queue of order events to deliver (and its dead letters), consumed by the
webhooks function with batch item failures reported one by one."""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_event_sources as sources
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from infra import definitions as d


class Webhooks(Construct):
    def __init__(self, scope: Construct, construct_id: str) -> None:
        super().__init__(scope, construct_id)
        retention = Duration.seconds(d.WORK_QUEUE_RETENTION_S)
        self.dlq = sqs.Queue(
            self,
            "DeadLetters",
            queue_name=d.WEBHOOK_DLQ,
            retention_period=retention,
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
        )
        self.queue = sqs.Queue(
            self,
            "Events",
            queue_name=d.WEBHOOK_QUEUE,
            visibility_timeout=Duration.seconds(d.WEBHOOK_QUEUE_VISIBILITY_S),
            retention_period=retention,
            dead_letter_queue=sqs.DeadLetterQueue(
                queue=self.dlq, max_receive_count=d.WEBHOOK_MAX_RECEIVE_COUNT
            ),
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
        )

    def deliver_with(self, function: lambda_.IFunction) -> None:
        """``function`` consumes the queue; a failed event is reported alone
        (``ReportBatchItemFailures``) and comes back after the backoff it set."""
        function.add_event_source(
            sources.SqsEventSource(self.queue, batch_size=10, report_batch_item_failures=True)
        )
