"""The planner's view of our own state: promised orders and live machines, from the tables."""

from __future__ import annotations

from collections.abc import Set
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from subconscious.errors import MachinePreempted
from subconscious.models import RENDERABLE_STATES, Order, RenderRun, RunStatus
from subconscious.money import to_micros
from subconscious.planner.policy import Limits, LiveMachine, OpenOrder
from subconscious.planner.preemption import WINDOW, Spell, observed_rate

if TYPE_CHECKING:  # a type only: services.py, the composition root, sits above logic
    from subconscious.dal.runs import RunsRead
    from subconscious.services import Services
    from subconscious.settings import Settings


def limits(services: Services) -> Limits:
    settings = services.settings
    return Limits(
        max_machines=settings.max_live_runs,
        max_spend_micros_per_hour=to_micros(settings.max_spend_usd_per_hour),
    )


def open_orders(services: Services) -> list[Order]:
    """Promised orders that still render, oldest first."""
    return [o for _, o in tenants_open_orders(services)]


def tenants_open_orders(services: Services) -> list[tuple[str, Order]]:
    """(tenant, order) of each promised order that still renders, oldest first."""
    return sorted(
        ((t, o) for t, o in services.orders.open_orders() if o.state in RENDERABLE_STATES),
        key=lambda pair: pair[1].created_at,
    )


def backlog(orders: list[Order]) -> list[OpenOrder]:
    return [
        OpenOrder(o.order_id, o.job, max(0, o.images_total - o.images_settled), o.promised_at)
        for o in orders
    ]


# A machine past its expected start-up that has not answered yet is taken to be a tick away:
# never "ready now", which would let the planner count on it or trim beside it.
OVERDUE_READY_S = 60


def machine(run: RenderRun, now: datetime, *, leaving: bool = False) -> LiveMachine:
    """A live run as the planner sees it; a machine still starting is expected ready after
    its offer's start-up (and the lean worker's compiles) from when it was launched (or will
    be). ``leaving``: the run was
    asked to stop."""
    if run.status is RunStatus.RENDERING:
        ready = now
    else:
        launched = run.machine_launched_at or max(now, run.started_at)
        starting = run.offer.startup_s + run.compile_s
        expected = launched + timedelta(seconds=starting)
        ready = max(now + timedelta(seconds=OVERDUE_READY_S), expected)
    return LiveMachine(run.run_id, run.offer, run.interruptible, ready, leaving=leaving)


def machines(runs: list[RenderRun], stopping: Set[str], now: datetime) -> list[LiveMachine]:
    """The live runs as the planner sees them, those asked to stop (``stopping``) leaving."""
    return [machine(run, now, leaving=run.run_id in stopping) for run in runs]


def breakers_look_back(settings: Settings) -> timedelta:
    """How far back the breakers read failed runs: the longer of their two hold-offs."""
    return timedelta(seconds=max(settings.host_holdoff_s, settings.provider_pause_s))


def read_runs(services: Services, now: datetime) -> RunsRead:
    """What a dispatch tick and a quote read of the runs table, in one scan: the live runs,
    those ended since the longest look back (the preemption rate's day, the breakers'
    hold-offs) and the stop requests."""
    return services.runs.read(now - max(WINDOW, breakers_look_back(services.settings)))


def preemption_rate(live: list[RenderRun], ended: list[RenderRun], now: datetime) -> float:
    """How often our interruptible machines were preempted over the last day (live ones and
    those that ended), the rate the policy prices an interruptible rental at (and the quote,
    see ``planner.quote.plan_quote``)."""
    preempted = MachinePreempted.__name__
    return observed_rate(
        (
            Spell(
                rented_at=r.machine_launched_at or r.started_at,
                ended_at=None if r.ended_at is None else (r.machine_ended_at or r.ended_at),
                preempted=(r.error or "").split(":", 1)[0] == preempted,
            )
            for r in [*live, *ended]
            if r.interruptible
        ),
        now,
    )
