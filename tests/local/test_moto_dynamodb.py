"""moto's DynamoDB served to racing threads one request at a time (``infra/local/moto_dynamodb``).

Behind CI's one failure of ``test_two_ticks_at_once_rent_once``: a tick whose conditional
transaction failed (it had lost the lease) rolled moto's table back to its copy from before the
winning tick's run was written, so the run that was rented vanished from the table.
"""

from __future__ import annotations

import contextlib
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
    import copy

    import moto.dynamodb.models as models
    from moto.dynamodb.responses import DynamoHandler

    transact = models.DynamoDBBackend.transact_write_items
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
    assert models.DynamoDBBackend.transact_write_items is transact
    assert models.copy is copy  # type: ignore[attr-defined]
    moto_dynamodb.unserialise()  # one too many changes nothing
    assert DynamoHandler.call_action is original


RANGED = "ranged"


def _backend_table(name: str) -> Any:
    from moto.core.models import DEFAULT_ACCOUNT_ID
    from moto.dynamodb.models import dynamodb_backends

    return dynamodb_backends[DEFAULT_ACCOUNT_ID]["us-east-1"].tables[name]


@pytest.mark.parametrize("serialised", [True, False])
def test_a_failed_transaction_puts_back_exactly_the_items_it_named(
    table: Any, serialised: bool
) -> None:
    """The outcome of moto's whole-table copy for a transaction that fails on a condition (the
    case our code meets), in time that does not grow with the table:
    a put of a new item, an update of an existing one and a delete all undone, other items
    untouched; a table with a range key alike; moto's table object is no longer replaced by a
    copy."""
    client = table.meta.client
    dynamodb = boto3.resource("dynamodb", region_name="us-east-1")
    ranged = dynamodb.create_table(
        TableName=RANGED,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"},
                   {"AttributeName": "sk", "KeyType": "RANGE"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"},
                              {"AttributeName": "sk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )  # fmt: skip
    table.put_item(Item={"pk": "kept", "n": 1})
    table.put_item(Item={"pk": "doomed", "n": 2})
    ranged.put_item(Item={"pk": "o", "sk": "1", "n": 1})
    before = {t: sorted(map(str, _scan(t))) for t in (table, ranged)}
    objects = (_backend_table(TABLE), _backend_table(RANGED))
    doomed = [
        {"Put": {"TableName": TABLE, "Item": {"pk": "new"}}},
        {"Update": {"TableName": TABLE, "Key": {"pk": "kept"}, "UpdateExpression": "SET n = :n",
                    "ExpressionAttributeValues": {":n": 9}}},
        {"Delete": {"TableName": TABLE, "Key": {"pk": "doomed"}}},
        {"Put": {"TableName": RANGED, "Item": {"pk": "o", "sk": "2"}}},
        {"Put": {"TableName": RANGED, "Item": {"pk": "p", "sk": "1"}}},
        {"Update": {"TableName": RANGED, "Key": {"pk": "o", "sk": "1"},
                    "UpdateExpression": "SET n = :n", "ExpressionAttributeValues": {":n": 9}}},
        {"ConditionCheck": {"TableName": TABLE, "Key": {"pk": "lease"},
                            "ConditionExpression": "holder = :h",
                            "ExpressionAttributeValues": {":h": "nobody"}}},
    ]  # fmt: skip
    with moto_dynamodb.serialised() if serialised else contextlib.nullcontext():
        with pytest.raises(client.exceptions.TransactionCanceledException):
            client.transact_write_items(TransactItems=doomed)
        assert {t: sorted(map(str, _scan(t))) for t in (table, ranged)} == before
        now = (_backend_table(TABLE), _backend_table(RANGED))
        same = tuple(a is b for a, b in zip(objects, now, strict=True))
        assert same == ((True, True) if serialised else (False, False))
        # and one that succeeds still writes
        client.transact_write_items(TransactItems=doomed[:-1])
    assert table.get_item(Key={"pk": "kept"})["Item"]["n"] == 9
    assert "Item" not in table.get_item(Key={"pk": "doomed"})
    assert len(_scan(ranged)) == 3


def _scan(table: Any) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = table.scan()["Items"]
    return items
