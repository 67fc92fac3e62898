"""The operator's view of an order: what it was quoted beside what serving it cost us.

A key whose tenant record carries ``role: "operator"`` may read any tenant's order (naming the
tenant) and sees its costs; a customer's key sees its own orders, never their costs, and an
order of another tenant is, to it, no order at all (404, as an order id that does not exist:
the answer says nothing of whether it exists).
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from subconscious.errors import NotFound
from subconscious.logic import orders as order_logic
from subconscious.models import OperatorOrderOut, Order, OrderCosts
from subconscious.models.servers import WorkerKind
from subconscious.models.tenancy import Principal
from subconscious.money import to_usd

if TYPE_CHECKING:  # a type only: services.py, the composition root, sits above logic
    from subconscious.services import Services


def visible_order(
    services: Services, principal: Principal, order_id: str, tenant_id: str | None = None
) -> tuple[str, Order]:
    """(owner, order) the caller may read: its own, or, for the operator, ``tenant_id``'s.
    A customer naming another tenant gets the same NotFound as for an order that does not
    exist."""
    owner = tenant_id or principal.tenant_id
    if owner != principal.tenant_id and not principal.operator:
        raise NotFound(f"order {order_id} not found")
    return owner, order_logic.get_order(services, owner, order_id)


def order_costs(order: Order) -> OrderCosts:
    gpu = to_usd(order.gpu_cost_micros)
    aws = to_usd(order.aws_cost_micros)
    cost = gpu + aws
    return OrderCosts(
        quoted_total_usd=order.total_usd,
        gpu_cost_usd=gpu,
        aws_cost_usd=aws,
        cost_usd=cost,
        margin_usd=order.charge_usd - cost,
    )


def operator_order_out(
    order: Order,
    tenant_id: str,
    now: datetime | None = None,
    worker: WorkerKind = WorkerKind.AUTOMATIC1111,
) -> OperatorOrderOut:
    customer = order_logic.order_out(order, now, worker)
    return OperatorOrderOut(**dict(customer), tenant_id=tenant_id, costs=order_costs(order))
