"""``GET /v1/market``: what the market offers now, per GPU model, with what an image costs."""

from __future__ import annotations

from decimal import Decimal

from pydantic import AwareDatetime, BaseModel


class ProviderFreshness(BaseModel):
    provider: str
    fetched_at: AwareDatetime | None
    age_s: int | None
    ok: bool
    stale: bool  # its offers are older than what we quote on: they are left out below
    error: str | None = None


class MarketOffer(BaseModel):
    provider: str
    offer_id: str
    gpu: str
    usd_per_hour: Decimal
    interruptible_usd_per_hour: Decimal | None
    usd_per_image_sd15: Decimal  # 512², 20 steps
    usd_per_image_sdxl: Decimal  # 1024², 20 steps
    location: str


class GpuGroup(BaseModel):
    gpu: str  # canonical name
    offers: list[MarketOffer]


class MarketView(BaseModel):
    as_of: AwareDatetime
    providers: list[ProviderFreshness]
    gpus: list[GpuGroup]
