"""Every order ends (invariant 8): the rules that settle tasks and close orders.

An image ends exactly once, ``delivered`` (rendered and stored) or ``given up`` (its task spent
its attempts): both are the same conditional row in the images ledger. An order ends when every
image has an outcome (``completed``, ``partially_completed`` or ``failed``), when the customer
cancels, or when its time runs out (``expired``). It is charged for delivered images only.

Who settles what:
- the render step, when a task fails on a machine: it is queued again, split in halves and kept
  off that machine, until it has spent ``task_max_attempts``; then its images are given up;
- the dispatch tick's :func:`sweep`: tasks that SQS moved to the dead-letter queue (a render
  Lambda that died on them over and over) are given up; orders past their time expire; an
  acceptance that never finished fails; an order whose images all have an outcome is closed
  (a crash between the last image and its order's transition).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from subconscious.logic.orders import announce_end
from subconscious.models import EndReason, Order, OrderState, RenderTask
from subconscious.observability import logger

if TYPE_CHECKING:  # a type only: services.py, the composition root, sits above logic
    from subconscious.services import Services

# A dead-letter sweep reads at most this many messages a tick (10 per call): the rest wait for
# the next tick, so one sweep stays well inside the dispatch Lambda's minute.
DEAD_LETTERS_PER_TICK = 100
# An acceptance still in ``quoted`` this long after its order was written was abandoned: the
# client's idempotent retry (same key) would have finished it well before.
ACCEPTANCE_ABANDONED_AFTER = timedelta(hours=1)


@dataclass
class SweepReport:
    dead_letters: int = 0
    ended: dict[str, str] = field(default_factory=dict)  # order id -> state it ended in


def close_if_settled(services: Services, tenant_id: str, order: Order) -> OrderState | None:
    """End ``order`` if every image has an outcome; the state it ended in, else None."""
    if order.state not in (OrderState.ACCEPTED, OrderState.RENDERING):
        return None
    if order.images_settled < order.images_total:
        return None
    target = order.settled_state()
    reason = EndReason.ALL_DELIVERED if target is OrderState.COMPLETED else EndReason.TASKS_FAILED
    if not services.orders.transition(tenant_id, order.order_id, target, reason):
        return None  # ended meanwhile (cancelled, another closer)
    announce_end(services, tenant_id, order)
    logger.info(
        "order ended",
        order_id=order.order_id,
        state=target.value,
        reason=reason.value,
        images_done=order.images_done,
        images_failed=order.images_failed,
    )
    return target


def give_up(services: Services, task: RenderTask, why: str) -> OrderState | None:
    """Settle every image of ``task`` not yet delivered as failed, then close its order if
    that was the last outcome it waited for. Idempotent; the state the order ended in, if it
    ended now."""
    given_up = sum(
        services.images.give_up(
            task.tenant_id, task.order_id, prompt_index=task.prompt_index, seed=s
        )
        for s in task.seeds
    )
    logger.warning(
        "task given up",
        order_id=task.order_id,
        task=task.task_id,
        attempts=task.attempts,
        images=given_up,
        why=why,
    )
    order = services.orders.get(task.tenant_id, task.order_id)
    return close_if_settled(services, task.tenant_id, order) if order is not None else None


def retry_or_give_up(
    services: Services, task: RenderTask, machine_id: str | None, why: str
) -> None:
    """After ``task`` failed on ``machine_id``: queue it again, smaller and elsewhere, while it
    has attempts left; else give its images up. The caller then deletes the failed delivery."""
    retries = task.retry_after_failure(machine_id)
    if retries[0].attempts >= services.settings.task_max_attempts:
        give_up(services, task, why)
        return
    services.queue.send(retries)
    logger.info(
        "task queued again",
        order_id=task.order_id,
        task=task.task_id,
        attempt=retries[0].attempts + 1,
        parts=len(retries),
        why=why,
    )


def sweep(services: Services, now: datetime | None = None) -> SweepReport:
    """The dispatch tick's pass that makes sure nothing waits for ever."""
    now = now or datetime.now(UTC)
    report = SweepReport()
    report.dead_letters = _drain_dead_letters(services, report)
    for tenant_id, order in services.orders.open_orders():
        ended = _end_if_due(services, tenant_id, order, now)
        if ended is not None:
            report.ended[order.order_id] = ended.value
    return report


def _drain_dead_letters(services: Services, report: SweepReport) -> int:
    if not services.settings.dead_letter_queue_url:
        return 0
    dead = services.dead_letters
    drained = 0
    while drained < DEAD_LETTERS_PER_TICK:
        deliveries = dead.receive(10, 0, 60)
        if not deliveries:
            break
        for delivery in deliveries:
            task = delivery.task
            order = services.orders.get(task.tenant_id, task.order_id)
            if order is not None and order.state is OrderState.QUOTED:
                # its acceptance is still being finished (or was abandoned: the sweep fails
                # the order within the hour): never give up images of an order not yet taken
                services.queue.send([task])
            else:
                ended = give_up(services, task, "dead-lettered after repeated failed deliveries")
                if ended is not None:
                    report.ended[task.order_id] = ended.value
            dead.delete(delivery)  # only once its images are settled or it is queued again
            drained += 1
    return drained


def _end_if_due(
    services: Services, tenant_id: str, order: Order, now: datetime
) -> OrderState | None:
    if order.state is OrderState.QUOTED:
        if now - order.created_at < ACCEPTANCE_ABANDONED_AFTER:
            return None
        if not services.orders.transition(
            tenant_id, order.order_id, OrderState.FAILED, EndReason.ACCEPTANCE_INCOMPLETE
        ):
            return None
        announce_end(services, tenant_id, order)
        logger.warning("abandoned acceptance failed", order_id=order.order_id)
        return OrderState.FAILED
    settled = close_if_settled(services, tenant_id, order)
    if settled is not None:
        return settled
    if now < expires_at(order, services.settings.late_limit_s):
        return None
    if not services.orders.transition(
        tenant_id, order.order_id, OrderState.EXPIRED, EndReason.DEADLINE_PASSED
    ):
        return None
    announce_end(services, tenant_id, order)
    logger.warning(
        "order expired",
        order_id=order.order_id,
        late_work=order.constraints.late_work,
        images_done=order.images_done,
        images_total=order.images_total,
    )
    return OrderState.EXPIRED


def expires_at(order: Order, late_limit_s: int) -> datetime:
    """When an unfinished order stops: at its deadline with ``late_work="stop"``, else that
    much later (work past the deadline still has value to most customers, up to a point)."""
    if order.constraints.late_work == "stop":
        return order.deadline
    return order.deadline + timedelta(seconds=late_limit_s)
