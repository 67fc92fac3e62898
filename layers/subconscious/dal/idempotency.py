"""The idempotency store of order acceptance (powertools' DynamoDB persistence layer)."""

from __future__ import annotations

from typing import Any

from subconscious import aws


def persistence_layer(table_name: str, client: Any = None) -> Any:
    from aws_lambda_powertools.utilities.idempotency import DynamoDBPersistenceLayer

    return DynamoDBPersistenceLayer(
        table_name=table_name, boto3_client=client or aws.client("dynamodb")
    )


def idempotency_config() -> Any:
    """What an acceptance's idempotency covers and for how long (the store and its twin)."""
    # powertools' idempotency is imported by the API only
    from aws_lambda_powertools.utilities.idempotency import IdempotencyConfig

    return IdempotencyConfig(
        event_key_jmespath="[tenant_id, idempotency_key]",
        payload_validation_jmespath="request",
        expires_after_seconds=24 * 3600,
        use_local_cache=False,
    )
