"""The idempotency store of order acceptance (powertools' DynamoDB persistence layer)."""

from __future__ import annotations

from typing import Any

from subconscious import aws


def persistence_layer(table_name: str, client: Any = None) -> Any:
    from aws_lambda_powertools.utilities.idempotency import DynamoDBPersistenceLayer

    return DynamoDBPersistenceLayer(
        table_name=table_name, boto3_client=client or aws.client("dynamodb")
    )
