"""The webhook store's answers to DynamoDB's errors: a lost race for a tenant's first secret
reads the winner's; any other error is raised, never taken for "already there"."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from botocore.exceptions import ClientError

from subconscious.dal.webhooks import WebhookStore
from subconscious.models.webhooks import WebhookEvent, WebhookRecord


def _error(code: str) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": code}}, "PutItem")


class RacingTable:
    """A table where another caller writes the secret between our read and our put."""

    def __init__(self, put_error: str) -> None:
        self.put_error = put_error
        self.reads = 0

    def get_item(self, **kwargs: Any) -> dict[str, Any]:
        self.reads += 1
        return {} if self.reads == 1 else {"Item": {"secret": "whsec_winner"}}

    def put_item(self, **kwargs: Any) -> None:
        raise _error(self.put_error)


def test_a_lost_race_for_the_first_secret_reads_the_winners() -> None:
    store = WebhookStore("t", table=RacingTable("ConditionalCheckFailedException"))
    assert store.secret("tenant-a", lambda: "whsec_loser") == "whsec_winner"


@pytest.mark.parametrize("operation", ["secret", "add"])
def test_other_errors_are_raised(operation: str) -> None:
    store = WebhookStore("t", table=RacingTable("ProvisionedThroughputExceededException"))
    record = WebhookRecord(
        event_id="msg_1",
        tenant_id="tenant-a",
        order_id="o-1",
        event=WebhookEvent.COMPLETED,
        url="https://hooks.example.com/x",
        body="{}",
        created_at=datetime(2030, 1, 1, tzinfo=UTC),
    )
    calls: dict[str, Callable[[], object]] = {
        "secret": lambda: store.secret("tenant-a", lambda: "whsec_x"),
        "add": lambda: store.add(record),
    }
    with pytest.raises(ClientError, match="ProvisionedThroughput"):
        calls[operation]()
