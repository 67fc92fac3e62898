"""HTTPS API (API Gateway REST → this Lambda). Routes are thin: validate, call one logic
function, return a model. Errors are mapped in ``subconscious.http_errors``."""

from __future__ import annotations

import pathlib
from http import HTTPStatus
from typing import Annotated, Any

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response, content_types
from aws_lambda_powertools.event_handler.openapi.params import Header, Path, Query
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from subconscious import http_errors
from subconscious.logic import orders as order_logic
from subconscious.logic.auth import guard_principal, is_public_request, with_json_content_type
from subconscious.logic.console import console_response
from subconscious.logic.market_view import market_view
from subconscious.logic.order_costs import operator_order_out, visible_order
from subconscious.logic.quotes import create_quote
from subconscious.logic.webhooks import secret_for
from subconscious.models import (
    ImagePage,
    OperatorOrderOut,
    OrderOut,
    OrderPage,
    OrderRequest,
    OrderState,
    QuoteOut,
    QuoteRequest,
)
from subconscious.models.market_view import MarketView
from subconscious.models.tenancy import Principal, Role
from subconscious.models.webhooks import WebhookSecret
from subconscious.observability import logger
from subconscious.services import services

app = APIGatewayRestResolver(
    enable_validation=True,
    # A response that fails its own schema is our bug: a 500, never a 422 blamed on the client.
    response_validation_error_http_code=HTTPStatus.INTERNAL_SERVER_ERROR,
)
http_errors.register(app)

OrderId = Annotated[str, Path(pattern=r"^o-[0-9a-f]{32}$", description="order id")]

# What each route can answer beyond its success and the answers every request can get
# (``http_errors.EVERY_ROUTE``). docs/openapi.json lists them all; test_api_error_statuses.py
# makes each route give each one, and the fuzz test fails on any answer a route gives that is
# not listed here.
_NO_ORDER = "`not_found`: no such order for this API key"
# The web console's page and assets (GET /console, /console/<name>), shipped in this asset.
CONSOLE_DIR = pathlib.Path(__file__).resolve().parent / "console"
_documented = http_errors.openapi_responses


def _tenant() -> str:
    return str(app.context["tenant_id"])


def _principal() -> Principal:
    return Principal(_tenant(), Role.of(app.context.get("role")))


def _created(model: Any) -> Response[Any]:
    return Response(201, content_types.APPLICATION_JSON, model)


@app.get(
    "/v1/market",
    summary="Offers now, per GPU model, with the cost of an image",
    responses=_documented(200, "offers"),
)
def get_market() -> MarketView:
    return market_view(services())


@app.post(
    "/v1/quotes",
    summary="Price a job",
    responses=_documented(
        201, "quote", {503: "`no_capacity`: no GPU on the market can run this job now; retry"}
    ),
)
def post_quote(request: QuoteRequest) -> Response[QuoteOut]:
    return _created(create_quote(services(), _tenant(), request))


@app.post(
    "/v1/orders",
    summary="Accept a quote option",
    responses=_documented(
        201,
        "order",
        {
            404: "`not_found`: no such quote for this API key",
            409: "`conflict`: the quote was already accepted (the message names the order); "
            "`idempotency_key_reused`: the key was used with another request; "
            "`request_in_progress`: the same request is still running, retry shortly",
            410: "`quote_expired`: quote again",
            422: "`option_id` is not an option of the quote; "
            "`outside_terms`: the option misses the quote's deadline or price cap (the message "
            "says how) and `accept_outside_terms` was not true; nothing was ordered; "
            "`webhook_url` is not an https URL on a public address (or `webhook_events` came "
            "without it)",
        },
    ),
)
def post_order(
    request: OrderRequest,
    idempotency_key: Annotated[str, Header(alias="Idempotency-Key", min_length=8, max_length=128)],
) -> Response[OrderOut]:
    acceptance = order_logic.Acceptance(
        tenant_id=_tenant(), idempotency_key=idempotency_key, request=request
    )
    order_logic.register_lambda_context(services(), app.lambda_context)
    order = order_logic.accept_quote(services(), acceptance)
    return _created(order_logic.order_out(order, worker=services().settings.worker))


