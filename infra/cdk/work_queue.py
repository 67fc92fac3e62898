"""Work queue: render tasks in SQS, failed ones kept in a dead-letter queue."""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_event_sources as sources
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from infra import definitions as d


class WorkQueue(Construct):
    def __init__(self, scope: Construct, construct_id: str) -> None:
        super().__init__(scope, construct_id)
        retention = Duration.seconds(d.WORK_QUEUE_RETENTION_S)
        self.dlq = sqs.Queue(
            self,
            "DeadLetters",
            queue_name=d.WORK_DLQ,
            retention_period=retention,
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
        )
        self.queue = sqs.Queue(
            self,
            "Tasks",
            queue_name=d.WORK_QUEUE,
            visibility_timeout=Duration.seconds(d.WORK_QUEUE_VISIBILITY_S),
            retention_period=retention,
            dead_letter_queue=sqs.DeadLetterQueue(
                queue=self.dlq, max_receive_count=d.MAX_RECEIVE_COUNT
            ),
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
        )

    def add_consumer(self, function: lambda_.IFunction, batch_size: int = 10) -> None:
        """The only way this stack subscribes a function to the queue: failed records are
        reported one by one (``ReportBatchItemFailures``), never the whole batch deleted.
        (Today the render step polls the queue itself; nothing is subscribed.)"""
        function.add_event_source(
            sources.SqsEventSource(
                self.queue, batch_size=batch_size, report_batch_item_failures=True
            )
        )
