"""Orders: accept a quote (idempotently), read progress, list images, cancel."""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from subconscious.errors import (
    Conflict,
    IdempotencyKeyReused,
    NotFound,
    OutsideTerms,
    QuoteAlreadyAccepted,
    QuoteExpired,
    RequestInProgress,
    ValidationFailed,
)
from subconscious.logic import webhooks
from subconscious.logic.throughput import prior
from subconscious.models import (
    MAX_IMAGES_PER_ORDER,
    EndReason,
    ImageOut,
    ImagePage,
    JobSpec,
    Order,
    OrderOut,
    OrderPage,
    OrderRequest,
    OrderState,
    Quote,
    QuoteOption,
    RenderTask,
)
from subconscious.models.job import MAX_SEED
from subconscious.models.servers import WorkerKind
from subconscious.observability import logger
from subconscious.planner.workers import server_factor

if TYPE_CHECKING:  # a type only: services.py, the composition root, sits above logic
    from subconscious.services import Services

# Tasks are sized for a typical 24 GB card; a smaller card splits a batch on out-of-memory.
TASK_GPU_MEMORY_GB = 24
# Images per task (one txt2img call). Tasks are cut at acceptance, before any GPU is chosen:
# sized for a 24 GB card and capped at 8 so one call ends well inside a provider's 100 s
# proxy limit even on a slow card; a machine with less memory splits an OOM batch in two.
MAX_TASK_BATCH = 8
_ORDER_NAMESPACE = uuid.UUID("5b0f5c9e-3f3a-4d0e-9d0e-7a3c2f1b9e11")


class Acceptance(BaseModel):
    """What the idempotency key covers: the same key with another request is a conflict."""

    tenant_id: str
    idempotency_key: str
    request: OrderRequest


def order_id_for(quote_id: str) -> str:
    """One order per quote, with an id that a retry after a crash finds again."""
    return f"o-{uuid.uuid5(_ORDER_NAMESPACE, quote_id).hex}"


def seed_bases(order_id: str, job: JobSpec) -> list[int]:
    """First seed of each prompt. ``fixed``: the customer's base for every prompt. ``random``:
    drawn from the order id, so seeds are fixed at acceptance and a retried acceptance (after a
    crash) produces the same tasks, hence the same S3 keys."""
    if job.seed.kind == "fixed" and job.seed.base is not None:
        return [min(job.seed.base, MAX_SEED - p.count + 1) for p in job.prompts]
    bases = []
    for index, prompt in enumerate(job.prompts):
        digest = hashlib.sha256(f"{order_id}/{index}".encode()).digest()
        bases.append(
            int.from_bytes(digest[:8], "big") % (MAX_SEED - MAX_IMAGES_PER_ORDER - prompt.count)
        )
    return bases


def task_batch(job: JobSpec) -> int:
    return prior().fitting_batch(
        job.model_family, job.width, job.height, TASK_GPU_MEMORY_GB, most=MAX_TASK_BATCH
    )


def render_tasks(tenant_id: str, order: Order) -> list[RenderTask]:
    job = order.job
    batch = task_batch(job)
    tasks = []
    for index, (prompt, base) in enumerate(zip(job.prompts, order.seed_bases, strict=True)):
        for offset in range(0, prompt.count, batch):
            tasks.append(
                RenderTask(
                    tenant_id=tenant_id,
                    order_id=order.order_id,
                    prompt_index=index,
                    prompt=prompt.text,
                    negative_prompt=job.negative_prompt,
                    seed=base + offset,
                    batch_size=min(batch, prompt.count - offset),
                    width=job.width,
                    height=job.height,
                    steps=job.steps,
                    cfg_scale=job.cfg_scale,
                    sampler=job.sampler,
                    model_family=job.model_family,
                )
            )
    return tasks


def accept_quote(services: Services, acceptance: Acceptance) -> Order:
    """Write the order, queue its tasks, then mark it accepted.

    Crash-safe: the order id comes from the quote and the seeds from the order id, so a retry
    rewrites the same order and re-sends the same tasks (duplicates are harmless: progress counts
    each image key once). Idempotent per (tenant, key) through powertools idempotency.
    """
    from aws_lambda_powertools.utilities.idempotency.exceptions import (
        IdempotencyAlreadyInProgressError,
        IdempotencyValidationError,
    )

    webhooks.check_request(services.settings, acceptance.request)  # 422 before anything is written
    try:
        order: Order = idempotent_accept(services)(services=services, acceptance=acceptance)
    except IdempotencyValidationError as error:
        raise IdempotencyKeyReused(
            "this Idempotency-Key was used with a different request"
        ) from error
    except IdempotencyAlreadyInProgressError as error:
        raise RequestInProgress(
            "a request with this Idempotency-Key is still being processed; retry shortly"
        ) from error
    return order


