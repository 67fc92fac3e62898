"""Issue 13, finding 8: docs/openapi.json lists every answer each route can give, with the body
this API really sends.

Each route declares its answers in ``functions/api/handler.py`` (``responses=``). Here every
(route, status) pair is shown by a request that gets it, and a route's documented statuses must
be exactly the ones shown (besides API Gateway's own 429): an answer the document promises but
no request can get fails, and so does a new answer (a case added here) that the document does
not list. The fuzz test (test_api_fuzz.py) adds the other direction: any status it sees a route
give must be listed.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest

from functions.api import handler
from infra.local.resources import Created
from subconscious.http_errors import GATEWAY
from subconscious.logic import orders as order_logic
from subconscious.market.fake import FakeProvider
from subconscious.services import Services
from tests.integration.api_helpers import (
    REGION,
    TABLE,
    TENANT_A,
    UNKNOWN_ORDER,
    accept,
    call,
    create_quote,
    job,
    order_body,
    place_order,
    quote_body,
)

# handler tests: the API over moto's resources, as in AWS (tests/conftest.py's svc)
pytestmark = pytest.mark.moto

OPENAPI = Path(__file__).resolve().parents[2] / "docs" / "openapi.json"
TOO_BIG = "x" * (64 * 1024 + 1)  # Settings.max_body_bytes + 1
IDEM = {"Idempotency-Key": "idem-key-status"}


@dataclass
class Ctx:
    key: str
    svc: Services
    market: FakeProvider
    monkeypatch: pytest.MonkeyPatch


Case = Callable[[Ctx], tuple[int, Any]]


def _boom(*args: Any, **kwargs: Any) -> Any:
    raise RuntimeError("unexpected")


def _failing(target: Any, name: str, request: Case) -> Case:
    """A request made while ``target.name`` fails unexpectedly."""

    def case(ctx: Ctx) -> tuple[int, Any]:
        ctx.monkeypatch.setattr(target, name, _boom)
        return request(ctx)

    return case


def _on_order(method: str, suffix: str = "", **kwargs: Any) -> Case:
    """``method`` on a real order of the caller's (so only the reason under test refuses it)."""

    def case(ctx: Ctx) -> tuple[int, Any]:
        order = place_order(ctx.key, "idem-key-placed")
        return call(method, f"/v1/orders/{order['order_id']}{suffix}", key=ctx.key, **kwargs)

    return case


def _guarded(method: str, path: str, headers: dict[str, str] | None = None) -> dict[int, Case]:
    """What the guard answers on any route: before the router reads the request."""
    return {
        400: lambda c: call(method, path, "{not json", key=c.key, headers=headers),
        401: lambda c: call(method, path, quote_body(), key=None, headers=headers),
        413: lambda c: call(method, path, TOO_BIG, key=c.key, headers=headers),
        415: lambda c: call(
            method, path, quote_body(), key=c.key, headers=headers, content_type="text/plain"
        ),
    }


def _accepted_twice(ctx: Ctx) -> tuple[int, Any]:
    quote = create_quote(ctx.key)
    assert accept(ctx.key, quote, "idem-key-first")[0] == 201
    return accept(ctx.key, quote, "idem-key-second")


def _expired(ctx: Ctx) -> tuple[int, Any]:
    quote = create_quote(ctx.key)
    stored = ctx.svc.quotes.get(TENANT_A, quote["quote_id"])
    assert stored is not None
    past = datetime.now(UTC) - timedelta(seconds=1)
    ctx.svc.quotes.put(TENANT_A, stored.model_copy(update={"expires_at": past}))
    return accept(ctx.key, quote, "idem-key-late")


def _cancel_ended(ctx: Ctx) -> tuple[int, Any]:
    order = place_order(ctx.key)
    # written as the render run leaves an order that ended, without going through its steps
    boto3.resource("dynamodb", region_name=REGION).Table(TABLE["orders_table"]).update_item(
        Key={"tenant_id": TENANT_A, "order_id": order["order_id"]},
        UpdateExpression="SET #s = :done",
        ExpressionAttributeNames={"#s": "state"},
        ExpressionAttributeValues={":done": "completed"},
    )
    return call("DELETE", f"/v1/orders/{order['order_id']}", key=ctx.key)


def _no_offers(ctx: Ctx) -> tuple[int, Any]:
    ctx.market.offers = []
    return call("POST", "/v1/quotes", quote_body(), key=ctx.key)


ORDER = f"/v1/orders/{UNKNOWN_ORDER}"
IMAGES = f"{ORDER}/images"

