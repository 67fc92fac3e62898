"""The scheduled dispatch tick: gather state, ask the pure policy, start one run per rental."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.metrics import MetricUnit

from subconscious.errors import NOT_THE_HOSTS_FAULT, SubconsciousError
from subconscious.logic.lifecycle import sweep
from subconscious.logic.orders import task_batch
from subconscious.logic.planning import (
    backlog,
    breakers_look_back,
    limits,
    machines,
    preemption_rate,
    read_runs,
    tenants_open_orders,
)
from subconscious.logic.quotes import market_offers, spot_outlook
from subconscious.logic.render_run import give_back_machines
from subconscious.logic.throughput import current_rates, prior
from subconscious.market.static import StaticProvider
from subconscious.models import Order, OrderState, RenderRun, RunStatus
from subconscious.money import to_micros, to_usd
from subconscious.observability import (
    LIVE_MACHINES,
    OLDEST_MACHINE_AGE_S,
    SPEND_RATE_USD_PER_HOUR,
    logger,
    metrics,
)
from subconscious.planner.breakers import BreakerLimits, FailedRun, HeldOff, held_off
from subconscious.planner.costs import DEFAULT_PREEMPTIONS_PER_HOUR, Rates, price_micros_per_hour
from subconscious.planner.policy import (
    Decision,
    PlanState,
    Release,
    Rent,
    Wait,
    decide,
    latest_on_demand,
    latest_start,
)
from subconscious.planner.workers import compile_seconds, shape

if TYPE_CHECKING:  # a type only: services.py, the composition root, sits above logic
    from subconscious.services import Services

LEASE = "dispatch"


@dataclass
class TickReport:
    acted: bool
    decisions: list[str] = field(default_factory=list)
    started_runs: list[str] = field(default_factory=list)
    stopped_runs: list[str] = field(default_factory=list)
    reaped_runs: list[str] = field(default_factory=list)
    ended_orders: dict[str, str] = field(default_factory=dict)


def tick(services: Services, now: datetime | None = None, holder: str | None = None) -> TickReport:
    now = now or datetime.now(UTC)
    holder = holder or uuid.uuid4().hex
    settings = services.settings
    if not services.runs.acquire_lease(LEASE, holder, settings.dispatch_lease_s, at=now):
        logger.info("dispatch lease held by another tick; skipping")
        return TickReport(acted=False)
    try:
        report = TickReport(acted=True)
        runs = read_runs(services, now)  # the tick's one read of the runs table
        live, closed = _reconcile(services, now, report, runs.live)
        ended = [*runs.ended, *closed]
        emit_fleet_metrics(live, now)
        try:  # dead letters settled, orders past their time ended
            report.ended_orders = sweep(services, now).ended
        except Exception:  # never at the cost of renting for the orders that are fine
            logger.exception("the sweep failed; the next tick tries again")
            report.decisions.append("sweep failed")
        waiting, in_flight = services.queue.depth()
        tenants_orders = tenants_open_orders(services)
        orders = [o for _, o in tenants_orders]
        work = backlog(orders)
        wants_market = any(o.images_left for o in work) and waiting + in_flight > 0
        blocked = breakers(services, ended, now) if wants_market else HeldOff()
        history = spot_outlook(services) if wants_market else None
        report.decisions.extend(blocked.reasons)
        state = PlanState(
            now=now,
            orders=work if wants_market else [],
            machines=machines(live, runs.stopping, now),
            offers=[o for o in market_offers(services) if blocked.allows(o)]
            if wants_market
            else [],
            rates=current_rates(services) if wants_market else Rates(prior(), settings.worker),
            limits=limits(services),
            preemptions_per_hour=preemption_rate(live, ended, now)
            if wants_market
            else DEFAULT_PREEMPTIONS_PER_HOUR,
            spot_shares=dict(history.shares) if history else {},
            spot_bids=dict(history.bids) if history else {},
            spot_gaps=dict(history.gaps) if history else {},
        )
        budget_left = sum(to_micros(o.total_usd) - o.spend_micros for o in orders)
        decisions = decide(state)
        # The open orders' budget is shared by every run that may spend it (invariant 3):
        # each new run may spend its share, never the whole of it.
        runs_sharing = len(live) + sum(isinstance(d, Rent) for d in decisions)
        for decision in decisions:
            report.decisions.append(decision.reason)
            if isinstance(decision, Rent):
                if budget_left <= 0:
                    report.decisions.append("open orders have no budget left; not renting")
                    break
                share = budget_left // max(1, runs_sharing)
                started = start_run(services, decision, share, now, holder)
                if started:
                    report.started_runs.append(started)
            elif isinstance(decision, Release) and wants_market:
                # A machine the backlog no longer needs (the policy saw the backlog): the run
                # ends itself after its batch in flight and gives the machine back. With no
                # work seen (queue depth is approximate) runs are left to end themselves once
                # the queue stays empty, so a momentary zero never stops a fleet.
                services.runs.request_stop(decision.machine_id, decision.reason, now)
                report.stopped_runs.append(decision.machine_id)
        try:  # what a waiting order tells its customer; never at the cost of the tick
            record_holds(services, tenants_orders, hold(state, decisions))
        except Exception:
            logger.exception("could not record why orders wait; the next tick tries again")
        logger.info(
            "dispatch tick",
            waiting=waiting,
            in_flight=in_flight,
            open_orders=len(orders),
            live_runs=len(live),
            decisions=report.decisions,
        )
        return report
    finally:
        services.runs.release_lease(LEASE, holder)


def hold(state: PlanState, decisions: list[Decision]) -> tuple[datetime, str] | None:
    """Until when the backlog waits at the latest, and why, if this tick decided it waits to
    share a start-up or for interruptible capacity to come back; None if it did not (it
    rents, renders, or has nothing to wait for)."""
    waits = [d for d in decisions if isinstance(d, Wait)]
    spot = False
    if any(d.shares_startup for d in waits):
        until = latest_start(state)
    elif any(d.for_interruptible for d in waits):
        until, spot = latest_on_demand(state), True
    else:
        return None
    # to the next whole minute: what a customer reads, and what stays the same tick to tick
    rounded = until.replace(second=0, microsecond=0)
    until = rounded if rounded == until else rounded + timedelta(minutes=1)
    return until, hold_reason(until, state.now, for_interruptible=spot)


def hold_reason(until: datetime, now: datetime, *, for_interruptible: bool = False) -> str:
    when = f"{until:%H:%M} UTC" if until.date() == now.date() else f"{until:%Y-%m-%d %H:%M} UTC"
    if for_interruptible:
        return (
            f"waiting for cheaper interruptible machines to come back; on-demand machines "
            f"start by {when} at the latest"
        )
    return (
        f"waiting until {when} to share a machine start-up with other orders; "
        "starts by then at the latest"
    )


def record_holds(
    services: Services,
    tenants_orders: list[tuple[str, Order]],
    held: tuple[datetime, str] | None,
) -> None:
    """Write on each accepted order why it waits and until when (or clear what an earlier
    tick wrote, once the dispatch rents for it): only where that changed."""
    until, reason = held if held is not None else (None, None)
    for tenant_id, order in tenants_orders:
        if order.state is not OrderState.ACCEPTED:
            continue  # rendering: the transition cleared any hold
        if (order.held_until, order.held_reason) == (until, reason):
            continue
        services.orders.set_hold(tenant_id, order.order_id, until, reason)


def breakers(services: Services, ended: list[RenderRun], now: datetime) -> HeldOff:
    """What not to rent, from the runs that failed recently (planner/breakers.py): ``ended``,
    the runs that ended since at least the longest hold-off (``planning.read_runs``)."""
    settings = services.settings
    since = now - breakers_look_back(settings)
    failed = [
        FailedRun(
            r.offer.provider,
            r.offer.offer_id,
            r.ended_at,
            served=r.ready_at is not None,
            hosts_fault=(r.error or "").split(":", 1)[0] not in NOT_THE_HOSTS_FAULT,
        )
        for r in ended
        if r.status is RunStatus.FAILED
        and r.ended_at is not None
        and r.ended_at >= since
        and r.offer.provider != StaticProvider.name
    ]
    return held_off(
        failed,
        now,
        BreakerLimits(
            host_holdoff_s=settings.host_holdoff_s,
            failures_to_pause=settings.provider_failures_to_pause,
            pause_s=settings.provider_pause_s,
        ),
    )


def start_run(
    services: Services, decision: Rent, spend_cap_micros: int, now: datetime, holder: str
) -> str | None:
    settings = services.settings
    run_id = f"r-{now:%Y%m%d%H%M%S}-{uuid.uuid4().hex[:8]}"
    offer = decision.offer
    bid = None
    if decision.interruptible:
        bid = to_usd(price_micros_per_hour(offer, interruptible=True))
    run = RenderRun(
        run_id=run_id,
        offer=offer,
        bid_usd_per_hour=bid,
        compile_shapes=tuple(sorted({shape(j, task_batch(j)) for j in decision.compile_for})),
        compile_s=compile_seconds(decision.compile_for),
        spend_cap_micros=spend_cap_micros,
        started_at=now,
        execution_arn=services.executions.arn_for(run_id),
    )
    # Written before the execution starts (the next tick sees it live), and only while this
    # tick still holds the lease: a tick that overran its lease cannot rent (invariant 7).
    if not services.runs.put_under_lease(run, LEASE, holder, now):
        logger.warning("lost the dispatch lease before renting; not starting", run_id=run_id)
        return None
    payload: dict[str, Any] = {
        "run_id": run.run_id,
        "config": {
            "poll_interval_s": settings.poll_interval_s,
            # a machine compiling its models answers ready that much later
            "ready_timeout_s": settings.ready_timeout_s + run.compile_s,
            "slice_s": settings.render_slice_s,
        },
        "error": None,
        "teardown_error": None,
    }
    services.executions.start(run.run_id, payload)
    logger.info(
        "render run started",
        run_id=run.run_id,
        provider=offer.provider,
        gpu=offer.gpu,
        interruptible=decision.interruptible,
        compile_shapes=",".join(run.compile_shapes),
        usd_per_hour=str(run.usd_per_hour),
        reason=decision.reason,
    )
    return run_id


def emit_fleet_metrics(live: list[RenderRun], now: datetime) -> None:
    """What the alarms watch: how many machines run, how long the oldest has, what they cost
    per hour together (zeros when none run, so an alarm always has data)."""
    launched = [
        (r.machine_launched_at, r.usd_per_hour)
        for r in live
        if r.machine_launched_at and not r.machine_ended_at
    ]
    oldest_s = max(((now - at).total_seconds() for at, _ in launched), default=0)
    rate = sum((usd for _, usd in launched), Decimal(0))
    metrics.add_metric(name=LIVE_MACHINES, unit=MetricUnit.Count, value=len(launched))
    metrics.add_metric(name=OLDEST_MACHINE_AGE_S, unit=MetricUnit.Seconds, value=int(oldest_s))
    metrics.add_metric(name=SPEND_RATE_USD_PER_HOUR, unit=MetricUnit.NoUnit, value=float(rate))


def _reconcile(
    services: Services, now: datetime, report: TickReport, runs: list[RenderRun]
) -> tuple[list[RenderRun], list[RenderRun]]:
    """Live runs whose execution is gone (or never started) are closed, and their machines
    given back: a safety net under the state machine's own Teardown. The runs still live, and
    those it closed (failed now: the breakers count them this tick)."""
    live: list[RenderRun] = []
    closed: list[RenderRun] = []
    stale_start = now - timedelta(seconds=services.settings.dispatch_lease_s * 2)
    for run in runs:
        if run.execution_arn is None:
            alive = run.started_at > stale_start
        else:
            alive = services.executions.is_running(run.execution_arn)
        if alive:
            live.append(run)
            continue
        try:
            give_back_machines(services, run)
        except SubconsciousError as error:  # the provider is down: next tick tries again
            logger.error("could not give back a dead run's machines", run_id=run.run_id)
            report.decisions.append(f"retry give-back of {run.run_id}: {error.code}")
            live.append(run)  # its machines may still run (and cost): it counts as live
            continue
        failed = run.model_copy(
            update={
                "status": RunStatus.FAILED,
                "ended_at": now,
                "error": run.error or "execution ended without recording the run",
            }
        )
        services.runs.save(failed)
        closed.append(failed)
        report.reaped_runs.append(run.run_id)
        logger.warning("closed a run whose execution had ended", run_id=run.run_id)
    return live, closed