def _accept(services: Services, acceptance: Acceptance, now: datetime | None = None) -> Order:
    now = now or datetime.now(UTC)
    tenant_id, request = acceptance.tenant_id, acceptance.request
    quote = services.quotes.get(tenant_id, request.quote_id)
    if quote is None:
        raise NotFound(
            f"no quote {request.quote_id} for this API key",
            details=[{"field": "quote_id", "message": "no such quote for this API key"}],
        )
    order_id = order_id_for(quote.quote_id)
    # An acceptance interrupted after writing the order is finished even past the quote's
    # expiry: some of its tasks may already be queued.
    interrupted = services.orders.get(tenant_id, order_id)
    if interrupted is not None and interrupted.state is not OrderState.QUOTED:
        if services.orders.accepted_with(tenant_id, order_id) == (
            acceptance.idempotency_key,
            request.option_id,
        ):
            # the winner's own retry after a crash that lost its recorded answer: the order
            return interrupted
        raise QuoteAlreadyAccepted(
            f"quote {quote.quote_id} was already accepted as order {order_id}", order_id=order_id
        )
    resuming = interrupted is not None
    if quote.expires_at <= now and not resuming:
        raise QuoteExpired(f"quote {quote.quote_id} expired at {quote.expires_at.isoformat()}")
    option = quote.option(request.option_id)
    if option is None:
        raise ValidationFailed(
            f"quote {quote.quote_id} has no option {request.option_id}",
            details=[{"field": "option_id", "message": "not an option of this quote"}],
        )
    if not request.accept_outside_terms:
        refuse_outside_terms(quote, option)
    order = Order(
        order_id=order_id,
        quote_id=quote.quote_id,
        option_id=option.option_id,
        state=OrderState.QUOTED,
        job=quote.job,
        constraints=quote.constraints,
        price_per_image_usd=option.price_per_image_usd,
        total_usd=option.total_usd,
        images_total=quote.job.total_images,
        seed_bases=seed_bases(order_id, quote.job),
        gpu=option.gpu,
        promised_at=option.completes_at,
        created_at=now,
        updated_at=now,
        webhook_url=request.webhook_url,
        webhook_events=request.webhook_events,
    )
    # The one conditional write that decides between concurrent acceptances (invariant 10):
    # only its winner, or a retry of the winner's request, goes on to queue tasks.
    services.orders.create_or_resume(tenant_id, order, acceptance.idempotency_key)
    tasks = render_tasks(tenant_id, order)
    services.queue.send(tasks)
    if not services.orders.transition(tenant_id, order_id, OrderState.ACCEPTED):
        # cancelled while its tasks were being queued: answer what is stored, not "accepted"
        return get_order(services, tenant_id, order_id)
    logger.info("order accepted", order_id=order_id, images=order.images_total, tasks=len(tasks))
    return order.model_copy(update={"state": OrderState.ACCEPTED})


def outside_terms(quote: Quote, option: QuoteOption) -> list[str]:
    """How ``option`` misses the terms the customer quoted with (empty when it meets them)."""
    misses = []
    cap = quote.constraints.max_price_per_image_usd
    if not option.meets_budget:
        over = f", over your max_price_per_image_usd ${cap}" if cap is not None else ""
        misses.append(f"costs ${option.price_per_image_usd}/image{over}")
    deadline = quote.constraints.deadline
    if not option.meets_deadline:
        after = f", after your deadline {_utc(deadline)}" if deadline is not None else ""
        misses.append(f"completes at {_utc(option.completes_at)}{after}")
    return misses


def refuse_outside_terms(quote: Quote, option: QuoteOption) -> None:
    """The order guard: an option outside the customer's own deadline or price cap is
    accepted only with ``accept_outside_terms`` (nothing is written or queued otherwise)."""
    misses = outside_terms(quote, option)
    if not misses:
        return
    message = (
        f"option {option.label} ({option.option_id}) {' and '.join(misses)}; "
        "resend with accept_outside_terms=true to accept it"
    )
    raise OutsideTerms(message, details=[{"field": "accept_outside_terms", "message": message}])