# (method, documented path) → status → (the code it answers with, a request that gets it)
CASES: dict[tuple[str, str], dict[int, tuple[str, Case]]] = {
    ("GET", "/v1/market"): {
        **{s: ("", c) for s, c in _guarded("GET", "/v1/market").items()},
        422: ("validation_error", lambda c: call("GET", "/v1/market", "[1]", key=c.key)),
        500: (
            "internal_error",
            _failing(handler, "market_view", lambda c: call("GET", "/v1/market", key=c.key)),
        ),
    },
    ("GET", "/v1/webhooks/secret"): {
        **{s: ("", c) for s, c in _guarded("GET", "/v1/webhooks/secret").items()},
        422: ("validation_error", lambda c: call("GET", "/v1/webhooks/secret", "[1]", key=c.key)),
        500: (
            "internal_error",
            _failing(
                handler, "secret_for", lambda c: call("GET", "/v1/webhooks/secret", key=c.key)
            ),
        ),
    },
    ("POST", "/v1/quotes"): {
        **{s: ("", c) for s, c in _guarded("POST", "/v1/quotes").items()},
        422: (
            "validation_error",
            lambda c: call("POST", "/v1/quotes", quote_body(job(width=513)), key=c.key),
        ),
        500: (
            "internal_error",
            _failing(
                handler,
                "create_quote",
                lambda c: call("POST", "/v1/quotes", quote_body(), key=c.key),
            ),
        ),
        503: ("no_capacity", _no_offers),
    },
    ("POST", "/v1/orders"): {
        **{s: ("", c) for s, c in _guarded("POST", "/v1/orders", IDEM).items()},
        404: (
            "not_found",
            lambda c: call(
                "POST",
                "/v1/orders",
                {"quote_id": "q-" + "0" * 32, "option_id": "cheapest"},
                key=c.key,
                headers=IDEM,
            ),
        ),
        409: ("conflict", _accepted_twice),
        410: ("quote_expired", _expired),
        422: (
            "validation_error",
            lambda c: call("POST", "/v1/orders", order_body(create_quote(c.key)), key=c.key),
        ),
        500: (
            "internal_error",
            _failing(
                order_logic,
                "accept_quote",
                lambda c: accept(c.key, create_quote(c.key), "idem-key-boom"),
            ),
        ),
    },
    ("GET", "/v1/orders"): {
        **{s: ("", c) for s, c in _guarded("GET", "/v1/orders").items()},
        400: ("bad_request", lambda c: call("GET", "/v1/orders?next_token=Zm9vYmFy", key=c.key)),
        422: ("validation_error", lambda c: call("GET", "/v1/orders?state=done", key=c.key)),
        500: (
            "internal_error",
            _failing(order_logic, "list_orders", lambda c: call("GET", "/v1/orders", key=c.key)),
        ),
    },
    ("GET", "/v1/orders/{order_id}"): {
        **{s: ("", c) for s, c in _guarded("GET", ORDER).items()},
        404: ("not_found", lambda c: call("GET", ORDER, key=c.key)),
        422: ("validation_error", lambda c: call("GET", "/v1/orders/o-nope", key=c.key)),
        500: ("internal_error", _failing(order_logic, "get_order", _on_order("GET"))),
    },
    ("GET", "/v1/orders/{order_id}/images"): {
        **{s: ("", c) for s, c in _guarded("GET", IMAGES).items()},
        400: ("bad_request", _on_order("GET", "/images?next_token=Zm9vYmFy")),
        404: ("not_found", lambda c: call("GET", IMAGES, key=c.key)),
        422: ("validation_error", lambda c: call("GET", f"{IMAGES}?limit=0", key=c.key)),
        500: ("internal_error", _failing(order_logic, "list_images", _on_order("GET", "/images"))),
    },
    ("DELETE", "/v1/orders/{order_id}"): {
        **{s: ("", c) for s, c in _guarded("DELETE", ORDER).items()},
        404: ("not_found", lambda c: call("DELETE", ORDER, key=c.key)),
        409: ("conflict", _cancel_ended),
        422: ("validation_error", lambda c: call("DELETE", "/v1/orders/o-nope", key=c.key)),
        500: ("internal_error", _failing(order_logic, "cancel_order", _on_order("DELETE"))),
    },
}
# what the guard answers with, whatever the route (the cases above leave the code blank)
GUARD_CODES = {
    400: "invalid_json",
    401: "unauthorized",
    413: "payload_too_large",
    415: "unsupported_media_type",
}


def _documented() -> dict[tuple[str, str], dict[str, Any]]:
    spec = json.loads(OPENAPI.read_text())
    return {
        (method.upper(), path): operation["responses"]
        for path, operations in spec["paths"].items()
        for method, operation in operations.items()
    }


def test_every_route_has_its_cases() -> None:
    assert set(CASES) == set(_documented())


@pytest.mark.parametrize("route", sorted(CASES), ids=lambda r: f"{r[0]} {r[1]}")
def test_a_route_documents_exactly_the_errors_it_is_shown_to_answer(
    route: tuple[str, str],
) -> None:
    documented = {int(status) for status in _documented()[route] if int(status) >= 400}
    # API Gateway's own answers (429) never reach the handler: the infra tests check those
    assert documented - set(GATEWAY) == set(CASES[route])
    assert set(GATEWAY) <= documented


@pytest.mark.parametrize(
    ("route", "status"),
    [(route, status) for route, cases in sorted(CASES.items()) for status in sorted(cases)],
    ids=lambda v: f"{v[0]} {v[1]}" if isinstance(v, tuple) else str(v),
)
def test_each_documented_error_is_answered_with_the_error_body(
    aws: Created,
    svc: Services,
    market: FakeProvider,
    api_key: str,
    monkeypatch: pytest.MonkeyPatch,
    route: tuple[str, str],
    status: int,
) -> None:
    code, case = CASES[route][status]

    actual, body = case(Ctx(api_key, svc, market, monkeypatch))

    assert actual == status, body
    assert set(body) == {"error"}, body
    assert body["error"]["code"] == (code or GUARD_CODES[status]), body
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    assert _documented()[route][str(status)]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/Error"
    }


def test_the_error_schema_is_what_the_api_sends() -> None:
    """The ``Error`` component describes ``{"error": {"code", "message", "details"}}``, not
    powertools' ``{"detail": ...}``, which no longer appears anywhere in the document."""
    spec = json.loads(OPENAPI.read_text())
    schemas = spec["components"]["schemas"]
    assert schemas["Error"]["required"] == ["error"]
    assert schemas["Error"]["properties"]["error"] == {"$ref": "#/components/schemas/ErrorInfo"}
    assert set(schemas["ErrorInfo"]["required"]) == {"code", "message"}
    assert set(schemas["ErrorInfo"]["properties"]) == {"code", "message", "details"}
    assert "HTTPValidationError" not in schemas and "ResponseValidationError" not in schemas
