"""Work queue: render tasks in SQS, failed ones kept in a dead-letter queue."""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_event_sources as sources
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from infra import definitions as d


def queue_with_dead_letters(
    scope: Construct,
    queue_id: str,
    *,
    name: str,
    dlq_name: str,
    visibility_s: int,
    max_receive_count: int,
) -> tuple[sqs.Queue, sqs.Queue]:
    """A queue (SQS-managed encryption, TLS only) and the dead-letter queue it hands a message
    to after ``max_receive_count`` receives, both kept as long as the work queue keeps work:
    (queue, dead letters). Construct ids: ``queue_id`` and ``DeadLetters``."""
    retention = Duration.seconds(d.WORK_QUEUE_RETENTION_S)
    dlq = sqs.Queue(
        scope,
        "DeadLetters",
        queue_name=dlq_name,
        retention_period=retention,
        encryption=sqs.QueueEncryption.SQS_MANAGED,
        enforce_ssl=True,
    )
    queue = sqs.Queue(
        scope,
        queue_id,
        queue_name=name,
        visibility_timeout=Duration.seconds(visibility_s),
        retention_period=retention,
        dead_letter_queue=sqs.DeadLetterQueue(queue=dlq, max_receive_count=max_receive_count),
        encryption=sqs.QueueEncryption.SQS_MANAGED,
        enforce_ssl=True,
    )
    return queue, dlq


class WorkQueue(Construct):
    def __init__(self, scope: Construct, construct_id: str) -> None:
        super().__init__(scope, construct_id)
        self.queue, self.dlq = queue_with_dead_letters(
            self,
            "Tasks",
            name=d.WORK_QUEUE,
            dlq_name=d.WORK_DLQ,
            visibility_s=d.WORK_QUEUE_VISIBILITY_S,
            max_receive_count=d.MAX_RECEIVE_COUNT,
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
