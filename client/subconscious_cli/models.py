"""The API's answers as typed objects: quotes, orders, image pages, the market.

Written by hand against ``docs/openapi.json`` (this package must not import the server's
``subconscious`` package); ``tests/client/test_models.py`` compares every field here with the
schema of the same name there, so a change on either side fails a test until both agree.

Money is :class:`~decimal.Decimal` (the API sends decimal strings), times are timezone-aware.
Fields the API adds later are kept (``extra="allow"``) rather than refused, so an older client
keeps working against a newer API. Values that name a member of an open set (an order's state,
an end reason) are plain strings for the same reason.

Each model also reads like the JSON object it came from (``order["state"]``, ``.get(...)``),
for code written against the client's earlier dict answers.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

TERMINAL_STATES = frozenset({"completed", "partially_completed", "failed", "cancelled", "expired"})


class ApiModel(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)

    def __getitem__(self, key: str) -> Any:
        if key in type(self).model_fields:
            return getattr(self, key)
        extra = self.model_extra or {}
        if key in extra:
            return extra[key]
        raise KeyError(key)

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and (
            key in type(self).model_fields or key in (self.model_extra or {})
        )

    def get(self, key: str, default: Any = None) -> Any:
        try:
            return self[key]
        except KeyError:
            return default

    def to_json(self) -> dict[str, Any]:
        """The object as JSON values again (money as decimal strings, times ISO-8601)."""
        return self.model_dump(mode="json", exclude_unset=True)


# -- quotes -------------------------------------------------------------------------------------


class PromptSpec(ApiModel):
    text: str
    count: int


class SeedPolicy(ApiModel):
    kind: str = "random"
    base: int | None = None


class JobSpec(ApiModel):
    prompts: list[PromptSpec]
    negative_prompt: str = ""
    model_family: str = "sd15"
    width: int = 512
    height: int = 512
    steps: int = 20
    cfg_scale: Decimal = Decimal("7")
    sampler: str = "Euler a"
    seed: SeedPolicy = SeedPolicy()


class Constraints(ApiModel):
    deadline: AwareDatetime | None = None
    max_price_per_image_usd: Decimal | None = None
    late_work: str = "continue"


class QuoteOption(ApiModel):
    option_id: str
    label: str
    provider: str
    gpu: str
    interruptible: bool = False
    machines: int = 1
    start_at: AwareDatetime
    completes_at: AwareDatetime
    expected_completion_at: AwareDatetime  # our expected finish, beside the promise
    price_per_image_usd: Decimal
    total_usd: Decimal
    meets_deadline: bool
    meets_budget: bool

    @property
    def within_terms(self) -> bool:
        """Whether this option keeps both the deadline and the budget the quote was asked for."""
        return self.meets_deadline and self.meets_budget


class QuoteOut(ApiModel):
    quote_id: str
    job: JobSpec
    constraints: Constraints
    options: list[QuoteOption]
    created_at: AwareDatetime
    expires_at: AwareDatetime
    feasible_as_requested: bool

    def option(self, option_id: str) -> QuoteOption | None:
        return next((o for o in self.options if o.option_id == option_id), None)


# -- orders -------------------------------------------------------------------------------------


class OrderOut(ApiModel):
    """An order as the customer sees it. Money is the customer's: the price, the total quoted
    and the charge (images delivered x price); never what the GPUs cost us."""

    order_id: str
    quote_id: str
    option_id: str
    state: str
    images_total: int
    images_done: int
    images_failed: int = 0
    images_released: int = 0
    price_per_image_usd: Decimal
    total_usd: Decimal
    charge_usd: Decimal = Decimal(0)
    promised_at: AwareDatetime
    eta: AwareDatetime | None = None
    end_reason: str | None = None
    ended_at: AwareDatetime | None = None
    created_at: AwareDatetime
    updated_at: AwareDatetime
    # issue 16 contract item 3: while dispatch waits to share a machine start-up
    held_until: AwareDatetime | None = None
    held_reason: str | None = None
    # issue 16 contract item 2
    webhook_url: str | None = None

    @property
    def ended(self) -> bool:
        return self.state in TERMINAL_STATES


class OrderPage(ApiModel):
    """``GET /v1/orders``: the caller's orders, newest first (issue 16 contract item 1)."""

    orders: list[OrderOut]
    next_token: str | None = None


class ImageOut(ApiModel):
    prompt_index: int
    prompt: str
    seed: int
    width: int
    height: int
    url: str
    url_expires_at: AwareDatetime


class ImagePage(ApiModel):
    order_id: str
    images: list[ImageOut]
    next_token: str | None = None


# -- market -------------------------------------------------------------------------------------


class MarketOffer(ApiModel):
    provider: str
    offer_id: str
    gpu: str
    usd_per_hour: Decimal
    interruptible_usd_per_hour: Decimal | None
    usd_per_image_sd15: Decimal
    usd_per_image_sdxl: Decimal
    location: str


class GpuGroup(ApiModel):
    gpu: str
    offers: list[MarketOffer]


class ProviderFreshness(ApiModel):
    provider: str
    fetched_at: AwareDatetime | None
    age_s: int | None
    ok: bool
    stale: bool
    error: str | None = None


class MarketView(ApiModel):
    as_of: AwareDatetime
    providers: list[ProviderFreshness]
    gpus: list[GpuGroup]


# -- what Client.run hands back -----------------------------------------------------------------


class RunResult(BaseModel):
    """The outcome of :meth:`subconscious_cli.client.Client.run`."""

    model_config = ConfigDict(frozen=True)

    quote: QuoteOut
    option: QuoteOption
    order: OrderOut
    files: list[str] = Field(default_factory=list, description="PNG paths written")
    manifest: str | None = Field(default=None, description="path of manifest.jsonl")

    @property
    def complete(self) -> bool:
        return self.order.state == "completed" and len(self.files) == self.order.images_total
