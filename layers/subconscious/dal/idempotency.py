"""The idempotency store of order acceptance (powertools' DynamoDB persistence layer)."""

from __future__ import annotations

import threading
from collections.abc import Callable
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


class Idempotency:
    """Where order acceptances remember their answer, and the config whose Lambda context
    sizes an in-progress lock; both built on first use (powertools is imported by the API
    only). ``make_persistence`` builds the layer: DynamoDB's (:func:`persistence_layer`) or
    the twin's (``dal/memory.py``)."""

    def __init__(self, make_persistence: Callable[[], Any]) -> None:
        self._make_persistence = make_persistence
        self._config: Any = None
        self._persistence: Any = None
        self._lock = threading.Lock()

    @property
    def config(self) -> Any:
        with self._lock:
            if self._config is None:
                self._config = idempotency_config()
            return self._config

    @property
    def persistence(self) -> Any:
        with self._lock:
            if self._persistence is None:
                self._persistence = self._make_persistence()
            return self._persistence
