"""Create the system's AWS resources from ``infra/definitions.py`` in moto (server or in-process).

Used by the local stack and by the integration tests, so both run on the same definitions.
"""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from infra import definitions as d


@dataclass(frozen=True)
class Created:
    queue_url: str
    dlq_url: str
    state_machine_arn: str
    settings: dict[str, str]  # SUBC_* variables naming what was created
    webhook_queue_url: str = ""


def create_resources(client: Callable[[str], Any]) -> Created:
    dynamodb = client("dynamodb")
    for table in d.TABLES:
        keys = [(table.partition_key, "HASH")]
        if table.sort_key:
            keys.append((table.sort_key, "RANGE"))
        attributes = {k for k, _ in keys}
        indexes = []
        for index in table.indexes:
            attributes |= {index.partition_key, index.sort_key}
            indexes.append(
                {
                    "IndexName": index.name,
                    "KeySchema": [
                        {"AttributeName": index.partition_key, "KeyType": "HASH"},
                        {"AttributeName": index.sort_key, "KeyType": "RANGE"},
                    ],
                    "Projection": {"ProjectionType": "ALL"},
                }
            )
        dynamodb.create_table(
            TableName=table.name,
            BillingMode="PAY_PER_REQUEST",
            KeySchema=[{"AttributeName": k, "KeyType": t} for k, t in keys],
            AttributeDefinitions=[
                {"AttributeName": k, "AttributeType": "S"} for k in sorted(attributes)
            ],
            **({"GlobalSecondaryIndexes": indexes} if indexes else {}),
        )
        if table.ttl_attribute:
            dynamodb.update_time_to_live(
                TableName=table.name,
                TimeToLiveSpecification={"Enabled": True, "AttributeName": table.ttl_attribute},
            )
    for bucket in (d.IMAGES_BUCKET, d.HISTORY_BUCKET):
        client("s3").create_bucket(Bucket=bucket)
    sqs = client("sqs")
    retention = {"MessageRetentionPeriod": str(d.WORK_QUEUE_RETENTION_S)}
    dlq_url = sqs.create_queue(QueueName=d.WORK_DLQ, Attributes=retention)["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    queue_url = sqs.create_queue(
        QueueName=d.WORK_QUEUE,
        Attributes={
            **retention,
            "VisibilityTimeout": str(d.WORK_QUEUE_VISIBILITY_S),
            "RedrivePolicy": json.dumps(
                {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": d.MAX_RECEIVE_COUNT}
            ),
        },
    )["QueueUrl"]
    webhook_queue_url = _create_webhook_queues(sqs, retention)
    role = client("iam").create_role(
        RoleName=f"{d.PREFIX}-local-lambda",
        AssumeRolePolicyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Principal": {"Service": "lambda.amazonaws.com"},
                        "Action": "sts:AssumeRole",
                    }
                ],
            }
        ),
    )["Role"]["Arn"]
    lambda_client = client("lambda")
    arns = {}
    for function in d.FUNCTIONS:
        arns[function.name] = lambda_client.create_function(
            FunctionName=function.name,
            Runtime=d.LAMBDA_RUNTIME,
            Role=role,
            Handler=function.handler,
            Code={"ZipFile": _placeholder_zip()},
            Timeout=function.timeout_s,
            MemorySize=function.memory_mb,
            Architectures=[d.LAMBDA_ARCHITECTURE],
        )["FunctionArn"]
    state_machine_arn = client("stepfunctions").create_state_machine(
        name=d.STATE_MACHINE, definition=render_run_definition(arns), roleArn=role
    )["stateMachineArn"]
    settings = {
        "SUBC_WORK_QUEUE_URL": queue_url,
        "SUBC_DEAD_LETTER_QUEUE_URL": dlq_url,
        "SUBC_RENDER_RUN_STATE_MACHINE_ARN": state_machine_arn,
        "SUBC_WEBHOOK_QUEUE_URL": webhook_queue_url,
        "SUBC_IMAGES_BUCKET": d.IMAGES_BUCKET,
        "SUBC_HISTORY_BUCKET": d.HISTORY_BUCKET,
    }
    for table in d.TABLES:
        settings[f"SUBC_{table.settings_field.upper()}"] = table.name
    return Created(queue_url, dlq_url, state_machine_arn, settings, webhook_queue_url)


def _create_webhook_queues(sqs: Any, retention: dict[str, str]) -> str:
    dlq_url = sqs.create_queue(QueueName=d.WEBHOOK_DLQ, Attributes=retention)["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    url: str = sqs.create_queue(
        QueueName=d.WEBHOOK_QUEUE,
        Attributes={
            **retention,
            "VisibilityTimeout": str(d.WEBHOOK_QUEUE_VISIBILITY_S),
            "RedrivePolicy": json.dumps(
                {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": d.WEBHOOK_MAX_RECEIVE_COUNT}
            ),
        },
    )["QueueUrl"]
    return url


def render_run_definition(function_arns: dict[str, str]) -> str:
    """The ASL file with its ``${...}`` placeholders filled, as CDK's definitionSubstitutions do."""
    definition = d.STATE_MACHINE_FILE.read_text()
    for placeholder, function_name in d.STATE_MACHINE_SUBSTITUTIONS.items():
        definition = definition.replace("${" + placeholder + "}", function_arns[function_name])
    return definition


def _placeholder_zip() -> bytes:
    """moto wants a code zip; the handlers run from this checkout (see stack._patch_moto)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("README.txt", "code runs in-process from the checkout")
    return buffer.getvalue()
