"""The local stack's state kept across restarts (``make local``): a folder holding what moto held.

moto keeps everything in memory, so a stopped stack forgot every key, order and image. With a
state folder the stack writes, when it stops, what a customer's next session needs:

- ``key.json``: the demo tenant's API key (made once, then the same on every start);
- ``dynamodb/<table>.jsonl``: every item of every table, in DynamoDB's typed JSON;
- ``s3/<bucket>/<key>`` with ``s3/<bucket>.index.json``: every object, its type and metadata;
- ``sqs/<queue>.jsonl``: every message body of the work queue and its dead-letter queue
  (waiting or in flight: a run stopped with the stack, so its messages are work left to do).

It loads them into the fresh resources of the next start, before any schedule runs. Render
runs are not carried over: the stack lets them end before it saves (``LocalStack.stop``), and
their machines belonged to the emulated market, which stops with it. What a run wrote (its
row, the images it delivered) is kept. The folder is written to a temporary one and swapped
in, so a stop that fails half-way leaves the previous state whole.

Written through boto3 against moto like any client, except SQS, whose in-flight messages only
moto's backend can list (the stack runs moto in this process).
"""

from __future__ import annotations

import base64
import json
import secrets
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from infra import definitions as d

KEY_FILE = "key.json"
QUEUES = (d.WORK_QUEUE, d.WORK_DLQ)
BUCKETS = (d.IMAGES_BUCKET, d.HISTORY_BUCKET)

Client = Callable[[str], Any]


def api_key(folder: Path) -> str:
    """The demo tenant's key: the one stored in ``folder``, or a new one stored there."""
    path = folder / KEY_FILE
    if path.exists():
        return str(json.loads(path.read_text())["api_key"])
    folder.mkdir(parents=True, exist_ok=True)
    key = f"sk_local_{secrets.token_urlsafe(24)}"
    path.write_text(json.dumps({"api_key": key}))
    path.chmod(0o600)
    return key


def has_state(folder: Path) -> bool:
    return (folder / "dynamodb").is_dir()


def save(folder: Path, client: Client, account: str, region: str) -> None:
    """Write the tables, buckets and queues into ``folder`` (the key file stays)."""
    folder.mkdir(parents=True, exist_ok=True)
    staging = folder / ".saving"
    shutil.rmtree(staging, ignore_errors=True)
    _save_tables(staging / "dynamodb", client("dynamodb"))
    _save_buckets(staging / "s3", client("s3"))
    _save_queues(staging / "sqs", account, region)
    for part in ("dynamodb", "s3", "sqs"):
        shutil.rmtree(folder / part, ignore_errors=True)
        (staging / part).rename(folder / part)
    staging.rmdir()


def load(folder: Path, client: Client, queue_urls: dict[str, str]) -> dict[str, int]:
    """Put what ``folder`` holds into the freshly created resources; counts of what was
    loaded (items, objects, messages)."""
    return {
        "items": _load_tables(folder / "dynamodb", client("dynamodb")),
        "objects": _load_buckets(folder / "s3", client("s3")),
        "messages": _load_queues(folder / "sqs", client("sqs"), queue_urls),
    }


# --- DynamoDB: typed JSON, binary values as base64 ---
def _to_json(value: Any) -> Any:
    if isinstance(value, bytes | bytearray):
        return {"__b64__": base64.b64encode(value).decode()}
    if isinstance(value, dict):
        return {k: _to_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_to_json(v) for v in value]
    return value


def _from_json(value: Any) -> Any:
    if isinstance(value, dict):
        if set(value) == {"__b64__"}:
            return base64.b64decode(value["__b64__"])
        return {k: _from_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_from_json(v) for v in value]
    return value


def _save_tables(folder: Path, dynamodb: Any) -> None:
    folder.mkdir(parents=True)
    for table in d.TABLES:
        with (folder / f"{table.name}.jsonl").open("w") as out:
            for page in dynamodb.get_paginator("scan").paginate(TableName=table.name):
                for item in page.get("Items", []):
                    out.write(json.dumps(_to_json(item)) + "\n")


def _load_tables(folder: Path, dynamodb: Any) -> int:
    loaded = 0
    for table in d.TABLES:
        path = folder / f"{table.name}.jsonl"
        if not path.exists():
            continue
        items = [_from_json(json.loads(line)) for line in path.read_text().splitlines() if line]
        for start in range(0, len(items), 25):  # BatchWriteItem's limit
            batch = [{"PutRequest": {"Item": i}} for i in items[start : start + 25]]
            pending: dict[str, Any] = {table.name: batch}
            while pending:
                pending = dynamodb.batch_write_item(RequestItems=pending).get(
                    "UnprocessedItems", {}
                )
        loaded += len(items)
    return loaded


# --- S3: each object as a file, its content type and metadata beside ---
def _save_buckets(folder: Path, s3: Any) -> None:
    for bucket in BUCKETS:
        root = folder / bucket
        root.mkdir(parents=True)
        index: dict[str, dict[str, Any]] = {}
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            for listed in page.get("Contents", []):
                key = listed["Key"]
                got = s3.get_object(Bucket=bucket, Key=key)
                name = f"{len(index):08d}"
                (root / name).write_bytes(got["Body"].read())
                index[name] = {
                    "key": key,
                    "content_type": got.get("ContentType", "binary/octet-stream"),
                    "metadata": got.get("Metadata", {}),
                }
        (folder / f"{bucket}.index.json").write_text(json.dumps(index))


def _load_buckets(folder: Path, s3: Any) -> int:
    loaded = 0
    for bucket in BUCKETS:
        index_path = folder / f"{bucket}.index.json"
        if not index_path.exists():
            continue
        for name, entry in json.loads(index_path.read_text()).items():
            s3.put_object(
                Bucket=bucket,
                Key=entry["key"],
                Body=(folder / bucket / name).read_bytes(),
                ContentType=entry["content_type"],
                Metadata=entry["metadata"],
            )
            loaded += 1
    return loaded


# --- SQS: message bodies, whatever their visibility ---
def _save_queues(folder: Path, account: str, region: str) -> None:
    from moto.backends import get_backend

    folder.mkdir(parents=True)
    queues = get_backend("sqs")[account][region].queues
    for name in QUEUES:
        messages = list(queues[name]._messages) if name in queues else []
        with (folder / f"{name}.jsonl").open("w") as out:
            for message in messages:
                out.write(json.dumps({"body": message.body}) + "\n")


def _load_queues(folder: Path, sqs: Any, queue_urls: dict[str, str]) -> int:
    loaded = 0
    for name in QUEUES:
        path = folder / f"{name}.jsonl"
        if not path.exists():
            continue
        bodies = [json.loads(line)["body"] for line in path.read_text().splitlines() if line]
        for start in range(0, len(bodies), 10):  # SendMessageBatch's limit
            entries = [
                {"Id": str(i), "MessageBody": body}
                for i, body in enumerate(bodies[start : start + 10])
            ]
            sqs.send_message_batch(QueueUrl=queue_urls[name], Entries=entries)
        loaded += len(bodies)
    return loaded
