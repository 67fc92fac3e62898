"""Helpers for driving orders and render runs through the logic layer against moto."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import httpx

from subconscious.dal.prices import ThroughputCorrections
from subconscious.dal.work_queue import WorkQueue
from subconscious.logic.orders import Acceptance, accept_quote
from subconscious.logic.quotes import create_quote
from subconscious.models import Order, OrderRequest, QuoteRequest, RenderRun
from subconscious.services import Services

ROOT = Path(__file__).resolve().parents[2]


def boto_queue(svc: Services) -> WorkQueue:
    """The SQS-backed work queue behind ``svc`` (for tests that read SQS as it holds them:
    they run over moto, not over the twins)."""
    assert isinstance(svc.queue, WorkQueue)
    return svc.queue


def boto_corrections(svc: Services) -> ThroughputCorrections:
    """The DynamoDB-backed corrections behind ``svc`` (tests that read its table)."""
    assert isinstance(svc.corrections, ThroughputCorrections)
    return svc.corrections


def place_order(svc: Services, tenant: str, counts: list[int], **job: Any) -> Order:
    request = QuoteRequest.model_validate(
        {
            "job": {
                "prompts": [{"text": f"prompt {i}", "count": c} for i, c in enumerate(counts)],
                **job,
            }
        }
    )
    quote = create_quote(svc, tenant, request)
    return accept_quote(
        svc,
        Acceptance(
            tenant_id=tenant,
            idempotency_key=uuid.uuid4().hex,
            request=OrderRequest(quote_id=quote.quote_id, option_id=quote.options[0].option_id),
        ),
    )


def new_run(svc: Services, offer_id: str = "o-4090", cap_micros: int = 10**9) -> RenderRun:
    offer = next(o for o in svc.provider("fake").list_offers() if o.offer_id == offer_id)
    run = RenderRun(
        run_id=f"r-test-{uuid.uuid4().hex[:8]}",
        offer=offer,
        spend_cap_micros=cap_micros,
        started_at=datetime.now(UTC),
    )
    svc.runs.put(run)
    return run


def queue_depth(svc: Services) -> tuple[int, int]:
    return svc.queue.depth()


def image_rows(table: str = "subc-images") -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = boto3.resource("dynamodb").Table(table).scan()["Items"]
    return items


def s3_keys(bucket: str = "subc-images") -> list[str]:
    listing = boto3.client("s3").list_objects_v2(Bucket=bucket)
    return [o["Key"] for o in listing.get("Contents", [])]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def renderer(*args: str) -> Iterator[str]:
    """The placeholder automatic1111 server as a process (no auth), ready when yielded."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "RENDERER_API_AUTH"}
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "infra.local.renderer",
            "--port",
            str(port),
            "--startup-delay-s",
            "0",
            *args,
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{url}/sdapi/v1/sd-models", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.05)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=5)


def duplicate_first_task(svc: Services, queue_url: str) -> None:
    """SQS is at-least-once: deliver an order's first task (prompt 0) twice, and hide its
    second task meanwhile so the order is still open when the duplicate is rendered."""
    sqs = boto_queue(svc)._sqs
    received = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10)["Messages"]
    first, second = sorted(received, key=lambda m: '"prompt_index":1' in m["Body"])
    sqs.send_message(QueueUrl=queue_url, MessageBody=first["Body"])
    sqs.change_message_visibility(
        QueueUrl=queue_url, ReceiptHandle=first["ReceiptHandle"], VisibilityTimeout=0
    )
    sqs.change_message_visibility(
        QueueUrl=queue_url, ReceiptHandle=second["ReceiptHandle"], VisibilityTimeout=600
    )
