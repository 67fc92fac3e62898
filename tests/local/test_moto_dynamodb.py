"""moto's DynamoDB served to racing threads one request at a time (``infra/local/moto_dynamodb``).

Behind CI's one failure of ``test_two_ticks_at_once_rent_once``: a tick whose conditional
transaction failed (it had lost the lease) rolled moto's table back to its copy from before the
winning tick's run was written, so the run that was rented vanished from the table.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws
from moto.dynamodb.exceptions import ConditionalCheckFailed

from infra.local import moto_dynamodb

TABLE = "race"


@pytest.fixture
def table() -> Iterator[Any]:
    with mock_aws():
        dynamodb = boto3.resource("dynamodb", region_name="us-east-1")
        created = dynamodb.create_table(
            TableName=TABLE,
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        created.put_item(Item={"pk": "lease", "holder": "winner"})
        yield created


def _race(table: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """A transaction bound to fail (the loser's run, conditional on holding the lease) while
    another thread puts the winner's run: the put is let go the moment the transaction's
    condition has failed (moto's copy of the table taken, its rollback to come), and the
    transaction waits for it (briefly: where requests are serialised the put cannot run until
    the transaction is over)."""
    failed = threading.Event()
    written = threading.Event()
    refused = threading.Event()
    loser: threading.Thread | None = None
    init = ConditionalCheckFailed.__init__

    def watched(self: Any, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        if threading.current_thread() is loser and not failed.is_set():
            failed.set()
            written.wait(timeout=0.5)

    monkeypatch.setattr(ConditionalCheckFailed, "__init__", watched)
    client = table.meta.client

    def lose() -> None:
        try:
            client.transact_write_items(
                TransactItems=[
                    {
                        "ConditionCheck": {
                            "TableName": TABLE,
                            "Key": {"pk": "lease"},
                            "ConditionExpression": "holder = :h",
                            "ExpressionAttributeValues": {":h": "loser"},
                        }
                    },
                    {"Put": {"TableName": TABLE, "Item": {"pk": "run-of-loser"}}},
                ]
            )
        except client.exceptions.TransactionCanceledException:
            refused.set()

    def win() -> None:
        failed.wait(timeout=5)
        table.put_item(Item={"pk": "run-of-winner"})
        written.set()

    loser = threading.Thread(target=lose)
    winner = threading.Thread(target=win)
    loser.start()
    winner.start()
    loser.join(timeout=10)
    winner.join(timeout=10)
    assert failed.is_set() and refused.is_set()


def test_a_failed_transaction_never_undoes_another_threads_write(
    table: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    with moto_dynamodb.serialised():
        _race(table, monkeypatch)

    assert "Item" in table.get_item(Key={"pk": "run-of-winner"})
    assert "Item" not in table.get_item(Key={"pk": "run-of-loser"})


def test_serialised_restores_moto_on_exit_and_nests() -> None:
    from moto.dynamodb.responses import DynamoHandler

    original = DynamoHandler.call_action
    with moto_dynamodb.serialised():
        patched = DynamoHandler.call_action
        assert patched is not original
        moto_dynamodb.serialise()  # a local stack started inside the test's moto ...
        with moto_dynamodb.serialised():
            assert DynamoHandler.call_action is patched
        moto_dynamodb.unserialise()  # ... and stopped: the test's patch stays
        assert DynamoHandler.call_action is patched
    assert DynamoHandler.call_action is original
    moto_dynamodb.unserialise()  # one too many changes nothing
    assert DynamoHandler.call_action is original
