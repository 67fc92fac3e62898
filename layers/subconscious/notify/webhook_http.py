"""POSTing a webhook to a customer's URL, safely.

A webhook URL is the customer's to choose, so it is a way into our network (SSRF): a receiver
must be a public address, checked the way the render step checks a machine
(``render/address.py``):

- :func:`url_refusal` when the order is placed: https (http only where the settings allow it,
  the local stack), a host, no user or password in the URL, and a host written as an IP
  address must be public (refused with a 422 before anything is stored or queued);
- on every delivery: the name is resolved, every address must be public (private, loopback,
  link-local including the metadata service 169.254.169.254, unique-local, multicast, reserved,
  and IPv4 addresses mapped or embedded in IPv6 ones are refused), and the socket connects to
  the checked address, never to a second resolution (DNS rebinding). Redirects are not
  followed: a 3xx is the receiver's answer, recorded as a failed attempt.

``allow_private`` (the local stack's receivers are loopback processes) still refuses
link-local, multicast, unspecified and reserved addresses.
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Mapping
from datetime import UTC, datetime

import httpx

from subconscious.errors import UnsafeMachineAddress
from subconscious.models.webhooks import DeliveryAttempt
from subconscious.render.address import guarded_transport, refusal

USER_AGENT = "subconscious-webhooks/1"
_LOCAL_NAMES = ("localhost", "localhost.localdomain")


def url_refusal(url: str, *, allow_http: bool, allow_private: bool) -> str | None:
    """Why ``url`` cannot be a webhook receiver, or None: what can be known without DNS."""
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError):
        return "is not a URL"
    schemes = ("https", "http") if allow_http else ("https",)
    if parsed.scheme not in schemes:
        return "must be an https URL"
    if not parsed.host:
        return "has no host"
    if parsed.userinfo:
        return "must not carry a user or password"
    host = parsed.host.lower().rstrip(".")
    if not allow_private and (host in _LOCAL_NAMES or host.endswith(".localhost")):
        return "must be a public address, not localhost"
    try:
        literal = ipaddress.ip_address(host)
    except ValueError:
        return None  # a name: checked where it is resolved, on every delivery
    why = refusal(literal, allow_private=allow_private)
    return None if why is None else f"must be a public address ({literal} is {why})"


class WebhookHttp:
    """Sends one signed POST and reports what happened; never raises for the receiver's sake.
    ``client`` is injectable (tests pass one with a mock transport); else one is built on first
    use over the public-only transport."""

    def __init__(
        self,
        *,
        allow_private: bool,
        timeout_s: float = 10.0,
        client: httpx.Client | None = None,
    ) -> None:
        self._allow_private = allow_private
        self._timeout_s = timeout_s
        self._client = client

    def _http(self) -> httpx.Client:
        if self._client is None:
            self._client = httpx.Client(
                transport=guarded_transport(allow_private=self._allow_private, retries=0),
                timeout=httpx.Timeout(self._timeout_s, connect=min(5.0, self._timeout_s)),
                follow_redirects=False,
                headers={"User-Agent": USER_AGENT},
            )
        return self._client

    def post(self, url: str, headers: Mapping[str, str], body: str) -> DeliveryAttempt:
        at = datetime.now(UTC)
        started = time.monotonic()
        status: int | None = None
        error: str | None = None
        try:
            response = self._http().post(
                url,
                content=body.encode(),
                headers={**headers, "Content-Type": "application/json"},
            )
            status = response.status_code
        except UnsafeMachineAddress as refused:  # raised by the guarded transport
            error = f"refused: the receiver is not a public address ({refused.message})"
        except httpx.TimeoutException:
            error = "timeout"
        except httpx.HTTPError as failed:  # connection refused, TLS, protocol errors
            error = f"transport error: {type(failed).__name__}"
        duration_ms = int((time.monotonic() - started) * 1000)
        return DeliveryAttempt(at=at, status_code=status, error=error, duration_ms=duration_ms)
