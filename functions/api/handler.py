"""HTTPS API (API Gateway REST → this Lambda). Routes are thin: validate, call one logic
function, return a model. Errors are mapped in ``subconscious.http_errors``."""

from __future__ import annotations

from http import HTTPStatus
from typing import Annotated, Any

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response, content_types
from aws_lambda_powertools.event_handler.openapi.params import Header, Path, Query
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from subconscious import http_errors
from subconscious.logic import orders as order_logic
from subconscious.logic.auth import guard_request
from subconscious.logic.market import market_view
from subconscious.logic.quotes import create_quote
from subconscious.logic.services import services
from subconscious.models import ImagePage, OrderOut, OrderRequest, QuoteOut, QuoteRequest
from subconscious.models.market_view import MarketView
from subconscious.observability import logger

app = APIGatewayRestResolver(
    enable_validation=True,
    # A response that fails its own schema is our bug: a 500, never a 422 blamed on the client.
    response_validation_error_http_code=HTTPStatus.INTERNAL_SERVER_ERROR,
)
http_errors.register(app)

OrderId = Annotated[str, Path(pattern=r"^o-[0-9a-f]{32}$", description="order id")]


def _tenant() -> str:
    return str(app.context["tenant_id"])


def _created(model: Any) -> Response[Any]:
    return Response(201, content_types.APPLICATION_JSON, model)


@app.get("/v1/market", summary="Offers now, per GPU model, with the cost of an image")
def get_market() -> MarketView:
    return market_view(services())


@app.post("/v1/quotes", summary="Price a job", responses={201: {"description": "quote"}})
def post_quote(request: QuoteRequest) -> Response[QuoteOut]:
    return _created(create_quote(services(), _tenant(), request))


@app.post("/v1/orders", summary="Accept a quote option", responses={201: {"description": "order"}})
def post_order(
    request: OrderRequest,
    idempotency_key: Annotated[str, Header(alias="Idempotency-Key", min_length=8, max_length=128)],
) -> Response[OrderOut]:
    acceptance = order_logic.Acceptance(
        tenant_id=_tenant(), idempotency_key=idempotency_key, request=request
    )
    order_logic.register_lambda_context(app.lambda_context)
    order = order_logic.accept_quote(services(), acceptance)
    return _created(order_logic.order_out(order, worker=services().settings.worker))


@app.get("/v1/orders/<order_id>", summary="Order state, progress, spend and ETA")
def get_order(order_id: OrderId) -> OrderOut:
    svc = services()
    order = order_logic.get_order(svc, _tenant(), order_id)
    return order_logic.order_out(order, worker=svc.settings.worker)


@app.get("/v1/orders/<order_id>/images", summary="Images with presigned download links")
def get_images(
    order_id: OrderId,
    limit: Annotated[int | None, Query(ge=1, le=1000)] = None,
    next_token: Annotated[str | None, Query(max_length=200)] = None,
) -> ImagePage:
    return order_logic.list_images(services(), _tenant(), order_id, limit, next_token)


@app.delete("/v1/orders/<order_id>", summary="Cancel; remaining tasks are not rendered")
def delete_order(order_id: OrderId) -> OrderOut:
    svc = services()
    order = order_logic.cancel_order(svc, _tenant(), order_id)
    return order_logic.order_out(order, worker=svc.settings.worker)


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    # Size, key and JSON shape are checked before the router: powertools validates a body
    # before any middleware runs, and a caller without a key must learn nothing but 401.
    try:
        tenant_id = guard_request(services(), event)
    except Exception as error:
        return http_errors.proxy_response(error)
    app.append_context(tenant_id=tenant_id)
    logger.append_keys(tenant_id=tenant_id)
    return app.resolve(event, context)
