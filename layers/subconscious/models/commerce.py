"""Quotes, their options, and orders with their life cycle."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Any

from pydantic import AwareDatetime, BaseModel, Field, model_validator

from subconscious.models.job import Constraints, ConstraintsIn, JobSpec, StrictModel


class WebhookEvent(StrEnum):
    """What an order's webhook may be told (docs/webhooks.md): one event when it ends."""

    COMPLETED = "order.completed"
    PARTIALLY_COMPLETED = "order.partially_completed"
    FAILED = "order.failed"
    EXPIRED = "order.expired"
    CANCELED = "order.canceled"


class QuoteRequest(StrictModel):
    job: JobSpec
    constraints: ConstraintsIn = ConstraintsIn()


class QuoteOption(BaseModel):
    option_id: str
    label: str = Field(
        description="what the option is to the request: requested (meets the deadline and the "
        "budget, the cheapest that does), cheapest (the cheapest on time, over budget), "
        "earliest_in_budget (the earliest within budget, after the deadline), earliest (the "
        "earliest finish at any price, with its price), wait_<n>d (cheaper if it may take n "
        "days), and where no option meets either term: fastest (the soonest finish) and "
        "lowest_price (the lowest price). Each trade-off is shown once: an option that another "
        "beats or equals on both completion and price is left out (the answer to the request "
        "never is). Order: requested, cheapest and earliest_in_budget first, then the others by "
        "completes_at, earliest first, ties by price"
    )
    provider: str
    gpu: str
    interruptible: bool = False
    machines: int = 1
    start_at: AwareDatetime
    completes_at: AwareDatetime = Field(
        description="the promise: every image by then, with the safety reserve kept (a deadline "
        "the customer gave is promised as given, so the work may be batched until then)"
    )
    expected_completion_at: AwareDatetime = Field(
        description="when we expect the work to end if its machines were rented now: start-up, "
        "then rendering at the fleet's modelled rate, no reserve; never after completes_at. The "
        "dispatch may start later (to share a start-up, or for cheaper interruptible capacity), "
        "never so late that completes_at is missed"
    )
    price_per_image_usd: Decimal
    total_usd: Decimal
    meets_deadline: bool = Field(description="completes_at is by the requested deadline")
    meets_budget: bool = Field(description="the price is within max_price_per_image_usd")

    @model_validator(mode="before")
    @classmethod
    def _expected_defaults_to_the_promise(cls, data: Any) -> Any:
        """Quotes stored before expected_completion_at existed read it as the promise."""
        if isinstance(data, dict) and "expected_completion_at" not in data:
            return {**data, "expected_completion_at": data.get("completes_at")}
        return data


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
    accept_outside_terms: bool = Field(
        default=False,
        description="accept an option that misses the quote's deadline or budget "
        "(meets_deadline or meets_budget false); without it such an option is refused "
        "(422 `outside_terms`)",
    )
    webhook_url: Annotated[
        str | None,
        Field(
            max_length=2048,
            description="https URL that gets a signed POST when the order ends (docs/webhooks.md)",
        ),
    ] = None
    webhook_events: Annotated[
        list[WebhookEvent] | None,
        Field(min_length=1, max_length=5, description="the events to send; null: all of them"),
    ] = None


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
TERMINAL_STATES = frozenset(OrderState) - OPEN_STATES
# Which tasks a render run may spend GPU time on.
RENDERABLE_STATES = frozenset({OrderState.ACCEPTED, OrderState.RENDERING})


class EndReason(StrEnum):
    """Why an order ended: machine-readable, stable (clients may match on it)."""

    ALL_DELIVERED = "all_delivered"  # completed
    TASKS_FAILED = "tasks_failed"  # some or all images could not be rendered (attempts spent)
    DEADLINE_PASSED = "deadline_passed"  # expired: work left when its time ran out
    CANCELLED = "cancelled"  # by the customer
    ACCEPTANCE_INCOMPLETE = "acceptance_incomplete"  # an acceptance that never finished


# Why an order that reaches a terminal state usually ended there (a caller may say otherwise).
USUAL_REASON: dict[OrderState, EndReason] = {
    OrderState.COMPLETED: EndReason.ALL_DELIVERED,
    OrderState.PARTIALLY_COMPLETED: EndReason.TASKS_FAILED,
    OrderState.FAILED: EndReason.TASKS_FAILED,
    OrderState.EXPIRED: EndReason.DEADLINE_PASSED,
    OrderState.CANCELLED: EndReason.CANCELLED,
}

