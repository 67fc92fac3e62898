"""Regressions for what the first review found (each test failed before its fix)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from pydantic import SecretStr

from infra.local.resources import Created
from subconscious.errors import ConfigurationError
from subconscious.http_errors import proxy_response
from subconscious.logic import orders as order_logic
from subconscious.logic import render_run
from subconscious.market.fake import FakeProvider
from subconscious.models import OrderRequest, OrderState, QuoteRequest
from subconscious.services import Services
from subconscious.settings import Settings
from tests.conftest import with_settings
from tests.integration.workflow import duplicate_first_task, new_run, place_order, renderer

TENANT = "tenant-a"


def test_a_duplicate_delivery_costs_the_order_nothing(
    svc: Services, aws: Created, market: FakeProvider
) -> None:
    order = place_order(svc, TENANT, [8, 8])
    duplicate_first_task(svc, aws.queue_url)
    with renderer("--images-per-s", "400") as url:
        market.url = url
        run = new_run(svc)
        render_run.provision(svc, run.run_id)
        render_run.render_slice(svc, run.run_id, slice_s=30)

    charged = svc.orders.get(TENANT, order.order_id)
    assert charged is not None
    one_batch = 112  # 1 s at $0.40/h, rounded up: what 8 new images cost
    assert charged.spend_micros == one_batch  # the re-render of the duplicate is not billed


def _quote_and_key(svc: Services) -> tuple[str, str, order_logic.Acceptance]:
    from subconscious.logic.quotes import create_quote

    quote = create_quote(
        svc,
        TENANT,
        QuoteRequest.model_validate({"job": {"prompts": [{"text": "a", "count": 8}]}}),
    )
    acceptance = order_logic.Acceptance(
        tenant_id=TENANT,
        idempotency_key="k-resume-0001",
        request=OrderRequest(quote_id=quote.quote_id, option_id=quote.options[0].option_id),
    )
    return quote.quote_id, order_logic.order_id_for(quote.quote_id), acceptance


def test_an_interrupted_acceptance_finishes_even_after_the_quote_expired(
    svc: Services, aws: Created, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, order_id, acceptance = _quote_and_key(svc)
    original = order_logic.render_tasks

    def crash(*args: Any) -> Any:
        raise RuntimeError("Lambda died between writing the order and queueing")

    monkeypatch.setattr(order_logic, "render_tasks", crash)
    with pytest.raises(RuntimeError):
        order_logic._accept(svc, acceptance)
    monkeypatch.setattr(order_logic, "render_tasks", original)
    later = datetime.now(UTC) + timedelta(hours=2)  # the quote expired meanwhile

    order = order_logic._accept(svc, acceptance, now=later)

    assert order.order_id == order_id
    assert order.state is OrderState.ACCEPTED
    assert svc.queue.depth() == (1, 0)


def test_an_order_cancelled_during_acceptance_is_not_reported_accepted(
    svc: Services, aws: Created, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, order_id, acceptance = _quote_and_key(svc)
    queue = svc.queue
    send = queue.send

    def send_then_cancel(tasks: Any) -> None:
        send(tasks)
        svc.orders.transition(TENANT, order_id, OrderState.CANCELLED)

    monkeypatch.setattr(queue, "send", send_then_cancel)
    order = order_logic._accept(svc, acceptance)
    assert order.state is OrderState.CANCELLED


def test_a_short_machine_secret_is_refused(svc: Services, monkeypatch: pytest.MonkeyPatch) -> None:
    svc = with_settings(svc, machine_auth_secret=SecretStr("short"))
    with pytest.raises(ConfigurationError):
        render_run.machine_credential(svc, "r-1")


def test_settings_refuse_a_slice_that_cannot_end_inside_the_lambda() -> None:
    with pytest.raises(ValueError, match="exceeds the render step"):
        Settings(render_slice_s=800, renderer_request_timeout_s=60)
    assert Settings(render_slice_s=540, renderer_request_timeout_s=75).render_slice_s == 540


def test_an_unexpected_error_before_routing_is_a_json_500() -> None:
    response = proxy_response(RuntimeError("DynamoDB throttled the key lookup"))
    assert response["statusCode"] == 500
    assert '"internal_error"' in response["body"]
    assert "throttled" not in response["body"]


def test_emulated_prices_never_pass_through_float() -> None:
    import httpx

    from subconscious.market.emulated import EmulatedProvider

    body = {
        "offers": [
            {
                "offer_id": "x",
                "gpu": "RTX 4090",
                "gpu_count": 1,
                "gpu_memory_gb": 24,
                "usd_per_hour": 0.1,
                "startup_s": 1,
            }
        ]
    }
    transport = httpx.MockTransport(lambda request: httpx.Response(200, json=body))
    provider = EmulatedProvider(
        "http://m", http=httpx.Client(base_url="http://m", transport=transport)
    )
    assert provider.list_offers()[0].usd_per_hour == Decimal("0.1")