def _utc(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def idempotent_accept(services: Services) -> Any:
    """``_accept`` remembered per (tenant, Idempotency-Key) in the services' idempotency store
    (decorated per call: the store belongs to the services, not to this module)."""
    from aws_lambda_powertools.utilities.idempotency import idempotent_function
    from aws_lambda_powertools.utilities.idempotency.serialization.pydantic import (
        PydanticSerializer,
    )

    @idempotent_function(
        data_keyword_argument="acceptance",
        persistence_store=services.idempotency.persistence,
        config=services.idempotency.config,
        output_serializer=PydanticSerializer(model=Order),
    )
    def accept(*, services: Services, acceptance: Acceptance) -> Order:
        return _accept(services, acceptance)

    return accept


def register_lambda_context(services: Services, context: Any) -> None:
    """Lets idempotency size its in-progress lock by the invocation's remaining time."""
    services.idempotency.config.register_lambda_context(context)


def get_order(services: Services, tenant_id: str, order_id: str) -> Order:
    order = services.orders.get(tenant_id, order_id)
    if order is None:  # another tenant's order is indistinguishable from none
        raise NotFound(f"order {order_id} not found")
    return order


def order_out(
    order: Order, now: datetime | None = None, worker: WorkerKind = WorkerKind.AUTOMATIC1111
) -> OrderOut:
    now = now or datetime.now(UTC)
    return OrderOut(
        order_id=order.order_id,
        quote_id=order.quote_id,
        option_id=order.option_id,
        state=order.state,
        images_total=order.images_total,
        images_done=order.images_done,
        images_failed=order.images_failed,
        images_released=order.images_released,
        price_per_image_usd=order.price_per_image_usd,
        total_usd=order.total_usd,
        charge_usd=order.charge_usd,
        promised_at=order.promised_at,
        eta=eta(order, now, worker),
        held_until=order.held_until if order.state is OrderState.ACCEPTED else None,
        held_reason=order.held_reason if order.state is OrderState.ACCEPTED else None,
        end_reason=order.end_reason,
        ended_at=order.ended_at,
        created_at=order.created_at,
        updated_at=order.updated_at,
        webhook_url=order.webhook_url,
    )


def eta(
    order: Order, now: datetime, worker: WorkerKind = WorkerKind.AUTOMATIC1111
) -> datetime | None:
    """The promise until rendering starts; then the images left on one card of the GPU the
    order was priced on, rendered by ``worker`` (the prior's rate: a rough guide)."""
    if order.state not in (OrderState.QUOTED, OrderState.ACCEPTED, OrderState.RENDERING):
        return None
    if order.state is not OrderState.RENDERING:
        return max(now, order.promised_at)
    remaining = order.images_total - order.images_settled
    job = order.job
    per_s = prior().images_per_second(
        order.gpu, job.model_family, job.width, job.height, job.steps, task_batch(job)
    )
    per_s *= Decimal(
        repr(server_factor(worker, job.model_family, float(per_s), job.width, job.height))
    )
    seconds = remaining / per_s
    return now + timedelta(seconds=float(seconds))


def list_orders(
    services: Services,
    tenant_id: str,
    *,
    state: OrderState | None,
    limit: int,
    token: str | None,
    now: datetime | None = None,
) -> OrderPage:
    """The caller's orders, newest first, a page at a time."""
    now = now or datetime.now(UTC)
    orders, next_token = services.orders.page(tenant_id, limit, token, state)
    worker = services.settings.worker
    return OrderPage(orders=[order_out(o, now, worker) for o in orders], next_token=next_token)


def list_images(
    services: Services,
    tenant_id: str,
    order_id: str,
    limit: int | None,
    token: str | None,
    now: datetime | None = None,
) -> ImagePage:
    now = now or datetime.now(UTC)
    get_order(services, tenant_id, order_id)  # 404 for an unknown or foreign order
    settings = services.settings
    page_size = min(limit or settings.images_page_size, 1000)
    records, next_token = services.images.page(tenant_id, order_id, page_size, token)
    expires = settings.presign_expiry_s
    return ImagePage(
        order_id=order_id,
        images=[
            ImageOut(
                prompt_index=r.prompt_index,
                prompt=r.prompt,
                seed=r.seed,
                width=r.width,
                height=r.height,
                url=services.bucket.presign(r.key, expires),
                url_expires_at=now + timedelta(seconds=expires),
            )
            for r in records
        ],
        next_token=next_token,
    )


def cancel_order(services: Services, tenant_id: str, order_id: str) -> Order:
    order = get_order(services, tenant_id, order_id)
    if order.state is OrderState.CANCELLED:
        return order
    if not services.orders.transition(
        tenant_id, order_id, OrderState.CANCELLED, EndReason.CANCELLED
    ):
        current = get_order(services, tenant_id, order_id)
        raise Conflict(f"order {order_id} is {current.state.value} and cannot be cancelled")
    logger.info("order cancelled", order_id=order_id, images_done=order.images_done)
    announce_end(services, tenant_id, order)
    return get_order(services, tenant_id, order_id)


def announce_end(services: Services, tenant_id: str, order: Order) -> None:
    """After the transition that ended ``order`` (as read before it): queue its webhook event
    if it asked for one, with the order as it ended (read again)."""
    if order.webhook_url is None:
        return  # the common case: no read, no write
    ended = services.orders.get(tenant_id, order.order_id)
    if ended is not None:
        webhooks.announce(
            services, tenant_id, ended, order_out(ended, worker=services.settings.worker)
        )
