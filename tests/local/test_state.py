"""infra/local/state.py: what a stopped local stack saves and the next start loads (in-process
moto here; tests/e2e/test_local_state.py restarts a whole stack)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from infra import definitions as d
from infra.local import state
from infra.local.resources import Created, create_resources
from infra.local.stack import ACCOUNT, REGION

ORDERS = next(t.name for t in d.TABLES if t.settings_field == "orders_table")
IDEMPOTENCY = next(t.name for t in d.TABLES if t.settings_field == "idempotency_table")


def _client(service: str) -> Any:
    return boto3.client(service, region_name=REGION)


@pytest.fixture
def fresh() -> Iterator[Created]:
    with mock_aws():
        yield create_resources(_client)


def _urls(created: Created) -> dict[str, str]:
    return {d.WORK_QUEUE: created.queue_url, d.WORK_DLQ: created.dlq_url}


def _fill(created: Created) -> None:
    dynamodb = _client("dynamodb")
    for n in range(30):  # more than one BatchWriteItem
        dynamodb.put_item(
            TableName=ORDERS,
            Item={
                "tenant_id": {"S": "t-1"},
                "order_id": {"S": f"o-{n:032x}"},
                "created_at": {"S": f"2030-01-01T12:00:{n:02d}.000000Z"},
                "images_done": {"N": str(n)},
                "tags": {"L": [{"S": "a"}, {"N": "1.5"}]},
            },
        )
    dynamodb.put_item(
        TableName=IDEMPOTENCY, Item={"id": {"S": "k"}, "blob": {"B": b"\x00\xffbytes"}}
    )
    s3 = _client("s3")
    s3.put_object(
        Bucket=d.IMAGES_BUCKET,
        Key="images/t-1/o-1/0-1.png",
        Body=b"\x89PNG...",
        ContentType="image/png",
        Metadata={"seed": "1"},
    )
    s3.put_object(Bucket=d.HISTORY_BUCKET, Key="market/2030/01/01.jsonl.gz", Body=b"gz")
    sqs = _client("sqs")
    for n in range(12):
        sqs.send_message(QueueUrl=created.queue_url, MessageBody=f'{{"task": {n}}}')
    # two in flight (a run had them when the stack stopped): work left to do all the same
    sqs.receive_message(QueueUrl=created.queue_url, MaxNumberOfMessages=2, VisibilityTimeout=900)
    sqs.send_message(QueueUrl=created.dlq_url, MessageBody="dead")


def test_what_is_saved_is_what_the_next_start_finds(tmp_path: Path) -> None:
    with mock_aws():
        created = create_resources(_client)
        _fill(created)
        state.save(tmp_path, _client, ACCOUNT, REGION)
    assert state.has_state(tmp_path)
    assert not (tmp_path / ".saving").exists()

    with mock_aws():  # a new moto: nothing in it but the resources
        created = create_resources(_client)
        loaded = state.load(tmp_path, _client, _urls(created))

        assert loaded == {"items": 31, "objects": 2, "messages": 13}
        dynamodb = _client("dynamodb")
        item = dynamodb.get_item(
            TableName=ORDERS, Key={"tenant_id": {"S": "t-1"}, "order_id": {"S": f"o-{7:032x}"}}
        )["Item"]
        assert item["images_done"] == {"N": "7"}
        assert item["tags"] == {"L": [{"S": "a"}, {"N": "1.5"}]}
        newest = dynamodb.query(  # the index is rebuilt from the items
            TableName=ORDERS,
            IndexName="by_created",
            KeyConditionExpression="tenant_id = :t",
            ExpressionAttributeValues={":t": {"S": "t-1"}},
            ScanIndexForward=False,
            Limit=1,
        )["Items"]
        assert newest[0]["order_id"] == {"S": f"o-{29:032x}"}
        blob = dynamodb.get_item(TableName=IDEMPOTENCY, Key={"id": {"S": "k"}})["Item"]["blob"]
        assert blob == {"B": b"\x00\xffbytes"}
        image = _client("s3").get_object(Bucket=d.IMAGES_BUCKET, Key="images/t-1/o-1/0-1.png")
        assert image["Body"].read() == b"\x89PNG..."
        assert (image["ContentType"], image["Metadata"]) == ("image/png", {"seed": "1"})
        sqs = _client("sqs")
        bodies = []
        while messages := sqs.receive_message(
            QueueUrl=created.queue_url, MaxNumberOfMessages=10
        ).get("Messages"):
            bodies += [m["Body"] for m in messages]
        assert sorted(bodies) == sorted(f'{{"task": {n}}}' for n in range(12))
        dead = sqs.receive_message(QueueUrl=created.dlq_url)["Messages"]
        assert [m["Body"] for m in dead] == ["dead"]


def test_a_save_that_fails_half_way_keeps_the_previous_state(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with mock_aws():
        created = create_resources(_client)
        _fill(created)
        state.save(tmp_path, _client, ACCOUNT, REGION)
        before = (tmp_path / "dynamodb" / f"{ORDERS}.jsonl").read_text()
        _client("dynamodb").delete_item(
            TableName=ORDERS, Key={"tenant_id": {"S": "t-1"}, "order_id": {"S": f"o-{0:032x}"}}
        )

        def broken(*args: object) -> None:
            raise OSError("disk full")

        monkeypatch.setattr(state, "_save_queues", broken)
        with pytest.raises(OSError, match="disk full"):
            state.save(tmp_path, _client, ACCOUNT, REGION)
    assert (tmp_path / "dynamodb" / f"{ORDERS}.jsonl").read_text() == before


def test_an_empty_folder_loads_nothing(tmp_path: Path, fresh: Created) -> None:
    assert not state.has_state(tmp_path)
    assert state.load(tmp_path, _client, _urls(fresh)) == {"items": 0, "objects": 0, "messages": 0}


def test_the_key_is_made_once_kept_private_and_then_the_same(tmp_path: Path) -> None:
    folder = tmp_path / "state"
    key = state.api_key(folder)
    assert key.startswith("sk_local_") and len(key) > 30
    assert (folder / state.KEY_FILE).stat().st_mode & 0o077 == 0
    assert state.api_key(folder) == key
    assert state.api_key(tmp_path / "another") != key
