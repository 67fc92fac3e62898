"""The objects many tests build, in one place: a render task and a market offer with plain
defaults. A test module that needs other defaults wraps these (naming only what differs), so a
new required field is added here once."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from subconscious.models import ModelFamily, Offer, RenderTask, Sampler


def render_task(seed: int = 1, batch_size: int = 8, **fields: Any) -> RenderTask:
    """One SD 1.5 task of 512x512 images; ``fields`` replace any default."""
    defaults: dict[str, Any] = {
        "tenant_id": "t-1",
        "order_id": "o-1",
        "prompt_index": 0,
        "prompt": "a fox",
        "negative_prompt": "",
        "seed": seed,
        "batch_size": batch_size,
        "width": 512,
        "height": 512,
        "steps": 20,
        "cfg_scale": Decimal(7),
        "sampler": Sampler.EULER_A,
        "model_family": ModelFamily.SD15,
    }
    return RenderTask(**{**defaults, **fields})


def offer(
    offer_id: str = "o-3090",
    gpu: str = "RTX 3090",
    price: str = "0.30",
    *,
    bid: str | None = None,
    provider: str = "vast",
    startup_s: int = 300,
    memory: int = 24,
) -> Offer:
    """A single-GPU offer at ``price`` $/h; interruptible from ``bid`` $/h when given."""
    return Offer(
        provider=provider,
        offer_id=offer_id,
        gpu=gpu,
        gpu_memory_gb=memory,
        usd_per_hour=Decimal(price),
        interruptible=bid is not None,
        min_bid_usd_per_hour=Decimal(bid) if bid else None,
        startup_s=startup_s,
    )
