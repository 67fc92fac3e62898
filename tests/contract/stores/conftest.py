"""One store per backend: ``backend`` is ``memory`` (the twins) or ``moto`` (the boto3 stores
over in-process moto), and every case in this package runs on both.

moto's resources are created once for the package (creating them costs half a second)
and emptied between tests; Step Functions executions cannot be deleted, so cases name their
runs uniquely."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from uuid import uuid4

import boto3
import pytest
from moto import mock_aws

from infra import definitions as d
from infra.local.resources import Created, create_resources
from subconscious import services as services_module
from subconscious.aws import AwsClients
from subconscious.models import (
    Constraints,
    JobSpec,
    Offer,
    Order,
    OrderState,
    Quote,
    RenderRun,
    RenderTask,
)
from subconscious.services import Services
from subconscious.settings import Settings
from tests import builders
from tests.twins import memory_services

NOW = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)


def _settings(created: Created | None) -> Settings:
    if created is None:
        return Settings()
    named = {k.removeprefix("SUBC_").lower(): v for k, v in created.settings.items()}
    return Settings().model_copy(update=named)


@dataclass(frozen=True)
class _Moto:
    created: Created
    clients: AwsClients  # shared by the package's cases: making clients costs more than a case


@pytest.fixture(scope="package")
def _moto() -> Iterator[_Moto]:
    with mock_aws():
        created = create_resources(lambda service: boto3.client(service, region_name="us-east-1"))
        yield _Moto(created, AwsClients())


def _empty(clients: AwsClients) -> None:
    """Every table and bucket as created (what a fresh ``aws`` fixture would give)."""
    for spec in d.TABLES:
        table = clients.table(spec.name)
        keys = [k for k in (spec.partition_key, spec.sort_key) if k]
        items = table.scan(
            ProjectionExpression=", ".join(f"#k{i}" for i in range(len(keys))),
            ExpressionAttributeNames={f"#k{i}": k for i, k in enumerate(keys)},
        )
        with table.batch_writer() as batch:
            for item in items["Items"]:
                batch.delete_item(Key={k: item[k] for k in keys})
    s3 = clients.client("s3")
    for bucket in (d.IMAGES_BUCKET, d.HISTORY_BUCKET):
        for listed in s3.list_objects_v2(Bucket=bucket).get("Contents", []):
            s3.delete_object(Bucket=bucket, Key=listed["Key"])


def _fresh_queues(clients: AwsClients) -> dict[str, str]:
    """A new work queue and dead-letter queue, as ``create_resources`` makes them (SQS allows
    one purge a minute, so each case gets its own pair)."""
    sqs = clients.client("sqs")
    name = unique(d.WORK_QUEUE)
    dlq_url = sqs.create_queue(QueueName=f"{name}-dlq")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    redrive = {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": d.MAX_RECEIVE_COUNT}
    queue_url = sqs.create_queue(
        QueueName=name,
        Attributes={
            "VisibilityTimeout": str(d.WORK_QUEUE_VISIBILITY_S),
            "RedrivePolicy": json.dumps(redrive),
        },
    )["QueueUrl"]
    return {"work_queue_url": queue_url, "dead_letter_queue_url": dlq_url}


@pytest.fixture(params=["memory", "moto"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def stores(backend: str, request: pytest.FixtureRequest) -> Services:
    """Every store of one backend, as ``Services`` holds them (typed by the Protocols)."""
    if backend == "memory":
        return memory_services(Settings())
    moto: _Moto = request.getfixturevalue("_moto")
    _empty(moto.clients)
    settings = _settings(moto.created).model_copy(update=_fresh_queues(moto.clients))
    return services_module.build(settings, aws=moto.clients)


def raw_message(stores: Services, backend: str, body: str) -> None:
    """Put a message no task model reads on the work queue (another sender's)."""
    from subconscious.dal.memory import MemoryQueue
    from subconscious.dal.work_queue import WorkQueue

    if backend == "memory":
        assert isinstance(stores.queue, MemoryQueue)
        stores.queue.send_raw(body)
    else:
        assert isinstance(stores.queue, WorkQueue)
        stores.queue._sqs.send_message(QueueUrl=stores.queue.url, MessageBody=body)


def read_object(stores: Services, backend: str, key: str) -> tuple[bytes, str, dict[str, str]]:
    """(body, content type, metadata) of an image the bucket holds."""
    from subconscious.dal.memory import MemoryBucket

    if backend == "memory":
        assert isinstance(stores.bucket, MemoryBucket)
        stored = stores.bucket.objects[key]
        return stored.body, stored.content_type, stored.metadata
    assert isinstance(stores.aws, AwsClients)
    got = stores.aws.client("s3").get_object(Bucket=stores.settings.images_bucket, Key=key)
    return got["Body"].read(), got["ContentType"], got["Metadata"]


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid4().hex[:10]}"


def offer(offer_id: str = "o-4090", usd: str = "0.40", gpu: str = "RTX 4090") -> Offer:
    return Offer(
        provider="fake",
        offer_id=offer_id,
        gpu=gpu,
        gpu_memory_gb=24,
        usd_per_hour=Decimal(usd),
        startup_s=60,
    )


def job(count: int = 4) -> JobSpec:
    return JobSpec.model_validate({"prompts": [{"text": "a fox", "count": count}]})


def quote(quote_id: str = "q-1") -> Quote:
    return Quote(
        quote_id=quote_id,
        job=job(),
        constraints=Constraints(),
        options=[],
        created_at=NOW,
        expires_at=NOW + timedelta(minutes=15),
    )


def order(order_id: str = "o-1", option_id: str = "opt-1", **overrides: Any) -> Order:
    spec = job()
    fields: dict[str, Any] = {
        "order_id": order_id,
        "quote_id": "q-1",
        "option_id": option_id,
        "state": OrderState.QUOTED,
        "job": spec,
        "constraints": Constraints(),
        "price_per_image_usd": Decimal("0.000124"),
        "total_usd": Decimal("0.0124"),
        "images_total": spec.total_images,
        "seed_bases": [1000],
        "gpu": "RTX 4090",
        "promised_at": NOW + timedelta(hours=1),
        "created_at": NOW - timedelta(minutes=5),
        "updated_at": NOW - timedelta(minutes=1),
    }
    fields.update(overrides)
    return Order(**fields)


def run(run_id: str | None = None, **overrides: Any) -> RenderRun:
    fields: dict[str, Any] = {
        "run_id": run_id or unique("r"),
        "offer": offer(),
        "started_at": NOW,
        "spend_cap_micros": 10**6,
    }
    fields.update(overrides)
    return RenderRun(**fields)


def task(seed: int = 1000, order_id: str = "o-1") -> RenderTask:
    return builders.render_task(seed, 1, order_id=order_id)