# Every state ends; an accepted order may end without ever rendering (its tasks all failed,
# or its deadline passed), and one stuck in ``quoted`` (an acceptance never completed) fails.
TRANSITIONS: dict[OrderState, frozenset[OrderState]] = {
    OrderState.QUOTED: frozenset({OrderState.ACCEPTED, OrderState.CANCELLED, OrderState.FAILED}),
    OrderState.ACCEPTED: frozenset(
        {
            OrderState.RENDERING,
            OrderState.COMPLETED,
            OrderState.PARTIALLY_COMPLETED,
            OrderState.FAILED,
            OrderState.CANCELLED,
            OrderState.EXPIRED,
        }
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


class RunShare(BaseModel):
    """One finished run's overhead charged to one order it rendered for."""

    gpu_micros: int = Field(ge=0)
    aws_micros: int = Field(ge=0)


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
    images_failed: int = Field(default=0, description="images given up after their attempts")
    spend_micros: int = 0
    # What serving it costs us (operator only, never the customer's view): AWS's charges its
    # batches brought as they were stored, and each finished run's overhead (start-up, idle,
    # teardown, the provider's billing increments, AWS per machine) shared among the orders
    # it rendered for, by run id (set once per run: a retried record cannot count it twice).
    aws_micros: int = 0
    run_costs: dict[str, RunShare] = Field(default_factory=dict)
    end_reason: EndReason | None = None
    ended_at: AwareDatetime | None = None
    promised_at: AwareDatetime = Field(
        description="completion time promised by the accepted option"
    )
    held_until: AwareDatetime | None = Field(
        default=None,
        description="set by dispatch while the order waits to share a start-up or for "
        "interruptible machines to come back",
    )
    held_reason: str | None = None
    created_at: AwareDatetime
    updated_at: AwareDatetime
    webhook_url: str | None = None
    webhook_events: list[WebhookEvent] | None = None

    @property
    def gpu_cost_micros(self) -> int:
        """GPU time: its batches' rendering, and its share of each finished run's overhead."""
        return self.spend_micros + sum(r.gpu_micros for r in self.run_costs.values())

    @property
    def aws_cost_micros(self) -> int:
        """AWS's charges (an estimate: planner/serving.py): its images and its share of each
        finished run's machine."""
        return self.aws_micros + sum(r.aws_micros for r in self.run_costs.values())

    @property
    def images_settled(self) -> int:
        """Images with an outcome: delivered, or given up."""
        return self.images_done + self.images_failed

    @property
    def deadline(self) -> datetime:
        """When the order's time runs out: the customer's deadline, else the accepted promise."""
        return self.constraints.deadline or self.promised_at

    def settled_state(self) -> OrderState:
        """The end state once every image has an outcome."""
        if self.images_failed == 0:
            return OrderState.COMPLETED
        return OrderState.PARTIALLY_COMPLETED if self.images_done else OrderState.FAILED

    @property
    def images_released(self) -> int:
        """Once ended, the images it will never get (its time ran out, or it was cancelled)."""
        if self.state in OPEN_STATES:
            return 0
        return max(0, self.images_total - self.images_settled)

    @property
    def charge_usd(self) -> Decimal:
        """What the customer owes: the images delivered at the accepted price, never more than
        the accepted total."""
        return min(self.total_usd, self.price_per_image_usd * self.images_done)


class OrderOut(BaseModel):
    """An order as the customer sees it."""

    order_id: str
    quote_id: str
    option_id: str
    state: OrderState
    images_total: int
    images_done: int
    images_failed: int = Field(description="images given up after their attempts: not charged")
    images_released: int = Field(
        description="images never rendered because the order ended first (expired, cancelled): "
        "not charged; 0 while the order is open"
    )
    price_per_image_usd: Decimal
    total_usd: Decimal
    charge_usd: Decimal = Field(description="what the order costs: images delivered x price")
    promised_at: AwareDatetime
    eta: AwareDatetime | None
    held_until: AwareDatetime | None = Field(
        default=None,
        description="while the order waits to share a machine start-up with other orders, or "
        "for cheaper interruptible machines to come back: when it starts at the latest; null "
        "otherwise",
    )
    held_reason: str | None = Field(
        default=None, description="why the order is waiting, for people; null when it is not"
    )
    end_reason: EndReason | None = Field(description="why the order ended; null while open")
    ended_at: AwareDatetime | None
    created_at: AwareDatetime
    updated_at: AwareDatetime
    webhook_url: str | None = Field(default=None, description="where the order's end is POSTed")


class OrderPage(BaseModel):
    """The caller's orders, newest first."""

    orders: list[OrderOut]
    next_token: str | None = Field(
        default=None, description="pass as `next_token` for the next page; null on the last"
    )


class OrderCosts(BaseModel):
    """What an order costs us beside what it was quoted (the operator's view only)."""

    quoted_total_usd: Decimal = Field(description="the accepted option's total")
    gpu_cost_usd: Decimal = Field(
        description="GPU time as the providers bill it (their billing increments), start-ups "
        "and idle time of shared machines split by images rendered"
    )
    aws_cost_usd: Decimal = Field(
        description="AWS's charges, estimated from list prices (docs/serving-costs.md)"
    )
    cost_usd: Decimal = Field(description="gpu_cost_usd + aws_cost_usd")
    margin_usd: Decimal = Field(description="charge_usd (images delivered x price) - cost_usd")


class OperatorOrderOut(OrderOut):
    """An order as the operator sees it: the customer's view and what it costs us."""

    tenant_id: str
    costs: OrderCosts


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
