"""Canned API answers shaped like the server's, for tests that mock HTTP with respx."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

API = "http://api.test"
KEY = "sk_test_client_0123456789"
STORAGE = "https://bucket.s3.example.com"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + b"\x00" * 32
ORDER_ID = "o-" + "a" * 32


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def quote_json(
    quote_id: str = "q-1",
    *,
    feasible: bool = True,
    constraints: dict[str, Any] | None = None,
    options: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
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
        "job": {"prompts": [{"text": "a fox", "count": 2}]},
        "constraints": constraints or {"deadline": None, "max_price_per_image_usd": None},
        "options": options
        or [
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
                "expected_completion_at": iso(now + timedelta(hours=8)),
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
        "images_failed": 0,
        "images_released": 0,
        "price_per_image_usd": "0.0123",
        "total_usd": "1.23",
        "charge_usd": str(Decimal("0.0123") * done),
        "promised_at": iso(now + timedelta(hours=2)),
        "eta": iso(now + timedelta(hours=1)),
        "end_reason": None,
        "ended_at": None,
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


def option_json(
    option_id: str,
    label: str,
    price: str,
    *,
    images: int = 2,
    hours: float = 2,
    meets_deadline: bool = True,
    meets_budget: bool = True,
) -> dict[str, Any]:
    now = datetime.now(UTC)
    return {
        "option_id": option_id,
        "label": label,
        "provider": "fake",
        "gpu": "RTX 4090",
        "interruptible": False,
        "machines": 1,
        "start_at": iso(now),
        "expected_completion_at": iso(now + timedelta(hours=hours * 0.8)),
        "completes_at": iso(now + timedelta(hours=hours)),
        "price_per_image_usd": price,
        "total_usd": str(Decimal(price) * images),
        "meets_deadline": meets_deadline,
        "meets_budget": meets_budget,
    }


def market_json() -> dict[str, Any]:
    now = datetime.now(UTC)
    offer = {
        "provider": "vast",
        "offer_id": "v-1",
        "gpu": "RTX 4090",
        "usd_per_hour": "0.35",
        "interruptible_usd_per_hour": None,
        "usd_per_image_sd15": "0.00012",
        "usd_per_image_sdxl": "0.00051",
        "location": "US-CA",
    }
    return {
        "as_of": iso(now),
        "providers": [
            {"provider": "vast", "fetched_at": iso(now), "age_s": 5, "ok": True, "stale": False},
            {"provider": "runpod", "fetched_at": None, "age_s": None, "ok": False, "stale": True},
        ],
        "gpus": [{"gpu": "RTX 4090", "offers": [offer]}],
    }