@app.get(
    "/v1/orders",
    summary="Your orders, newest first",
    responses=_documented(
        200,
        "a page of orders",
        {400: "`bad_request`: `next_token` is not one this API gave out"},
    ),
)
def list_orders(
    state: Annotated[OrderState | None, Query(description="only orders in this state")] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    next_token: Annotated[str | None, Query(max_length=200)] = None,
) -> OrderPage:
    return order_logic.list_orders(
        services(), _tenant(), state=state, limit=limit, token=next_token
    )


@app.get(
    "/v1/orders/<order_id>",
    summary="Order state, progress, charge and ETA",
    description='An operator\'s key (its tenant record has role "operator") may name any '
    "tenant with `tenant_id` and gets the order with `costs`: what serving it cost us beside "
    "its quote. A customer's key gets its own orders, never `costs`; naming another tenant it "
    "gets 404, as for an order that does not exist.",
    responses=_documented(200, "order", {404: _NO_ORDER}),
)
def get_order(
    order_id: OrderId,
    tenant_id: Annotated[
        str | None,
        Query(
            min_length=1,
            max_length=128,
            description="operator keys only: the tenant whose order this is",
        ),
    ] = None,
) -> OperatorOrderOut | OrderOut:
    svc = services()
    principal = _principal()
    owner, order = visible_order(svc, principal, order_id, tenant_id)
    if principal.operator:
        return operator_order_out(order, owner, worker=svc.settings.worker)
    return order_logic.order_out(order, worker=svc.settings.worker)


@app.get(
    "/v1/orders/<order_id>/images",
    summary="Images with presigned download links",
    responses=_documented(
        200,
        "a page of images",
        {400: "`bad_request`: `next_token` is not one this API gave out", 404: _NO_ORDER},
    ),
)
def get_images(
    order_id: OrderId,
    limit: Annotated[int | None, Query(ge=1, le=1000)] = None,
    next_token: Annotated[str | None, Query(max_length=200)] = None,
) -> ImagePage:
    return order_logic.list_images(services(), _tenant(), order_id, limit, next_token)


@app.delete(
    "/v1/orders/<order_id>",
    summary="Cancel; remaining tasks are not rendered",
    responses=_documented(
        200, "the cancelled order", {404: _NO_ORDER, 409: "`conflict`: the order has ended"}
    ),
)
def delete_order(order_id: OrderId) -> OrderOut:
    svc = services()
    order = order_logic.cancel_order(svc, _tenant(), order_id)
    return order_logic.order_out(order, worker=svc.settings.worker)


@app.get(
    "/v1/webhooks/secret",
    summary="Your webhook signing secret (created on first call): verify each delivery with it",
    responses=_documented(200, "the secret"),
)
def get_webhook_secret() -> WebhookSecret:
    return secret_for(services(), _tenant())


# clear_state: a warm Lambda keeps the logger between invocations, and the last caller's
# tenant_id must not label the next request's lines (a refused one has no tenant at all).
@logger.inject_lambda_context(
    correlation_id_path=correlation_paths.API_GATEWAY_REST, clear_state=True
)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    # The console's static files need no key (the page asks for one); they are not routes of
    # the JSON API and not in its OpenAPI document.
    if is_public_request(event):
        try:
            return console_response(services(), CONSOLE_DIR, str(event["path"]))
        except Exception as error:
            return http_errors.proxy_response(error)
    # Size, key, media type and JSON shape are checked before the router: powertools validates
    # a body before any middleware runs, and a caller without a key must learn nothing but 401.
    try:
        principal = guard_principal(services(), event)
    except Exception as error:
        return http_errors.proxy_response(error)
    tenant_id = principal.tenant_id
    app.append_context(tenant_id=tenant_id, role=principal.role.value)
    logger.append_keys(tenant_id=tenant_id)
    return app.resolve(with_json_content_type(event), context)
