"""Canned API answers shaped like the server's, for tests that mock HTTP with respx."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

API = "http://api.test"
KEY = "sk_test_client_0123456789"
STORAGE = "https://bucket.s3.example.com"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + b"\x00" * 32
ORDER_ID = "o-" + "a" * 32


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def quote_json(quote_id: str = "q-1", *, feasible: bool = True) -> dict[str, Any]:
    now = datetime.now(UTC)
    option = {
        "provider": "fake",
        "gpu": "RTX 4090",
        "interruptible": False,
        "machines": 1,
        "start_at": iso(now),
        "meets_deadline": True,
        "meets_budget": True,
    }
    return {
        "quote_id": quote_id,
        "job": {},
        "constraints": {"deadline": None, "max_price_per_image_usd": None},
        "options": [
            {
                **option,
                "option_id": "opt-requested",
                "label": "requested",
                "expected_completion_at": iso(now + timedelta(minutes=40)),
                "completes_at": iso(now + timedelta(hours=2)),
                "price_per_image_usd": "0.000123",
                "total_usd": "0.25",
            },
            {
                **option,
                "option_id": "opt-cheapest",
                "label": "cheapest",
                "gpu": "RTX 3090",
                "machines": 2,
                "interruptible": True,
                "completes_at": iso(now + timedelta(hours=9)),
                "price_per_image_usd": "0.0001",
                "total_usd": "0.20",
                "meets_deadline": False,
            },
        ],
        "created_at": iso(now),
        "expires_at": iso(now + timedelta(minutes=15)),
        "feasible_as_requested": feasible,
    }


def order_json(
    state: str = "accepted", done: int = 0, total: int = 100, **extra: Any
) -> dict[str, Any]:
    now = datetime.now(UTC)
    return {
        "order_id": ORDER_ID,
        "quote_id": "q-1",
        "option_id": "opt-requested",
        "state": state,
        "images_total": total,
        "images_done": done,
        "price_per_image_usd": "0.0123",
        "total_usd": "1.23",
        "spend_usd": "0.123",
        "promised_at": iso(now + timedelta(hours=2)),
        "eta": iso(now + timedelta(hours=1)),
        "created_at": iso(now),
        "updated_at": iso(now),
        **extra,
    }


def image_json(prompt_index: int, seed: int) -> dict[str, Any]:
    return {
        "prompt_index": prompt_index,
        "prompt": f"prompt {prompt_index}",
        "seed": seed,
        "width": 512,
        "height": 512,
        "url": f"{STORAGE}/img/{prompt_index}-{seed}.png?X-Amz-Signature=secret-sig",
        "url_expires_at": iso(datetime.now(UTC) + timedelta(hours=1)),
    }


def error_json(code: str, message: str, details: list[dict[str, str]] | None = None) -> Any:
    body: dict[str, Any] = {"code": code, "message": message}
    if details:
        body["details"] = details
    return {"error": body}
