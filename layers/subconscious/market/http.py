"""The HTTP plumbing every marketplace adapter shares: timeouts, retries with jittered backoff
on 429 and 5xx (honouring ``Retry-After``), and typed errors. Secrets never reach a message.

Adapters build one :class:`ProviderHttp` with an injectable ``httpx.Client`` (tests pass one
with a mock transport) and call :meth:`ProviderHttp.request`.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from subconscious.errors import (
    MachineGone,
    ProviderAuthError,
    ProviderDown,
    ProviderError,
    ProviderRateLimited,
)

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
DEFAULT_TIMEOUT = httpx.Timeout(10.0, connect=5.0)


def retry_after_s(response: httpx.Response, now: datetime | None = None) -> float | None:
    """``Retry-After`` as seconds (it may be a number or an HTTP date); None if absent/bad."""
    value = response.headers.get("Retry-After")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


class ProviderHttp:
    def __init__(
        self,
        provider: str,
        client: httpx.Client,
        *,
        attempts: int = 4,
        base_delay_s: float = 0.5,
        max_delay_s: float = 20.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.provider = provider
        self.client = client
        self.attempts = attempts
        self.base_delay_s = base_delay_s
        self.max_delay_s = max_delay_s
        self._sleep = sleep

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """Send, retrying transient failures; raise a typed error for the rest.

        Only idempotent calls should be retried on a timeout: pass ``retry_timeouts=False``
        for a launch, whose answer may be lost after the machine was rented.
        """
        retry_timeouts = kwargs.pop("retry_timeouts", True)
        for attempt in range(1, self.attempts + 1):
            try:
                response = self.client.request(method, path, **kwargs)
            except httpx.TimeoutException as error:
                if not retry_timeouts or attempt == self.attempts:
                    raise ProviderDown(f"{self.provider}: {method} timed out") from error
                self._backoff(attempt, None)
                continue
            except httpx.TransportError as error:
                if attempt == self.attempts:
                    raise ProviderDown(
                        f"{self.provider}: {method} failed ({type(error).__name__})"
                    ) from error
                self._backoff(attempt, None)
                continue
            if response.status_code in RETRY_STATUSES and attempt < self.attempts:
                self._backoff(attempt, retry_after_s(response))
                continue
            return self._check(method, response)
        raise AssertionError("unreachable")  # pragma: no cover

    def _backoff(self, attempt: int, retry_after: float | None) -> None:
        if retry_after is not None:
            delay = min(retry_after, self.max_delay_s)
        else:  # full jitter: spreads retries of many ticks apart
            delay = random.uniform(0, min(self.max_delay_s, self.base_delay_s * 2**attempt))
        self._sleep(delay)

    def _check(self, method: str, response: httpx.Response) -> httpx.Response:
        status = response.status_code
        where = f"{self.provider}: {method} answered {status}"
        if status in (401, 403):
            raise ProviderAuthError(f"{where} (check the API key)")
        if status == 404:
            raise MachineGone(where)
        if status == 429:
            raise ProviderRateLimited(where)
        if status >= 500:
            raise ProviderDown(where)
        if status >= 400:
            raise ProviderError(where)
        return response

    def json(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.request(method, path, **kwargs)
        try:
            return response.json()
        except ValueError as error:
            raise ProviderError(f"{self.provider}: {method} answered without JSON") from error
