"""Quotes, their options, and orders with their life cycle."""

from __future__ import annotations

from decimal import Decimal
from enum import StrEnum
from typing import Annotated

from pydantic import AwareDatetime, BaseModel, Field

from subconscious.models.job import Constraints, ConstraintsIn, JobSpec, StrictModel


class QuoteRequest(StrictModel):
    job: JobSpec
    constraints: ConstraintsIn = ConstraintsIn()


class QuoteOption(BaseModel):
    option_id: str
    label: str = Field(description="requested, cheapest, earliest, or wait_<n>d")
    provider: str
    gpu: str
    interruptible: bool = False
    machines: int = 1
    start_at: AwareDatetime
    completes_at: AwareDatetime
    price_per_image_usd: Decimal
    total_usd: Decimal
    meets_deadline: bool
    meets_budget: bool


class Quote(BaseModel):
    quote_id: str
    job: JobSpec
    constraints: Constraints
    options: list[QuoteOption]
    created_at: AwareDatetime
    expires_at: AwareDatetime

    @property
    def feasible(self) -> bool:
        return any(o.meets_deadline and o.meets_budget for o in self.options)

    def option(self, option_id: str) -> QuoteOption | None:
        return next((o for o in self.options if o.option_id == option_id), None)


class QuoteOut(Quote):
    feasible_as_requested: bool


class OrderRequest(StrictModel):
    quote_id: Annotated[str, Field(min_length=1, max_length=64)]
    option_id: Annotated[str, Field(min_length=1, max_length=64)]


class OrderState(StrEnum):
    QUOTED = "quoted"  # written, tasks being queued: not yet a promise
    ACCEPTED = "accepted"
    RENDERING = "rendering"
    COMPLETED = "completed"
    PARTIALLY_COMPLETED = "partially_completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    EXPIRED = "expired"


OPEN_STATES = frozenset({OrderState.QUOTED, OrderState.ACCEPTED, OrderState.RENDERING})
# Which tasks a render run may spend GPU time on.
RENDERABLE_STATES = frozenset({OrderState.ACCEPTED, OrderState.RENDERING})

TRANSITIONS: dict[OrderState, frozenset[OrderState]] = {
    OrderState.QUOTED: frozenset({OrderState.ACCEPTED, OrderState.CANCELLED}),
    OrderState.ACCEPTED: frozenset(
        {OrderState.RENDERING, OrderState.COMPLETED, OrderState.CANCELLED, OrderState.EXPIRED}
    ),
    OrderState.RENDERING: frozenset(
        {
            OrderState.COMPLETED,
            OrderState.PARTIALLY_COMPLETED,
            OrderState.FAILED,
            OrderState.CANCELLED,
            OrderState.EXPIRED,
        }
    ),
}


def sources_of(target: OrderState) -> frozenset[OrderState]:
    """The states from which ``target`` may be entered (used as DynamoDB conditions)."""
    return frozenset(s for s, targets in TRANSITIONS.items() if target in targets)


class Order(BaseModel):
    order_id: str
    quote_id: str
    option_id: str
    state: OrderState
    job: JobSpec
    constraints: Constraints
    price_per_image_usd: Decimal
    total_usd: Decimal
    images_total: int
    seed_bases: list[int] = Field(description="first seed of each prompt, fixed at acceptance")
    gpu: str = Field(description="the GPU the accepted option was priced on")
    images_done: int = 0
    spend_micros: int = 0
    promised_at: AwareDatetime = Field(
        description="completion time promised by the accepted option"
    )
    created_at: AwareDatetime
    updated_at: AwareDatetime


class OrderOut(BaseModel):
    """An order as the customer sees it."""

    order_id: str
    quote_id: str
    option_id: str
    state: OrderState
    images_total: int
    images_done: int
    price_per_image_usd: Decimal
    total_usd: Decimal
    spend_usd: Decimal
    promised_at: AwareDatetime
    eta: AwareDatetime | None
    created_at: AwareDatetime
    updated_at: AwareDatetime


class ImageOut(BaseModel):
    prompt_index: int
    prompt: str
    seed: int
    width: int
    height: int
    url: str
    url_expires_at: AwareDatetime


class ImagePage(BaseModel):
    order_id: str
    images: list[ImageOut]
    next_token: str | None = None
