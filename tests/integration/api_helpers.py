"""Helpers for the API handler's integration tests: call the real Lambda handler in-process with
API Gateway (REST v1) events, and count what a request wrote (DynamoDB rows, SQS messages).

Everything here runs inside the moto context of the ``aws`` fixture (``tests/conftest.py``).
"""

from __future__ import annotations

import base64
import io
import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import boto3

from functions.api.handler import lambda_handler
from infra import definitions as d
from infra.local.resources import Created
from infra.local.stack import api_gateway_event, context_for
from subconscious.observability import logger

API_FUNCTION = next(f for f in d.FUNCTIONS if f.name == f"{d.PREFIX}-api")
TENANT_A = "tenant-a"  # owner of the ``api_key`` fixture
TENANT_B = "tenant-b"  # owner of the ``other_api_key`` fixture
REGION = "us-east-1"
TABLE = {t.settings_field: t.name for t in d.TABLES}
ORDER_ID_PATTERN = r"^o-[0-9a-f]{32}$"
UNKNOWN_ORDER = "o-" + "0" * 32


def invoke(
    method: str,
    path: str,
    body: object = None,
    *,
    key: str | None,
    headers: dict[str, str] | None = None,
    base64_body: bool = False,
    content_type: str | None = "application/json",
) -> dict[str, Any]:
    """The handler's raw proxy result. ``body``: a ``str`` is sent as is (bad JSON, padding),
    anything else but ``None`` is sent as JSON; ``base64_body`` sends it as API Gateway sends a
    binary body (a ``str`` body is then taken as already encoded). ``content_type=None`` sends
    no Content-Type header at all."""
    all_headers = {"Host": "api.example.com"}
    if content_type is not None:
        all_headers["Content-Type"] = content_type
    if key is not None:
        all_headers["x-api-key"] = key
    all_headers.update(headers or {})
    raw = body if body is None or isinstance(body, str) else json.dumps(body)
    if base64_body and raw is not None and not isinstance(body, str):
        raw = base64.b64encode(raw.encode()).decode()
    event = api_gateway_event(method, path, all_headers, raw)
    event["isBase64Encoded"] = base64_body
    result: dict[str, Any] = lambda_handler(event, context_for(API_FUNCTION))
    return result


def call(
    method: str,
    path: str,
    body: object = None,
    *,
    key: str | None,
    headers: dict[str, str] | None = None,
    base64_body: bool = False,
    content_type: str | None = "application/json",
) -> tuple[int, Any]:
    """(status, decoded JSON body). Every answer of this API is JSON, errors included."""
    result = invoke(
        method,
        path,
        body,
        key=key,
        headers=headers,
        base64_body=base64_body,
        content_type=content_type,
    )
    return int(result["statusCode"]), json.loads(result["body"])


def response_headers(result: dict[str, Any]) -> dict[str, str]:
    """Single- and multi-value headers of a proxy result, names lower-cased."""
    merged = {k.lower(): str(v) for k, v in (result.get("headers") or {}).items()}
    for name, values in (result.get("multiValueHeaders") or {}).items():
        merged[name.lower()] = ", ".join(str(v) for v in values)
    return merged


@contextmanager
def captured_logs() -> Iterator[list[dict[str, Any]]]:
    """The service's JSON log lines written inside the block, parsed, once it ends. powertools'
    handler holds the stdout it was built with, so pytest's capsys does not see them."""
    handler = logger.registered_handler
    assert isinstance(handler, logging.StreamHandler)
    stream = io.StringIO()
    previous = handler.setStream(stream)
    lines: list[dict[str, Any]] = []
    try:
        yield lines
    finally:
        handler.setStream(previous)
        lines.extend(json.loads(line) for line in stream.getvalue().splitlines() if line.strip())


# --- request bodies ---
def job(**overrides: Any) -> dict[str, Any]:
    """A valid SD 1.5 512x512 job: 20 images of one prompt and 5 of another (4 render tasks)."""
    spec: dict[str, Any] = {
        "prompts": [
            {"text": "a lighthouse at dawn, oil painting", "count": 20},
            {"text": "a lighthouse in a storm, watercolour", "count": 5},
        ],
        "model_family": "sd15",
        "width": 512,
        "height": 512,
        "steps": 20,
    }
    spec.update(overrides)
    return spec


