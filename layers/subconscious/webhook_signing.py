"""Webhook signatures, as the Standard Webhooks spec defines them (the scheme Replicate uses):
https://github.com/standard-webhooks/standard-webhooks/blob/main/spec/standard-webhooks.md

A message is signed with the tenant's secret ``whsec_<base64 key bytes>``:
``webhook-signature: v1,<base64 HMAC-SHA256(key, f"{id}.{timestamp}.{body}")>``, sent beside
``webhook-id`` (the same on every retry of one event: receivers deduplicate on it) and
``webhook-timestamp`` (unix seconds of this attempt). A receiver refuses a timestamp more than
five minutes away from its clock (replays).

Standard library only, so a customer's receiver (or the client package) can use :func:`verify`
without the rest of this package. Secrets never reach an error message.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Mapping
from datetime import UTC, datetime

SECRET_PREFIX = "whsec_"  # noqa: S105 - the format's prefix, not a secret
TOLERANCE_S = 5 * 60
_KEY_BYTES = 32


class WebhookVerificationError(ValueError):
    """The message is not one we signed with this secret, or is too old (or too new)."""


def new_secret() -> str:
    """A fresh signing secret: ``whsec_`` and 32 random bytes in base64."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(_KEY_BYTES)).decode()


def _key(secret: str) -> bytes:
    try:
        return base64.b64decode(secret.removeprefix(SECRET_PREFIX), validate=True)
    except ValueError as error:  # binascii.Error is a ValueError
        raise WebhookVerificationError("the signing secret is not whsec_<base64>") from error


def signature(secret: str, msg_id: str, timestamp: int, body: str | bytes) -> str:
    """``v1,<base64 HMAC-SHA256>`` of ``{msg_id}.{timestamp}.{body}``."""
    raw = body if isinstance(body, bytes) else body.encode()
    to_sign = f"{msg_id}.{timestamp}.".encode() + raw
    digest = hmac.new(_key(secret), to_sign, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def headers(secret: str, msg_id: str, timestamp: int, body: str | bytes) -> dict[str, str]:
    """The three headers of one delivery attempt."""
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature(secret, msg_id, timestamp, body),
    }


def verify(
    secret: str,
    received: Mapping[str, str],
    body: str | bytes,
    *,
    now: datetime | None = None,
    tolerance_s: int = TOLERANCE_S,
) -> None:
    """Raise :class:`WebhookVerificationError` unless ``body`` with these headers (names in any
    case) was signed with ``secret`` within ``tolerance_s`` of ``now``. The signature header may
    list several space-separated signatures (a rotated secret): one matching ``v1`` suffices."""
    lowered = {k.lower(): v for k, v in received.items()}
    msg_id = lowered.get("webhook-id")
    stamp = lowered.get("webhook-timestamp")
    given = lowered.get("webhook-signature")
    if not msg_id or not stamp or not given:
        raise WebhookVerificationError("missing webhook-id, webhook-timestamp or signature")
    try:
        timestamp = int(stamp)
    except ValueError as error:
        raise WebhookVerificationError("webhook-timestamp is not unix seconds") from error
    at = (now or datetime.now(UTC)).timestamp()
    if abs(at - timestamp) > tolerance_s:
        raise WebhookVerificationError("webhook-timestamp is outside the tolerance window")
    expected = signature(secret, msg_id, timestamp, body).encode()
    for candidate in given.split(" "):
        if candidate.startswith("v1,") and hmac.compare_digest(candidate.encode(), expected):
            return
    raise WebhookVerificationError("no signature matches")
