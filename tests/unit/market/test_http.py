"""Shared provider HTTP plumbing: retries with backoff, Retry-After, typed errors."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx
import pytest

from subconscious.errors import (
    MachineGone,
    ProviderAuthError,
    ProviderDown,
    ProviderError,
    ProviderRateLimited,
)
from subconscious.market.http import ProviderHttp, retry_after_s


def _http(
    responses: list[httpx.Response | Exception],
) -> tuple[ProviderHttp, list[float], list[int]]:
    sleeps: list[float] = []
    calls: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        item = responses.pop(0)
        if isinstance(item, Exception):
            raise item
        return item

    client = httpx.Client(base_url="https://p.example", transport=httpx.MockTransport(handler))
    return ProviderHttp("p", client, attempts=3, sleep=sleeps.append), sleeps, calls


def test_retry_after_seconds_and_http_date() -> None:
    now = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
    assert retry_after_s(httpx.Response(429, headers={"Retry-After": "7"})) == 7.0
    later = format_datetime(now + timedelta(seconds=30), usegmt=True)
    assert retry_after_s(httpx.Response(429, headers={"Retry-After": later}), now) == 30.0
    assert retry_after_s(httpx.Response(429, headers={"Retry-After": "soon"})) is None
    assert retry_after_s(httpx.Response(429)) is None


def test_429_waits_as_told_then_succeeds() -> None:
    http, sleeps, calls = _http(
        [httpx.Response(429, headers={"Retry-After": "3"}), httpx.Response(200, json={"ok": 1})]
    )
    assert http.json("GET", "/x") == {"ok": 1}
    assert sleeps == [3.0] and len(calls) == 2


def test_5xx_backs_off_with_jitter_and_gives_up_as_provider_down() -> None:
    http, sleeps, calls = _http([httpx.Response(503)] * 3)
    with pytest.raises(ProviderDown):
        http.request("GET", "/x")
    assert len(calls) == 3 and len(sleeps) == 2
    assert all(0 <= s <= 20 for s in sleeps)


def test_rate_limit_to_the_end_is_typed() -> None:
    http, _, _ = _http([httpx.Response(429)] * 3)
    with pytest.raises(ProviderRateLimited):
        http.request("GET", "/x")


@pytest.mark.parametrize(
    ("status", "error"),
    [(401, ProviderAuthError), (403, ProviderAuthError), (404, MachineGone), (400, ProviderError)],
)
def test_client_errors_are_typed_and_not_retried(status: int, error: type[Exception]) -> None:
    http, sleeps, calls = _http([httpx.Response(status)])
    with pytest.raises(error):
        http.request("GET", "/x")
    assert len(calls) == 1 and sleeps == []


def test_a_timeout_is_retried_unless_the_call_must_not_repeat() -> None:
    http, _, calls = _http([httpx.ReadTimeout("slow"), httpx.Response(200, json=[])])
    assert http.json("GET", "/x") == []
    assert len(calls) == 2
    once, _, once_calls = _http([httpx.ReadTimeout("slow")])
    with pytest.raises(ProviderDown):
        once.request("PUT", "/rent", retry_timeouts=False)
    assert len(once_calls) == 1


def test_connection_errors_end_as_provider_down_without_secrets() -> None:
    http, _, _ = _http([httpx.ConnectError("refused api_key=SECRET")] * 3)
    with pytest.raises(ProviderDown) as raised:
        http.request("GET", "/x")
    assert "SECRET" not in str(raised.value)


def test_non_json_body_is_a_provider_error() -> None:
    http, _, _ = _http([httpx.Response(200, text="<html>")])
    with pytest.raises(ProviderError, match="without JSON"):
        http.json("GET", "/x")
