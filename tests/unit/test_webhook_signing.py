"""Webhook signatures against the Standard Webhooks spec and its libraries' published vector.

The vector (secret, id, timestamp, payload → signature) is the one the spec's own libraries test
with: standard-webhooks/standard-webhooks, libraries/python/tests/test_webhooks.py
(``test_sign_function``) and libraries/javascript/src/webhook.test.ts ("sign function works"):
key ``whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw``, msg ``msg_p5jXN8AQM9LWM0D4loKWxJek``,
timestamp 1614265330, payload ``{"test": 2432232314}`` →
``v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=``.
"""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta

import pytest

from subconscious.webhook_signing import (
    TOLERANCE_S,
    WebhookVerificationError,
    headers,
    new_secret,
    signature,
    verify,
)

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
MSG_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
TIMESTAMP = 1614265330
PAYLOAD = '{"test": 2432232314}'
EXPECTED = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
AT = datetime.fromtimestamp(TIMESTAMP, UTC)


def test_signs_the_specs_published_vector() -> None:
    assert signature(SECRET, MSG_ID, TIMESTAMP, PAYLOAD) == EXPECTED
    assert signature(SECRET, MSG_ID, TIMESTAMP, PAYLOAD.encode()) == EXPECTED
    # the prefix is a label: the key is the base64 after it (as the libraries accept both)
    assert signature(SECRET.removeprefix("whsec_"), MSG_ID, TIMESTAMP, PAYLOAD) == EXPECTED


def test_verifies_the_vector_within_the_window_and_header_names_in_any_case() -> None:
    sent = {
        "Webhook-Id": MSG_ID,
        "WEBHOOK-TIMESTAMP": str(TIMESTAMP),
        "webhook-signature": EXPECTED,
    }
    verify(SECRET, sent, PAYLOAD, now=AT)
    verify(SECRET, sent, PAYLOAD, now=AT + timedelta(seconds=TOLERANCE_S))
    verify(SECRET, sent, PAYLOAD, now=AT - timedelta(seconds=TOLERANCE_S))


@pytest.mark.parametrize("skew_s", [TOLERANCE_S + 1, -(TOLERANCE_S + 1)])
def test_a_timestamp_outside_five_minutes_is_refused(skew_s: int) -> None:
    sent = headers(SECRET, MSG_ID, TIMESTAMP, PAYLOAD)
    with pytest.raises(WebhookVerificationError, match="tolerance"):
        verify(SECRET, sent, PAYLOAD, now=AT + timedelta(seconds=skew_s))


def test_one_matching_v1_signature_among_several_suffices() -> None:
    other = "v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc="
    sent = {
        "webhook-id": MSG_ID,
        "webhook-timestamp": str(TIMESTAMP),
        "webhook-signature": f"{other} v2,{EXPECTED[3:]} {EXPECTED}",
    }
    verify(SECRET, sent, PAYLOAD, now=AT)
    sent["webhook-signature"] = f"{other} v2,{EXPECTED[3:]}"  # right bytes, wrong version
    with pytest.raises(WebhookVerificationError, match="no signature"):
        verify(SECRET, sent, PAYLOAD, now=AT)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"webhook-id": "msg_other"}, "no signature"),
        ({"webhook-timestamp": str(TIMESTAMP + 1)}, "no signature"),
        ({"webhook-timestamp": "hello"}, "unix seconds"),
        ({"webhook-signature": EXPECTED[:8]}, "no signature"),
        ({"webhook-signature": ""}, "missing"),
        ({"webhook-id": ""}, "missing"),
    ],
)
def test_any_change_to_the_headers_is_refused(change: dict[str, str], message: str) -> None:
    sent = {**headers(SECRET, MSG_ID, TIMESTAMP, PAYLOAD), **change}
    with pytest.raises(WebhookVerificationError, match=message):
        verify(SECRET, sent, PAYLOAD, now=AT)


def test_a_changed_body_or_another_secret_is_refused() -> None:
    sent = headers(SECRET, MSG_ID, TIMESTAMP, PAYLOAD)
    with pytest.raises(WebhookVerificationError):
        verify(SECRET, sent, PAYLOAD.replace("2432232314", "2432232315"), now=AT)
    with pytest.raises(WebhookVerificationError):
        verify(new_secret(), sent, PAYLOAD, now=AT)


def test_new_secrets_are_whsec_and_32_random_bytes() -> None:
    first, second = new_secret(), new_secret()
    assert first != second
    assert first.startswith("whsec_")
    assert len(base64.b64decode(first.removeprefix("whsec_"))) == 32


def test_a_malformed_secret_is_an_error_that_does_not_echo_it() -> None:
    with pytest.raises(WebhookVerificationError) as raised:
        signature("whsec_not*base64!", MSG_ID, TIMESTAMP, PAYLOAD)
    assert "not*base64" not in str(raised.value)