def quote_body(
    job_spec: dict[str, Any] | None = None, constraints: dict[str, Any] | None = None
) -> dict[str, Any]:
    body: dict[str, Any] = {"job": job_spec if job_spec is not None else job()}
    if constraints is not None:
        body["constraints"] = constraints
    return body


def create_quote(key: str, job_spec: dict[str, Any] | None = None) -> dict[str, Any]:
    status, body = call("POST", "/v1/quotes", quote_body(job_spec), key=key)
    assert status == 201, body
    assert isinstance(body, dict)
    return body


def order_body(quote: dict[str, Any], option_id: str | None = None) -> dict[str, str]:
    return {
        "quote_id": str(quote["quote_id"]),
        "option_id": option_id or str(quote["options"][0]["option_id"]),
    }


def accept(
    key: str, quote: dict[str, Any], idempotency_key: str, option_id: str | None = None
) -> tuple[int, Any]:
    return call(
        "POST",
        "/v1/orders",
        order_body(quote, option_id),
        key=key,
        headers={"Idempotency-Key": idempotency_key},
    )


def place_order(key: str, idempotency_key: str = "idem-key-0001") -> dict[str, Any]:
    """Quote the default job and accept its first option; returns the order."""
    status, body = accept(key, create_quote(key), idempotency_key)
    assert status == 201, body
    assert isinstance(body, dict)
    return body


# --- error bodies ---
def assert_error(
    response: tuple[int, Any], status: int, code: str, fields: list[str] | None = None
) -> None:
    """``response`` is the error answer this API promises: ``status``, the stable ``code``, a
    message, and for validation errors exactly ``fields`` as the details' field paths."""
    actual_status, body = response
    assert actual_status == status, body
    assert isinstance(body, dict) and set(body) == {"error"}, body
    error = body["error"]
    assert error["code"] == code, body
    assert isinstance(error["message"], str) and error["message"], body
    if fields is not None:
        details = error.get("details")
        assert isinstance(details, list), body
        assert [detail["field"] for detail in details] == fields, body
        assert all(isinstance(detail["message"], str) and detail["message"] for detail in details)


# --- side effects ---
def queue_depth(queue_url: str) -> int:
    """Every message in the work queue: waiting, in flight and delayed."""
    attributes = boto3.client("sqs", region_name=REGION).get_queue_attributes(
        QueueUrl=queue_url,
        AttributeNames=[
            "ApproximateNumberOfMessages",
            "ApproximateNumberOfMessagesNotVisible",
            "ApproximateNumberOfMessagesDelayed",
        ],
    )["Attributes"]
    return sum(int(value) for value in attributes.values())


def receive_all(queue_url: str) -> list[dict[str, Any]]:
    """Every task body in the queue (they stay hidden for a while: read the depth first)."""
    sqs = boto3.client("sqs", region_name=REGION)
    bodies: list[dict[str, Any]] = []
    while True:
        messages = sqs.receive_message(
            QueueUrl=queue_url, MaxNumberOfMessages=10, VisibilityTimeout=600
        ).get("Messages", [])
        if not messages:
            return bodies
        bodies.extend(json.loads(m["Body"]) for m in messages)


def table_rows(settings_field: str) -> list[dict[str, Any]]:
    """Every item of one table of the stack, by its Settings field (``orders_table`` ...)."""
    table = boto3.resource("dynamodb", region_name=REGION).Table(TABLE[settings_field])
    items: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {}
    while True:
        page = table.scan(**kwargs)
        items.extend(page.get("Items", []))
        if "LastEvaluatedKey" not in page:
            return items
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


@dataclass(frozen=True)
class Writes:
    """What the API can write: rows of its tables and messages of the work queue."""

    quotes: int
    orders: int
    images: int
    idempotency: int
    queued: int


def writes(aws: Created) -> Writes:
    return Writes(
        quotes=len(table_rows("quotes_table")),
        orders=len(table_rows("orders_table")),
        images=len(table_rows("images_table")),
        idempotency=len(table_rows("idempotency_table")),
        queued=queue_depth(aws.queue_url),
    )


def decimal_string(value: Any) -> Decimal:
    """Money on the wire is a JSON string holding a decimal, never a float."""
    assert isinstance(value, str), f"{value!r} is not a decimal string"
    return Decimal(value)
