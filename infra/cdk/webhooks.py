"""Webhooks: the queue of order events to deliver (and its dead letters), consumed by the
webhooks function with batch item failures reported one by one."""

from __future__ import annotations

from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_event_sources as sources
from constructs import Construct

from infra import definitions as d
from infra.cdk.work_queue import queue_with_dead_letters


class Webhooks(Construct):
    def __init__(self, scope: Construct, construct_id: str) -> None:
        super().__init__(scope, construct_id)
        self.queue, self.dlq = queue_with_dead_letters(
            self,
            "Events",
            name=d.WEBHOOK_QUEUE,
            dlq_name=d.WEBHOOK_DLQ,
            visibility_s=d.WEBHOOK_QUEUE_VISIBILITY_S,
            max_receive_count=d.WEBHOOK_MAX_RECEIVE_COUNT,
        )

    def deliver_with(self, function: lambda_.IFunction) -> None:
        """``function`` consumes the queue; a failed event is reported alone
        (``ReportBatchItemFailures``) and comes back after the backoff it set."""
        function.add_event_source(
            sources.SqsEventSource(self.queue, batch_size=10, report_batch_item_failures=True)
        )
