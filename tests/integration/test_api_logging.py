"""Issue 13, finding 6: a warm Lambda keeps its logger between invocations; one caller's
tenant_id must never label the next request's log lines."""

from __future__ import annotations

import pytest

from infra.local.resources import Created
from tests.integration.api_helpers import (
    TENANT_A,
    TENANT_B,
    UNKNOWN_ORDER,
    call,
    captured_logs,
    quote_body,
)

# handler tests: the API over moto's resources, as in AWS (tests/conftest.py's svc)
pytestmark = pytest.mark.moto


def test_a_refused_request_after_a_tenants_request_carries_no_tenant(
    aws: Created, api_key: str
) -> None:
    with captured_logs() as first:
        assert call("POST", "/v1/quotes", quote_body(), key=api_key)[0] == 201
    with captured_logs() as second:
        assert call("GET", "/v1/market", key="sk_not_a_key_at_all_000")[0] == 401

    # the first request's own lines do carry its tenant: what the second must not inherit
    assert first and all(line.get("tenant_id") == TENANT_A for line in first)
    assert second, "the refused request logged nothing"
    assert all("tenant_id" not in line for line in second), second


def test_each_request_is_logged_under_its_own_tenant(
    aws: Created, api_key: str, other_api_key: str
) -> None:
    with captured_logs() as lines:
        call("GET", f"/v1/orders/{UNKNOWN_ORDER}", key=api_key)
        call("GET", f"/v1/orders/{UNKNOWN_ORDER}", key=other_api_key)

    refused = [line for line in lines if line["message"] == "request refused"]
    assert [line["tenant_id"] for line in refused] == [TENANT_A, TENANT_B]
    # and each invocation has its own correlation id (the API Gateway request id)
    assert len({line["correlation_id"] for line in refused}) == 2
